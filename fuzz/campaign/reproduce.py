"""Run a program once the way its finding was found, and name the failure.

The result is the failure's signature (see :class:`~hakfuzz.findings.Finding`)
or None for a pass, which is what minimisation and deduplication compare.

- divergences of the sequential engines re-run in this process;
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


def oracle_for(finding: Finding, variant: str) -> Oracle:
    """How to re-run a program to see whether it still fails like ``finding``."""
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
            run = run_driver(driver, program, timeout=120.0)
            found = judge_run(run, program, variant=variant, seed=None)
            return None if found is None else found.signature

        return parallel
    if finding.kind == "divergence":

        executor = DifferentialExecutor(load_module(variant))

        def in_process(program: Program) -> str | None:
            divergence = executor.run(program)
            return None if divergence is None else signature("divergence", divergence.field)

        return in_process
    return lambda program: run_in_child(program, variant)


__all__ = [
    "Path",
    "crash_finding",
    "first_diagnostic",
    "oracle_for",
    "run_in_child",
]
