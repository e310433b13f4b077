"""A foreign allocator for the in-process engines: a serving child, one program per request.

The Hypothesis and atheris engines run in hakfuzz's own Python process,
whose ``malloc`` must stay glibc's: the interpreter itself would otherwise
run on the allocator under test, and a bug in it would kill the engine with
every finding in memory.  ``dlopen`` with ``RTLD_DEEPBIND`` does not help
either: the target's ``free`` would still meet pointers that libc, cffi and
the interpreter made, and a crash would still take the engine down.

So the target stays in a child: :class:`ForeignServer` starts
``hakdriver-foreign --serve`` once, with ``LD_PRELOAD`` of the target
(:func:`hakfuzz.targets.child_env`), and checks from its first line that the
target serves its ``malloc``.  Each :meth:`ForeignServer.run` sends one
Program (the driver's binary form, length-prefixed) and reads one JSON line;
the server forks a fresh child per program, so every program starts from
the same heap and a crash costs one fork.  The answer is a
:class:`~hakfuzz.differential.driver.RunResult`, judged like any driver run by
:func:`hakfuzz.differential.driver.judge` (oracle names, signals and glibc's
messages through :mod:`hakfuzz.diagnostics`).

The server dies with its parent (``PR_SET_PDEATHSIG``), is restarted when it
dies, and :meth:`ForeignServer.close` reaps it (no zombie).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import struct
import subprocess
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz.differential.driver import RunResult, parse_result
from hakfuzz.differential.wire import to_wire
from hakfuzz.program import Program
from hakfuzz.targets import Target, TargetError, child_env, served_by
from hakfuzz.variants import tool

SERVE_FORMAT = "hakfuzz-serve/1"
RESULT_FORMAT = "hakfuzz-serve-result/1"
_GRACE_S = 5.0
"""How much longer than the server's own per-program timeout we wait for its answer."""
_START_TIMEOUT_S = 30.0


class ServerError(HakfuzzError):
    """The server could not be started, or kept dying."""


class _Closed(Exception):
    """The server's stdout ended: it is gone."""


