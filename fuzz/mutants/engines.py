"""The kill-campaign engines, as they run inside a child process.

A mutant may crash the process that drives it, so every engine runs in a
child (:mod:`hakfuzz.mutants.child`) and reports to its parent with JSON
lines on stdout (:class:`Reporter`).  Programs run in-process by the
differential executor are written to the child's journal before each op
(:class:`hakfuzz.campaign.journal.Journal`), so when the child dies the
parent recovers the program from the journal.

- ``replay``: every corpus program differentially (model vs the mutant,
  serialised), then, for programs with several threads, in the mutant's C
  driver on real pthreads (driver oracles + the model's invariant mode).
- ``hypothesis``: the state machine (:mod:`hakfuzz.statemachine`) on the
  mutant's module, in batches with fresh settings until a failure or the
  deadline.  The first failure is reported at once; the shrunk one after
  Hypothesis has shrunk it.
- ``stress``: :func:`hakfuzz.parallel.stress.run_stress` with every workload
  at 4 threads, in rounds with growing seeds, until a finding or the deadline.
- ``serve``: no engine; runs programs read from stdin one by one and answers
  each with its signature (the minimiser's oracle for in-process findings).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, ClassVar

from hakfuzz.campaign.journal import Journal
from hakfuzz.differential.executor import DifferentialExecutor, Divergence
from hakfuzz.findings import Finding
from hakfuzz.program import Program, load_program, loads_program
from hakfuzz.program.jsonio import dump_program
from hakfuzz.statemachine import AllocatorMachine

DRIVER = "driver"
DIFFERENTIAL = "differential"


class Reporter:
    """Writes the child's events, one JSON object per stdout line.

    Each event is stamped with the wall-clock time ``t`` it was made at.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.execs = 0
        self.ops = 0

    def _send(self, event: dict[str, Any]) -> None:
        event["t"] = time.time()
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()

    def finding(self, finding: Finding, *, executor: str, minimised: str | None = None,
                where: str | None = None) -> None:
        """Report a failure.

        ``executor`` is ``driver`` or ``differential`` (how to re-run the
        program); ``minimised`` names who shrank it (None: nobody).
        """
        self._send({"event": "finding", "engine": finding.engine, "kind": finding.kind,
                    "detail": finding.detail, "message": finding.message,
                    "op_index": finding.op_index, "seed": finding.seed,
                    "variant": finding.variant, "executor": executor, "minimised": minimised,
                    "where": where, "program": dump_program(finding.program)})

    def progress(self, execs: int = 0, ops: int = 0) -> None:
        """Programs and ops run so far (cumulative)."""
        self.execs += execs
        self.ops += ops
        self._send({"event": "progress", "execs": self.execs, "ops": self.ops})

    def begin(self, where: str) -> None:
        """What runs next (so a crash can be placed: the parent keeps the last one)."""
        self._send({"event": "begin", "where": where})

    def notice(self, message: str) -> None:
        """Something the user should read (not a failure of the mutant)."""
        self._send({"event": "notice", "message": message})

    def done(self) -> None:
        """The engine stopped by itself."""
        self._send({"event": "done", "execs": self.execs, "ops": self.ops})


# ---- replay -----------------------------------------------------------------------
def run_replay(hak: Any, driver: Path, files: Iterable[Path], reporter: Reporter,
               journal: Journal, *, deadline: float, label: str) -> None:
    """Every corpus file, differentially, then (several threads) in the driver."""
    from hakfuzz.parallel.runner import judge, run_driver
    from hakfuzz.parallel.stress import final_stats_problems

    executor = DifferentialExecutor(hak)
    executor.journal = journal
    for path in files:
        if time.time() >= deadline:
            return
        program = load_program(path)
        reporter.begin(str(path))
        divergence = executor.run(program)
        journal.clear()
        finding = None if divergence is None else divergence_finding(
            divergence, program, variant=label, engine="replay")
        reporter.progress(1, len(program.ops))
        if finding is not None:
            reporter.finding(finding, executor=DIFFERENTIAL, where=str(path))
            return
        if program.threads < 2:
            continue
        run = run_driver(driver, program, timeout=max(10.0, deadline - time.time() + 10.0))
        finding = judge(run, program, variant=label, seed=None, engine="replay")
        if finding is None:
            problems = final_stats_problems(run, program)
            if problems:
                finding = Finding("replay", "oracle", "model-invariant " + problems[0],
                                  "; ".join(problems), program, None, label, None)
        reporter.progress(1, len(program.ops))
        if finding is not None:
            reporter.finding(finding, executor=DRIVER, where=str(path))
            return


