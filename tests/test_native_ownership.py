"""Ownership: mixed glibc and hakmem pointers, decided by the registry only.

Every pointer, whoever allocated it, can be freed through ``hak_free``: the
registry (2 MiB base -> SuperSlab) routes it.  A glibc pointer is never
reported as tiny, wherever glibc placed it, and an address inside a
SuperSlab that is not a block start is nobody's block (HAK_OWNER_UNKNOWN).
"""

from __future__ import annotations

import random

import pytest
from native_helpers import (
    CLASS_SIZES,
    OWNER_LIBC,
    OWNER_TINY,
    OWNER_UNKNOWN,
    Ptr,
    addr,
    assert_clean,
    assert_drained,
    assert_only_held,
    configure,
    locate,
    malloc_ok,
    ss_base,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

# (config overrides, pointers); 200,000 with the defaults, fewer for the variations.
MIXED_CONFIGS = {
    "defaults": ({}, 200_000),
    "caches-off": ({"cache_cap": 0}, 50_000),
    "cap-1-libc": ({"ss_cap": 1}, 50_000),
    "cap-2-small-caches": ({"ss_cap": 2, "cache_cap": 8, "refill_batch": 3}, 50_000),
}


@pytest.mark.parametrize("name", MIXED_CONFIGS)
def test_mixed_pointers_freed_in_random_order(hak: HakmemModule, name: str) -> None:
    overrides, count = MIXED_CONFIGS[name]
    configure(hak, **overrides)
    lib, ffi = hak.lib, hak.ffi
    rng = random.Random(f"mixed-{name}")
    where = ffi.new("hak_location_t *")
    ptrs: list[Ptr] = []
    from_libc = tiny_requests = tiny_served_by_libc = 0
    for _ in range(count):
        if rng.random() < 0.5:
            size = rng.randint(1, 4096)
            ptr = lib.hak_libc_malloc(size)
            expected = OWNER_LIBC
            from_libc += 1
        else:
            size = rng.randint(0, 2048)
            ptr = lib.hak_malloc(size)
            expected = OWNER_TINY if size <= limits.MAX_BLOCK else OWNER_LIBC
        assert ptr != ffi.NULL, f"allocation #{len(ptrs)} of {size} bytes returned NULL"
        lib.hak_locate(ptr, where)
        if expected == OWNER_TINY:
            tiny_requests += 1
            if where.owner == OWNER_LIBC:
                tiny_served_by_libc += 1  # a fallback at the cap
            else:
                assert where.owner == OWNER_TINY, f"hak_malloc({size}): owner {where.owner}"
                assert where.class_idx == limits.class_of(size)
        else:
            assert where.owner == OWNER_LIBC, f"a glibc pointer of {size} bytes: {where.owner}"
        ptrs.append(ptr)
    assert len({addr(hak, p) for p in ptrs}) == len(ptrs), "two live pointers are equal"
    snap = stats(hak)
    assert snap.total("fallback_allocs") == tiny_served_by_libc, (
        f"every tiny request served by glibc is a counted fallback:\n{snap}"
    )
    if "ss_cap" in overrides:
        assert tiny_served_by_libc > 0, f"{name}: the cap should have forced fallbacks"
    else:
        assert tiny_served_by_libc == 0, f"{name}: no cap, no fallback"
    assert 0 < from_libc < count, "both kinds of allocation were drawn"
    assert 0 < tiny_requests < count
    assert_clean(hak, f"{name}: with {count} live pointers")

    rng.shuffle(ptrs)
    for ptr in ptrs:
        lib.hak_free(ptr)
    lib.hak_flush()
    assert_clean(hak, f"{name}: after freeing {count} mixed pointers in random order")
    snap = assert_drained(hak, name)
    assert_only_held(snap, "after freeing everything")


def test_glibc_pointers_are_never_tiny(hak: HakmemModule) -> None:
    rng = random.Random(16)
    tiny: list[Ptr] = []
    glibc: list[Ptr] = []
    # Interleave SuperSlab growth with glibc allocations of every kind
    # (small chunks from the heap, large ones mmapped near our mappings).
    for round_idx in range(12):
        tiny += [malloc_ok(hak, CLASS_SIZES[round_idx % 8]) for _ in range(600)]
        for _ in range(300):
            glibc.append(hak.lib.hak_libc_malloc(rng.randint(1, 4096)))
        for _ in range(6):
            glibc.append(hak.lib.hak_libc_malloc(rng.randint(128 << 10, 3 << 20)))
        glibc.append(hak.lib.hak_malloc(rng.randint(1025, 1 << 20)))
    bases = {ss_base(hak, p) for p in tiny}
    assert stats(hak)["ss_mapped"] >= 8, "every class has a SuperSlab"
    near = 0
    for ptr in glibc:
        assert ptr != hak.ffi.NULL
        where = locate(hak, ptr)
        assert where.owner == OWNER_LIBC, f"glibc pointer {addr(hak, ptr):#x} reported as {where}"
        assert ss_base(hak, ptr) not in bases, "a glibc pointer inside a SuperSlab"
        distance = min(abs(ss_base(hak, ptr) - base) for base in bases)
        near += distance <= limits.SS_SIZE
    for ptr in tiny:
        assert locate(hak, ptr).owner == OWNER_TINY
    for ptr in glibc + tiny:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_clean(hak, f"after freeing {len(glibc)} glibc pointers ({near} near a SuperSlab)")
    assert_drained(hak)


@pytest.mark.parametrize("class_idx", range(limits.NUM_CLASSES))
def test_interior_pointers_are_nobodys(hak: HakmemModule, class_idx: int) -> None:
    size = CLASS_SIZES[class_idx]
    ptr = malloc_ok(hak, size)
    block = locate(hak, ptr)
    assert block.owner == OWNER_TINY
    for offset in sorted({1, 4, size // 2 + 1, size - 1}):
        inner = hak.ffi.cast("char *", ptr) + offset
        where = locate(hak, inner)
        assert where.owner == OWNER_UNKNOWN, f"C{class_idx} block + {offset}: {where}"
        assert where.block_idx == -1, f"an interior pointer has no block index: {where}"
        assert (where.class_idx, where.ss_seq) == (class_idx, block.ss_seq), (
            f"an interior pointer still names its SuperSlab: {where}"
        )
    base = hak.ffi.cast("char *", ss_base(hak, ptr))
    for offset in (0, 8, limits.SS_HEADER_SIZE - 1):
        where = locate(hak, base + offset)
        assert where.owner == OWNER_UNKNOWN, f"SuperSlab header + {offset}: {where}"
    hak.lib.hak_free(ptr)
    assert_clean(hak)
