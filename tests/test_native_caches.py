"""Thread caches (on by default): refill batches, flush, and thread exit.

A refill takes ``refill_batch`` blocks (clamped to ``cache_cap``) from the
thread's slabs and hands them out in carving order; cached blocks count as
active until ``hak_flush`` returns them.  ``hak_thread_exit`` flushes, then
orphans the slabs still holding live blocks; a later free by the thread's
new identity adopts and retires them.
"""

from __future__ import annotations

import pytest
from native_helpers import (
    OWNER_TINY,
    Ptr,
    assert_clean,
    assert_drained,
    configure,
    exact,
    locate,
    malloc_ok,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule


def active(hak: HakmemModule, class_idx: int) -> int:
    return stats(hak).cls[class_idx]["active_blocks"]


@pytest.mark.parametrize(
    ("cache_cap", "refill_batch", "taken", "again"),
    [(64, 16, 16, 16), (8, 5, 5, 5), (4, 10, 4, 4), (1, 1, 1, 1),
     (1024, 1024, 16, 32), (1024, 60, 16, 32), (1024, 20, 16, 20)],
)
def test_a_refill_takes_refill_batch_blocks(
    hak: HakmemModule, cache_cap: int, refill_batch: int, taken: int, again: int
) -> None:
    configure(hak, cache_cap=cache_cap, refill_batch=refill_batch)
    ptrs = [malloc_ok(hak, 1000)]
    assert active(hak, 7) == taken, (
        f"cache_cap={cache_cap}, refill_batch={refill_batch}: the first malloc takes {taken}"
        f" (the batch, clamped to the cap and to the slow start's {limits.REFILL_START})"
    )
    ptrs += [malloc_ok(hak, 1000) for _ in range(taken - 1)]
    assert active(hak, 7) == taken, "the next mallocs pop the cache without touching slabs"
    carving_order = [
        (1, slab_idx, block_idx)
        for slab_idx in range(limits.SLABS_PER_SS)
        for block_idx in range(limits.slab_capacity(7, slab_idx))
    ]
    places = [locate(hak, p).place for p in ptrs]
    assert places == carving_order[:taken], "a refill hands its blocks out in carving order"
    ptrs.append(malloc_ok(hak, 1000))
    assert active(hak, 7) == taken + again, f"an empty cache refills again, {again} blocks"
    hak.lib.hak_flush()
    assert active(hak, 7) == taken + 1, "hak_flush returns every cached block"
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    snap = assert_drained(hak)
    assert (snap.cls[7]["ss_live"], snap.cls[7]["ss_released"]) == (1, 0), (
        f"everything returned, the class's only SuperSlab held:\n{snap}"
    )


def test_the_slow_start_doubles_to_the_batch_and_starts_over_for_a_new_identity(
    hak: HakmemModule,
) -> None:
    configure(hak, cache_cap=1024, refill_batch=1024)
    sizes = []
    ptrs = []
    for _ in range(8):  # eight refills: 16, 32, ..., 1024, then 1024 again
        before = active(hak, 0)
        ptrs.append(malloc_ok(hak, 8))
        sizes.append(active(hak, 0) - before)
        ptrs += [malloc_ok(hak, 8) for _ in range(sizes[-1] - 1)]  # empty the cache
    assert sizes == [16, 32, 64, 128, 256, 512, 1024, 1024]
    hak.lib.hak_flush()
    before = active(hak, 0)
    ptrs.append(malloc_ok(hak, 8))
    assert active(hak, 0) - before == 1024, "hak_flush keeps the thread's slow start"
    hak.lib.hak_thread_exit()
    before = active(hak, 0)
    ptrs.append(malloc_ok(hak, 8))
    assert active(hak, 0) - before == 16, "a new identity starts the slow start over"
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_drained(hak)
    assert_clean(hak)


def test_flush_returns_cached_blocks_and_retires_slabs(hak: HakmemModule) -> None:
    ptr = malloc_ok(hak, 64)
    assert active(hak, 3) == 16, "the default refill batch is 16"
    hak.lib.hak_flush()
    assert active(hak, 3) == 1, "hak_flush returns the 15 cached blocks"
    hak.lib.hak_free(ptr)
    assert active(hak, 3) == 1, "a freed block waits in the cache, still counted"
    snap = stats(hak)
    assert snap.cls[3]["slabs_in_use"] == 1, str(snap)
    hak.lib.hak_flush()
    snap = assert_drained(hak, "after the last flush")
    assert (snap.cls[3]["slabs_in_use"], snap.cls[3]["ss_live"], snap.cls[3]["ss_released"]) == (
        0,
        1,
        0,
    ), f"the empty slab is retired, its SuperSlab held (the class's only one):\n{snap}"
    assert_clean(hak)


@pytest.mark.parametrize(("cache_cap", "frees"), [(8, 100), (2, 33), (64, 500), (1, 10)])
def test_a_full_cache_drains_to_its_slabs(hak: HakmemModule, cache_cap: int, frees: int) -> None:
    configure(hak, cache_cap=cache_cap, refill_batch=1)
    ptrs = [malloc_ok(hak, 256) for _ in range(frees)]
    assert active(hak, 5) == frees, "refill_batch=1: nothing cached"
    expected = 0
    for freed, ptr in enumerate(ptrs, start=1):
        hak.lib.hak_free(ptr)
        if expected == cache_cap:  # a push onto a full cache first drains its oldest half
            expected -= max(1, cache_cap // 2)
        expected += 1
        cached = active(hak, 5) - (frees - freed)
        assert cached == expected, (
            f"after {freed} frees with cache_cap={cache_cap}: {cached} blocks cached, "
            f"expected {expected}"
        )
        assert_clean(hak, f"cache_cap={cache_cap} while freeing")
    hak.lib.hak_flush()
    assert_drained(hak)


@pytest.mark.parametrize("mode", ["caches-off", "caches-on"])
def test_thread_exit_orphans_and_a_later_free_adopts(hak: HakmemModule, mode: str) -> None:
    if mode == "caches-off":
        exact(hak)
    ptrs: list[Ptr] = [malloc_ok(hak, 1024) for _ in range(61)]  # all of slab 0, one of slab 1
    hak.lib.hak_thread_exit()
    snap = stats(hak)
    assert (snap.cls[7]["slabs_in_use"], snap.cls[7]["active_blocks"]) == (2, 61), (
        f"hak_thread_exit returns cached blocks but orphans slabs with live blocks:\n{snap}"
    )
    assert_clean(hak, "with orphans")

    # The new identity continues in the latest orphan, slab 1 (policy 2c),
    # rather than opening slab 2.
    fresh = malloc_ok(hak, 1024)
    where = locate(hak, fresh)
    assert (where.owner, where.slab_idx) == (OWNER_TINY, 1), str(where)
    if mode == "caches-off":
        assert where.block_idx == 1, str(where)
    assert stats(hak).cls[7]["slabs_in_use"] == 2
    assert_clean(hak, "after adopting slab 1 for an allocation")

    # Freeing into the other orphan adopts it; emptied, it is retired.
    for ptr in ptrs[:60]:  # every block of slab 0
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()  # with caches on, the frees waited in the cache
    snap = stats(hak)
    assert snap.cls[7]["slabs_in_use"] == 1, f"slab 0 adopted and retired:\n{snap}"
    hak.lib.hak_free(ptrs[60])
    hak.lib.hak_free(fresh)
    hak.lib.hak_flush()
    snap = assert_drained(hak, "after adopting the orphans")
    assert (snap.cls[7]["slabs_in_use"], snap.cls[7]["ss_live"]) == (0, 1), str(snap)  # held
    assert_clean(hak, "after adoption")


def test_thread_exit_with_everything_freed_leaves_no_orphan(hak: HakmemModule) -> None:
    ptrs = [malloc_ok(hak, 40) for _ in range(100)]
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_thread_exit()
    snap = assert_drained(hak)
    assert (snap.cls[3]["slabs_in_use"], snap.cls[3]["ss_live"]) == (0, 1), str(snap)  # held
    assert_clean(hak)
