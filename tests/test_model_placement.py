"""Exact placement of tiny blocks (docs/policy.md "Taking one block" and "malloc")."""

from __future__ import annotations

from hakfuzz.model import Config, Loc, ModelAllocator, Owner, slab_capacity

CACHES_OFF = Config(cache_cap=0)
C7 = 1024  # a size of class 7: slab 0 holds 60 blocks, others 64
C7_PER_SS = slab_capacity(7, 0) + 31 * slab_capacity(7, 1)


def place(loc: Loc) -> tuple[int, int, int]:
    assert loc.owner is Owner.TINY, loc
    return (loc.ss_seq, loc.slab_idx, loc.block_idx)


def test_first_blocks_are_carved_in_order() -> None:
    model = ModelAllocator(CACHES_OFF)
    locs = [model.malloc(0, 64) for _ in range(3)]
    assert [place(loc) for loc in locs] == [(1, 0, 0), (1, 0, 1), (1, 0, 2)]
    assert all(loc.class_idx == 3 for loc in locs)
    assert locs[0].location() == (1, 3, 1, 0, 0)
    assert model.usable_size(locs[0]) == 64


def test_slab_0_then_slab_1_then_a_new_superslab() -> None:
    model = ModelAllocator(CACHES_OFF)
    first_slab = [model.malloc(0, 64) for _ in range(slab_capacity(3, 0))]
    assert place(first_slab[-1]) == (1, 0, 959)
    assert place(model.malloc(0, 64)) == (1, 1, 0)
    model = ModelAllocator(CACHES_OFF)
    locs = [model.malloc(0, C7) for _ in range(C7_PER_SS + 1)]
    assert place(locs[59]) == (1, 0, 59)
    assert place(locs[60]) == (1, 1, 0)
    assert place(locs[C7_PER_SS - 1]) == (1, 31, 63)
    assert place(locs[C7_PER_SS]) == (2, 0, 0)
    cls = model.stats().cls[7]
    assert (cls.ss_live, cls.ss_created, cls.slabs_in_use, cls.active_blocks) == (
        2, 2, 33, C7_PER_SS + 1,
    )  # fmt: skip
    assert model.stats().os_maps == 2
    assert model.self_check() == []


def test_classes_have_their_own_superslabs_numbered_globally() -> None:
    model = ModelAllocator(CACHES_OFF)
    assert model.malloc(0, 0).location() == (1, 0, 1, 0, 0)
    assert model.malloc(0, 1000).location() == (1, 7, 2, 0, 0)
    assert model.malloc(0, 5).location() == (1, 0, 1, 0, 1)
    stats = model.stats()
    assert stats.ss_mapped == 2
    assert stats.cls[0].ss_live == stats.cls[7].ss_live == 1


def test_freelist_is_lifo_then_carving_resumes() -> None:
    model = ModelAllocator(CACHES_OFF)
    a, b, c = (model.malloc(0, 100) for _ in range(3))
    model.free(0, b)
    model.free(0, a)
    assert model.malloc(0, 100) == a
    assert model.malloc(0, 100) == b
    assert place(model.malloc(0, 100)) == (1, 0, 3)
    assert model.stats().cls[4].active_blocks == 4
    model.free(0, c)
    assert model.stats().cls[4].active_blocks == 3


def test_partial_slab_is_preferred_to_a_free_one() -> None:
    model = ModelAllocator(CACHES_OFF)
    slab0 = [model.malloc(0, C7) for _ in range(60)]
    in_slab1 = model.malloc(0, C7)
    assert place(in_slab1) == (1, 1, 0)
    more = [model.malloc(0, C7) for _ in range(62)]
    assert place(more[-1]) == (1, 1, 62)  # cur carves while partial is empty
    model.free(0, slab0[7])  # slab 0 is not current: it goes on partial
    assert place(model.malloc(0, C7)) == (1, 0, 7)  # the hole before cur's carve room
    assert place(model.malloc(0, C7)) == (1, 1, 63)  # partial empty again: cur carves
    assert place(model.malloc(0, C7)) == (1, 2, 0)  # then the lowest FREE slab


