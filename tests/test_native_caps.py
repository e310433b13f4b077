"""The growth cap, the byte budget, the OOM policies and OS-mapping fault injection.

At the cap (``ss_cap`` per class, or ``budget_bytes`` over every class) a
request is served by glibc (policy ``libc``, counted as ``fallback_allocs``)
or answered NULL with errno ENOMEM (policy ``null``, counted as
``oom_nulls``).  ``fail_map_at=N`` fails exactly the Nth OS mapping attempt
after configure: the allocator must survive it and grow again afterwards.
"""

from __future__ import annotations

import errno
import random

import pytest
from native_helpers import (
    CLASS_SIZES,
    OOM_LIBC,
    OOM_NULL,
    OWNER_LIBC,
    OWNER_TINY,
    SS_BLOCKS,
    Ptr,
    addr,
    assert_clean,
    assert_drained,
    assert_only_held,
    configure,
    exact,
    fill_class,
    locate,
    malloc_ok,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

CACHE_MODES = {"caches-off": {"cache_cap": 0}, "caches-on": {}}


# ---- policy libc -------------------------------------------------------------------


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_cap_with_libc_policy_falls_back_to_glibc(hak: HakmemModule, mode: str) -> None:
    configure(hak, ss_cap=1, oom_policy=OOM_LIBC, **CACHE_MODES[mode])
    rng = random.Random(3)
    tiny: list[Ptr] = []
    for class_idx in (6, 7):
        tiny += fill_class(hak, class_idx)
    extra = {6: 150, 7: 250}
    fallback = [
        malloc_ok(hak, rng.randint(CLASS_SIZES[c - 1] + 1, CLASS_SIZES[c]))
        for c, count in extra.items()
        for _ in range(count)
    ]
    large = [malloc_ok(hak, rng.randint(1025, 8192)) for _ in range(50)]
    for ptr in tiny:
        assert locate(hak, ptr).owner == OWNER_TINY, "blocks under the cap are tiny"
    for ptr in fallback + large:
        where = locate(hak, ptr)
        assert where.owner == OWNER_LIBC, f"a request past the cap is glibc's, got {where}"
    snap = stats(hak)
    assert [snap.cls[c]["fallback_allocs"] for c in (6, 7)] == [150, 250], (
        f"fallback_allocs counts each request past the cap (and no large one):\n{snap}"
    )
    assert [snap.cls[c]["ss_live"] for c in (6, 7)] == [1, 1], f"ss_cap=1 holds:\n{snap}"
    assert snap.total("fallback_allocs") == 400
    assert_clean(hak, "at the cap")

    everything = tiny + fallback + large
    rng.shuffle(everything)
    for ptr in everything:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_clean(hak, "after freeing tiny and glibc pointers in random order")
    snap = assert_drained(hak, "after freeing everything")
    assert_only_held(snap, "after freeing everything")


# ---- policy null -------------------------------------------------------------------


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_cap_with_null_policy_returns_enomem(hak: HakmemModule, mode: str) -> None:
    configure(hak, ss_cap=1, oom_policy=OOM_NULL, **CACHE_MODES[mode])
    ptrs = fill_class(hak, 5)
    for attempt in range(1, 4):
        hak.ffi.errno = 0
        assert hak.lib.hak_malloc(CLASS_SIZES[5]) == hak.ffi.NULL, "past the cap: NULL"
        assert hak.ffi.errno == errno.ENOMEM, f"errno {hak.ffi.errno}, expected ENOMEM"
        assert stats(hak).cls[5]["oom_nulls"] == attempt
    hak.ffi.errno = 0
    assert hak.lib.hak_calloc(1, CLASS_SIZES[5]) == hak.ffi.NULL, "calloc past the cap: NULL"
    assert hak.ffi.errno == errno.ENOMEM
    # Other classes are not capped by this one.
    other = malloc_ok(hak, 8)
    assert locate(hak, other).owner == OWNER_TINY

    # One free makes room for exactly one block: the same one (LIFO).
    victim = ptrs.pop(1234)
    hak.lib.hak_free(victim)
    again = malloc_ok(hak, CLASS_SIZES[5])
    assert addr(hak, again) == addr(hak, victim), "the freed block is served again"
    assert hak.lib.hak_malloc(CLASS_SIZES[5]) == hak.ffi.NULL, "and the class is full again"
    ptrs.append(again)
    snap = stats(hak)
    assert snap.cls[5]["oom_nulls"] == 5, str(snap)
    assert snap.cls[5]["fallback_allocs"] == 0, str(snap)
    assert_clean(hak, "at the cap with policy null")

    # Freeing everything makes the whole SuperSlab available again.
    for ptr in [*ptrs, other]:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_drained(hak)
    refill = fill_class(hak, 5)
    assert len({addr(hak, p) for p in refill}) == len(refill)
    assert_clean(hak, "after refilling the class")


def test_budget_bytes_caps_every_class_together(hak: HakmemModule) -> None:
    exact(hak, budget_bytes=2 * limits.SS_SIZE, oom_policy=OOM_NULL)
    first = malloc_ok(hak, 8)
    second = malloc_ok(hak, 16)
    hak.ffi.errno = 0
    assert hak.lib.hak_malloc(32) == hak.ffi.NULL, "a third SuperSlab exceeds the budget"
    assert hak.ffi.errno == errno.ENOMEM
    snap = stats(hak)
    assert (snap.cls[2]["oom_nulls"], snap["ss_mapped"]) == (1, 2), str(snap)
    # Releasing one SuperSlab (kept mapped) makes room under the budget again.
    hak.lib.hak_free(first)
    hak.lib.hak_flush()
    third = malloc_ok(hak, 32)
    assert locate(hak, third).place == (3, 0, 0)
    snap = stats(hak)
    assert (snap["os_maps"], snap["ss_kept"]) == (2, 0), f"the kept one is reused:\n{snap}"
    hak.lib.hak_free(second)
    hak.lib.hak_free(third)
    hak.lib.hak_flush()
    assert_clean(hak)


# ---- fault injection ----------------------------------------------------------------


def _fill_to_mapping(hak: HakmemModule, mapping: int) -> list[Ptr]:
    """Allocate C7 blocks until the next request needs OS mapping number ``mapping``."""
    return fill_class(hak, 7, mapping - 1)


@pytest.mark.parametrize("mapping", range(1, 21))
def test_failed_mapping_with_null_policy(hak: HakmemModule, mapping: int) -> None:
    exact(hak, fail_map_at=mapping, oom_policy=OOM_NULL)
    ptrs = _fill_to_mapping(hak, mapping)
    hak.ffi.errno = 0
    assert hak.lib.hak_malloc(1024) == hak.ffi.NULL, f"mapping attempt {mapping} fails: NULL"
    assert hak.ffi.errno == errno.ENOMEM
    snap = stats(hak)
    assert (snap["os_map_failures"], snap.cls[7]["oom_nulls"], snap["os_maps"]) == (
        1,
        1,
        mapping - 1,
    ), f"exactly one failed mapping, at attempt {mapping}:\n{snap}"
    # Only the Nth attempt fails: the next request maps and gets the next ss_seq.
    after = fill_class(hak, 7)
    assert locate(hak, after[0]).place == (mapping, 0, 0)
    other = malloc_ok(hak, 100)
    assert locate(hak, other).owner == OWNER_TINY
    snap = stats(hak)
    assert (snap["os_map_failures"], snap.total("oom_nulls")) == (1, 1), str(snap)
    assert snap["os_maps"] == mapping + 1, str(snap)
    assert len(ptrs) + len(after) == SS_BLOCKS[7] * mapping
    assert_clean(hak, f"after the failed mapping {mapping}")


@pytest.mark.parametrize("mapping", range(1, 21))
def test_failed_mapping_with_libc_policy(hak: HakmemModule, mapping: int) -> None:
    exact(hak, fail_map_at=mapping, oom_policy=OOM_LIBC)
    ptrs = _fill_to_mapping(hak, mapping)
    served = malloc_ok(hak, 1024)
    where = locate(hak, served)
    assert where.owner == OWNER_LIBC, f"the request at failed mapping {mapping}: {where}"
    snap = stats(hak)
    assert (snap["os_map_failures"], snap.cls[7]["fallback_allocs"]) == (1, 1), str(snap)
    after = malloc_ok(hak, 1024)
    assert locate(hak, after).place == (mapping, 0, 0), "the next request maps again"
    for ptr in [*ptrs, served, after]:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_clean(hak, f"after freeing around failed mapping {mapping}")
    assert_drained(hak)


@pytest.mark.parametrize("mapping", range(1, 10))
def test_failed_mapping_with_caches_surfaces_only_on_an_empty_refill(
    hak: HakmemModule, mapping: int
) -> None:
    # A refill stops at the first failed take and returns what it took; the
    # request fails only when the refill took nothing (docs/policy.md).
    configure(hak, fail_map_at=mapping, oom_policy=OOM_NULL)
    batch = 16
    taken_before = (mapping - 1) * SS_BLOCKS[7]
    expect_null = taken_before % batch == 0
    ptrs = [hak.lib.hak_malloc(1024) for _ in range(taken_before + SS_BLOCKS[7])]
    null_at = [i for i, p in enumerate(ptrs) if p == hak.ffi.NULL]
    assert null_at == ([taken_before] if expect_null else []), (
        f"fail_map_at={mapping}, refill_batch={batch}: NULLs at {null_at}"
    )
    snap = stats(hak)
    assert snap["os_map_failures"] == 1, str(snap)
    assert snap.cls[7]["oom_nulls"] == len(null_at), str(snap)
    for ptr in ptrs:
        hak.lib.hak_free(ptr)  # hak_free(NULL) is a no-op
    hak.lib.hak_flush()
    assert_clean(hak)
    assert_drained(hak)
