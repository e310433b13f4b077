"""Swarm generation reaches every config boundary and the deep milestones.

Every engine draws each allocator option at its default, at a boundary value
of ``hakfuzz.engines.configs.BOUNDARY_VALUES`` or anywhere in its range; the
in-process engines (Hypothesis ``programs()``, the atheris byte decoder)
reach every ``reached.BOUNDARIES`` entry and the cap, fallback, growth and
release milestones within a bounded number of programs, run on model and
native in lockstep.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, seed, settings

from hakfuzz.differential import DifferentialExecutor
from hakfuzz.engines import strategies
from hakfuzz.engines.configs import BOUNDARY_VALUES, VALID_RANGES
from hakfuzz.engines.reached import BOUNDARIES, Counter
from hakfuzz.program import DEFAULT_CONFIG, Program, ProgramConfig, decode

DEEP = {"growth", "release", "fallback", "cap-with-caches", "cap-without-caches"}
"""The milestones a program reaches only thousands of ops from an empty heap (or at a cap)."""

_SEEDED = settings(database=None, deadline=None, derandomize=False,
                   suppress_health_check=list(HealthCheck))


def _values(configs: list[ProgramConfig]) -> dict[str, set[object]]:
    return {name: {getattr(c, name) for c in configs} for name in BOUNDARY_VALUES}


def test_configs_reach_every_boundary_value_and_the_whole_range() -> None:
    drawn: list[ProgramConfig] = []

    @seed(12)
    @settings(_SEEDED, max_examples=600)
    @given(strategies.configs())
    def collect(config: ProgramConfig) -> None:
        drawn.append(config)

    collect()
    seen = _values(drawn)
    for name, values in BOUNDARY_VALUES.items():
        assert set(values) <= seen[name], name
    for name in VALID_RANGES:  # some value neither the default nor a boundary
        assert seen[name] - set(BOUNDARY_VALUES[name]) - {getattr(DEFAULT_CONFIG, name)}, name
    # Swarm: most configs move a few options, not all or none.
    moved = [sum(getattr(c, n) != getattr(DEFAULT_CONFIG, n) for n in BOUNDARY_VALUES)
             for c in drawn]
    assert sum(1 <= m <= 6 for m in moved) > len(moved) // 2


def test_the_state_machine_starts_at_every_boundary_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    from hakfuzz.engines import statemachine

    started: list[ProgramConfig] = []
    real = DifferentialExecutor.session

    def session(self: DifferentialExecutor, config: ProgramConfig,
                threads: int = 1) -> object:
        started.append(config)
        return real(self, config, threads)

    monkeypatch.setattr(DifferentialExecutor, "session", session)
    run_state_machine_as_test(  # type: ignore[no-untyped-call,unused-ignore]
        statemachine.AllocatorMachine,
        settings=settings(_SEEDED, max_examples=500, stateful_step_count=1, derandomize=True),
    )
    seen = _values(started)
    for name, values in BOUNDARY_VALUES.items():
        assert set(values) <= seen[name], name


def test_random_binary_headers_reach_every_boundary_value() -> None:
    rnd = random.Random(5)
    seen = _values([decode(rnd.randbytes(3)).config for _ in range(2000)])
    for name, values in BOUNDARY_VALUES.items():
        assert set(values) <= seen[name], name


@pytest.fixture(scope="module")
def executor() -> DifferentialExecutor:
    from hakfuzz import native

    return DifferentialExecutor(native.load())


def test_hypothesis_programs_reach_every_boundary_and_the_deep_milestones(
        executor: DifferentialExecutor) -> None:
    counter = Counter()
    executor.on_program_end = counter.program

    @seed(20261129)
    @settings(_SEEDED, max_examples=300)
    @given(strategies.programs(threads=None))
    def run(program: Program) -> None:
        executor.run(program)

    try:
        run()
    finally:
        executor.on_program_end = None
    missing = (set(BOUNDARIES) | DEEP) - set(counter.counts)
    assert not missing


def test_decoded_random_bytes_reach_every_boundary_and_the_deep_milestones(
        executor: DifferentialExecutor) -> None:
    counter = Counter()
    executor.on_program_end = counter.program
    rnd = random.Random(12)
    try:
        for _ in range(150):
            executor.run(decode(rnd.randbytes(rnd.randint(3, 160))))
    finally:
        executor.on_program_end = None
    missing = (set(BOUNDARIES) | DEEP) - set(counter.counts)
    assert not missing


def test_the_kind_mask_shrinks_to_every_kind_on_and_drops_the_kinds_it_turns_off() -> None:
    from hypothesis import find

    from hakfuzz.program import Op, OpKind

    masks = strategies._kind_mask(True)
    fixed = settings(database=None, derandomize=True, max_examples=500)
    assert find(masks, lambda _: True, settings=fixed) == frozenset()
    many_off = find(masks, lambda off: len(off) >= 8, settings=fixed)
    assert many_off <= set(strategies.SWARM_KINDS)
    choices = [strategies._Choice(OpKind.ALLOC, 0, size=8),
               strategies._Choice(OpKind.WRITE, 0, seed=1),
               strategies._Choice(OpKind.FREE, 0)]
    assert strategies._interpret(choices) == (Op.alloc(0, 8), Op.write(0, 1), Op.free(0))
    assert strategies._interpret(choices, off=frozenset({OpKind.WRITE})) == (
        Op.alloc(0, 8), Op.free(0))


def test_the_mixed_workload_leaves_kinds_out_for_some_seeds() -> None:
    """A 3,000-op mixed program of the full mix holds every kind; a swarm one lacks some."""
    from hakfuzz.engines.parallel.generators import swarm_off
    from hakfuzz.engines.parallel.workloads import WORKLOADS
    from hakfuzz.program import OpKind

    kinds = {seed_: {op.kind for op in WORKLOADS["mixed"](seed_, 3, 3000, 0.3).ops}
             for seed_ in range(12)}
    full = {OpKind.CALLOC, OpKind.MEMALIGN, OpKind.REALLOC, OpKind.WRITE, OpKind.VERIFY,
            OpKind.FLUSH, OpKind.THREAD_EXIT, OpKind.CHECK}
    assert any(full <= kinds[s] for s in kinds if not swarm_off(s))
    lacking = [s for s in kinds if not full <= kinds[s]]
    assert lacking
    assert all(swarm_off(s) for s in lacking)
    assert all({OpKind.ALLOC, OpKind.FREE} <= kinds[s] for s in kinds)
