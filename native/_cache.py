"""The build cache: where it lives, and one entry made once (locked, filled aside, renamed).

:func:`cache_root` is the one place that decides the cache directory
(``$HAKFUZZ_CACHE``, else ``$XDG_CACHE_HOME/hakfuzz``, else
``~/.cache/hakfuzz``) and proves it usable before anything is built: a
setting that points at a file, into ``/proc`` or at a read-only place is a
usage error naming the variable and the reason, not an ``OSError`` traceback
from deep inside a build.

An entry is filled in a staging directory and published atomically.

Several processes (pytest-xdist workers, campaign workers) may ask for the
same entry at once: one fills it while the others wait on an ``fcntl`` lock
and then find it complete.  A crash while filling leaves only a staging
directory, removed on the way out, or a half-made entry that the next maker
replaces.  (The cffi module build in ``_build`` does the same with progress
messages of its own.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hakfuzz._errors import UsageError


class CacheError(UsageError):
    """The cache directory cannot be used; the message names its setting and the reason."""


def cache_root() -> Path:
    """The cache directory, created if needed and proven writable.

    ``$HAKFUZZ_CACHE``, else ``$XDG_CACHE_HOME/hakfuzz``, else
    ``~/.cache/hakfuzz``.  Raises :class:`CacheError` (exit status 2) naming
    the variable that chose it when it is not a directory, cannot be created
    or cannot be written.
    """
    explicit = os.environ.get("HAKFUZZ_CACHE")
    if explicit:
        return _usable(Path(explicit).expanduser(), f"HAKFUZZ_CACHE={explicit}")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        root = Path(xdg).expanduser() / "hakfuzz"
        return _usable(root, f"the build cache {root} (from XDG_CACHE_HOME)")
    root = Path.home() / ".cache" / "hakfuzz"
    return _usable(root, f"the build cache {root}")


def _usable(root: Path, what: str) -> Path:
    # Concurrent callers (pytest-xdist workers, campaign workers) may all get
    # here at once: mkdir tolerates the directory appearing meanwhile, and each
    # probe file has a unique name.
    hint = "set HAKFUZZ_CACHE to a writable directory"
    if root.exists() and not root.is_dir():
        raise CacheError(f"{what}: not a directory; {hint}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"{what}: cannot create the directory ({_reason(exc)}); {hint}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CacheError(f"{what}: cannot write there ({_reason(exc)}); {hint}") from None
    return root


def _reason(exc: OSError) -> str:
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def make_entry(
    root: Path, name: str, complete: Callable[[Path], bool], fill: Callable[[Path], None]
) -> Path:
    """``root/name``, made by ``fill(staging)`` unless ``complete(entry)`` already holds."""
    entry = root / name
    if complete(entry):
        return entry
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if complete(entry):  # another process made it while we waited
                return entry
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
            try:
                fill(staging)
                if entry.exists():  # a half-made entry of a crashed run
                    shutil.rmtree(entry)
                os.rename(staging, entry)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return entry
