"""Growth, caps, OOM policies, fault injection, retire and SuperSlab release."""

from __future__ import annotations

from errno import ENOMEM

from hakfuzz.model import NULL_ENOMEM, Config, Loc, ModelAllocator, OomPolicy, Owner, slab_capacity
from hakfuzz.model.limits import SS_SIZE

C7 = 1024
C7_PER_SS = slab_capacity(7, 0) + 31 * slab_capacity(7, 1)


def fill_superslab(model: ModelAllocator, tid: int = 0) -> list[Loc]:
    locs = [model.malloc(tid, C7) for _ in range(C7_PER_SS)]
    assert all(loc.owner is Owner.TINY for loc in locs)
    return locs


def test_ss_cap_with_libc_policy_falls_back() -> None:
    model = ModelAllocator(Config(ss_cap=1, cache_cap=0))
    fill_superslab(model)
    extra = model.malloc(0, C7)
    assert extra.owner is Owner.LIBC
    assert model.usable_size(extra) is None
    cls = model.stats().cls[7]
    assert (cls.ss_live, cls.fallback_allocs, cls.oom_nulls) == (1, 1, 0)
    assert model.stats().os_maps == 1
    model.free(0, extra)
    assert model.libc_live == 0
    assert model.malloc(0, 8).owner is Owner.TINY  # other classes are not capped


def test_ss_cap_with_null_policy_returns_enomem() -> None:
    model = ModelAllocator(Config(ss_cap=1, cache_cap=0, oom_policy=OomPolicy.NULL))
    fill_superslab(model)
    extra = model.malloc(0, C7)
    assert extra == NULL_ENOMEM
    assert extra.errno == ENOMEM
    assert model.usable_size(extra) == 0
    cls = model.stats().cls[7]
    assert (cls.fallback_allocs, cls.oom_nulls) == (0, 1)
    model.free(0, extra)  # free(NULL) does nothing
    assert model.self_check() == []


def test_cap_with_caches_refills_what_is_left() -> None:
    model = ModelAllocator(Config(ss_cap=1, cache_cap=16, refill_batch=16))
    locs = [model.malloc(0, C7) for _ in range(C7_PER_SS - 3)]
    assert model.stats().cls[7].active_blocks == C7_PER_SS  # the last refill took 16
    locs += [model.malloc(0, C7) for _ in range(3)]
    assert all(loc.owner is Owner.TINY for loc in locs)
    assert model.malloc(0, C7).owner is Owner.LIBC
    assert model.stats().cls[7].fallback_allocs == 1


