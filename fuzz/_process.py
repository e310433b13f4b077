"""Running a child process and measuring it: exit status, output, peak RSS, time.

:func:`run_measured` waits for the child with ``os.wait4``, which returns that
child's own resource usage (``getrusage(RUSAGE_CHILDREN)`` would give the
largest of every child ever waited for).  Output goes to temporary files,
so a chatty child never blocks on a full pipe.

Also here: reading the evidence of who served a run.  ``HAKMEM_STATS=1``
makes hakmem print its counters at exit (:func:`parse_hakmem_stats`);
``LARSON_SHOW_MALLOC=1`` makes larson print the object its ``malloc``
resolved to (:func:`parse_served_by`).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hakfuzz._errors import HakfuzzError


@dataclass(frozen=True, slots=True)
class Measured:
    """What one child process did."""

    argv: tuple[str, ...]
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    maxrss_kb: int  # ru_maxrss: peak RSS, but never below the launcher's (see run_measured)
    wall_seconds: float
    timed_out: bool

    def describe_status(self) -> str:
        """``exit 0``, ``exit 3``, ``killed by SIGSEGV`` or ``timed out``."""
        if self.timed_out:
            return "timed out"
        if self.returncode < 0:
            try:
                return f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exit {self.returncode}"


def run_measured(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 timeout: float = 300.0, stdin: bytes | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> Measured:
    """Run ``argv`` to completion (killed after ``timeout`` s) and measure it.

    ``env`` replaces the environment when given.  A program that cannot be
    started is a :class:`HakfuzzError` naming it.

    Linux carries the high-water mark of the forking process's image across
    ``exec``, so ``maxrss_kb`` is at least this Python process's own peak RSS;
    a program that must report a smaller peak prints its own VmHWM (larson
    does).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as inp:
        if stdin is not None:
            inp.write(stdin)
            inp.seek(0)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(list(argv),
                                    stdin=inp if stdin is not None else subprocess.DEVNULL,
                                    stdout=out, stderr=err,
                                    env=dict(env) if env is not None else None, cwd=cwd)
        except OSError as exc:
            raise HakfuzzError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        status, usage, timed_out = _wait(proc.pid, start + timeout)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(tuple(argv), proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), int(usage.ru_maxrss), wall, timed_out)


def _wait(pid: int, deadline: float) -> tuple[int, resource.struct_rusage, bool]:
    nap = 0.001
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done == pid:
            return status, usage, False
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return status, usage, True
        time.sleep(nap)
        nap = min(nap * 2, 0.02)


# ---- evidence ---------------------------------------------------------------

_CLASS_LINE = re.compile(r"^hakmem class (\d+) \((\d+) B\): (.*)$", re.MULTILINE)
_GLOBAL_LINE = re.compile(r"^hakmem stats: (.*)$", re.MULTILINE)
_FIELD = re.compile(r"(\w+)=(-?\d+)")
_SERVED_BY = re.compile(r"^larson: malloc from (.+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class HakmemStats:
    """The counters hakmem prints at exit with ``HAKMEM_STATS=1``."""

    totals: dict[str, int]  # ss_mapped, os_maps, os_unmaps
    classes: tuple[dict[str, int], ...]  # per class: ss_created, ss_live, active, ...

    @property
    def ss_created(self) -> int:
        """SuperSlabs created over all classes: > 0 proves hakmem served tiny requests."""
        return sum(c.get("ss_created", 0) for c in self.classes)

    def summary(self) -> str:
        """E.g. ``ss_created=12 (C1=3, C3=9)``."""
        parts = [f"C{i}={c['ss_created']}" for i, c in enumerate(self.classes)
                 if c.get("ss_created", 0)]
        return f"ss_created={self.ss_created}" + (f" ({', '.join(parts)})" if parts else "")


def parse_all_hakmem_stats(stderr: str) -> list[HakmemStats]:
    """Every stats block printed on ``stderr``, in order (one per process that exited)."""
    heads = list(_GLOBAL_LINE.finditer(stderr))
    blocks = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(stderr)
        totals = {k: int(v) for k, v in _FIELD.findall(head.group(1))}
        classes: dict[int, dict[str, int]] = {}
        for m in _CLASS_LINE.finditer(stderr, head.end(), end):
            classes[int(m.group(1))] = {k: int(v) for k, v in _FIELD.findall(m.group(3))}
        ordered = tuple(classes.get(c, {}) for c in range(max(classes, default=-1) + 1))
        blocks.append(HakmemStats(totals, ordered))
    return blocks


def parse_hakmem_stats(stderr: str) -> HakmemStats | None:
    """The last stats block printed on ``stderr``, or None when there is none."""
    blocks = parse_all_hakmem_stats(stderr)
    return blocks[-1] if blocks else None


def strip_hakmem_stats(stderr: str) -> str:
    """``stderr`` without the lines ``HAKMEM_STATS=1`` added."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not line.startswith(("hakmem stats: ", "hakmem class ")))


def parse_served_by(stderr: str) -> str | None:
    """The object larson's ``malloc`` resolved to (``LARSON_SHOW_MALLOC=1``), if printed."""
    m = _SERVED_BY.search(stderr)
    return m.group(1).strip() if m else None
