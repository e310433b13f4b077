"""The allocators larson is run under: hakmem, glibc, the peers, and any library by path.

Every allocator runs the same larson program; what differs is how it gets in:

- ``hakmem``: ``LD_PRELOAD`` of ``libhakmem.so`` on the plain larson, the same
  binary and call path as every peer.  A sanitizer variant cannot be
  preloaded (the sanitizer's runtime defines ``malloc`` itself and would
  shadow ours), so for ``asan``/``tsan`` it runs the linked build instead.
- ``hakmem-direct``: ``larson-hakmem``, which calls ``hak_malloc``/``hak_free``
  directly (the stability protocol's binary).
- ``glibc``: the plain larson, nothing preloaded.
- ``jemalloc``, ``mimalloc``, ``tcmalloc``, or a path to a shared library that
  replaces ``malloc``: ``LD_PRELOAD`` of that library.

What a target is, where a peer's library is found and how a run proves who
served it live in :mod:`hakfuzz.targets`; this module adds larson's own name
(``hakmem-direct``) and the parsing of ``--allocator`` lists.
"""

from __future__ import annotations

import os
from enum import Enum

from hakfuzz.targets import NAMES, PEERS, Peer, available, find_library, looks_like_path


class Kind(Enum):
    """How an allocator gets into the larson process."""

    SYSTEM = "system"  # glibc: nothing to do
    PRELOAD = "preload"  # LD_PRELOAD of a shared library
    LINKED = "linked"  # a build of larson linked with the allocator


ALLOCATORS: tuple[str, ...] = ("hakmem", "hakmem-direct", "glibc", *PEERS)
"""Every name ``--allocator`` accepts (besides the path of a shared library)."""


def parse_allocators(text: str) -> tuple[str, ...]:
    """``"hakmem,glibc,./libmy.so"`` → its items, once each; a :class:`ValueError` names a bad one.

    Items are names of :data:`ALLOCATORS` or paths; a path is checked when it
    is resolved (:func:`hakfuzz.targets.resolve_target`).  The whole text is
    one path when it names an existing file, commas and all.
    """
    if text not in ALLOCATORS and os.path.isfile(text):
        return (text,)
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError("no allocator named")
    for name in names:
        if name not in ALLOCATORS and not looks_like_path(name):
            raise ValueError(f"unknown allocator {name!r} (choose from {', '.join(ALLOCATORS)}, "
                             "or give the path of a shared library that replaces malloc)")
    return names


__all__ = ["ALLOCATORS", "NAMES", "PEERS", "Kind", "Peer", "available", "find_library",
           "parse_allocators"]