def parse_pairs(pairs: list[str] | tuple[str, ...], flag: str = "--configure") -> dict[str, str]:
    """``["KEY=VALUE", ...]`` as a dict; a malformed pair is a usage error naming ``flag``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key or any(c.isspace() for c in key):
            raise UsageError(f"{flag} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` and reap it."""
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL stops it; be safe anyway
        proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class ForeignServer:
    """``hakdriver-foreign --serve`` under ``target``: :meth:`run` one Program at a time.

    ``timeout`` bounds one program (the server kills its child after it);
    ``configure`` holds free-form ``key=value`` options for the target's
    ``hakfuzz_configure`` (applied after the program's own config fields);
    ``foreign_frees`` as in the foreign driver.  Start is lazy (first run).
    """

    def __init__(
        self,
        target: Target,
        *,
        foreign_frees: bool = True,
        timeout: float = 10.0,
        configure: Mapping[str, str] | None = None,
        variant: str = "release",
        driver: Path | None = None,
    ) -> None:
        self.target = target
        self.foreign_frees = foreign_frees
        self.timeout = timeout
        self.configure = dict(configure or {})
        self.variant = variant
        self._driver = driver
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = bytearray()
        self.hello: dict[str, Any] = {}
        self.starts = 0
        self.requests = 0
        self._finalizer: weakref.finalize[Any, ForeignServer] | None = None

    # ---- life cycle ---------------------------------------------------------------
    def argv(self) -> list[str]:
        """The server's command line."""
        if self._driver is None:

            self._driver = tool("hakdriver-foreign", self.variant)
        argv = [str(self._driver), "--foreign-frees", "on" if self.foreign_frees else "off"]
        for key, value in self.configure.items():
            argv += ["--configure", f"{key}={value}"]
        # The driver's own wait limit comes first, so a program that cannot
        # progress says which op waited rather than being killed mute.
        return [*argv, "--wait-limit", str(self.timeout * 0.8), "--serve", "--timeout",
                str(self.timeout)]

    @property
    def pid(self) -> int | None:
        """The running server's process id."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the server (if it is not running) and check the target serves it."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._reap()
        proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(self.target),
        )
        self._proc = proc
        self._buffer.clear()
        self.starts += 1
        self._finalizer = weakref.finalize(self, _kill, proc)
        try:
            line = self._read_line(time.monotonic() + _START_TIMEOUT_S)
        except _Closed:
            line = None
        if line is None:
            err = self._stderr_of_dead()
            self._reap()
            raise ServerError(f"{self.target.name}: the foreign server did not start: "
                              f"{err or 'no answer'}")
        hello = json.loads(line)
        if not isinstance(hello, dict) or hello.get("format") != SERVE_FORMAT:
            self._reap()
            raise ServerError(f"{self.target.name}: the foreign server said {line[:200]!r}")
        seen = served_by(self.target, hello.get("malloc_from"))
        if not seen.ok:
            self._reap()
            raise TargetError(f"{self.target.name}: the foreign server was not served by it: "
                              f"{seen.problem}")
        self.hello = hello

    @property
    def configure_ignored(self) -> bool:
        """``configure`` pairs were given but the target has no ``hakfuzz_configure``."""
        return bool(self.configure) and "configure" not in self.hello.get("hooks", [])

    def close(self) -> None:
        """End the server: close its stdin (it exits), kill it if it does not; reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _kill(proc)
        if self._finalizer is not None:
            self._finalizer.detach()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill(proc)
            if self._finalizer is not None:
                self._finalizer.detach()

    def __enter__(self) -> ForeignServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests -----------------------------------------------------------------
    def run(self, program: Program) -> RunResult:
        """Run ``program`` in a fresh child of the server; what the driver said.

        A program whose ``target_config`` differs from the server's options
        restarts the server with its own (they are applied per process).
        """
        if program.target_config and dict(program.target_config) != self.configure:
            self.configure = dict(program.target_config)
            self._reap()
        return self.run_wire(to_wire(program))

    def stamp(self, program: Program) -> Program:
        """``program`` carrying the server's options, so a finding replays with them."""
        if not self.configure or program.target_config:
            return program
        return dataclasses.replace(program, target_config=tuple(self.configure.items()))

    def run_wire(self, data: bytes) -> RunResult:
        """Run a program already in the driver's binary form."""
        for attempt in (1, 2):
            self.start()
            try:
                answer = self._request(data)
            except _Closed:
                err = self._stderr_of_dead()
                self._reap()
                if attempt == 2:
                    raise ServerError(f"{self.target.name}: the foreign server died twice on "
                                      f"one program: {err or 'no message'}") from None
                continue
            if answer is None:
                # Alive but silent past the deadline: a hang of the server itself.
                self._reap()
                return RunResult(-1, None, "the foreign server stopped answering", True)
            return answer
        raise AssertionError("unreachable")

    def _request(self, data: bytes) -> RunResult | None:
        """The answer; None past the deadline; :class:`_Closed` when the server is gone."""
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        self.requests += 1
        try:
            proc.stdin.write(struct.pack("<I", len(data)) + data)
            proc.stdin.flush()
        except OSError:  # BrokenPipeError: it died
            raise _Closed from None
        line = self._read_line(time.monotonic() + self.timeout + _GRACE_S)
        if line is None:
            return None
        return _result(json.loads(line))

    def _read_line(self, deadline: float) -> str | None:
        """One line from the server by ``deadline``; None if too late, :class:`_Closed` at EOF."""
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise _Closed
                self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return line.decode(errors="replace")

    def _stderr_of_dead(self) -> str:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return ""
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        return proc.stderr.read().decode(errors="replace").strip()[-500:]


def _result(envelope: Mapping[str, object]) -> RunResult:
    """The server's answer as a driver run's result."""
    if envelope.get("format") != RESULT_FORMAT:
        raise ServerError(f"the foreign server answered {str(envelope)[:200]}")
    stderr = str(envelope.get("stderr", ""))
    status, raw_code = envelope.get("status"), envelope.get("code", -1)
    code = int(raw_code) if isinstance(raw_code, int | float | str) else -1
    if status == "timeout":
        return RunResult(-1, None, stderr, True)
    returncode = -code if status == "signal" else code
    return RunResult(returncode, parse_result(str(envelope.get("stdout", ""))), stderr, False)
