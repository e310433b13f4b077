"""realloc, calloc, posix_memalign, aligned_alloc, libc pointers and misuse."""

from __future__ import annotations

from errno import EINVAL, ENOMEM

import pytest

from hakfuzz.model import (
    NULL_EINVAL,
    NULL_ENOMEM,
    NULL_LOC,
    Config,
    Loc,
    ModelAllocator,
    ModelError,
    OomPolicy,
    Owner,
    slab_capacity,
)

CACHES_OFF = Config(cache_cap=0)


def test_large_requests_and_libc_alloc_go_to_glibc_uncounted() -> None:
    model = ModelAllocator(CACHES_OFF)
    big = model.malloc(0, 1025)
    foreign = model.libc_alloc(0, 40)
    assert big.owner is foreign.owner is Owner.LIBC
    assert big.libc_id != foreign.libc_id
    assert big.location() == (2, -1, 0, -1, -1)
    assert model.stats_tuple() == (0,) * 69
    assert model.libc_live == 2
    model.free(1, foreign)
    model.free(0, big)
    assert model.libc_live == 0


def test_realloc_within_the_class_keeps_the_block() -> None:
    model = ModelAllocator(CACHES_OFF)
    loc = model.malloc(0, 100)
    assert model.realloc(0, loc, 128) is loc
    assert model.realloc(0, loc, 65) is loc


def test_realloc_to_another_class_mallocs_then_frees() -> None:
    model = ModelAllocator(CACHES_OFF)
    loc = model.malloc(0, 100)
    assert model.realloc(0, loc, 64).location() == (1, 3, 2, 0, 0)  # smaller class moves too
    assert not model.is_live(loc)
    assert model.stats().cls[4].active_blocks == 0
    assert model.stats().cls[4].slabs_in_use == 1  # its slab is current: not retired


def test_realloc_tiny_to_large_and_back() -> None:
    model = ModelAllocator(CACHES_OFF)
    loc = model.malloc(0, 8)
    big = model.realloc(0, loc, 5000)
    assert big.owner is Owner.LIBC
    assert model.stats().cls[0].fallback_allocs == 0
    bigger = model.realloc(0, big, 9000)  # glibc realloc
    assert bigger.owner is Owner.LIBC
    assert model.libc_live == 1
    small = model.realloc(0, bigger, 8)  # glibc pointer, n <= 1024: tiny malloc
    assert small == loc  # the freed block is the top of the free list
    assert model.libc_live == 0


def test_realloc_of_foreign_pointer() -> None:
    model = ModelAllocator(CACHES_OFF)
    foreign = model.libc_alloc(0, 40)
    moved = model.realloc(1, foreign, 40)
    assert moved.location() == (1, 3, 1, 0, 0)
    assert model.libc_live == 0


def test_realloc_null_and_zero() -> None:
    model = ModelAllocator(CACHES_OFF)
    loc = model.realloc(0, NULL_LOC, 0)
    assert loc.location() == (1, 0, 1, 0, 0)
    assert model.realloc(0, loc, 0) == NULL_LOC
    assert model.stats().cls[0].active_blocks == 0
    libc = model.libc_alloc(0, 10)
    assert model.realloc(0, libc, 0) == NULL_LOC
    assert model.libc_live == 0


def test_failed_realloc_keeps_the_old_block() -> None:
    model = ModelAllocator(Config(cache_cap=0, ss_cap=1, oom_policy=OomPolicy.NULL))
    locs = [model.malloc(0, 1024) for _ in range(60 + 31 * 64)]
    small = model.malloc(0, 8)
    assert model.realloc(0, small, 1000) == NULL_ENOMEM
    assert model.is_live(small)
    assert model.stats().cls[7].oom_nulls == 1
    libc = model.libc_alloc(0, 2000)
    assert model.realloc(0, libc, 1000) == NULL_ENOMEM
    assert model.is_live(libc)
    assert len(locs) == 2044


def test_realloc_with_caches_frees_through_the_cache() -> None:
    model = ModelAllocator(Config(cache_cap=8, refill_batch=2))
    loc = model.malloc(0, 8)
    moved = model.realloc(0, loc, 20)
    assert moved.class_idx == 2
    assert [(c.slab_idx, c.block_idx) for c in model.cached(0)[0]] == [(0, 1), (0, 0)]
    assert model.cached(0)[0][1] == loc
    assert model.stats().cls[0].active_blocks == 2


def test_calloc() -> None:
    model = ModelAllocator(CACHES_OFF)
    assert model.calloc(0, 4, 8).location() == (1, 2, 1, 0, 0)
    assert model.calloc(0, 0, 5).class_idx == 0
    assert model.calloc(0, 2, 600).owner is Owner.LIBC
    assert model.calloc(0, 2**32, 2**32) == NULL_ENOMEM
    assert model.calloc(0, 2**63, 2).errno == ENOMEM
    assert model.calloc(0, 2**62, 4).errno == ENOMEM
    assert model.calloc(0, 2**32, 2**32 - 1).owner is Owner.LIBC  # fits in size_t
    assert sum(cls.oom_nulls for cls in model.stats().cls) == 0


