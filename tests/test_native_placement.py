"""Where SuperSlab mappings are placed (docs/policy.md, "Retire and release", Addresses).

A new mapping is placed at a 2 MiB boundary whose bits 21..23 name its
class, so free() reads the class from the pointer; the SuperSlab header
stays the truth, and a reused mapping whose address names another class
frees through the header.  No counter shows addresses, so the model does
not follow them: these tests read the bases.
"""

from __future__ import annotations

from growth_scenarios import NO_HOLD
from native_helpers import addr, assert_clean, configure, malloc_ok, ss_base, stats

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

C7 = 1024
C1 = 16


def named_class(base: int) -> int:
    """The class a SuperSlab base's address bits name."""
    return (base // limits.SS_SIZE) % int(limits.NUM_CLASSES)


def test_a_new_superslab_is_placed_where_its_address_names_its_class(hak: HakmemModule) -> None:
    configure(hak)
    sizes = [limits.MIN_BLOCK << c for c in range(limits.NUM_CLASSES)]
    ptrs = [malloc_ok(hak, size) for size in sizes]
    bases = [ss_base(hak, ptr) for ptr in ptrs]
    assert [named_class(base) for base in bases] == list(range(limits.NUM_CLASSES))
    assert stats(hak)["os_maps"] == limits.NUM_CLASSES
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_clean(hak, "after freeing one block of each class")


def test_a_kept_superslab_taken_by_another_class_frees_by_its_header(hak: HakmemModule) -> None:
    configure(hak, budget_bytes=NO_HOLD)  # caches on; released when it empties, not held
    big = malloc_ok(hak, C7)
    base = ss_base(hak, big)
    hak.lib.hak_free(big)
    hak.lib.hak_flush()
    assert (stats(hak).cls[7]["ss_live"], stats(hak)["ss_kept"]) == (0, 1)
    small = malloc_ok(hak, C1)  # class 1 grows: the kept SuperSlab is the only one
    assert ss_base(hak, small) == base
    assert named_class(base) == 7
    hak.lib.hak_free(small)  # the address says class 7, the header class 1
    again = malloc_ok(hak, C1)
    assert addr(hak, again) == addr(hak, small), "the block went back to class 1's cache"
    other = malloc_ok(hak, C7)
    assert ss_base(hak, other) != base
    assert named_class(ss_base(hak, other)) == 7
    assert_clean(hak, "after freeing into a SuperSlab whose address names another class")
    for ptr in (again, other):
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_clean(hak, "after freeing everything")


def test_a_reserved_mapping_of_the_growing_class_is_taken_first(hak: HakmemModule) -> None:
    configure(hak, ss_keep=0, budget_bytes=NO_HOLD)  # released ones go to the reserve
    ptrs = {c: malloc_ok(hak, limits.MIN_BLOCK << c) for c in (3, 5)}
    bases = {c: ss_base(hak, ptr) for c, ptr in ptrs.items()}
    for ptr in ptrs.values():
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert stats(hak)["os_unmaps"] == 2
    # The reserve is a stack: class 5's mapping is on top, but class 3 takes its own.
    again = malloc_ok(hak, limits.MIN_BLOCK << 3)
    assert ss_base(hak, again) == bases[3]
    assert stats(hak)["os_maps"] == 3
    hak.lib.hak_free(again)
    hak.lib.hak_flush()
    assert_clean(hak, "after growing into the reserved mapping of the class")