def divergence_finding(divergence: Divergence, program: Program, *, variant: str,
                       engine: str) -> Finding:
    """The finding of a divergence: the program cut after the diverging op.

    This is what :func:`hakfuzz.differential.executor.run_differential` reports.
    """
    cut = len(program.ops) if divergence.op_index < 0 else divergence.op_index + 1
    prefix = Program(program.format, program.description, program.config, program.threads,
                     program.ops[:cut])
    return Finding(engine, "divergence", divergence.field, divergence.describe(), prefix,
                   divergence.op_index if divergence.op_index >= 0 else None, variant, None,
                   {"expected": divergence.expected, "actual": divergence.actual})


# ---- hypothesis -------------------------------------------------------------------
class KillMachine(AllocatorMachine):
    """The state machine, reporting its first failure before Hypothesis shrinks it."""

    reporter: ClassVar[Reporter | None] = None
    first_reported: ClassVar[bool] = False

    def _fail(self, divergence: Divergence) -> None:
        try:
            super()._fail(divergence)
        finally:
            cls = KillMachine
            if not cls.first_reported and cls.reporter is not None and cls.findings:
                cls.first_reported = True
                cls.reporter.finding(cls.findings[-1], executor=DIFFERENTIAL)


def run_hypothesis(hak: Any, reporter: Reporter, journal: Journal, *, deadline: float,
                   label: str, steps: int = 50, batch: int = 25) -> None:
    """The state machine in batches of ``batch`` examples until a failure or the deadline."""
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    from hakfuzz import statemachine

    statemachine.use_module(hak)
    ex = statemachine.executor()
    ex.journal = journal
    KillMachine.reporter = reporter
    KillMachine.variant = label
    runs_before = 0
    while time.time() < deadline:
        failure: BaseException | None = None
        try:
            run_state_machine_as_test(  # type: ignore[no-untyped-call,unused-ignore]
                KillMachine,
                settings=settings(max_examples=batch, stateful_step_count=steps, deadline=None,
                                  database=None, derandomize=False, print_blob=False,
                                  suppress_health_check=list(HealthCheck)),
            )
        except AssertionError as exc:  # the machine recorded the finding before raising
            failure = exc
        except Exception as exc:  # e.g. Flaky: a failure that did not reproduce
            failure = exc
            reporter.notice(f"hypothesis: {type(exc).__name__}: {str(exc)[:300]}")
        journal.clear()
        ran = KillMachine.programs_run - runs_before
        runs_before = KillMachine.programs_run
        reporter.progress(ran, ex.ops_run - reporter.ops)
        if KillMachine.findings:
            reporter.finding(KillMachine.findings[-1], executor=DIFFERENTIAL,
                             minimised="hypothesis")
            return
        if failure is not None and not isinstance(failure, AssertionError):
            finding = Finding("hypothesis", "exception", type(failure).__name__,
                              str(failure)[:500], Program(), None, label)
            reporter.finding(finding, executor=DIFFERENTIAL)
            return


# ---- stress -----------------------------------------------------------------------
class _Killed(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.summary())
        self.finding = finding


