"""The Hypothesis state machine, model vs native in lockstep (fast budget)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from hakfuzz.engines.statemachine import AllocatorMachine

TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
