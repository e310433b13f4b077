"""The Hypothesis state machine draws every /2 op, and shrinks a usable-size bug to two ops."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from hakfuzz.differential.executor import DifferentialSession
from hakfuzz.engines import statemachine
from hakfuzz.engines.statemachine import MachineContext, bind
from hakfuzz.model import Loc, ModelAllocator, Owner
from hakfuzz.program import Op, OpKind

_SETTINGS = settings(
    max_examples=80, stateful_step_count=50, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def stepped(monkeypatch: pytest.MonkeyPatch) -> list[Op]:
    """Every op the machine steps, in order."""
    ops: list[Op] = []
    real = DifferentialSession.step

    def step(self: DifferentialSession, op: Op) -> object:
        ops.append(op)
        return real(self, op)

    monkeypatch.setattr(DifferentialSession, "step", step)
    return ops


def test_machine_draws_every_v2_op_and_agrees(stepped: list[Op]) -> None:
    run_state_machine_as_test(bind(MachineContext()), settings=_SETTINGS)
    kinds = {op.kind for op in stepped}
    assert kinds >= {OpKind.ALIGNED_ALLOC, OpKind.REALLOC_NULL, OpKind.FREE_NULL,
                     OpKind.USABLE_SIZE, OpKind.USABLE_SIZE_NULL}
    assert any(op.size > 65535 for op in stepped)  # blocks past glibc's mmap threshold


def test_machine_shrinks_a_wrong_usable_size(stepped: list[Op],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = ModelAllocator.usable_size

    def off_by_one(self: ModelAllocator, loc: Loc) -> int | None:
        value = real(self, loc)
        return value + 1 if loc.owner is Owner.TINY and value is not None else value

    monkeypatch.setattr(ModelAllocator, "usable_size", off_by_one)
    # Macros of a few ops keep each example cheap (they are not what this test is about).
    monkeypatch.setattr(statemachine, "MACRO_OPS", 24)
    # Enough examples that the bug is met whatever stream the derandomized seed picks.
    short = settings(_SETTINGS, max_examples=200, stateful_step_count=12)
    context = MachineContext()
    with pytest.raises(AssertionError, match="usable_size: expected 9, got 8"):
        run_state_machine_as_test(bind(context), settings=short)
    make, ask = context.findings[-1].program.ops  # shrunk to the minimal pair
    assert ask == Op.usable_size(make.handle)
    assert make.size <= 8  # a class-0 block, however it was made
