"""Shared helpers of the ``tests/test_native_*.py`` files: the allocator through cffi.

Small wrappers that turn the C introspection calls into Python values and
assertions with helpful messages: ``configure`` (defaults plus overrides,
asserting success), ``locate`` (a frozen ``Location``), ``stats`` (a
``Snapshot`` that can be compared and printed), ``assert_clean``
(``hak_check`` with its sentence in the failure), ``assert_drained`` (no
block active or remote-pending in any class), and byte helpers for fill
patterns.  Every function takes the ``hak`` fixture's module first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from hakfuzz.model import limits
from hakfuzz.model.stats import CLASS_FIELDS, GLOBAL_FIELDS
from hakfuzz.native import HakmemModule

Ptr = Any
"""A cffi ``void *`` (cffi's CData has no useful static type)."""

OWNER_UNKNOWN = 0
OWNER_TINY = 1
OWNER_LIBC = 2

OOM_LIBC = 0
OOM_NULL = 1

CLASS_SIZES = limits.CLASS_SIZES

SS_BLOCKS: tuple[int, ...] = tuple(sum(caps) for caps in limits.SLAB_CAPACITY)
"""Blocks in one whole SuperSlab of each class (slab 0 holds the header)."""


def configure(hak: HakmemModule, **fields: int) -> None:
    """Apply the default configuration with ``fields`` overridden; assert success."""
    cfg = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_default(cfg)
    for name, value in fields.items():
        setattr(cfg, name, value)
    rc = hak.lib.hak_configure(cfg)
    assert rc == 0, f"hak_configure({fields}) returned {rc}"


def exact(hak: HakmemModule, **fields: int) -> None:
    """Configure with thread caches off (``cache_cap=0``): placement is exactly predictable."""
    configure(hak, cache_cap=0, **fields)


def config_dict(hak: HakmemModule) -> dict[str, int]:
    """The current configuration (``hak_config_get``) as a dict of field values."""
    cfg = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_get(cfg)
    return {name: int(getattr(cfg, name)) for name, _ in hak.ffi.typeof("hak_config_t").fields}


def addr(hak: HakmemModule, ptr: Ptr) -> int:
    """The address of ``ptr`` as an int."""
    return int(hak.ffi.cast("uintptr_t", ptr))


def ss_base(hak: HakmemModule, ptr: Ptr) -> int:
    """The 2 MiB-aligned base that the registry would look ``ptr`` up by."""
    return addr(hak, ptr) & ~(limits.SS_SIZE - 1)


@dataclass(frozen=True, slots=True)
class Location:
    """``hak_location_t`` as a value."""

    owner: int
    class_idx: int
    ss_seq: int
    slab_idx: int
    block_idx: int

    @property
    def place(self) -> tuple[int, int, int]:
        """``(ss_seq, slab_idx, block_idx)``."""
        return (self.ss_seq, self.slab_idx, self.block_idx)


def locate(hak: HakmemModule, ptr: Ptr) -> Location:
    """``hak_locate(ptr)``."""
    out = hak.ffi.new("hak_location_t *")
    hak.lib.hak_locate(ptr, out)
    return Location(out.owner, out.class_idx, out.ss_seq, out.slab_idx, out.block_idx)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``hak_stats()``: per-class counters (one dict per class) and the global ones."""

    cls: tuple[dict[str, int], ...]
    glob: dict[str, int]

    def __getitem__(self, name: str) -> int:
        """A global counter by name (``ss_mapped``, ``os_maps``, ...)."""
        return self.glob[name]

    def total(self, name: str) -> int:
        """A per-class counter summed over every class."""
        return sum(c[name] for c in self.cls)

    def __str__(self) -> str:
        lines = [" ".join(f"{k}={v}" for k, v in self.glob.items())]
        for class_idx, counters in enumerate(self.cls):
            if any(counters.values()):
                values = " ".join(f"{k}={v}" for k, v in counters.items())
                lines.append(f"C{class_idx}: {values}")
        return "\n".join(lines)


def stats(hak: HakmemModule) -> Snapshot:
    """``hak_stats()`` as a ``Snapshot``."""
    out = hak.ffi.new("hak_stats_t *")
    hak.lib.hak_stats(out)
    per_class = tuple(
        {name: int(getattr(out.cls[c], name)) for name in CLASS_FIELDS}
        for c in range(limits.NUM_CLASSES)
    )
    return Snapshot(per_class, {name: int(getattr(out, name)) for name in GLOBAL_FIELDS})


def check_message(hak: HakmemModule) -> str | None:
    """``hak_check``'s sentence, or None when the allocator is consistent."""
    msg = hak.ffi.new("char[]", limits.CHECK_MSG_MAX)
    rc = hak.lib.hak_check(msg, limits.CHECK_MSG_MAX)
    if rc == 0:
        return None
    return hak.ffi.string(msg).decode(errors="replace") or f"(hak_check returned {rc}, no message)"


def assert_clean(hak: HakmemModule, context: str = "") -> None:
    """Assert ``hak_check`` finds nothing wrong; the failure quotes its sentence."""
    problem = check_message(hak)
    where = f" ({context})" if context else ""
    assert problem is None, f"hak_check{where}: {problem}"


def assert_drained(hak: HakmemModule, context: str = "") -> Snapshot:
    """Assert no class has active or remote-pending blocks; return the snapshot."""
    snap = stats(hak)
    where = f" ({context})" if context else ""
    for class_idx, counters in enumerate(snap.cls):
        assert counters["active_blocks"] == 0, f"C{class_idx} blocks still active{where}:\n{snap}"
        assert counters["remote_pending"] == 0, f"C{class_idx} remote frees pending{where}:\n{snap}"
    return snap


def assert_only_held(snap: Snapshot, context: str = "", *, budget: bool = False) -> None:
    """Every block freed: each class that ever grew holds its first SuperSlab, nothing more.

    docs/policy.md, "Retire and release": a class's first live SuperSlab is
    held, not released, when it empties; with a budget (``budget``) none is.
    """
    where = f" ({context})" if context else ""
    for class_idx, counters in enumerate(snap.cls):
        assert counters["slabs_in_use"] == 0, f"C{class_idx} slabs still in use{where}:\n{snap}"
        held = 0 if budget else int(counters["ss_created"] > 0)
        assert counters["ss_live"] == held, f"C{class_idx} should hold {held}{where}:\n{snap}"


def malloc_ok(hak: HakmemModule, size: int) -> Ptr:
    """``hak_malloc(size)``, asserting it is not NULL."""
    ptr = hak.lib.hak_malloc(size)
    assert ptr != hak.ffi.NULL, f"hak_malloc({size}) returned NULL"
    return ptr


def fill_class(hak: HakmemModule, class_idx: int, superslabs: int = 1) -> list[Ptr]:
    """Allocate every block of ``superslabs`` SuperSlabs' worth of a class; none may be NULL."""
    size = CLASS_SIZES[class_idx]
    ptrs = [hak.lib.hak_malloc(size) for _ in range(SS_BLOCKS[class_idx] * superslabs)]
    nulls = sum(p == hak.ffi.NULL for p in ptrs)
    assert nulls == 0, f"{nulls} of {len(ptrs)} C{class_idx} requests returned NULL"
    return ptrs


def fill(hak: HakmemModule, ptr: Ptr, size: int, seed: int) -> bytes:
    """Write a pattern derived from ``seed`` over ``size`` bytes at ``ptr``; return it."""
    pattern = bytes((seed * 31 + i * 7 + 1) & 0xFF for i in range(size))
    hak.ffi.memmove(ptr, pattern, size)
    return pattern


def read(hak: HakmemModule, ptr: Ptr, size: int) -> bytes:
    """The ``size`` bytes at ``ptr``."""
    return bytes(hak.ffi.buffer(hak.ffi.cast("char *", ptr), size))


def run_child(script: str, *args: str) -> dict[str, Any]:
    """Run ``python -c script args...`` (a native crash stays in the child); its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    got: dict[str, Any] = json.loads(done.stdout)
    return got
