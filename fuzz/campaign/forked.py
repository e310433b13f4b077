"""Runs in forked children: a native crash becomes a result, not the end of us.

``hakfuzz replay`` and ``hakfuzz minimize`` run programs on the allocator
in-process for speed, but a program that makes the allocator (or glibc, or a
mutant) abort or segfault must not take the table or the minimiser with it.
So the in-process runs happen in a child made by ``fork()``: the child
inherits everything already loaded (the programs, the allocator module), so
nothing is serialised or re-imported, and a crash kills only the child.

:func:`stream` runs many jobs in one child, which sends back one verdict per
job as it finishes; when the child dies in a job, that job's verdict is a
:class:`Death` and a fresh child carries on with the next job.  A job that
outlives ``timeout`` is a death too.  The child's stdout and stderr go to a
scratch file (emptied before each job), so glibc's or the allocator's last
words name the death, as they would for ``python -m hakfuzz.campaign.child``
(:func:`~hakfuzz.campaign.reproduce.run_in_child`); the signatures are
spelled the same way.

The parent must not have run allocator code itself, so every child starts
from a clean allocator; the parent may have threads, but the child only ever
runs the job and then ``os._exit``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import resource
import select
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from hakfuzz.diagnostics import diagnose
from hakfuzz.findings import TIMEOUT_SIGNATURE, signature

Verdict = dict[str, Any]
"""What a job returns in the child: anything JSON can carry."""

RunJob = Callable[[int], Verdict]
"""Runs job ``index`` (in the child) and returns its verdict."""

_STDERR_TAIL = 4000


@dataclass(frozen=True, slots=True)
class Death:
    """A child that died (or was killed for overrunning) in a job."""

    returncode: int | None  # negative: killed by that signal; None: timed out
    stderr: str  # the last words of the child, during this job only
    seconds: float
    timeout: float

    @property
    def detail(self) -> str:
        """``SIGABRT <glibc's message>``, ``exit 3 ...``, or ``timed out after N s``."""
        if self.returncode is None:
            return f"timed out after {self.timeout:g} s"
        return diagnose(self.returncode, self.stderr)[1]

    @property
    def signature(self) -> str:
        """As every engine names the same failure (:func:`hakfuzz.findings.signature`)."""
        if self.returncode is None:
            return TIMEOUT_SIGNATURE
        return signature(*diagnose(self.returncode, self.stderr))


def stream(
    count: int, run_job: RunJob, *, timeout: float = 120.0
) -> Generator[Verdict | Death, None, None]:
    """``run_job(0)`` .. ``run_job(count - 1)`` in forked children, verdicts in order.

    A job that raises yields ``{"exception": <traceback text>}``.  Closing the
    iterator early kills the child.
    """
    start = 0
    while start < count:
        child = _Child(start, count, run_job)
        try:
            for index in range(start, count):
                outcome = child.next_verdict(timeout)
                yield outcome
                if isinstance(outcome, Death):
                    start = index + 1
                    break
            else:
                start = count
        finally:
            child.close()


def run_once(job: Callable[[], Verdict], *, timeout: float = 120.0) -> Verdict | Death:
    """``job()`` alone in a forked child."""
    with contextlib.closing(stream(1, lambda _: job(), timeout=timeout)) as verdicts:
        return next(verdicts)


class _Child:
    """One forked child running jobs ``start .. count - 1``, and our end of its pipe."""

    def __init__(self, start: int, count: int, run_job: RunJob) -> None:
        self._scratch = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close())
        read_end, write_end = os.pipe()
        sys.stdout.flush()  # nothing buffered may be written twice
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            os.close(read_end)
            _serve(start, count, run_job, write_end, self._scratch.fileno())
        os.close(write_end)
        self._pid = pid
        self._fd = read_end
        self._buffer = b""
        self._status: int | None = None

    def next_verdict(self, timeout: float) -> Verdict | Death:
        started = time.monotonic()
        deadline = started + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(left, 0.0))
            if not ready:
                self._kill()
                return Death(None, self._last_words(), time.monotonic() - started, timeout)
            chunk = os.read(self._fd, 65536)
            if not chunk:  # the child is gone without a verdict for this job
                self._reap()
                status = self._status if self._status is not None else 0
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                return Death(code, self._last_words(), time.monotonic() - started, timeout)
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        verdict: Verdict = json.loads(line)
        return verdict

    def _last_words(self) -> str:
        self._scratch.seek(0)
        return self._scratch.read()[-_STDERR_TAIL:].decode(errors="replace")

    def _kill(self) -> None:
        if self._status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._status is None:
            _, self._status = os.waitpid(self._pid, 0)

    def close(self) -> None:
        self._kill()
        os.close(self._fd)
        self._scratch.close()


def _serve(start: int, count: int, run_job: RunJob, out: int, scratch: int) -> None:
    """The child: run the jobs, one JSON line each on ``out``; never return."""
    status = 0
    try:

        # Die the way a fresh interpreter would: no Python traceback on a
        # fatal signal (it would change the last words), no core file.
        faulthandler.disable()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(scratch, 1)
        os.dup2(scratch, 2)
        for index in range(start, count):
            os.ftruncate(2, 0)
            os.lseek(2, 0, os.SEEK_SET)
            try:
                verdict = run_job(index)
            except Exception:
                verdict = {"exception": traceback.format_exc()}
            data = (json.dumps(verdict) + "\n").encode()
            while data:
                data = data[os.write(out, data) :]
    except BaseException:
        status = 70  # EX_SOFTWARE: the parent sees a death with our traceback
        with contextlib.suppress(OSError):
            os.write(2, traceback.format_exc().encode(errors="replace"))
    finally:
        os._exit(status)


__all__ = ["Death", "RunJob", "Verdict", "run_once", "stream"]
