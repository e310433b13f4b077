"""Which pages stay resident (docs/policy.md, "Retire and release", Pages).

No counter shows residency, so these tests ask the kernel: ``mincore(2)``
reports, page by page, whether a range is in memory.  A retired slab keeps
its pages while its class has fewer than HAK_DIRTY_MAX (16) dirty FREE slabs;
later ones give their carved pages back at once; a released SuperSlab that
is kept mapped keeps the pages of its dirty slabs (the next class to grow
takes it back without faulting them in) and no others.
"""

from __future__ import annotations

import ctypes
import mmap

from growth_scenarios import NO_HOLD
from native_helpers import (
    Ptr,
    addr,
    assert_clean,
    configure,
    exact,
    locate,
    malloc_ok,
    ss_base,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

PAGE = mmap.PAGESIZE
DIRTY_MAX = limits.DIRTY_MAX
FULL = DIRTY_MAX + 4  # slabs filled and emptied: some past the dirty cap
BLOCK = 1024  # class 7: 60 blocks in slab 0, 64 in the others
C7 = 7
_PATTERN = b"\xa5" * BLOCK
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident_pages(start: int, length: int) -> int:
    """How many of the pages of [start, start + length) are resident."""
    first = start - start % PAGE
    count = (start + length - first + PAGE - 1) // PAGE
    vec = ctypes.create_string_buffer(count)
    if _libc.mincore(first, count * PAGE, vec) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return sum(byte & 1 for byte in vec.raw)


def slab_range(hak: HakmemModule, ptr: Ptr, slab_idx: int) -> tuple[int, int]:
    """The block area of slab ``slab_idx`` of ``ptr``'s SuperSlab."""
    start = ss_base(hak, ptr) + slab_idx * limits.SLAB_SIZE
    if slab_idx == 0:
        start += limits.SS_HEADER_SIZE
    return start, limits.slab_capacity(C7, slab_idx) * BLOCK


def allocate_slabs(hak: HakmemModule, full: int) -> dict[int, list[Ptr]]:
    """``full`` full slabs of class 7, then one block in the next (cur), all written."""
    by_slab: dict[int, list[Ptr]] = {}
    total = sum(limits.slab_capacity(C7, s) for s in range(full)) + 1
    for _ in range(total):
        ptr = malloc_ok(hak, BLOCK)
        hak.ffi.memmove(ptr, _PATTERN, BLOCK)  # every page of every block resident
        by_slab.setdefault(locate(hak, ptr).slab_idx, []).append(ptr)
    assert sorted(by_slab) == list(range(full + 1))
    return by_slab


def test_retired_slabs_past_the_dirty_cap_give_their_pages_back(hak: HakmemModule) -> None:
    exact(hak)  # caches off: every free reaches its slab
    by_slab = allocate_slabs(hak, full=FULL)
    anchor = by_slab[FULL][0]  # keeps the SuperSlab live (slab FULL is cur)
    for s in range(FULL):
        start, length = slab_range(hak, anchor, s)
        assert resident_pages(start, length) == length // PAGE + (start % PAGE != 0), s
    for s in range(FULL):
        for ptr in by_slab[s]:
            hak.lib.hak_free(ptr)
    assert stats(hak).cls[7]["slabs_in_use"] == 1
    assert_clean(hak, "after retiring the full slabs")
    resident = [resident_pages(*slab_range(hak, anchor, s)) for s in range(FULL)]
    # The first DIRTY_MAX slabs retired stay dirty; the later ones went back
    # to the OS (the first word of each block was written by the free, so a
    # slab that kept its pages has them all).
    assert all(resident[s] > 0 for s in range(DIRTY_MAX)), resident
    assert resident[DIRTY_MAX:] == [0] * (FULL - DIRTY_MAX), resident

    # The lowest FREE slab, dirty slab 0, is the next one taken: no longer dirty.
    hak.lib.hak_free(anchor)  # cur emptied: not retired, still cur
    more = [malloc_ok(hak, BLOCK) for _ in range(65)]  # all 64 of slab FULL, then slab 0
    assert locate(hak, more[-1]).slab_idx == 0, locate(hak, more[-1])
    assert_clean(hak, "after reusing a dirty slab")
    for ptr in more:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_clean(hak, "after freeing everything")


def test_a_kept_superslab_keeps_only_its_dirty_slabs_pages(hak: HakmemModule) -> None:
    exact(hak, budget_bytes=NO_HOLD)  # released, not held, when it empties
    by_slab = allocate_slabs(hak, full=3)
    base = ss_base(hak, by_slab[0][0])
    assert resident_pages(base, limits.SS_SIZE) > 3 * limits.SLAB_SIZE // PAGE
    for ptrs in by_slab.values():
        for ptr in ptrs:
            hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    snap = stats(hak)
    assert (snap.cls[7]["ss_live"], snap["ss_kept"]) == (0, 1), str(snap)
    # Its four slabs retired dirty (fewer than DIRTY_MAX): their pages stay,
    # every other slab's page is out.
    first = base + limits.SS_HEADER_SIZE
    used = [resident_pages(first, limits.SLAB_SIZE - limits.SS_HEADER_SIZE)]
    used += [resident_pages(base + s * limits.SLAB_SIZE, limits.SLAB_SIZE) for s in (1, 2, 3)]
    assert all(n > 0 for n in used), used
    rest = base + 4 * limits.SLAB_SIZE
    assert resident_pages(rest, limits.SS_SIZE - 4 * limits.SLAB_SIZE) == 0
    ptr = malloc_ok(hak, BLOCK)
    assert addr(hak, ptr) == base + limits.SS_HEADER_SIZE  # reused
    assert_clean(hak, "after reusing the kept SuperSlab (its dirty slabs counted again)")


def test_an_unmapped_superslab_is_held_in_reserve_with_its_pages_out(hak: HakmemModule) -> None:
    """Under thread churn a class empties and grows again: the mapping is reused, no syscall."""
    exact(hak, ss_keep=0, budget_bytes=NO_HOLD)  # an empty SuperSlab is unmapped at once
    by_slab = allocate_slabs(hak, full=FULL)
    base = ss_base(hak, by_slab[0][0])
    for ptrs in by_slab.values():
        for ptr in ptrs:
            hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert stats(hak)["os_unmaps"] == 1
    # Still mapped (mincore fails with ENOMEM on an unmapped range), and only
    # the header page and the first DIRTY_MAX slabs' pages are in memory.
    resident = resident_pages(base, limits.SS_SIZE)
    assert 0 < resident <= (1 + DIRTY_MAX * limits.SLAB_SIZE // PAGE), resident
    assert resident_pages(base + (DIRTY_MAX + 1) * limits.SLAB_SIZE,
                          limits.SS_SIZE - (DIRTY_MAX + 1) * limits.SLAB_SIZE) == 0
    ptr = malloc_ok(hak, BLOCK)  # growth: counted as a mapping, served by the reserve
    assert addr(hak, ptr) == base + limits.SS_HEADER_SIZE
    assert stats(hak)["os_maps"] == 2
    assert_clean(hak, "after growing into the reserved mapping")


def test_a_flush_does_not_fault_in_blocks_a_refill_carved_and_no_one_touched(
    hak: HakmemModule,
) -> None:
    """Large caches: the flush empties whole slabs without linking their blocks."""
    configure(hak, cache_cap=1024, refill_batch=1024)
    # The slow start's refills take 16, 32, ..., 512 blocks: 1008 in all, the
    # blocks of slab 0 (60) and slabs 1..15 but 12.  Malloc 1009 refills
    # 1024: those 12, slabs 16..30 whole and 52 blocks of slab 31.
    ptrs = [malloc_ok(hak, BLOCK) for _ in range(1009)]
    base = ss_base(hak, ptrs[0])
    assert stats(hak).cls[7]["slabs_in_use"] == 32
    hak.lib.hak_flush()
    assert stats(hak).cls[7]["slabs_in_use"] == 16, "slabs 16..31 held only cached blocks"
    # Those retired; the first DIRTY_MAX kept their pages, but no block of
    # theirs was ever written (by the user or by a free list link): none of
    # their pages came in.
    assert resident_pages(base + 16 * limits.SLAB_SIZE, 16 * limits.SLAB_SIZE) == 0
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_clean(hak, "after flushing a refill no one used")
