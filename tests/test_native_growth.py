"""Growth to several SuperSlabs, and the release and reuse of empty ones.

With thread caches off (``cache_cap=0``) placement is exactly the one of
docs/policy.md: blocks are carved in order, slab 0 holds
``(65536 - 4096) / size`` blocks and slabs 1..31 hold ``65536 / size``, and
the 33rd slab of a class is slab 0 of a new SuperSlab (the next ``ss_seq``).
Empty SuperSlabs are released; up to ``ss_keep`` stay mapped and are reused
by the next growth without a new OS mapping.
"""

from __future__ import annotations

import pytest
from native_helpers import (
    CLASS_SIZES,
    OWNER_LIBC,
    OWNER_TINY,
    addr,
    assert_clean,
    assert_drained,
    exact,
    fill_class,
    locate,
    malloc_ok,
    ss_base,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule


def expected_places(class_idx: int, superslabs: int) -> list[tuple[int, int, int]]:
    """Every (ss_seq, slab_idx, block_idx) of ``superslabs`` SuperSlabs, in carving order."""
    return [
        (ss_seq, slab_idx, block_idx)
        for ss_seq in range(1, superslabs + 1)
        for slab_idx in range(limits.SLABS_PER_SS)
        for block_idx in range(limits.slab_capacity(class_idx, slab_idx))
    ]


@pytest.mark.parametrize(("class_idx", "superslabs"), [(7, 3), (6, 2), (5, 1), (4, 1), (3, 1)])
def test_more_than_32_slabs_grow_new_superslabs(
    hak: HakmemModule, class_idx: int, superslabs: int
) -> None:
    exact(hak)
    ptrs = fill_class(hak, class_idx, superslabs)
    ptrs.append(malloc_ok(hak, CLASS_SIZES[class_idx]))  # the first block of one more
    expected = [*expected_places(class_idx, superslabs), (superslabs + 1, 0, 0)]
    for index, (ptr, place) in enumerate(zip(ptrs, expected, strict=True)):
        where = locate(hak, ptr)
        assert (where.owner, where.class_idx, where.place) == (OWNER_TINY, class_idx, place), (
            f"C{class_idx} block #{index}: expected (ss_seq, slab, block) {place}, got {where}"
        )
    bases = sorted({ss_base(hak, p) for p in ptrs})
    assert len(bases) == superslabs + 1, "one 2 MiB base per SuperSlab"
    for ptr, (_, slab_idx, block_idx) in zip(ptrs, expected, strict=True):
        offset = limits.block_offset(class_idx, slab_idx, block_idx)
        assert addr(hak, ptr) - ss_base(hak, ptr) == offset, "block not at its policy offset"
    snap = stats(hak)
    counters = snap.cls[class_idx]
    assert counters["ss_live"] == counters["ss_created"] == superslabs + 1, str(snap)
    assert counters["slabs_in_use"] == superslabs * limits.SLABS_PER_SS + 1, str(snap)
    assert counters["active_blocks"] == len(ptrs), str(snap)
    assert (snap["os_maps"], snap["ss_mapped"]) == (superslabs + 1, superslabs + 1), str(snap)
    assert_clean(hak, f"after growing C{class_idx} to {superslabs + 1} SuperSlabs")


def test_each_class_grows_its_own_superslabs(hak: HakmemModule) -> None:
    exact(hak)
    ptrs = [malloc_ok(hak, size) for size in CLASS_SIZES]
    seqs = [locate(hak, p).ss_seq for p in ptrs]
    assert seqs == list(range(1, limits.NUM_CLASSES + 1)), (
        f"each class's first block gets the next ss_seq, got {seqs}"
    )
    assert len({ss_base(hak, p) for p in ptrs}) == limits.NUM_CLASSES


@pytest.mark.parametrize(("ss_keep", "kept", "unmapped"), [(2, 2, 1), (0, 0, 3), (1, 1, 2)])
def test_empty_superslabs_are_released(
    hak: HakmemModule, ss_keep: int, kept: int, unmapped: int
) -> None:
    exact(hak, ss_keep=ss_keep)
    ptrs = fill_class(hak, 7, 3)
    for ptr in reversed(ptrs):
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()  # the current slab is retired only by a flush
    snap = assert_drained(hak, "after freeing three SuperSlabs")
    counters = snap.cls[7]
    assert (counters["ss_live"], counters["ss_released"], counters["slabs_in_use"]) == (0, 3, 0), (
        f"every empty SuperSlab is released:\n{snap}"
    )
    assert (snap["ss_kept"], snap["os_unmaps"], snap["ss_mapped"]) == (kept, unmapped, kept), (
        f"ss_keep={ss_keep}: {kept} kept mapped, {unmapped} unmapped:\n{snap}"
    )
    assert_clean(hak, "after release")


def test_kept_superslabs_are_reused_without_mapping(hak: HakmemModule) -> None:
    exact(hak, ss_keep=2)
    ptrs = fill_class(hak, 7, 2)
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    before = stats(hak)
    assert (before["ss_kept"], before["os_maps"]) == (2, 2), str(before)
    kept_bases = {ss_base(hak, p) for p in ptrs}

    # Another class grows: it takes a kept SuperSlab (no OS mapping), with a new ss_seq.
    first = malloc_ok(hak, 8)
    where = locate(hak, first)
    assert (where.class_idx, where.place) == (0, (3, 0, 0)), f"reused SuperSlab: {where}"
    assert ss_base(hak, first) in kept_bases, "growth should reuse a kept SuperSlab"
    after = stats(hak)
    assert (after["os_maps"], after["ss_kept"], after["ss_mapped"]) == (2, 1, 2), (
        f"no new OS mapping while one is kept:\n{after}"
    )

    # The second kept one, then a fresh mapping once none is kept.
    again = fill_class(hak, 7, 1)
    assert locate(hak, again[0]).place == (4, 0, 0)
    assert stats(hak)["os_maps"] == 2, "the second kept SuperSlab is reused too"
    fresh = malloc_ok(hak, 1024)
    assert locate(hak, fresh).place == (5, 0, 0)
    final = stats(hak)
    assert (final["os_maps"], final["ss_kept"], final["ss_mapped"]) == (3, 0, 3), str(final)
    assert_clean(hak, "after reuse")


def test_release_empty_off_keeps_the_superslab_live(hak: HakmemModule) -> None:
    exact(hak, release_empty=0)
    ptrs = fill_class(hak, 7, 1)
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    snap = stats(hak)
    assert (snap.cls[7]["ss_live"], snap.cls[7]["ss_released"], snap["os_unmaps"]) == (1, 0, 0), (
        f"release_empty=0 keeps an empty SuperSlab registered:\n{snap}"
    )
    assert snap.cls[7]["active_blocks"] == 0
    again = malloc_ok(hak, 1000)
    where = locate(hak, again)
    assert (where.owner, where.place) == (OWNER_TINY, (1, 0, 0)), (
        f"the empty SuperSlab's first slab serves again: {where}"
    )
    assert stats(hak)["os_maps"] == 1
    assert_clean(hak)


def test_stale_base_is_not_ours_after_unmapping(hak: HakmemModule) -> None:
    exact(hak, ss_keep=0)
    ptr = malloc_ok(hak, 64)
    hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert stats(hak)["os_unmaps"] == 1
    # Only the registry decides ownership: a released base is no longer tiny.
    assert locate(hak, ptr).owner == OWNER_LIBC
    assert_clean(hak)
