"""libc semantics of realloc, calloc, posix_memalign and aligned_alloc.

realloc moves blocks across owners in both directions (tiny <-> glibc) and
between classes, keeping the contents; calloc detects overflow and zeroes a
reused block; the aligned allocators honour every power-of-two alignment and
reject the invalid ones with EINVAL.
"""

from __future__ import annotations

import errno

import pytest
from native_helpers import (
    CLASS_SIZES,
    OOM_NULL,
    OWNER_LIBC,
    OWNER_TINY,
    addr,
    assert_clean,
    assert_drained,
    configure,
    exact,
    fill,
    fill_class,
    locate,
    malloc_ok,
    read,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

# ---- realloc -------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [(100, 1025), (8, 4000), (1024, 1 << 20), (0, 2000)])
def test_realloc_tiny_to_glibc_keeps_contents(hak: HakmemModule, old: int, new: int) -> None:
    ptr = malloc_ok(hak, old)
    pattern = fill(hak, ptr, old, seed=old)
    moved = hak.lib.hak_realloc(ptr, new)
    assert moved != hak.ffi.NULL
    assert locate(hak, moved).owner == OWNER_LIBC, f"realloc({old} -> {new}) is glibc's"
    assert read(hak, moved, old) == pattern, f"realloc({old} -> {new}) lost the contents"
    assert hak.lib.hak_usable_size(moved) >= new
    hak.lib.hak_free(moved)
    hak.lib.hak_flush()
    assert_drained(hak, "the tiny block was freed by realloc")
    assert_clean(hak)


@pytest.mark.parametrize(("old", "new"), [(2000, 500), (1025, 1024), (5000, 8), (4096, 1)])
def test_realloc_glibc_to_tiny_keeps_contents(hak: HakmemModule, old: int, new: int) -> None:
    ptr = hak.lib.hak_libc_malloc(old)
    assert ptr != hak.ffi.NULL
    pattern = fill(hak, ptr, old, seed=new)
    moved = hak.lib.hak_realloc(ptr, new)
    assert moved != hak.ffi.NULL
    where = locate(hak, moved)
    assert (where.owner, where.class_idx) == (OWNER_TINY, limits.class_of(new)), (
        f"realloc(glibc {old} -> {new}) should be a tiny block, got {where}"
    )
    assert read(hak, moved, new) == pattern[:new], f"realloc({old} -> {new}) lost the contents"
    hak.lib.hak_free(moved)
    assert_clean(hak)


def test_realloc_glibc_to_glibc_keeps_contents(hak: HakmemModule) -> None:
    ptr = hak.lib.hak_libc_malloc(3000)
    pattern = fill(hak, ptr, 3000, seed=9)
    moved = hak.lib.hak_realloc(ptr, 100_000)
    assert locate(hak, moved).owner == OWNER_LIBC
    assert read(hak, moved, 3000) == pattern
    hak.lib.hak_free(moved)


@pytest.mark.parametrize(("old", "new"), [(8, 9), (64, 65), (100, 1000), (1024, 17), (512, 256)])
def test_realloc_tiny_to_other_class_moves_and_keeps_contents(
    hak: HakmemModule, old: int, new: int
) -> None:
    exact(hak)
    ptr = malloc_ok(hak, old)
    pattern = fill(hak, ptr, old, seed=old + new)
    moved = hak.lib.hak_realloc(ptr, new)
    assert moved != hak.ffi.NULL
    where = locate(hak, moved)
    assert (where.owner, where.class_idx) == (OWNER_TINY, limits.class_of(new)), str(where)
    assert addr(hak, moved) != addr(hak, ptr), "a different class is a different block"
    kept = min(old, new)
    assert read(hak, moved, kept) == pattern[:kept], f"realloc({old} -> {new}) lost the contents"
    snap = stats(hak)
    assert snap.cls[limits.class_of(old) or 0]["active_blocks"] == 0, f"old block freed:\n{snap}"
    hak.lib.hak_free(moved)
    assert_clean(hak)


@pytest.mark.parametrize(("old", "new"), [(40, 64), (40, 33), (1, 8), (1000, 513), (600, 1024)])
def test_realloc_within_the_class_returns_the_same_pointer(
    hak: HakmemModule, old: int, new: int
) -> None:
    ptr = malloc_ok(hak, old)
    pattern = fill(hak, ptr, old, seed=1)
    same = hak.lib.hak_realloc(ptr, new)
    assert addr(hak, same) == addr(hak, ptr), f"realloc({old} -> {new}) stays in its class"
    assert read(hak, same, min(old, new)) == pattern[: min(old, new)]
    hak.lib.hak_free(same)


@pytest.mark.parametrize("owner", ["tiny", "glibc"])
def test_realloc_to_zero_frees_and_returns_null(hak: HakmemModule, owner: str) -> None:
    exact(hak)
    ptr = malloc_ok(hak, 48) if owner == "tiny" else hak.lib.hak_libc_malloc(3000)
    assert hak.lib.hak_realloc(ptr, 0) == hak.ffi.NULL, "realloc(p, 0) returns NULL"
    assert_drained(hak, "realloc(p, 0) frees p")
    assert_clean(hak)


@pytest.mark.parametrize(
    ("size", "owner"), [(0, OWNER_TINY), (100, OWNER_TINY), (5000, OWNER_LIBC)]
)
def test_realloc_null_allocates(hak: HakmemModule, size: int, owner: int) -> None:
    ptr = hak.lib.hak_realloc(hak.ffi.NULL, size)
    assert ptr != hak.ffi.NULL, f"realloc(NULL, {size}) allocates"
    assert locate(hak, ptr).owner == owner
    assert hak.lib.hak_usable_size(ptr) >= size
    hak.lib.hak_free(ptr)


def test_realloc_failure_leaves_the_block_untouched(hak: HakmemModule) -> None:
    exact(hak, ss_cap=1, oom_policy=OOM_NULL)
    full = fill_class(hak, 7)
    ptr = malloc_ok(hak, 64)
    pattern = fill(hak, ptr, 64, seed=5)
    hak.ffi.errno = 0
    assert hak.lib.hak_realloc(ptr, 1000) == hak.ffi.NULL, "C7 is full: realloc fails"
    assert hak.ffi.errno == errno.ENOMEM
    assert read(hak, ptr, 64) == pattern, "a failed realloc leaves the block as it was"
    assert locate(hak, ptr).owner == OWNER_TINY
    assert stats(hak).cls[3]["active_blocks"] == 1, "the old block is still held"
    hak.lib.hak_free(ptr)
    for p in full:
        hak.lib.hak_free(p)
    hak.lib.hak_flush()
    assert_drained(hak)
    assert_clean(hak)


# ---- calloc -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "size"), [(2**62, 8), (2**63, 2), (2**64 - 1, 2), (3, 2**63), (2**32, 2**32)]
)
def test_calloc_overflow_is_enomem(hak: HakmemModule, count: int, size: int) -> None:
    hak.ffi.errno = 0
    assert hak.lib.hak_calloc(count, size) == hak.ffi.NULL, f"calloc({count}, {size}) overflows"
    assert hak.ffi.errno == errno.ENOMEM
    snap = stats(hak)
    assert (snap.total("oom_nulls"), snap["os_maps"]) == (0, 0), f"nothing allocated:\n{snap}"


