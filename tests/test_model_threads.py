"""Remote frees, drains, flush, thread exit, orphans and adoption."""

from __future__ import annotations

from hakfuzz.model import Config, ModelAllocator, Owner

CACHES_OFF = Config(cache_cap=0)
C7 = 1024


def test_remote_free_is_pending_until_the_owner_flushes() -> None:
    model = ModelAllocator(CACHES_OFF)
    a = model.malloc(0, 64)
    model.free(1, a)
    cls = model.stats().cls[3]
    assert (cls.active_blocks, cls.remote_pending, cls.slabs_in_use) == (1, 1, 1)
    assert model.self_check() == []
    model.flush(1)  # thread 1 owns nothing: no change
    assert model.stats().cls[3].remote_pending == 1
    model.flush(0)
    cls = model.stats().cls[3]
    assert (cls.active_blocks, cls.remote_pending, cls.slabs_in_use, cls.ss_live) == (0, 0, 0, 1)
    assert model.stats().ss_kept == 0  # the class's only SuperSlab: held, not released


def test_exhausted_current_slab_drains_its_remote_stack() -> None:
    model = ModelAllocator(CACHES_OFF)
    slab0 = [model.malloc(0, C7) for _ in range(60)]
    model.free(1, slab0[5])
    model.free(1, slab0[9])
    # cur is fully carved with an empty free list: drain, most recent push first.
    assert model.malloc(0, C7) == slab0[9]
    assert model.malloc(0, C7) == slab0[5]
    assert model.stats().cls[7].remote_pending == 0
    assert model.malloc(0, C7).location() == (1, 7, 1, 1, 0)


def test_collect_drains_owned_slabs_and_retires_empty_ones() -> None:
    model = ModelAllocator(CACHES_OFF)
    slab0 = [model.malloc(0, C7) for _ in range(60)]
    slab1 = [model.malloc(0, C7) for _ in range(64)]
    for loc in slab0:
        model.free(1, loc)  # remote: slab 0 stays in use with 60 pending
    assert model.stats().cls[7].slabs_in_use == 2
    # slab 1 exhausted, partial empty: collect drains slab 0, retires it, and
    # acquires the lowest FREE slab, which is slab 0 again.
    assert model.malloc(0, C7).location() == (1, 7, 1, 0, 0)
    cls = model.stats().cls[7]
    assert (cls.remote_pending, cls.slabs_in_use, cls.active_blocks) == (0, 2, 65)
    assert len(slab1) == 64
    assert model.self_check() == []


def test_collect_pushes_drained_slabs_on_partial() -> None:
    model = ModelAllocator(CACHES_OFF)
    slab0 = [model.malloc(0, C7) for _ in range(60)]
    [model.malloc(0, C7) for _ in range(64)]
    model.free(1, slab0[3])
    model.free(1, slab0[4])
    assert model.malloc(0, C7) == slab0[4]  # slab 0 became partial, then cur
    assert model.malloc(0, C7) == slab0[3]
    assert model.malloc(0, C7).location() == (1, 7, 1, 2, 0)


def test_thread_exit_orphans_and_another_thread_adopts() -> None:
    model = ModelAllocator(CACHES_OFF)
    a = model.malloc(0, 64)
    b = model.malloc(0, 64)
    model.thread_exit(0)
    cls = model.stats().cls[3]
    assert (cls.slabs_in_use, cls.active_blocks) == (1, 2)
    assert model.self_check() == []
    c = model.malloc(0, 64)  # a new identity adopts the orphan (step 2c) and carves on
    assert c.location() == (1, 3, 1, 0, 2)
    cls = model.stats().cls[3]
    assert (cls.active_blocks, cls.slabs_in_use) == (3, 1)
    model.thread_exit(0)  # slab 0 is an orphan again
    model.free(1, a)  # thread 1 adopts slab 0 by freeing into it, locally
    cls = model.stats().cls[3]
    assert (cls.remote_pending, cls.active_blocks, cls.slabs_in_use) == (0, 2, 1)
    model.free(1, b)
    model.free(1, c)  # used 0, not thread 1's cur: retired
    model.flush(1)
    cls = model.stats().cls[3]
    assert (cls.slabs_in_use, cls.ss_live, cls.active_blocks) == (0, 1, 0)  # held
    assert model.self_check() == []


def test_adopted_slab_is_reused_by_the_adopter() -> None:
    model = ModelAllocator(CACHES_OFF)
    locs = [model.malloc(0, 64) for _ in range(3)]
    model.thread_exit(0)
    model.free(1, locs[1])
    assert model.malloc(1, 64) == locs[1]  # the adopted slab is on thread 1's partial
    assert model.malloc(1, 64).location() == (1, 3, 1, 0, 3)  # it is cur now: carve