def run_stress_rounds(driver: Path, reporter: Reporter, *, deadline: float, seed: int,
                      label: str, threads: int = 4, program_ops: int = 20_000,
                      programs_per_workload: int = 1) -> None:
    """``run_stress`` rounds (every workload) with seeds ``seed``, ``seed + 1000``, ...

    Each round first runs the workloads of
    :mod:`hakfuzz.parallel.generators_extra` that ``WORKLOADS`` does not list
    yet, judged the way ``run_stress`` judges.
    """
    from hakfuzz.parallel.generators import WORKLOADS
    from hakfuzz.parallel.stress import StressOptions, run_stress

    def stop(finding: Finding) -> None:
        raise _Killed(finding)

    round_index = 0
    while time.time() < deadline:
        round_seed = seed + 1000 * round_index
        opts = StressOptions(
            threads=threads, ops=len(WORKLOADS) * programs_per_workload * program_ops,
            seed=round_seed, workloads=tuple(WORKLOADS), repeat=1, variant=label,
            program_ops=program_ops, timeout=_DRIVER_TIMEOUT)
        try:
            _extra_workloads(driver, reporter, seed=round_seed, label=label, threads=threads,
                             program_ops=program_ops, programs=programs_per_workload,
                             deadline=deadline)
            report = run_stress(opts, driver, on_finding=stop)
            reporter.progress(report.runs, report.ops)
        except _Killed as killed:
            program = killed.finding.program
            reporter.finding(killed.finding, executor=DRIVER,
                             where=f"stress round {round_index}: {program.description} "
                             f"(seed {killed.finding.seed}, {program.threads} threads)")
            return
        round_index += 1


_DRIVER_TIMEOUT = 20.0  # a 20000-op program takes well under a second; longer is a hang


def _extra_workloads(driver: Path, reporter: Reporter, *, seed: int, label: str, threads: int,
                     program_ops: int, programs: int, deadline: float) -> None:
    """The not-yet-registered workloads, judged like ``run_stress`` judges."""
    from hakfuzz.parallel.generators import WORKLOADS
    from hakfuzz.parallel.generators_extra import EXTRA_WORKLOADS
    from hakfuzz.parallel.runner import judge, run_driver
    from hakfuzz.parallel.stress import final_stats_problems

    for name, generator in EXTRA_WORKLOADS.items():
        if name in WORKLOADS:
            continue  # registered: run_stress ran it already
        for program_seed in range(seed, seed + programs):
            if time.time() >= deadline:
                return
            program = generator(program_seed, threads, program_ops, 0.3)
            run = run_driver(driver, program, timeout=_DRIVER_TIMEOUT)
            finding = judge(run, program, variant=label, seed=program_seed)
            if finding is None:
                problems = final_stats_problems(run, program)
                if problems:
                    finding = Finding("parallel", "oracle", "model-invariant " + problems[0],
                                      "; ".join(problems), program, None, label, program_seed)
            reporter.progress(1, len(program.ops))
            if finding is not None:
                raise _Killed(finding)


# ---- serve ------------------------------------------------------------------------
SERVE_MARKER = "--- hakfuzz-serve program ---"
"""What :func:`serve` writes to stderr before each program."""


def serve(hak: Any, source: IO[str], sink: IO[str]) -> None:
    """One compact JSON program per input line -> one ``{"signature": ...}`` line.

    A marker line goes to stderr before each program, so the parent can tell
    which program's stderr a crash left.
    """
    executor = DifferentialExecutor(hak)
    for line in source:
        if not line.strip():
            continue
        program = loads_program(line, source="<serve>")
        sys.stderr.write(f"\n{SERVE_MARKER}\n")
        sys.stderr.flush()
        divergence = executor.run(program)
        signature = None if divergence is None else divergence_finding(
            divergence, program, variant="", engine="serve").signature
        sink.write(json.dumps({"signature": signature}) + "\n")
        sink.flush()


__all__ = ["DIFFERENTIAL", "DRIVER", "SERVE_MARKER", "KillMachine", "Reporter",
           "divergence_finding", "run_hypothesis", "run_replay", "run_stress_rounds", "serve"]
