"""One cache entry, made once: locked, filled aside, published by a rename.

The entry is filled in a staging directory and published atomically.

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
