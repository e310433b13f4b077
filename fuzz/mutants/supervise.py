"""Run one engine against one mutant in a child process and say whether it killed it.

The child (:mod:`hakfuzz.mutants.child`) reports JSON events on stdout.  The
engine *kills* the mutant when

- it reports a finding (a divergence, a driver oracle, a driver crash —
  the event's time stamp is the time of the kill);
- the child dies by a signal (a segfault, glibc's ``free(): invalid pointer``
  abort): the program in flight comes back from the child's journal, the
  signal and glibc's message from its stderr;
- the child stops making progress on one program for ``hang_seconds``
  (e.g. a drain that spins forever): a ``timeout`` kill.

A Hypothesis failure is reported twice, first as found and then shrunk; the
child gets ``shrink_seconds`` after the first report to deliver the shrunk
one, then it is stopped and the unshrunk program stands.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hakfuzz.campaign.journal import recover
from hakfuzz.campaign.reproduce import crash_detail, first_diagnostic
from hakfuzz.program import Program, loads_program


@dataclass(frozen=True, slots=True)
class Kill:
    """How an engine killed a mutant."""

    engine: str
    kind: str               # divergence | oracle | signal | timeout | exit | exception
    detail: str             # the failing field or oracle, or the signal and glibc's message
    message: str
    program: Program
    executor: str           # driver | differential: how to re-run the program
    at: float               # unix time of the kill
    minimised_by: str | None = None
    where: str | None = None
    stderr: str = ""

    @property
    def signature(self) -> str:
        """The finding's deduplication key (as :class:`hakfuzz.findings.Finding` has it)."""
        from hakfuzz.findings import slug

        return f"{self.kind}-{slug(self.detail)}"