@pytest.mark.parametrize("mode", ["caches-off", "caches-on"])
@pytest.mark.parametrize(("count", "size"), [(8, 8), (1, 40), (3, 300), (1, 1024), (2, 4)])
def test_calloc_zeroes_a_reused_block(hak: HakmemModule, mode: str, count: int, size: int) -> None:
    if mode == "caches-off":
        exact(hak)
    total = count * size
    block = CLASS_SIZES[limits.class_of(total) or 0]
    dirty = malloc_ok(hak, block)
    fill(hak, dirty, block, seed=0xAB)
    hak.lib.hak_free(dirty)
    ptr = hak.lib.hak_calloc(count, size)
    assert addr(hak, ptr) == addr(hak, dirty), "calloc of the same class reuses the freed block"
    assert read(hak, ptr, total) == bytes(total), f"calloc({count}, {size}) is not zeroed"
    hak.lib.hak_free(ptr)
    assert_clean(hak)


def test_calloc_large_and_zero(hak: HakmemModule) -> None:
    big = hak.lib.hak_calloc(3, 1000)
    assert locate(hak, big).owner == OWNER_LIBC
    assert read(hak, big, 3000) == bytes(3000)
    empty = hak.lib.hak_calloc(0, 0)
    assert empty != hak.ffi.NULL, "calloc(0, 0) gives a unique pointer"
    assert locate(hak, empty).class_idx == 0
    hak.lib.hak_free(big)
    hak.lib.hak_free(empty)


def test_calloc_fallback_at_the_cap_is_zeroed(hak: HakmemModule) -> None:
    exact(hak, ss_cap=1)
    full = fill_class(hak, 6)
    ptr = hak.lib.hak_calloc(2, 250)
    assert locate(hak, ptr).owner == OWNER_LIBC, "past the cap: glibc"
    assert read(hak, ptr, 500) == bytes(500)
    assert stats(hak).cls[6]["fallback_allocs"] == 1
    for p in [*full, ptr]:
        hak.lib.hak_free(p)


