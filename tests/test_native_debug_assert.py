"""HAK_ASSERT: the ``debug`` build stops at the op that breaks an invariant.

``native/testfaults/drain-double-decrement.patch`` puts back the original allocator's
double-decrement bug: the owner's drain of its remote frees subtracts each
drained block from the slab's ``used`` twice.  PROGRAM gives a slab one
block out, frees it from another thread (a remote push) and has the owner
drain it at op BREAKS_AT (``flush``): ``used`` wraps below zero there.  The
``debug`` build of that tree (``testfault:...@debug``) must abort inside that
op, naming the expression, the place and the invariant in words; the run
without that op must pass; and the release build of the same tree must run
past it (the broken count is seen only by the comparison with the model
that follows the op).  Each run
is a child process (``python -m hakfuzz.campaign.child``): an abort must not
take pytest down.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from typing import Any

import pytest

from hakfuzz.native import build
from hakfuzz.variants import split

pytestmark = pytest.mark.native

FAULT = "testfault:drain-double-decrement"

CONFIG = {
    "ss_cap": 0,
    "budget_bytes": 0,
    "oom_policy": "libc",
    "cache_cap": 0,
    "refill_batch": 16,
    "release_empty": True,
    "ss_keep": 2,
    "checked": False,
    "fail_map_at": 0,
}
OPS: list[dict[str, Any]] = [
    {"op": "alloc", "thread": 0, "handle": 0, "size": 64},
    {"op": "alloc", "thread": 0, "handle": 1, "size": 64},
    {"op": "free", "thread": 0, "handle": 1},
    {"op": "free", "thread": 1, "handle": 0},  # a remote push: used stays 1
    {"op": "flush", "thread": 0},  # the drain: used 1 - 1 - 1 wraps
    {"op": "alloc", "thread": 0, "handle": 2, "size": 64},
    {"op": "check", "thread": 0},
]
BREAKS_AT = 4

MESSAGE = "hakmem: assertion failed: (slab)->used <= (slab)->carved (remote.c:"
WHERE = " in _hak_remote_drain)"
WORDS = "hakmem: invariant: a slab never has more blocks out (used) than it has carved"


def program(ops: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "format": "hakfuzz-program/1",
            "description": "a remote free drained by its owner",
            "config": CONFIG,
            "threads": 2,
            "ops": ops,
        }
    )


def _no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_child(variant: str, ops: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """One differential run of ``ops`` on ``variant``, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "hakfuzz.campaign.child", "--variant", variant],
        input=program(ops),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_no_core_dump,
        check=False,
    )


def verdict(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"exit {done.returncode}\nstderr: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_debug_build_aborts_inside_the_op_that_breaks_the_invariant() -> None:
    before = run_child(f"{FAULT}@debug", OPS[:BREAKS_AT])
    assert verdict(before)["divergence_field"] is None, before.stdout
    assert "assertion failed" not in before.stderr, before.stderr

    through = run_child(f"{FAULT}@debug", OPS[: BREAKS_AT + 1])
    assert through.returncode == -signal.SIGABRT, (
        f"exit {through.returncode}, expected SIGABRT\nstderr: {through.stderr[-2000:]}"
    )
    lines = through.stderr.splitlines()
    first = next((i for i, line in enumerate(lines) if "assertion failed" in line), None)
    assert first is not None, f"no HAK_ASSERT message: {through.stderr[-2000:]!r}"
    assert lines[first].startswith(MESSAGE), lines[first]
    assert lines[first].endswith(WHERE), lines[first]
    assert lines[first + 1] == WORDS, lines[first + 1]
    assert through.stdout == "", "the run stopped in the op: no verdict was printed"


def test_release_build_of_the_same_tree_runs_past_that_op() -> None:
    done = run_child(FAULT, OPS)
    assert "assertion failed" not in done.stderr, done.stderr
    # The drain returns with the broken count; only the comparison with the
    # model after the op (a slab the model retired is still in use) sees it.
    message = verdict(done)["message"]
    assert message is not None, done.stdout
    assert message.startswith(f"op {BREAKS_AT} "), done.stdout


def test_patched_trees_take_another_variants_flags() -> None:
    base, tree = split(f"{FAULT}@debug")
    assert base == "debug"
    assert tree is not None
    assert split(FAULT)[0] == "release"
    assert split("mutant:user-base-offset@debug")[0] == "debug"
    with pytest.raises(Exception, match="unknown build variant 'nope'"):
        split(f"{FAULT}@nope")


@pytest.mark.parametrize(("variant", "compiled_in"), [("release", False), ("debug", True)])
def test_hak_assert_is_compiled_into_the_debug_variant_only(
    variant: str, compiled_in: bool
) -> None:
    shared_object = build(variant, progress=None).path
    assert (b"_hak_assert_fail" in shared_object.read_bytes()) is compiled_in
