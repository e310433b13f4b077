"""Run a program once the way its finding was found, and name the failure.

The result is the failure's signature (see :class:`~hakfuzz.findings.Finding`)
or None for a pass, which is what minimisation and deduplication compare.

- divergences of the sequential engines re-run in this process (and
  :func:`fresh_process_oracle` checks the result in a new one);
- crashes of the sequential engines re-run in a child process
  (``python -m hakfuzz.campaign.child``), so the crash cannot take us down;
- parallel findings re-run in the C driver (a child process already).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hakfuzz.campaign.foreign import finding_oracle, recorded_target
from hakfuzz.diagnostics import diagnose, first_diagnostic
from hakfuzz.differential import DifferentialExecutor
from hakfuzz.differential.driver import run_driver
from hakfuzz.engines.parallel.stress import judge_run
from hakfuzz.engines.preload_engine import run_job
from hakfuzz.findings import TIMEOUT_SIGNATURE, Finding, signature
from hakfuzz.native import VARIANTS, sanitizer_env
from hakfuzz.program import Program
from hakfuzz.program.jsonio import dump_program
from hakfuzz.program.minimize import Oracle
from hakfuzz.variants import flags_of, load_module, tool


def crash_finding(
    engine: str, returncode: int, stderr: str, program: Program, *, variant: str, seed: int | None
) -> Finding:
    """The finding of a process that died running ``program``."""
    kind, detail = diagnose(returncode, stderr)
    return Finding(
        engine,
        kind,
        detail,
        f"{engine} worker died: {detail}",
        program,
        None,
        variant,
        seed,
        {"stderr": stderr[-4000:]},
    )


def child_command(variant: str) -> list[str]:
    return [sys.executable, "-m", "hakfuzz.campaign.child", "--variant", variant]


def child_env(variant: str) -> dict[str, str]:
    """The environment plus the sanitizer runtime a variant's build needs."""
    flags = flags_of(variant)
    return {**os.environ, **(sanitizer_env(flags) if flags in VARIANTS else {})}


def run_in_child(program: Program, variant: str, timeout: float = 120.0) -> str | None:
    """Differential run in a child process; the signature, or None."""
    try:
        done = subprocess.run(
            child_command(variant),
            input=dump_program(program).encode(),
            capture_output=True,
            timeout=timeout,
            env=child_env(variant),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return TIMEOUT_SIGNATURE
    if done.returncode == 0:
        out: dict[str, Any] = json.loads(done.stdout.decode() or "{}")
        field = out.get("divergence_field")
        return None if field is None else signature("divergence", str(field))
    return signature(*diagnose(done.returncode, done.stderr.decode(errors="replace")))


def _in_this_process(finding: Finding) -> bool:
    """Whether :func:`oracle_for` re-runs ``finding``'s programs in this process."""
    if finding.program.target is not None or finding.engine in ("parallel", "replay"):
        return False
    if finding.engine == "preload" and isinstance(finding.extra.get("job"), dict):
        return False
    return finding.kind == "divergence"


def fresh_process_oracle(finding: Finding, variant: str) -> Oracle | None:
    """An oracle that runs each program in a new process, where :func:`oracle_for`'s does not.

    In-process re-runs are fast, but a bug that leaves state behind past
    ``hak_reset`` (a thread record that keeps a field, say) makes a program
    fail there only because earlier programs ran: minimising in one process
    can then end on a program that fails nowhere else.  The finding must
    fail in a new process, where ``hakfuzz replay`` runs it.  None when
    every run of :func:`oracle_for` already starts a process.
    """
    if not _in_this_process(finding):
        return None
    return lambda program: run_in_child(program, variant)


def oracle_for(finding: Finding, variant: str, *, timeout: float = 120.0) -> Oracle:
    """How to re-run a program to see whether it still fails like ``finding``.

    ``timeout`` bounds each run in the C driver or a child process: a
    candidate that hangs (every candidate of a livelock finding does) costs
    at most that, so a minimisation's time budget holds.
    """
    if finding.program.target is not None:  # met on a foreign allocator: run it there

        return finding_oracle(finding, variant, recorded_target(finding.program, variant))
    job = finding.extra.get("job")
    if finding.engine == "preload" and isinstance(job, dict):

        def preloaded(program: Program) -> str | None:
            found = run_job(job, program, variant)
            return None if found is None else found.signature

        return preloaded
    if finding.engine in ("parallel", "replay"):

        driver = tool("hakdriver", variant)

        def parallel(program: Program) -> str | None:
            run = run_driver(driver, program, timeout=timeout)
            found = judge_run(run, program, variant=variant, seed=None)
            return None if found is None else found.signature

        return parallel
    if _in_this_process(finding):

        executor = DifferentialExecutor(load_module(variant))

        def in_process(program: Program) -> str | None:
            divergence = executor.run(program)
            return None if divergence is None else signature("divergence", divergence.field)

        return in_process
    return lambda program: run_in_child(program, variant, timeout)


__all__ = [
    "Path",
    "crash_finding",
    "first_diagnostic",
    "fresh_process_oracle",
    "oracle_for",
    "run_in_child",
]