def test_a_partial_slab_is_used_before_cur_carves_fresh_memory() -> None:
    model = ModelAllocator(CACHES_OFF)
    slab0 = [model.malloc(0, C7) for _ in range(60)]
    assert place(model.malloc(0, C7)) == (1, 1, 0)  # cur is slab 1, 63 blocks of carve room
    model.free(0, slab0[3])
    model.free(0, slab0[5])  # slab 0 on partial, freelist [3, 5]
    assert [place(model.malloc(0, C7)) for _ in range(2)] == [(1, 0, 5), (1, 0, 3)]
    # Slab 0 (cur now) is full and partial is empty: collect finds slab 1's
    # carve room before any FREE slab is opened.
    assert place(model.malloc(0, C7)) == (1, 1, 1)
    assert model.stats().cls[7].slabs_in_use == 2
    assert model.self_check() == []


def test_empty_non_current_slab_retires_and_is_reacquired_first() -> None:
    model = ModelAllocator(CACHES_OFF)
    slab0 = [model.malloc(0, C7) for _ in range(60)]
    slab1 = [model.malloc(0, C7) for _ in range(64)]
    for loc in slab0:
        model.free(0, loc)
    assert model.stats().cls[7].slabs_in_use == 1
    # slab 1 (cur) is exhausted: the lowest FREE slab is slab 0 again.
    assert place(model.malloc(0, C7)) == (1, 0, 0)
    assert model.stats().cls[7].slabs_in_use == 2
    assert len(slab1) == 64
    assert model.self_check() == []


def test_refill_returns_blocks_in_take_order() -> None:
    model = ModelAllocator(Config(cache_cap=8, refill_batch=4))
    first = model.malloc(0, 64)
    assert place(first) == (1, 0, 0)
    assert model.stats().cls[3].active_blocks == 4  # cached blocks count as used
    assert [place(loc) for loc in model.cached(0)[3]] == [(1, 0, 3), (1, 0, 2), (1, 0, 1)]
    assert [place(model.malloc(0, 64)) for _ in range(4)] == [
        (1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 0, 4),
    ]  # fmt: skip
    assert model.stats().cls[3].active_blocks == 8


def test_refill_batch_is_clamped_to_cache_cap() -> None:
    model = ModelAllocator(Config(cache_cap=2, refill_batch=16))
    model.malloc(0, 8)
    assert model.stats().cls[0].active_blocks == 2


def test_free_pushes_on_the_cache_and_malloc_pops_it() -> None:
    model = ModelAllocator(Config(cache_cap=8, refill_batch=1))
    a = model.malloc(0, 64)
    b = model.malloc(0, 64)
    model.free(0, a)
    model.free(0, b)
    assert model.malloc(0, 64) == b
    assert model.malloc(0, 64) == a
    assert model.stats().cls[3].active_blocks == 2


def test_full_cache_drains_its_oldest_half() -> None:
    model = ModelAllocator(Config(cache_cap=4, refill_batch=4))
    locs = [model.malloc(0, 64) for _ in range(8)]
    assert [place(loc)[2] for loc in locs] == list(range(8))
    for loc in locs[:4]:
        model.free(0, loc)
    assert model.cached(0)[3] == tuple(locs[:4])
    assert model.stats().cls[3].active_blocks == 8
    model.free(0, locs[4])  # cache full: b0, b1 go back to the slab, bottom first
    assert model.cached(0)[3] == (locs[2], locs[3], locs[4])
    assert model.stats().cls[3].active_blocks == 6
    assert [model.malloc(0, 64) for _ in range(3)] == [locs[4], locs[3], locs[2]]
    # The refill takes b1 (top of the free list), b0, then carves b8, b9.
    assert [place(model.malloc(0, 64))[2] for _ in range(4)] == [1, 0, 8, 9]
    assert model.self_check() == []


def test_cache_cap_1_drains_one_block() -> None:
    model = ModelAllocator(Config(cache_cap=1, refill_batch=1))
    a = model.malloc(0, 8)
    b = model.malloc(0, 8)
    model.free(0, a)
    model.free(0, b)
    assert model.cached(0)[0] == (b,)
    assert model.stats().cls[0].active_blocks == 1
    assert model.self_check() == []


def test_same_program_same_results() -> None:
    def run() -> tuple[list[Loc], tuple[int, ...]]:
        model = ModelAllocator(Config(cache_cap=4, refill_batch=3))
        locs = [model.malloc(i % 3, (i * 37) % 1100) for i in range(300)]
        for loc in locs[::2]:
            model.free(1, loc)
        locs += [model.malloc(2, 50) for _ in range(50)]
        return locs, model.stats_tuple()

    first, second = run(), run()
    assert first == second
