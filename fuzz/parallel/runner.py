"""Run the C driver on a Program in a child process and judge the result.

The child gets the program on stdin and a timeout.  Exit 0 with ``ok`` is a
pass; exit 3 is a failed oracle (the driver's JSON names it, the op index and
the handle); death by a signal (glibc's ``free(): invalid pointer`` is
SIGABRT with that message on stderr) or a timeout is a crash.  Anything but a
pass becomes a :class:`~hakfuzz.findings.Finding`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hakfuzz.findings import Finding
from hakfuzz.parallel.wire import to_wire
from hakfuzz.program import Program

_GLIBC_MESSAGE_PREFIXES = (
    "free():",
    "double free",
    "malloc():",
    "realloc():",
    "munmap_chunk():",
    "corrupted",
    "malloc_consolidate",
    "hakmem:",
    "ThreadSanitizer",
    "AddressSanitizer",
    "runtime error",
)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one driver run said."""

    returncode: int
    result: dict[str, Any] | None  # the driver's JSON, when it printed one
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None and bool(self.result.get("ok"))


def run_driver(
    driver: Path,
    program: Program,
    *,
    allocator: str = "hakmem",
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    wire: bytes | None = None,
) -> RunResult:
    """Run ``program`` once under ``driver``."""
    data = to_wire(program) if wire is None else wire
    try:
        done = subprocess.run(
            [str(driver), "--allocator", allocator, "-"],
            input=data,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return RunResult(-1, None, err, True)
    result: dict[str, Any] | None = None
    text = done.stdout.decode(errors="replace").strip()
    if text:
        try:
            parsed = json.loads(text.splitlines()[-1])
            result = parsed if isinstance(parsed, dict) else None
        except json.JSONDecodeError:
            result = None
    return RunResult(done.returncode, result, done.stderr.decode(errors="replace"), False)


def _first_diagnostic(stderr: str) -> str:
    for line in stderr.splitlines():
        stripped = line.strip().lstrip("=0123456789").strip()
        if (
            stripped.startswith(_GLIBC_MESSAGE_PREFIXES)
            or "ERROR:" in stripped
            or "WARNING:" in stripped
        ):
            return stripped
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def judge(
    run: RunResult, program: Program, *, variant: str, seed: int | None, engine: str = "parallel"
) -> Finding | None:
    """None for a pass; otherwise the finding this run is."""
    if run.ok:
        return None
    diag = _first_diagnostic(run.stderr)
    if run.timed_out:
        return Finding(
            engine,
            "timeout",
            "driver timed out",
            f"no result in time. {diag}".strip(),
            program,
            None,
            variant,
            seed,
        )
    if run.returncode < 0:
        name = signal.Signals(-run.returncode).name
        return Finding(
            engine,
            "signal",
            f"{name} {diag}",
            f"killed by {name}: {diag}",
            program,
            None,
            variant,
            seed,
            {"stderr": run.stderr[-4000:]},
        )
    failure = (run.result or {}).get("failure")
    if run.returncode == 3 and isinstance(failure, dict):
        oracle = str(failure.get("oracle", "oracle"))
        op_index = failure.get("op_index")
        return Finding(
            engine,
            "oracle",
            oracle,
            str(failure.get("message", "")),
            program,
            op_index if isinstance(op_index, int) and op_index >= 0 else None,
            variant,
            seed,
            {"handle": failure.get("handle")},
        )
    if "ThreadSanitizer" in run.stderr or "AddressSanitizer" in run.stderr:
        return Finding(
            engine,
            "sanitizer",
            diag,
            diag,
            program,
            None,
            variant,
            seed,
            {"stderr": run.stderr[-4000:]},
        )
    return Finding(
        engine,
        "exit",
        f"exit {run.returncode} {diag}",
        f"driver exited {run.returncode}: {diag}",
        program,
        None,
        variant,
        seed,
        {"stderr": run.stderr[-4000:]},
    )