def test_remote_frees_into_the_cache_of_the_freeing_thread() -> None:
    model = ModelAllocator(Config(cache_cap=4, refill_batch=2))
    a = model.malloc(0, 64)
    model.free(1, a)
    assert model.cached(1)[3] == (a,)
    assert model.malloc(1, 64) == a  # thread 1 reuses thread 0's block
    model.free(1, a)
    model.flush(1)  # drained to a slab owned by thread 0: remote push
    cls = model.stats().cls[3]
    assert (cls.remote_pending, cls.active_blocks) == (1, 2)
    model.flush(0)  # thread 0's cache holds the other refilled block
    cls = model.stats().cls[3]
    assert (cls.remote_pending, cls.active_blocks, cls.slabs_in_use) == (0, 0, 0)


def test_flush_drains_the_cache_and_retires_the_current_slab() -> None:
    model = ModelAllocator(Config(cache_cap=64, refill_batch=16))
    a = model.malloc(0, 8)
    assert model.stats().cls[0].active_blocks == 16
    model.flush(0)
    cls = model.stats().cls[0]
    assert (cls.active_blocks, cls.slabs_in_use) == (1, 1)
    assert model.cached(0)[0] == ()
    model.free(0, a)
    assert model.stats().cls[0].active_blocks == 1  # in the cache
    model.flush(0)
    assert model.stats().cls[0].slabs_in_use == 0
    assert model.stats().cls[0].ss_released == 0  # the class's only SuperSlab: held
    # After a flush the cur slab is gone: the next malloc acquires again.
    assert model.malloc(0, 8).location() == (1, 0, 1, 0, 0)


def test_thread_exit_with_cached_blocks_of_other_threads() -> None:
    model = ModelAllocator(Config(cache_cap=8, refill_batch=4))
    mine = [model.malloc(0, 8) for _ in range(4)]
    for loc in mine:
        model.free(1, loc)
    model.thread_exit(1)  # pushes remote frees onto thread 0's slab
    cls = model.stats().cls[0]
    assert (cls.remote_pending, cls.active_blocks) == (4, 4)
    model.thread_exit(0)
    cls = model.stats().cls[0]
    assert (cls.remote_pending, cls.active_blocks, cls.slabs_in_use, cls.ss_live) == (0, 0, 0, 1)
    assert model.self_check() == []


def test_exit_order_leaves_nothing_behind() -> None:
    model = ModelAllocator(Config(cache_cap=4, refill_batch=3))
    held = {tid: [model.malloc(tid, 8 * (tid + 1)) for _ in range(20)] for tid in range(3)}
    for tid in range(3):
        for loc in held[(tid + 1) % 3]:
            model.free(tid, loc)
    for tid in (2, 0, 1):
        model.thread_exit(tid)
    stats = model.stats()
    for cls in stats.cls:
        assert cls.active_blocks == cls.remote_pending == cls.slabs_in_use == 0
    assert (stats.ss_mapped, stats.ss_kept) == (3, 0), "each class holds its one SuperSlab"
    assert model.self_check() == []


def test_thread_exit_of_an_unknown_thread_is_harmless() -> None:
    model = ModelAllocator()
    model.thread_exit(5)
    model.flush(6)
    assert model.stats_tuple() == (0,) * 69
    assert model.malloc(5, 2000).owner is Owner.LIBC


def test_the_owner_takes_back_remote_frees_before_carving() -> None:
    # Caches off: thread 1's free of thread 0's block is a remote push.  The
    # owner's next take drains it and hands the same block out again rather
    # than carving block 1 (policy take step 1: a drain before fresh memory).
    model = ModelAllocator(Config(cache_cap=0))
    a = model.malloc(0, 64)
    model.free(1, a)
    assert model.stats().cls[3].remote_pending == 1
    assert model.malloc(0, 64) == a
    cls = model.stats().cls[3]
    assert (cls.remote_pending, cls.active_blocks) == (0, 1)


def test_a_refill_drains_before_it_carves() -> None:
    # Thread 0 refills 4 (blocks 0-3) and hands all four out; thread 1 frees
    # two of them (remote: 1 pushed, then 2).  The next refill takes those
    # two back first (the drained stack pops the last pushed first), then
    # carves 4 and 5.
    model = ModelAllocator(Config(cache_cap=4, refill_batch=4))
    blocks = [model.malloc(0, 64) for _ in range(4)]
    model.free(1, blocks[1])
    model.free(1, blocks[2])
    model.flush(1)
    again = [model.malloc(0, 64).location()[-1] for _ in range(4)]
    assert again == [2, 1, 4, 5], again
