"""Each new mutant changes behaviour: an input written from the code shows it.

A mutant that behaves like the clean allocator on every input is not a bug
(an equivalent mutant), and no engine could be blamed for missing it.  So
for each mutant of ``native/mutants`` added with these tests there is one
input, chosen by reading the patched code, on which the clean allocator
passes and the mutant fails, in the place and the way its ``.md`` says:

- most run a Program through the differential executor (model vs native,
  ``python -m hakfuzz.campaign.child``, a child process: a mutant may crash);
- the over-read that only AddressSanitizer sees runs the same Program on
  the mutant's release build (passes) and on its asan build (a report);
- the relaxed remote push runs a Program in the C driver built with
  ThreadSanitizer (a data race) and without it (passes);
- the preload-only bug runs ``preloadcalls`` under ``LD_PRELOAD`` of the
  mutant's ``libhakmem.so``.

These inputs are the proof that each mutant is real, not how the campaign
kills it: none of them is in ``corpus/`` (``hakfuzz mutants --no-replay``
measures the engines alone).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from hakfuzz.campaign.reproduce import child_command, child_env
from hakfuzz.diagnostics import diagnose
from hakfuzz.differential.driver import judge, run_driver
from hakfuzz.model import limits
from hakfuzz.native import sanitizer_env
from hakfuzz.native._mutants import mutants
from hakfuzz.program import Op, Program, ProgramConfig, dump_program
from hakfuzz.variants import tool

pytestmark = pytest.mark.native

SS_BYTES = 2 << 20
C7 = 1024  # the largest class: fewest blocks per slab (slab 0: 60, the others: 64)


def _no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def differential(program: Program, variant: str) -> dict[str, Any]:
    """One differential run in a child process: its verdict, or how it died."""
    done = subprocess.run(
        child_command(variant),
        input=dump_program(program),
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(variant),
        preexec_fn=_no_core_dump,
        check=False,
    )
    if done.returncode != 0:
        kind, detail = diagnose(done.returncode, done.stderr)
        return {"died": f"{kind}: {detail}", "stderr": done.stderr[-3000:]}
    verdict: dict[str, Any] = json.loads(done.stdout)
    return verdict


@dataclass(frozen=True, slots=True)
class Case:
    """A program, and where and how the mutant must diverge on it."""

    program: Program
    op_indices: tuple[int, ...]  # the op it must diverge at (one of these)
    field: str


def _program(ops: list[Op], threads: int = 1, **config: Any) -> Program:
    return Program(config=ProgramConfig(**config), threads=threads, ops=tuple(ops))


def _refill_runs_out_mid_batch() -> Case:
    # One SuperSlab of class 7 holds 60 + 31 * 64 = 2044 blocks.  The
    # refills take 16, 32, ..., 512, 1024 blocks (the slow start): 2032 in
    # all, so malloc 2033 refills again and runs out after 12: the clean
    # refill hands those out, the mutant drops them and falls back to glibc.
    ops = [Op.alloc(h, C7) for h in range(2033)]
    return Case(_program(ops, ss_cap=1, cache_cap=1024, refill_batch=1024), (2032,), "owner")


DIRTY_MAX = limits.DIRTY_MAX


def _discard_of_a_full_slab() -> Case:
    # Caches off, class 7: fill slabs 0 .. DIRTY_MAX and open the next slab
    # with one block (the last handle).  Emptying the first DIRTY_MAX slabs
    # retires them dirty (the class keeps that many); emptying slab
    # DIRTY_MAX gives its pages back, and its 64 carved blocks end exactly
    # on the next slab's first page, which the mutant drops too: the last
    # handle reads back as zeros.
    ops: list[Op] = []
    slabs: list[list[int]] = []
    for blocks in (60, *[64] * DIRTY_MAX, 1):
        first = len(ops)
        ops += [Op.alloc(h, C7) for h in range(first, first + blocks)]
        slabs.append(list(range(first, first + blocks)))
    ops += [Op.free(h) for slab in slabs[:-1] for h in slab]
    ops.append(Op.verify(slabs[-1][0]))
    return Case(_program(ops, cache_cap=0), (len(ops) - 1,), "contents")


CASES: dict[str, Case] = {
    "refill-fail-drops-batch": _refill_runs_out_mid_batch(),
    "discard-rounds-past-slab": _discard_of_a_full_slab(),
    # The freed block goes to the cache with handle 0's pattern in it; calloc
    # of the same class pops it on the fast path, which the mutant lets
    # calloc take: not zeroed.
    "calloc-fast-path-no-zero": Case(
        _program([Op.alloc(0, 16), Op.free(0), Op.calloc(1, 1, 16)]), (2,), "contents"
    ),
    # Class 0 takes the only SuperSlab the budget allows, so class 7 cannot
    # grow and every 1024-aligned request falls back to glibc's malloc, which
    # aligns to 16: the first is misaligned unless glibc happens to put it on
    # a 1 KiB boundary, and four chunks of 1040 bytes in a row cannot all be.
    "memalign-fallback-unaligned": Case(
        _program([Op.alloc(0, 8)] + [Op.memalign(h, 1024, 8) for h in range(1, 5)],
                 budget_bytes=SS_BYTES),
        (1, 2, 3, 4), "alignment",
    ),
    # Cap 4, batch 16: the clean refill takes 4 blocks, the mutant 16.
    "refill-batch-unclamped": Case(
        _program([Op.alloc(0, 8)], cache_cap=4, refill_batch=16), (0,), "stats.cls[0].active_blocks"
    ),
    # A budget of exactly one SuperSlab must allow the first one.
    "budget-exact-refused": Case(_program([Op.alloc(0, 8)], budget_bytes=SS_BYTES), (0,), "owner"),
    "fail-map-uncounted": Case(
        _program([Op.alloc(0, 8)], fail_map_at=1), (0,), "stats.os_map_failures"
    ),
    # Thread 1's block keeps the SuperSlab alive; thread 0's flush retires its
    # empty slab 0 dirty, and its next malloc takes slab 0 again: the mutant
    # clears the dirty bit but keeps counting it.
    "dirty-reuse-uncounted": Case(
        _program(
            [Op.alloc(0, 8, 0), Op.alloc(1, 8, 1), Op.free(0, 0), Op.flush(0),
             Op.alloc(2, 8, 0), Op.check(0)],
            threads=2, cache_cap=0,
        ),
        (5,), "hak_check",
    ),
    # The first malloc(8) refills class 0's cache; malloc(9) then finds class
    # 0 (9 >> 3 == 1 -> class 0) on the fast path instead of class 1.
    "fast-class-rounds-down": Case(_program([Op.alloc(0, 8), Op.alloc(1, 9)]), (1,), "class_idx"),
    # Batch 1024: malloc 1 refills 16 blocks, malloc 17 refills 32 (the slow
    # start).  The thread exits and its next malloc runs on the same record,
    # recycled: a fresh start refills 16 again, the mutant 64.
    "refill-ramp-outlives-thread": Case(
        _program([*(Op.alloc(h, 8) for h in range(17)), Op.thread_exit(), Op.alloc(17, 8)],
                 cache_cap=1024, refill_batch=1024),
        (18,), "stats.cls[0].active_blocks",
    ),
    # Class 7's SuperSlab, emptied and flushed, is kept (released: a budget
    # turns the hold off); class 1 grows next and takes it back, so its
    # address names class 7.  The freed 16-byte block goes to class 1's
    # cache (the header's class); the mutant pushes it on class 7's, and the
    # next malloc(1024) returns it.
    "free-class-from-address": Case(
        _program([Op.alloc(0, C7), Op.free(0), Op.flush(), Op.alloc(1, 16), Op.free(1),
                  Op.alloc(2, C7)], budget_bytes=1 << 40),
        (5,), "class_idx",
    ),
    # The first malloc(8) refills class 0's cache and returns the first
    # block; the second pops the cache: the clean allocator returns the next
    # block, the mutant the stale copy of the top entry (NULL: a new record).
    "refill-leaves-top-stale": Case(_program([Op.alloc(0, 8), Op.alloc(1, 8)]), (1,), "result"),
}


def test_every_new_mutant_has_a_check() -> None:
    shipped = set(mutants())
    checked = {*CASES, "realloc-libc-rounds-usable", "remote-push-relaxed", "pvalloc-mask-typo"}
    assert checked <= shipped
    assert len(checked) >= 10


@pytest.mark.parametrize("name", list(CASES))
def test_mutant_diverges_where_the_clean_allocator_passes(name: str) -> None:
    case = CASES[name]
    clean = differential(case.program, "release")
    assert clean == {"divergence_field": None, "message": None}, clean
    verdict = differential(case.program, f"mutant:{name}")
    assert verdict.get("divergence_field") == case.field, verdict
    assert any(str(verdict["message"]).startswith(f"op {i} ") for i in case.op_indices), verdict


def test_realloc_over_read_of_a_glibc_block_is_seen_by_asan_only() -> None:
    # A 20-byte glibc block grown to 100 bytes (a tiny block): the mutant
    # copies min(100, round16(usable)) bytes.  glibc's usable size is 24,
    # rounded to 32, the next chunk's size field: nothing observable.
    # ASan's usable size is exactly 20: 12 bytes are read past the block.
    program = _program([Op.libc_alloc(0, 20), Op.realloc(0, 100), Op.verify(0)])
    name = "mutant:realloc-libc-rounds-usable"
    assert differential(program, name) == {"divergence_field": None, "message": None}
    assert differential(program, "asan") == {"divergence_field": None, "message": None}
    died = differential(program, f"{name}@asan")
    assert died.get("died") == "sanitizer: asan heap-buffer-overflow in hak_realloc", died


def _remote_frees_drained_by_the_owner() -> Program:
    # Caches off.  Thread 0 fills slab 0 of class 7; thread 1 frees those
    # blocks (remote pushes: a link stored into each block, then the CAS);
    # thread 0 goes on allocating and drains the remote stack each time a
    # slab runs out, then pops those blocks, reading their links.  Nothing else orders thread 1's
    # pushes before thread 0's reads: only the CAS's release does.
    ops = [Op.alloc(h, C7, 0) for h in range(60)]
    ops += [Op.free(h, 1) for h in range(60)]
    ops += [Op.alloc(h, C7, 0) for h in range(60, 2060)]
    return _program(ops, threads=2, cache_cap=0)


def _driver_signature(program: Program, variant: str) -> str | None:
    env = sanitizer_env("tsan") if variant.endswith("tsan") else {}
    run = run_driver(tool("hakdriver", variant), program, timeout=300.0, env=env)
    found = judge(run, program, variant=variant, seed=None)
    return None if found is None else found.signature


def test_relaxed_remote_push_is_a_race_only_tsan_sees() -> None:
    program = _remote_frees_drained_by_the_owner()
    name = "mutant:remote-push-relaxed"
    assert _driver_signature(program, name) is None  # x86 code is the same
    assert _driver_signature(program, "tsan") is None
    signature = _driver_signature(program, f"{name}@tsan")
    assert signature is not None
    # TSan names the owner's first access to a pushed block that the relaxed
    # CAS leaves unordered after the pusher's link store: the drain's walk
    # (a splice onto a non-empty freelist), the pop's read of the link, or
    # the driver's fill of the block once it is handed out again.
    assert signature.startswith(("sanitizer-tsan-data-race-in-hak-next-hak-remote-drain",
                                 "sanitizer-tsan-data-race-in-hak-next-slab-pop",
                                 "sanitizer-tsan-data-race-in-drv-fill")), signature


def _preloadcalls(variant: str) -> subprocess.CompletedProcess[str]:
    library = tool("libhakmem.so", variant)
    calls = tool("preloadcalls", variant)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAKMEM_")}
    return subprocess.run(
        [str(calls), "1", "20"],
        env={**env, "LD_PRELOAD": str(library)},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_no_core_dump,
        check=False,
    )


def test_pvalloc_typo_shows_only_under_the_preload() -> None:
    # Sizes 1..4096 "round" to size - 1, below the request: NULL.  No hak_*
    # entry point goes through src/preload.c; preloadcalls calls pvalloc.
    clean = _preloadcalls("release")
    assert clean.returncode == 0, clean.stdout[-2000:]
    assert "every promise kept" in clean.stdout
    broken = _preloadcalls("mutant:pvalloc-mask-typo")
    assert broken.returncode == 1, broken.stdout[-2000:]
    failed = {line for line in broken.stdout.splitlines() if line.startswith("FAIL")}
    assert failed, broken.stdout
    assert all(line.startswith("FAIL pvalloc is page-aligned") for line in failed), failed