@dataclass(slots=True)
class EngineRun:
    """One child run of one engine."""

    engine: str
    started: float
    seconds: float = 0.0
    execs: int = 0
    ops: int = 0
    kill: Kill | None = None
    returncode: int | None = None
    timed_out: bool = False
    hung: bool = False
    notices: list[str] = field(default_factory=list)
    last_begun: str | None = None   # what the child said it was starting last

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready summary (the kill's program is left out)."""
        return {"engine": self.engine, "seconds": round(self.seconds, 2), "execs": self.execs,
                "ops": self.ops, "killed": self.kill is not None,
                "returncode": self.returncode, "timed_out": self.timed_out,
                "notices": self.notices[:5]}


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What to start: the engine, the mutant, and the limits."""

    engine: str
    mutant: str
    deadline: float
    workdir: Path
    seed: int = 0
    corpus: tuple[Path, ...] = ()
    grace: float = 30.0          # beyond the deadline before the child is stopped
    shrink_seconds: float = 20.0
    hang_seconds: float = 10.0   # one program making no progress this long is a hang
    source: Path | None = None   # the allocator tree the mutant patches (None: native/)

    def command(self, journal: Path) -> list[str]:
        cmd = [sys.executable, "-m", "hakfuzz.mutants.child", self.engine, "--mutant",
               self.mutant, "--deadline", repr(self.deadline), "--seed", str(self.seed),
               "--journal", str(journal)]
        for path in self.corpus:
            cmd += ["--corpus", str(path)]
        if self.source is not None:
            cmd += ["--source", str(self.source)]
        return cmd


def _reader(stream: IO[str], sink: queue.SimpleQueue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def run_engine(spec: ChildSpec) -> EngineRun:
    """Start the child, follow its events, and return what it did to the mutant."""
    spec.workdir.mkdir(parents=True, exist_ok=True)
    journal = spec.workdir / f"journal-{spec.engine}"
    stderr_path = spec.workdir / f"stderr-{spec.engine}"
    journal.unlink(missing_ok=True)  # a killed child's journal must not look stalled
    run = EngineRun(spec.engine, time.time())
    with open(stderr_path, "w+b") as stderr_file:
        # A session of its own: stopping the child also stops its driver runs.
        proc = subprocess.Popen(spec.command(journal), stdout=subprocess.PIPE, stderr=stderr_file,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        try:
            assert proc.stdout is not None
            events: queue.SimpleQueue[str | None] = queue.SimpleQueue()
            reader = threading.Thread(target=_reader, args=(proc.stdout, events), daemon=True)
            reader.start()
            first, final = _follow(spec, proc, events, run, journal)
            ended = time.time()
            if final is not None:  # the child stops by itself after reporting its finding
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3.0)
        finally:  # also on Ctrl-C: the child has a session of its own and did not see it
            stop(proc)
        run.returncode = proc.returncode
        reader.join(timeout=5)
        _drain(events, run, spec)  # anything written just before the end
        stderr_file.seek(0)
        stderr = stderr_file.read().decode(errors="replace")
    run.seconds = time.time() - run.started
    if first is not None:
        event = final or first
        run.kill = _kill_from_event(spec.engine, event, at=float(first["t"]), stderr=stderr)
    elif run.returncode is not None and run.returncode < 0 and not run.timed_out:
        program = _recovered(journal)
        detail = crash_detail(run.returncode, stderr)
        run.kill = Kill(spec.engine, "signal", detail, f"the {spec.engine} child died: {detail}",
                        program, _executor_of(spec.engine), ended, where=run.last_begun,
                        stderr=stderr[-4000:])
    elif run.hung:
        program = _recovered(journal)
        run.kill = Kill(spec.engine, "timeout", "no progress on one program",
                        f"the {spec.engine} child made no progress for {spec.hang_seconds:.0f} s "
                        f"on a {len(program.ops)}-op program (a hang)", program,
                        _executor_of(spec.engine), ended, where=run.last_begun,
                        stderr=stderr[-4000:])
    elif run.returncode not in (0, None) and not run.timed_out:
        run.notices.append(f"{spec.engine} child exited {run.returncode}: "
                           f"{first_diagnostic(stderr)[:300]}")
    return run


def _follow(spec: ChildSpec, proc: subprocess.Popen[str], events: queue.SimpleQueue[str | None],
            run: EngineRun, journal: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Read events until the child ends, is done with its finding, or overruns."""
    first: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    shrink_limit = next_stall_check = 0.0
    hard_limit = spec.deadline + spec.grace
    while True:
        try:
            line = events.get(timeout=0.1)
        except queue.Empty:
            line = ""
        if line is None:  # stdout closed: the child has ended
            return first, final
        event = _parse(line)
        if event is not None:
            _apply(event, run)
            if event.get("event") == "finding":
                if first is None:
                    first = event
                    shrink_limit = time.time() + spec.shrink_seconds
                if spec.engine != "hypothesis" or event.get("minimised"):
                    final = event
                    return first, final
        now = time.time()
        if first is not None and now > shrink_limit:
            return first, final  # keep the unshrunk program
        if first is None and now >= next_stall_check:
            next_stall_check = now + 1.0
            if _stalled(journal, spec.hang_seconds):
                run.hung = run.timed_out = True
                return first, final
        if now > hard_limit and first is None:
            run.timed_out = True
            return first, final


def _drain(events: queue.SimpleQueue[str | None], run: EngineRun, spec: ChildSpec) -> None:
    while True:
        try:
            line = events.get_nowait()
        except queue.Empty:
            return
        if line is None:
            return
        event = _parse(line)
        if event is not None and event.get("event") != "finding":
            _apply(event, run)


def _parse(line: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _apply(event: dict[str, Any], run: EngineRun) -> None:
    kind = event.get("event")
    if kind in ("progress", "done"):
        run.execs = int(event.get("execs", run.execs))
        run.ops = int(event.get("ops", run.ops))
    elif kind == "notice":
        run.notices.append(str(event.get("message", "")))
    elif kind == "begin":
        run.last_begun = str(event.get("where", ""))


def _kill_from_event(engine: str, event: dict[str, Any], *, at: float, stderr: str) -> Kill:
    program = loads_program(str(event["program"]), source=f"<{engine} finding>")
    extra = event.get("minimised")
    return Kill(engine, str(event["kind"]), str(event["detail"]), str(event["message"]), program,
                str(event.get("executor", "differential")), at,
                str(extra) if extra else None, event.get("where"), stderr[-4000:])


def _executor_of(engine: str) -> str:
    return "driver" if engine == "stress" else "differential"


def _recovered(journal: Path) -> Program:
    try:
        program = recover(journal)
    except Exception:  # a torn or unreadable journal: the kill stands without a program
        program = None
    return program if program is not None else Program()


def _stalled(journal: Path, hang_seconds: float) -> bool:
    """The journal holds a program and has not grown for ``hang_seconds``."""
    try:
        info = journal.stat()
    except FileNotFoundError:
        return False
    return info.st_size > 0 and time.time() - info.st_mtime >= hang_seconds


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` (started by us, in a session of its own) and its children; reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group we created: the child's driver runs
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()


__all__ = ["ChildSpec", "EngineRun", "Kill", "run_engine", "stop"]
