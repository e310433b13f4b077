"""The state machine ends its run at the context's stop time, even mid-shrink.

Hypothesis has no time limit of its own: a batch of examples, or the shrink
of a failure, runs as long as it takes.  A campaign worker must still stop
at its deadline (the supervisor kills one that does not, and an engine that
never reported an input is judged dead), so each example checks the
context's ``stop_at`` as it starts and ends the run with ``OutOfTime``,
which Hypothesis does not take for a failure to shrink.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from hakfuzz.engines.statemachine import MachineContext, OutOfTime, bind

pytestmark = pytest.mark.native

_SETTINGS = settings(max_examples=5, stateful_step_count=10, deadline=None, database=None,
                     derandomize=True, suppress_health_check=list(HealthCheck))


def test_a_run_past_its_stop_time_ends_before_the_first_program() -> None:
    context = MachineContext(stop_at=0.0)
    with pytest.raises(OutOfTime):
        run_state_machine_as_test(bind(context), settings=_SETTINGS)
    assert context.programs_run == 0
    assert context.findings == []


def test_a_run_with_time_left_runs_its_programs() -> None:
    context = MachineContext()
    run_state_machine_as_test(bind(context), settings=_SETTINGS)
    assert context.programs_run == 5