# ---- posix_memalign and aligned_alloc ---------------------------------------------------

ALIGNMENTS = [1 << k for k in range(3, 13)]  # 8 .. 4096
SIZES = [0, 1, 7, 100, 1000, 1024, 1025, 5000]


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_posix_memalign_every_power_of_two(hak: HakmemModule, alignment: int) -> None:
    out = hak.ffi.new("void **")
    ptrs = []
    for size in [*SIZES, alignment - 1, alignment, alignment + 1]:
        rc = hak.lib.hak_posix_memalign(out, alignment, size)
        assert rc == 0, f"posix_memalign(align={alignment}, size={size}) = {rc}"
        ptr = out[0]
        ptrs.append(ptr)
        assert addr(hak, ptr) % alignment == 0, (
            f"posix_memalign(align={alignment}, size={size}) = {addr(hak, ptr):#x} is misaligned"
        )
        assert hak.lib.hak_usable_size(ptr) >= size
        expected = OWNER_TINY if max(size, alignment) <= limits.MAX_BLOCK else OWNER_LIBC
        assert locate(hak, ptr).owner == expected, f"owner of memalign({alignment}, {size})"
        fill(hak, ptr, size, seed=size)
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert_drained(hak)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_aligned_alloc_every_power_of_two(hak: HakmemModule, alignment: int) -> None:
    for size in [alignment, 2 * alignment, 3]:
        ptr = hak.lib.hak_aligned_alloc(alignment, size)
        assert ptr != hak.ffi.NULL
        assert addr(hak, ptr) % alignment == 0, f"aligned_alloc({alignment}, {size}) misaligned"
        hak.lib.hak_free(ptr)


@pytest.mark.parametrize("alignment", [0, 1, 2, 4, 12, 24, 48, 3000, 4095, 4097])
def test_posix_memalign_rejects_bad_alignments(hak: HakmemModule, alignment: int) -> None:
    out = hak.ffi.new("void **")
    sentinel = hak.ffi.cast("void *", 0x1234)
    out[0] = sentinel
    rc = hak.lib.hak_posix_memalign(out, alignment, 64)
    assert rc == errno.EINVAL, f"posix_memalign(align={alignment}) = {rc}, expected EINVAL"
    assert out[0] == sentinel, "a failed posix_memalign leaves *out alone"
    assert stats(hak)["os_maps"] == 0, "nothing allocated"


@pytest.mark.parametrize("alignment", [0, 3, 12, 24, 3000])
def test_aligned_alloc_rejects_non_powers_of_two(hak: HakmemModule, alignment: int) -> None:
    hak.ffi.errno = 0
    assert hak.lib.hak_aligned_alloc(alignment, 64) == hak.ffi.NULL
    assert hak.ffi.errno == errno.EINVAL, f"aligned_alloc({alignment}): errno {hak.ffi.errno}"


@pytest.mark.parametrize("alignment", [1, 2, 4])
def test_aligned_alloc_small_powers_of_two_are_fine(hak: HakmemModule, alignment: int) -> None:
    ptr = hak.lib.hak_aligned_alloc(alignment, 24)
    assert ptr != hak.ffi.NULL, f"aligned_alloc({alignment}, 24)"
    assert addr(hak, ptr) % limits.POINTER_SIZE == 0
    hak.lib.hak_free(ptr)


@pytest.mark.parametrize("alignment", [64, 512, 1024])
def test_posix_memalign_fallback_at_the_cap_is_aligned(hak: HakmemModule, alignment: int) -> None:
    configure(hak, ss_cap=1, cache_cap=0)
    full = fill_class(hak, 7)
    out = hak.ffi.new("void **")
    rc = hak.lib.hak_posix_memalign(out, alignment, 1000)
    assert rc == 0
    assert locate(hak, out[0]).owner == OWNER_LIBC, "past the cap: glibc"
    assert addr(hak, out[0]) % alignment == 0, f"the fallback of memalign({alignment}) aligned"
    for p in [*full, out[0]]:
        hak.lib.hak_free(p)


def test_posix_memalign_at_the_cap_with_null_policy(hak: HakmemModule) -> None:
    configure(hak, ss_cap=1, cache_cap=0, oom_policy=OOM_NULL)
    full = fill_class(hak, 7)
    out = hak.ffi.new("void **")
    hak.ffi.errno = 1234
    rc = hak.lib.hak_posix_memalign(out, 1024, 100)
    assert rc == errno.ENOMEM, f"posix_memalign at the cap = {rc}"
    assert hak.ffi.errno == 1234, "posix_memalign reports through its result, not errno"
    for p in full:
        hak.lib.hak_free(p)
