"""The seeded workloads use the ops of hakfuzz-program/2 now and then, and nothing else moved."""

from __future__ import annotations

import pytest

from hakfuzz.differential.driver import judge, run_driver
from hakfuzz.engines.parallel import generators
from hakfuzz.engines.parallel.stress import final_stats_problems
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.native._tools import build_tool
from hakfuzz.program import (
    MAX_BIG_LIVE,
    OpKind,
    Program,
    canonicalize,
    validate,
)
from hakfuzz.program.model import V1_KINDS

V2_KINDS = set(OpKind) - V1_KINDS


@pytest.mark.parametrize("workload", ["mixed", "pressure"])
def test_v2_ops_come_at_a_small_rate(workload: str) -> None:
    program = WORKLOADS[workload](1, 4, 20_000, 0.3)
    validate(program)  # at most MAX_BIG_LIVE big blocks at once, among the rest
    kinds = [op.kind for op in program.ops]
    assert set(kinds) >= V2_KINDS
    share = sum(kind in V2_KINDS for kind in kinds) / len(kinds)
    assert 0.002 < share < 0.03
    assert any(op.size > 65535 for op in program.ops)  # past glibc's mmap threshold
    assert MAX_BIG_LIVE == 4


def _without_v2(program: Program) -> Program:
    """The program less the /2 ops and every op on a handle they made."""
    made_by_v2: set[int] = set()
    for op in program.ops:
        if op.kind in (OpKind.REALLOC_NULL, OpKind.ALIGNED_ALLOC) or (
                op.kind is OpKind.LIBC_ALLOC and op.size > 65535):
            made_by_v2.add(op.handle)
    ops = tuple(op for op in program.ops
                if op.kind in V1_KINDS and op.handle not in made_by_v2)
    return canonicalize(Program(program.format, "", program.config, program.threads, ops))


@pytest.mark.parametrize("workload", ["mixed", "pressure"])
def test_every_other_choice_is_as_before(workload: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with_v2 = _without_v2(WORKLOADS[workload](3, 3, 5000, 0.3))
    monkeypatch.setattr(generators, "V2_RATE", 0.0)
    plain = WORKLOADS[workload](3, 3, 5000, 0.3)
    assert not {op.kind for op in plain.ops} - V1_KINDS
    plain = canonicalize(Program(plain.format, "", plain.config, plain.threads, plain.ops))
    assert with_v2 == plain


@pytest.mark.parametrize("workload", ["mixed", "pressure"])
def test_driver_runs_the_v2_ops_of_the_workloads(workload: str) -> None:
    program = WORKLOADS[workload](2, 4, 6000, 0.3)
    assert {op.kind for op in program.ops} & V2_KINDS
    run = run_driver(build_tool("hakdriver"), program, timeout=120)
    assert judge(run, program, variant="release", seed=2) is None, run.stderr
    assert final_stats_problems(run, program) == []
