"""Minimise a mutant's killing program with the campaign's delta debugger.

:func:`hakfuzz.campaign.minimize.minimize` needs an oracle that runs a
candidate once and names its failure.  Against a mutant:

- driver findings (stress, the driver half of replay) re-run in the
  mutant's C driver — already a child process;
- in-process findings (differential divergences, crashes of the sequential
  engines) re-run in a persistent child (``hakfuzz.mutants.child serve``)
  that runs one program per request; a candidate that crashes it is
  answered with the crash's signature and the child is restarted.

The reference signature is what the oracle says about the original program
(re-run up to ``runs`` times), not what the campaign's engine saw, so the
comparison is like with like.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hakfuzz.campaign.minimize import minimize
from hakfuzz.campaign.reproduce import crash_detail
from hakfuzz.findings import Finding, slug
from hakfuzz.mutants.engines import DRIVER, SERVE_MARKER
from hakfuzz.mutants.supervise import Kill, stop
from hakfuzz.program import Program
from hakfuzz.program.jsonio import dump_program

Oracle = Callable[[Program], str | None]


@dataclass(frozen=True, slots=True)
class Minimised:
    """A kill's program after minimisation (or why it was not minimised)."""

    program: Program
    original_ops: int
    by: str | None              # hypothesis | ddmin | None
    reproduction_rate: float | None = None
    note: str = ""


class ServeOracle:
    """Runs programs in a persistent ``serve`` child of one mutant."""

    def __init__(self, mutant: str, *, timeout: float = 30.0, source: Path | None = None) -> None:
        self.mutant = mutant
        self.source = source
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stderr: IO[bytes] | None = None

    def _start(self) -> subprocess.Popen[str]:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        command = [sys.executable, "-m", "hakfuzz.mutants.child", "serve", "--mutant", self.mutant]
        if self.source is not None:
            command += ["--source", str(self.source)]
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            start_new_session=True)
        self._lines = queue.SimpleQueue()
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(proc.stdout, self._lines), daemon=True).start()
        self._proc = proc
        return proc

    def __call__(self, program: Program) -> str | None:
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        assert proc.stdin is not None
        compact = json.dumps(json.loads(dump_program(program)), separators=(",", ":"))
        try:
            proc.stdin.write(compact + "\n")
            proc.stdin.flush()
            line = self._lines.get(timeout=self.timeout)
        except (BrokenPipeError, queue.Empty):
            line = None
        if line is not None:
            answer = json.loads(line)
            signature = answer.get("signature")
            return None if signature is None else str(signature)
        return self._crashed(proc)

    def _crashed(self, proc: subprocess.Popen[str]) -> str:
        hung = proc.poll() is None
        stop(proc)
        self._proc = None
        if hung:
            return f"timeout-{slug('no progress on one program')}"
        assert self._stderr is not None
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace").rsplit(SERVE_MARKER, 1)[-1]
        self._stderr.close()
        code = proc.returncode
        return f"{'signal' if code < 0 else 'exit'}-{slug(crash_detail(code, stderr))}"

    def close(self) -> None:
        """Stop the child."""
        if self._proc is not None:
            stop(self._proc)
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()


def _pump(stream: IO[str], sink: queue.SimpleQueue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def driver_oracle(driver: Path, label: str) -> Oracle:
    """Runs a program once in the mutant's driver; its finding's signature or None."""
    from hakfuzz.parallel.runner import judge, run_driver
    from hakfuzz.parallel.stress import final_stats_problems

    def once(program: Program) -> str | None:
        run = run_driver(driver, program, timeout=60.0)
        found = judge(run, program, variant=label, seed=None)
        if found is not None:
            return found.signature
        problems = final_stats_problems(run, program)
        if problems:
            return Finding("parallel", "oracle", "model-invariant " + problems[0], "",
                           program).signature
        return None

    return once


def minimise_kill(kill: Kill, mutant: str, driver: Path, *, seconds: float, runs: int = 3,
                  source: Path | None = None) -> Minimised:
    """Shrink ``kill.program`` for at most ``seconds`` while it fails the same way."""
    original = len(kill.program.ops)
    if kill.minimised_by is not None:
        return Minimised(kill.program, original, kill.minimised_by)
    if original <= 1:
        return Minimised(kill.program, original, None, note="nothing to minimise")
    serve: ServeOracle | None = None
    if kill.executor == DRIVER:
        oracle = driver_oracle(driver, f"mutant:{mutant}")
    else:
        serve = ServeOracle(mutant, source=source)
        oracle = serve
    started = time.monotonic()
    try:
        reference = None
        tries = 10 if kill.executor == DRIVER else runs  # driver re-runs are cheap; races flaky
        for _ in range(tries):
            reference = oracle(kill.program)
            if reference is not None:
                break
        if reference is None:
            why = "a race" if kill.executor == DRIVER else "state of the process that found it"
            return Minimised(kill.program, original, None,
                             note=f"not minimised: did not fail again in {tries} fresh re-runs "
                             f"(depends on {why})")
        left = max(1.0, seconds - (time.monotonic() - started))
        result = minimize(kill.program, reference, oracle, runs=runs, budget_seconds=left)
        return Minimised(result.program, original, "ddmin", result.reproduction_rate)
    finally:
        if serve is not None:
            serve.close()


__all__ = ["Minimised", "ServeOracle", "driver_oracle", "minimise_kill"]
