"""The allocators larson is run under: hakmem and the ones users would pick instead.

Every allocator runs the same larson program; what differs is how it gets in:

- ``hakmem``: ``LD_PRELOAD`` of ``libhakmem.so`` on the plain larson, the same
  binary and call path as every peer.  A sanitizer variant cannot be
  preloaded (the sanitizer's runtime defines ``malloc`` itself and would
  shadow ours), so for ``asan``/``tsan`` it runs the linked build instead.
- ``hakmem-direct``: ``larson-hakmem``, which calls ``hak_malloc``/``hak_free``
  directly (the seed's protocol binary).
- ``glibc``: the plain larson, nothing preloaded.
- ``jemalloc``, ``mimalloc``, ``tcmalloc``: ``LD_PRELOAD`` of the shared library
  of a Debian package, found through the package's file list (``dpkg -L``)
  or, without dpkg, by a glob over the usual library directories.

A missing peer is a :class:`~hakfuzz._errors.HakfuzzError` naming the package
to install.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from enum import Enum

from hakfuzz._errors import HakfuzzError


class Kind(Enum):
    """How an allocator gets into the larson process."""

    SYSTEM = "system"  # glibc: nothing to do
    PRELOAD = "preload"  # LD_PRELOAD of a shared library
    LINKED = "linked"  # a build of larson linked with the allocator


@dataclass(frozen=True, slots=True)
class Peer:
    """A peer allocator shipped by a Debian package."""

    name: str
    package: str
    patterns: tuple[str, ...]  # library file names, most specific first


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("jemalloc", "libjemalloc2", ("libjemalloc.so.2", "libjemalloc.so*")),
        Peer("mimalloc", "libmimalloc2.0", ("libmimalloc.so.2", "libmimalloc.so.2.*",
                                            "libmimalloc.so*")),
        Peer("tcmalloc", "libtcmalloc-minimal4", ("libtcmalloc_minimal.so.4",
                                                  "libtcmalloc_minimal.so.4.*")),
    )
}
"""Peers by name."""

ALLOCATORS: tuple[str, ...] = ("hakmem", "hakmem-direct", "glibc", *PEERS)
"""Every name ``--allocator`` accepts."""

_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
             "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu")


def parse_allocators(text: str) -> tuple[str, ...]:
    """``"hakmem,glibc"`` → ``("hakmem", "glibc")``; a :class:`ValueError` names a bad one."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError("no allocator named")
    for name in names:
        if name not in ALLOCATORS:
            raise ValueError(f"unknown allocator {name!r} (choose from {', '.join(ALLOCATORS)})")
    return names


def _from_dpkg(peer: Peer) -> str | None:
    if shutil.which("dpkg") is None:
        return None
    done = subprocess.run(["dpkg", "-L", peer.package], capture_output=True, text=True,
                          check=False, timeout=30)
    if done.returncode != 0:
        return None
    files = [line.strip() for line in done.stdout.splitlines()]
    for pattern in peer.patterns:
        for path in files:
            if fnmatch.fnmatch(os.path.basename(path), pattern) and os.path.isfile(path):
                return path
    return None


def _from_glob(peer: Peer) -> str | None:
    for pattern in peer.patterns:
        for directory in _LIB_DIRS:
            hits = sorted(glob.glob(os.path.join(directory, pattern)))
            hits = [h for h in hits if "debug" not in os.path.basename(h) and os.path.isfile(h)]
            if hits:
                return hits[0]
    return None


def find_library(name: str) -> str:
    """Absolute path of peer ``name``'s shared library, or an error naming its package."""
    peer = PEERS.get(name)
    if peer is None:
        raise HakfuzzError(f"{name!r} is not a peer allocator (peers: {', '.join(PEERS)})")
    path = _from_dpkg(peer) or _from_glob(peer)
    if path is None:
        raise HakfuzzError(f"{name} is not installed: install the Debian package {peer.package} "
                           f"(apt-get install {peer.package})")
    return os.path.realpath(path)


def available(names: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Split ``names`` into those usable here and ``{name: why not}`` for the rest."""
    usable: list[str] = []
    missing: dict[str, str] = {}
    for name in names:
        if name in PEERS:
            try:
                find_library(name)
            except HakfuzzError as exc:
                missing[name] = str(exc)
                continue
        usable.append(name)
    return tuple(usable), missing