def test_calloc_fallback_is_counted_in_the_class_of_the_total() -> None:
    model = ModelAllocator(Config(cache_cap=0, fail_map_at=1))
    assert model.calloc(0, 10, 10).owner is Owner.LIBC
    assert model.stats().cls[4].fallback_allocs == 1


def test_posix_memalign() -> None:
    model = ModelAllocator(CACHES_OFF)
    assert model.posix_memalign(0, 64, 10).location() == (1, 3, 1, 0, 0)
    assert model.posix_memalign(0, 8, 100).class_idx == 4
    assert model.posix_memalign(0, 2048, 10).owner is Owner.LIBC
    assert model.posix_memalign(0, 16, 2000).owner is Owner.LIBC
    for align in (0, 4, 24, 1, 2):
        assert model.posix_memalign(0, align, 10) == NULL_EINVAL, align
    assert NULL_EINVAL.errno == EINVAL


def test_aligned_alloc() -> None:
    model = ModelAllocator(CACHES_OFF)
    assert model.aligned_alloc(0, 4, 1).class_idx == 0
    assert model.aligned_alloc(0, 1, 100).class_idx == 4
    assert model.aligned_alloc(0, 24, 10) == NULL_EINVAL
    assert model.aligned_alloc(0, 0, 10) == NULL_EINVAL
    assert model.aligned_alloc(0, 1024, 1).class_idx == 7


def test_every_tiny_block_is_aligned_to_its_class_size() -> None:
    model = ModelAllocator(CACHES_OFF)
    for align in (8, 16, 32, 64, 128, 256, 512, 1024):
        loc = model.posix_memalign(0, align, 1)
        assert 8 << loc.class_idx >= align
        assert slab_capacity(loc.class_idx, loc.slab_idx) > loc.block_idx


def test_misuse_is_reported() -> None:
    model = ModelAllocator(CACHES_OFF)
    loc = model.malloc(0, 8)
    model.free(0, loc)
    with pytest.raises(ModelError, match="not a live block"):
        model.free(0, loc)
    with pytest.raises(ModelError, match="not a live pointer"):
        model.realloc(0, loc, 100)
    with pytest.raises(ModelError, match="live SuperSlab"):
        model.free(0, Loc(Owner.TINY, 0, 99, 0, 0))
    with pytest.raises(ModelError, match="glibc"):
        model.free(0, Loc(Owner.LIBC, libc_id=12))
    with pytest.raises(ValueError, match="size"):
        model.malloc(0, -1)
    with pytest.raises(ValueError, match="count"):
        model.calloc(0, -1, 1)
    with pytest.raises(ModelError, match="thread"):
        model.malloc(-1, 8)
    cached = ModelAllocator()
    loc = cached.malloc(0, 8)
    cached.free(0, loc)
    with pytest.raises(ModelError, match="double free"):
        cached.free(0, loc)


def test_locate_and_str() -> None:
    model = ModelAllocator(CACHES_OFF)
    loc = model.malloc(0, 200)
    assert model.locate(loc) == (1, 5, 1, 0, 0)
    assert str(loc) == "tiny C5 ss1/slab0/block0"
    assert str(NULL_ENOMEM) == "NULL(errno=ENOMEM)"
    assert str(model.libc_alloc(0, 1)).startswith("libc#")
    assert model.locate(NULL_LOC) == (0, -1, 0, -1, -1)


def test_loc_from_location() -> None:
    model = ModelAllocator(CACHES_OFF)
    loc = model.malloc(0, 200)
    assert Loc.from_location(loc.location()) == loc
    assert Loc.from_location((2, -1, 0, -1, -1)).owner is Owner.LIBC
    assert Loc.from_location((0, -1, 0, -1, -1), errno=ENOMEM) == NULL_ENOMEM
    assert Loc.from_location(NULL_LOC.location()) == NULL_LOC


def test_stats_forms_agree() -> None:
    model = ModelAllocator(Config(fail_map_at=2))
    for size in (1, 100, 1000, 20, 5):
        model.malloc(0, size)
    stats = model.stats()
    assert stats.as_tuple() == model.stats_tuple()
    assert len(model.stats_tuple()) == 8 * 8 + 5
    assert stats.totals().ss_live == sum(cls.ss_live for cls in stats.cls)


def test_reset_restores_a_fresh_allocator() -> None:
    model = ModelAllocator(Config(cache_cap=0))
    model.malloc(0, 8)
    model.reset()
    assert model.config == Config()
    assert model.stats_tuple() == (0,) * 69
    assert model.malloc(0, 8).ss_seq == 1
