"""Where SuperSlab mappings are placed (docs/policy.md, "Retire and release", Addresses).

A new mapping is placed at a 2 MiB boundary whose bits 21..23 name its
class, so free() reads the class from the pointer; the SuperSlab header
stays the truth, and a reused mapping whose address names another class
frees through the header.  No counter shows addresses, so the model does
not follow them: these tests read the bases.
"""

from __future__ import annotations

import pytest
from growth_scenarios import NO_HOLD
from native_helpers import addr, assert_clean, configure, malloc_ok, run_child, ss_base, stats

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


# testfault no-placed-mapping: the 9 x 2 MiB mapping that places a SuperSlab
# by class always fails, so every SuperSlab takes the fallback (any 2 MiB
# boundary).  One block of each class is freed and taken again: a free into
# a SuperSlab whose address names another class must reach its own class's
# cache (the same block comes back).  Prints what it saw.
UNPLACED_CHILD = """
import json, sys
from hakfuzz.variants import load_module
hak = load_module(sys.argv[1])
lib, ffi = hak.lib, hak.ffi
where = ffi.new("hak_location_t *")
ffi.errno = 0
ptrs = [lib.hak_malloc(8 << c) for c in range(8)]
errno_after = ffi.errno
named, classes, same = [], [], []
for c, p in enumerate(ptrs):
    lib.hak_locate(p, where)
    classes.append(where.class_idx)
    named.append((int(ffi.cast("uintptr_t", p)) >> 21) % 8)
    lib.hak_free(p)
    again = lib.hak_malloc(8 << c)
    same.append(again == p)
    lib.hak_free(again)
lib.hak_flush()
msg = ffi.new("char[]", 256)
bad = lib.hak_check(msg, 256)
st = ffi.new("hak_stats_t *")
lib.hak_stats(st)
print(json.dumps({"errno": errno_after, "named": named, "classes": classes, "same": same,
                  "active": sum(st.cls[c].active_blocks for c in range(8)),
                  "check": ffi.string(msg).decode() if bad else None}))
"""


@pytest.mark.native
@pytest.mark.parametrize("build", ["", "@debug"])
def test_superslabs_mapped_by_the_fallback_free_into_their_own_class(build: str) -> None:
    got = run_child(UNPLACED_CHILD, f"testfault:no-placed-mapping{build}")
    assert got["check"] is None, got
    assert got["classes"] == list(range(limits.NUM_CLASSES)), got
    assert got["named"] != got["classes"], f"every fallback base happened to name its class: {got}"
    assert got["same"] == [True] * limits.NUM_CLASSES, f"a free reached another class: {got}"
    assert (got["errno"], got["active"]) == (0, 0), got
