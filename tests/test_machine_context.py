"""Each run of the state machines records into its own context, never into the class.

The engines bind a machine class to a per-run context; two runs (two
campaigns in one process, or a test next to an engine) must not see each
other's findings or counters.  The engines and executor signatures name
their types (the allocator module protocol, cffi pointers), never ``Any``.
"""

from __future__ import annotations

import ast
import signal
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.internal.reflection import function_digest
from hypothesis.stateful import run_state_machine_as_test

from hakfuzz.differential.driver import RunResult
from hakfuzz.differential.foreign_server import ForeignServer
from hakfuzz.engines import foreign_machine, statemachine
from hakfuzz.engines.foreign_machine import ForeignContext, ForeignMachine
from hakfuzz.engines.statemachine import AllocatorMachine, MachineContext
from hakfuzz.model import Loc, ModelAllocator, Owner
from hakfuzz.program import Program, ProgramConfig

_SETTINGS = settings(
    max_examples=10, stateful_step_count=10, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)
_NO_SHRINK = settings(_SETTINGS, max_examples=200, phases=[Phase.generate])
"""For the runs that fail: the first failure is enough, shrinking it would only cost time."""
_ROOT = Path(__file__).resolve().parent.parent


def test_the_machine_classes_hold_no_run_state() -> None:
    for machine in (AllocatorMachine, ForeignMachine):
        for name in ("findings", "programs_run", "variant", "save_dir", "server", "journal",
                     "ops_run", "outcomes", "stop_at"):
            assert not hasattr(machine, name), f"{machine.__name__}.{name}"
    assert not hasattr(statemachine, "use_module")
    assert not hasattr(statemachine, "_EXECUTOR")


def test_two_runs_share_no_findings_or_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ModelAllocator.usable_size

    def off_by_one(self: ModelAllocator, loc: Loc) -> int | None:
        value = real(self, loc)
        return value + 1 if loc.owner is Owner.TINY and value is not None else value

    buggy, clean = MachineContext(variant="buggy"), MachineContext(save_dir=None)
    with monkeypatch.context() as patch:
        patch.setattr(ModelAllocator, "usable_size", off_by_one)
        with pytest.raises(AssertionError, match="usable_size"):
            run_state_machine_as_test(statemachine.bind(buggy), settings=_NO_SHRINK)
    found, ran = list(buggy.findings), buggy.programs_run
    assert found
    assert ran > 0
    assert {f.variant for f in found} == {"buggy"}
    run_state_machine_as_test(statemachine.bind(clean), settings=_SETTINGS)
    assert clean.findings == []
    assert clean.programs_run > 0
    assert buggy.findings == found
    assert buggy.programs_run == ran
    assert buggy.executor is not None
    assert clean.executor is not None
    assert buggy.executor is not clean.executor


class _StubServer:
    """Answers every program with one fixed result, as a serving child would."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        self.configure: dict[str, str] = {}
        self.target = self

    def as_json(self) -> dict[str, str]:
        return {"name": "stub"}

    def stamp(self, program: Program) -> Program:
        return program

    def run(self, program: Program) -> RunResult:
        return self.result


def test_two_foreign_runs_share_no_findings_or_counters() -> None:
    crashing = ForeignContext(server=cast(ForeignServer, _StubServer(
        RunResult(-signal.SIGSEGV, None, "", False))))
    passing = ForeignContext(server=cast(ForeignServer, _StubServer(
        RunResult(0, {"ok": True}, "", False))))
    with pytest.raises(AssertionError):
        run_state_machine_as_test(foreign_machine.bind(crashing), settings=_NO_SHRINK)
    found, ran, ops = list(crashing.findings), crashing.programs_run, crashing.ops_run
    assert found
    assert ran > 0
    run_state_machine_as_test(foreign_machine.bind(passing), settings=_SETTINGS)
    assert passing.findings == []
    assert passing.outcomes == {"ok"}
    assert passing.programs_run > 0
    assert (crashing.findings, crashing.programs_run, crashing.ops_run) == (found, ran, ops)
    assert "ok" not in crashing.outcomes


def test_a_bound_machine_keeps_the_example_database_key() -> None:
    # Workers sharing a database replay each other's examples only if the key is stable.
    assert function_digest(statemachine.bind(MachineContext())) == function_digest(
        AllocatorMachine)
    assert function_digest(foreign_machine.bind(ForeignContext())) == function_digest(
        ForeignMachine)


def _any_in_signatures(path: Path) -> list[str]:
    """``file:line: annotation`` for every parameter or return annotation naming ``Any``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            notes = [p.annotation for p in params if p is not None] + [node.returns]
            for note in notes:
                if note is not None and any(
                        (isinstance(n, ast.Name) and n.id == "Any")
                        or (isinstance(n, ast.Attribute) and n.attr == "Any")
                        for n in ast.walk(note)):
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(note)}")
    return found


@pytest.mark.parametrize("package", ["fuzz/engines", "fuzz/differential"])
def test_no_any_in_signatures(package: str) -> None:
    offenders = [hit for path in sorted((_ROOT / package).glob("*.py"))
                 for hit in _any_in_signatures(path)]
    assert not offenders, offenders


def test_the_foreign_machine_runs_a_macro_into_its_program() -> None:
    # The macro rule is shared with AllocatorMachine; here it has no session to read.
    context = ForeignContext(server=cast(ForeignServer, _StubServer(
        RunResult(0, {"ok": True}, "", False))))
    machine = foreign_machine.bind(context)()
    machine.start(ProgramConfig(), 2)
    machine.macro(0, 0)
    assert machine.ops
    machine.teardown()
    assert context.programs_run == 1
    assert context.ops_run == len(machine.ops)


def test_a_foreign_run_reports_each_program_as_it_ends() -> None:
    # The engine sends its progress from this hook: once per batch of
    # examples was too late for a short campaign (the supervisor saw no input run).
    seen: list[int] = []
    context = ForeignContext(server=cast(ForeignServer, _StubServer(
        RunResult(0, {"ok": True}, "", False))))
    context.on_program = lambda: seen.append(context.programs_run)
    run_state_machine_as_test(foreign_machine.bind(context), settings=_SETTINGS)
    assert context.programs_run > 0
    assert seen == list(range(1, context.programs_run + 1))
