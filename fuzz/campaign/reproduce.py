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
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from hakfuzz.campaign.minimize import Oracle
from hakfuzz.findings import Finding, slug
from hakfuzz.program import Program
from hakfuzz.program.jsonio import dump_program
from hakfuzz.variants import load_module, tool

_DIAG_MARKERS = (
    "free():",
    "double free",
    "malloc():",
    "realloc():",
    "munmap_chunk():",
    "corrupted",
    "hakmem:",
    "AddressSanitizer",
    "ThreadSanitizer",
    "runtime error",
    "HAKFUZZ-TEST-FAULT",
    "ERROR: libFuzzer",
)
# libFuzzer's progress lines ("#4096 pulse cov: 97 ft: 120 corp: 12/1kb exec/s: 812 rss: 106Mb")
# and its closing statistics say nothing about why a process died.
_NOISE = re.compile(r"^(#\d+\s|stat::|INFO: |MS: |Done \d+ runs|base unit:|0x[0-9a-f]+,)")


def first_diagnostic(stderr: str, *, fallback: bool = True) -> str:
    """The line that says what went wrong (glibc's message, a sanitizer's ERROR).

    With no such line, the last line that is not libFuzzer's progress output,
    unless ``fallback`` is off.
    """
    for line in stderr.splitlines():
        text = line.strip().lstrip("=0123456789").strip()
        if any(marker in text for marker in _DIAG_MARKERS):
            return text
    if not fallback:
        return ""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not _NOISE.match(line)]
    return lines[-1] if lines else ""


def crash_detail(returncode: int, stderr: str) -> str:
    """``SIGNAME message`` for a death by signal, ``exit N message`` otherwise.

    A death by signal names only a real diagnostic: whatever else the process
    printed last (a progress line, a warning) would split one crash into
    many signatures.
    """
    if returncode < 0:
        diag = first_diagnostic(stderr, fallback=False)
        return f"{signal.Signals(-returncode).name} {diag}".strip()
    return f"exit {returncode} {first_diagnostic(stderr)}".strip()


def crash_finding(
    engine: str, returncode: int, stderr: str, program: Program, *, variant: str, seed: int | None
) -> Finding:
    """The finding of a process that died running ``program``."""
    detail = crash_detail(returncode, stderr)
    return Finding(
        engine,
        "signal" if returncode < 0 else "exit",
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
    """The environment plus the sanitizer runtime a variant needs."""
    from hakfuzz.native import VARIANTS, sanitizer_env

    return {**os.environ, **(sanitizer_env(variant) if variant in VARIANTS else {})}


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
        return "timeout-child-timed-out"
    if done.returncode == 0:
        out: dict[str, Any] = json.loads(done.stdout.decode() or "{}")
        field = out.get("divergence_field")
        return None if field is None else f"divergence-{slug(str(field))}"
    kind = "signal" if done.returncode < 0 else "exit"
    return f"{kind}-{slug(crash_detail(done.returncode, done.stderr.decode(errors='replace')))}"


def oracle_for(finding: Finding, variant: str) -> Oracle:
    """How to re-run a program to see whether it still fails like ``finding``."""
    if finding.engine in ("parallel", "replay"):
        from hakfuzz.parallel.runner import judge, run_driver
        from hakfuzz.parallel.stress import final_stats_problems

        driver = tool("hakdriver", variant)

        def parallel(program: Program) -> str | None:
            run = run_driver(driver, program, timeout=120.0)
            found = judge(run, program, variant=variant, seed=None)
            if found is not None:
                return found.signature
            problems = final_stats_problems(run, program)
            return f"oracle-{slug('model-invariant ' + problems[0])}" if problems else None

        return parallel
    if finding.kind == "divergence":
        from hakfuzz.differential import DifferentialExecutor

        executor = DifferentialExecutor(load_module(variant))

        def in_process(program: Program) -> str | None:
            divergence = executor.run(program)
            return None if divergence is None else f"divergence-{slug(divergence.field)}"

        return in_process
    return lambda program: run_in_child(program, variant)


__all__ = [
    "Path",
    "crash_detail",
    "crash_finding",
    "first_diagnostic",
    "oracle_for",
    "run_in_child",
]
