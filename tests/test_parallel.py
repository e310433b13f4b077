"""The parallel engine: every workload, 2 and 4 threads, a few seeds, in the C driver."""

from __future__ import annotations

import pytest

from hakfuzz.differential.driver import judge, run_driver
from hakfuzz.engines.parallel.stress import final_stats_problems
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.native._tools import build_tool
from hakfuzz.program import validate


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_passes_every_oracle(workload: str, threads: int, seed: int) -> None:
    program = WORKLOADS[workload](seed, threads, 6000, 0.3)
    validate(program)
    assert program.threads >= 2  # some workloads need a minimum number of threads
    run = run_driver(build_tool("hakdriver"), program, timeout=120)
    finding = judge(run, program, variant="release", seed=seed)
    assert finding is None, finding.summary()
    assert final_stats_problems(run, program) == []
    assert run.result is not None
    assert run.result["ops"] == len(program.ops)


def test_generators_are_deterministic() -> None:
    for generator in WORKLOADS.values():
        assert generator(5, 3, 800, 0.5) == generator(5, 3, 800, 0.5)
        assert generator(5, 3, 800, 0.5) != generator(6, 3, 800, 0.5)


def test_libc_ratio_makes_glibc_pointers() -> None:
    from hakfuzz.program import OpKind

    program = WORKLOADS["mixed"](3, 4, 4000, 0.5)
    kinds = [op.kind for op in program.ops]
    libc, alloc = kinds.count(OpKind.LIBC_ALLOC), kinds.count(OpKind.ALLOC)
    assert 0.3 < libc / (libc + alloc) < 0.7


def test_driver_catches_a_broken_pattern_oracle_input() -> None:
    """A glibc run of the same program passes: the harness itself is sound."""
    program = WORKLOADS["larson"](1, 2, 3000, 0.3)
    run = run_driver(build_tool("hakdriver"), program, allocator="glibc")
    assert judge(run, program, variant="release", seed=1) is None
