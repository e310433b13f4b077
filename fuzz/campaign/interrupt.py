"""Ctrl-C and SIGTERM during a campaign: stop cleanly, keep what was found.

The first SIGINT or SIGTERM only records itself: the supervisor sees it on
its next turn, stops the workers and returns, and the findings met so far
are saved (unminimised where minimising was cut short), the report written
and the process exits with 128 + the signal's number (130, 143).  While
triage minimises, the signal raises :class:`Interrupted` so a long
minimisation ends at once.  A second signal aborts on the spot.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

_HANDLED = (signal.SIGINT, signal.SIGTERM)


def _say(text: str) -> None:
    """Write to fd 2 directly.

    The signal may arrive while the main thread is inside a write to
    ``sys.stderr``, and its buffer refuses a reentrant call.
    """
    with suppress(OSError):
        os.write(2, text.encode())


class Interrupted(BaseException):  # a stop request, not an error: no ``except Exception``
    """Raised inside :meth:`StopSignals.raising` when a stop signal arrives."""


class StopSignals:
    """Records the first SIGINT/SIGTERM; aborts on the second."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raise = False

    @property
    def name(self) -> str | None:
        """``SIGINT`` or ``SIGTERM`` once one arrived."""
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by the signal."""
        return 128 + (self.signum or 0)

    def requested(self) -> str | None:
        """The signal's name if a stop was asked for (the supervisor polls this)."""
        return self.name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            _say(f"hakfuzz: second {signal.Signals(signum).name}: aborting now\n")
            os._exit(128 + signum)
        self.signum = signum
        _say(
            f"hakfuzz: {signal.Signals(signum).name}: stopping the workers and saving what "
            "was found (again to abort)\n"
        )
        if self._raise:
            raise Interrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Handle SIGINT and SIGTERM inside the block; restore the old handlers after."""
        old = {sig: signal.signal(sig, self._handle) for sig in _HANDLED}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    @contextmanager
    def raising(self) -> Iterator[None]:
        """Inside the block a stop signal raises :class:`Interrupted` at once."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        self._raise = True
        try:
            yield
        finally:
            self._raise = False
