"""Output paths checked before any work starts, and a safe place when they fail late.

A campaign that runs for an hour and then cannot write its finding has lost
it.  Every command that writes (findings, reports, work directories, saved
programs) calls :func:`writable_dir` on each output directory first, so a
mistyped or read-only path is a usage error (exit 2, one line naming the
flag) before the first input runs.  If writing still fails at the end (the
disk filled, the directory was removed), :func:`fallback_dir` gives a fresh
temporary directory and the caller says where the output went.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hakfuzz._errors import UsageError


def writable_dir(path: Path, flag: str) -> Path:
    """Create ``path`` if needed and prove a file can be written in it.

    Raises :class:`UsageError` naming ``flag`` (e.g. ``--findings``) and the
    reason when the directory cannot be made or written.
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hakfuzz-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"{flag} {path}: cannot write there ({reason})") from None
    return path


def fallback_dir(what: str) -> Path:
    """A new temporary directory for output that could not go where it was asked."""
    return Path(tempfile.mkdtemp(prefix=f"hakfuzz-{what}-"))
