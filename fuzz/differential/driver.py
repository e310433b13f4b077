"""Run the C driver on a Program in a child process and judge the result.

The child gets the program on stdin and a timeout.  Exit 0 with ``ok`` is a
pass; exit 3 is a failed oracle (the driver's JSON names it, the op index and
the handle); death by a signal (glibc's ``free(): invalid pointer`` is
SIGABRT with that message on stderr) or a timeout is a crash.  Anything but a
pass becomes a :class:`~hakfuzz.findings.Finding`.

The foreign driver (``hakdriver-foreign``, run under ``LD_PRELOAD`` of any
allocator) writes one line on stderr when it dies inside a *foreign free*,
the target's ``free``/``realloc`` of a block glibc made: such a crash is its
own finding, which says so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hakfuzz.diagnostics import diagnose, first_diagnostic
from hakfuzz.differential.wire import to_wire
from hakfuzz.findings import Finding
from hakfuzz.program import Program

_FOREIGN_NOTE = re.compile(
    r"hakdriver: crashed in a foreign free: (?P<call>\w+)\(\) of a pointer glibc allocated, "
    r"handle (?P<handle>\d+), op (?P<op>\d+)"
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
    foreign_frees: bool | None = None,
) -> RunResult:
    """Run ``program`` once under ``driver``.

    ``foreign_frees`` not None: ``driver`` is the foreign driver, run with
    exactly ``env`` (the target's, from :func:`hakfuzz.targets.child_env`:
    an ``LD_PRELOAD`` of ours must not leak in), glibc's blocks freed by the
    target (True) or by glibc (False).
    """
    data = to_wire(program) if wire is None else wire
    if foreign_frees is None:
        argv = [str(driver), "--allocator", allocator, "-"]
        child_env = {**os.environ, **(env or {})}
    else:
        # The program's free-form options for the target's hakfuzz_configure.
        pairs = [arg for key, value in program.target_config
                 for arg in ("--configure", f"{key}={value}")]
        argv = [str(driver), "--foreign-frees", "on" if foreign_frees else "off", *pairs, "-"]
        child_env = dict(os.environ if env is None else env)
    try:
        done = subprocess.run(
            argv,
            input=data,
            capture_output=True,
            timeout=timeout,
            env=child_env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return RunResult(-1, None, err, True)
    result = parse_result(done.stdout.decode(errors="replace"))
    return RunResult(done.returncode, result, done.stderr.decode(errors="replace"), False)


def parse_result(stdout: str) -> dict[str, object] | None:
    """The driver's result: the JSON object on the last line of its output, if any."""
    text = stdout.strip()
    if not text:
        return None
    try:
        parsed = json.loads(text.splitlines()[-1])
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def judge(
    run: RunResult, program: Program, *, variant: str, seed: int | None, engine: str = "parallel"
) -> Finding | None:
    """None for a pass; otherwise the finding this run is."""
    if run.ok:
        return None
    diag = first_diagnostic(run.stderr)
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
    kind, detail = diagnose(run.returncode, run.stderr)
    foreign = _FOREIGN_NOTE.search(run.stderr)
    if foreign is not None and kind in ("signal", "exit"):
        return foreign_free_finding(run, program, foreign, variant=variant, seed=seed,
                                    engine=engine)
    if kind != "exit":  # a sanitizer's report, or a death by signal
        return Finding(
            engine,
            kind,
            detail,
            f"killed by {detail}" if kind == "signal" else detail,
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
    return Finding(
        engine,
        "exit",
        detail,
        f"driver exited {run.returncode}: {diag}",
        program,
        None,
        variant,
        seed,
        {"stderr": run.stderr[-4000:]},
    )


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def foreign_free_finding(
    run: RunResult,
    program: Program,
    note: re.Match[str],
    *,
    variant: str,
    seed: int | None,
    engine: str = "parallel",
) -> Finding:
    """The target died freeing (or resizing) a block glibc made: one finding that says so.

    The signature holds the call and how the process died, not the target's
    own words (they carry addresses), so every such crash of one target is
    one finding.
    """
    death = _death(run.returncode)
    call = note["call"]
    said = first_diagnostic(run.stderr.replace(note.group(0), ""))
    message = (
        f"foreign free: the allocator crashed {'freeing' if call == 'free' else 'resizing'} "
        f"a pointer it did not allocate ({call}() of glibc's block, handle {note['handle']}, "
        f"op {note['op']}): killed by {death}" + (f"; it said: {said}" if said else "")
    )
    return Finding(
        engine,
        "signal" if run.returncode < 0 else "exit",
        f"foreign-free {call} {death}",
        message,
        program,
        int(note["op"]),
        variant,
        seed,
        {"stderr": run.stderr[-4000:], "handle": int(note["handle"]), "foreign_free": True},
    )