def test_budget_counts_superslabs_of_all_classes() -> None:
    model = ModelAllocator(Config(budget_bytes=SS_SIZE + SS_SIZE // 2, cache_cap=0))
    assert model.malloc(0, C7).owner is Owner.TINY
    assert model.malloc(0, 8).owner is Owner.LIBC
    assert model.stats().cls[0].fallback_allocs == 1
    model = ModelAllocator(Config(budget_bytes=2 * SS_SIZE, cache_cap=0))
    assert model.malloc(0, C7).owner is Owner.TINY
    assert model.malloc(0, 8).owner is Owner.TINY
    assert model.malloc(0, 100).owner is Owner.LIBC
    assert model.stats().ss_mapped == 2


def test_fail_map_at_fails_only_the_nth_attempt() -> None:
    model = ModelAllocator(Config(fail_map_at=2, cache_cap=0))
    assert model.malloc(0, 8).location() == (1, 0, 1, 0, 0)
    failed = model.malloc(0, 16)  # second mapping attempt: injected failure
    assert failed.owner is Owner.LIBC
    stats = model.stats()
    assert (stats.os_maps, stats.os_map_failures, stats.cls[1].fallback_allocs) == (1, 1, 1)
    assert model.malloc(0, 16).location() == (1, 1, 2, 0, 0)  # attempt 3 succeeds
    assert model.stats().os_map_failures == 1


def test_fail_map_at_with_null_policy_and_caches() -> None:
    model = ModelAllocator(Config(fail_map_at=1, oom_policy=OomPolicy.NULL))
    assert model.malloc(0, 8) == NULL_ENOMEM
    assert model.stats().cls[0].oom_nulls == 1
    assert model.malloc(0, 8).owner is Owner.TINY


def test_configure_restarts_the_attempt_counter() -> None:
    model = ModelAllocator(Config(fail_map_at=2, cache_cap=0))
    model.malloc(0, 8)
    model.configure(Config(fail_map_at=2, cache_cap=0))
    assert model.malloc(0, 16).owner is Owner.TINY  # attempt 1 since configure
    assert model.malloc(0, 32).owner is Owner.LIBC  # attempt 2
    assert model.stats().os_map_failures == 1


def test_empty_superslab_is_released_and_kept() -> None:
    model = ModelAllocator(Config(cache_cap=0, ss_keep=1))
    first = fill_superslab(model)
    second = model.malloc(0, C7)
    assert second.ss_seq == 2
    for loc in first:  # every slab of ss1 is not current: each retires when empty
        model.free(0, loc)
    stats = model.stats()
    cls = stats.cls[7]
    assert (cls.ss_live, cls.ss_created, cls.ss_released, cls.slabs_in_use) == (1, 2, 1, 1)
    assert (stats.ss_mapped, stats.ss_kept, stats.os_maps, stats.os_unmaps) == (2, 1, 2, 0)
    model.free(0, second)  # ss2/slab0 is current: it stays in use until a flush
    assert model.stats().cls[7].slabs_in_use == 1
    model.flush(0)
    stats = model.stats()
    assert (stats.cls[7].ss_live, stats.cls[7].ss_released, stats.cls[7].slabs_in_use) == (0, 2, 0)
    assert (stats.ss_mapped, stats.ss_kept, stats.os_unmaps) == (1, 1, 1)
    # Growth reuses the kept SuperSlab: a new ss_seq, no OS mapping.
    assert model.malloc(0, 8).location() == (1, 0, 3, 0, 0)
    stats = model.stats()
    assert (stats.ss_mapped, stats.ss_kept, stats.os_maps) == (1, 0, 2)
    assert stats.cls[0].ss_created == 1
    assert model.self_check() == []


def test_ss_keep_0_unmaps_and_kept_reuse_is_not_a_mapping_attempt() -> None:
    model = ModelAllocator(Config(cache_cap=0, ss_keep=0))
    model.free(0, model.malloc(0, 8))
    model.flush(0)
    stats = model.stats()
    assert (stats.ss_mapped, stats.ss_kept, stats.os_maps, stats.os_unmaps) == (0, 0, 1, 1)
    model = ModelAllocator(Config(cache_cap=0, ss_keep=2, fail_map_at=2))
    model.free(0, model.malloc(0, 8))
    model.flush(0)
    assert model.stats().ss_kept == 1
    assert model.malloc(0, 8).location() == (1, 0, 2, 0, 0)  # kept: no attempt made
    assert model.malloc(0, 16).owner is Owner.LIBC  # the second attempt fails


def test_release_empty_off_keeps_superslabs_live() -> None:
    model = ModelAllocator(Config(cache_cap=0, release_empty=False))
    model.free(0, model.malloc(0, 8))
    model.flush(0)
    cls = model.stats().cls[0]
    assert (cls.ss_live, cls.ss_released, cls.slabs_in_use) == (1, 0, 0)
    assert model.malloc(0, 8).location() == (1, 0, 1, 0, 0)
    assert model.self_check() == []


def test_released_superslab_frees_capacity_under_the_cap() -> None:
    model = ModelAllocator(Config(cache_cap=0, ss_cap=1, ss_keep=0))
    loc = model.malloc(0, 8)
    model.free(0, loc)
    model.flush(0)
    assert model.stats().cls[0].ss_live == 0
    assert model.malloc(0, 8).location() == (1, 0, 2, 0, 0)
