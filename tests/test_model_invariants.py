"""Invariant mode: InvariantChecker and expect_quiescent_totals fire, and only when due."""

from __future__ import annotations

import dataclasses
import random
import zlib

import pytest

from hakfuzz.model import (
    NULL_EINVAL,
    NULL_ENOMEM,
    NULL_LOC,
    ClassStats,
    Config,
    InvariantChecker,
    Loc,
    ModelAllocator,
    OomPolicy,
    Owner,
    Stats,
    expect_quiescent_totals,
)

TINY_C3 = Loc(Owner.TINY, 3, 1, 0, 0)
LIBC = Loc(Owner.LIBC, libc_id=1)


def with_class(stats: Stats, class_idx: int, **changes: int) -> Stats:
    cls = list(stats.cls)
    cls[class_idx] = dataclasses.replace(cls[class_idx], **changes)
    return dataclasses.replace(stats, cls=tuple(cls))


def run_random(model: ModelAllocator, checker: InvariantChecker, seed: int, n_ops: int) -> None:
    """A serialized many-thread run: the model's results must satisfy every invariant."""
    rng = random.Random(seed)
    live: list[int] = []
    next_handle = 0
    for step in range(n_ops):
        tid = rng.randrange(3)
        roll = rng.random()
        if roll < 0.45 or not live:
            size = rng.choice((rng.randrange(0, 1025), rng.randrange(0, 2000), 1024))
            got = model.malloc(tid, size)
            assert checker.malloc(next_handle, size, got) == []
            if not got.is_null:
                live.append(next_handle)
            next_handle += 1
        elif roll < 0.85:
            handle = live.pop(rng.randrange(len(live)))
            loc = checker.live(handle)
            assert loc is not None
            model.free(tid, loc)
            checker.free(handle)
        elif roll < 0.93:
            handle = rng.choice(live)
            loc = checker.live(handle)
            assert loc is not None
            size = rng.randrange(0, 1500)
            got = model.realloc(tid, loc, size)
            assert checker.realloc(handle, size, got) == []
            if checker.live(handle) is None:
                live.remove(handle)
        elif roll < 0.97:
            model.flush(tid)
        else:
            model.thread_exit(tid)
        if step % 97 == 0:
            assert checker.check(model.stats()) == []


@pytest.mark.parametrize(
    "config",
    [
        Config(cache_cap=0),
        Config(cache_cap=4, refill_batch=3),
        Config(ss_cap=1, cache_cap=2, oom_policy=OomPolicy.NULL, ss_keep=0),
        Config(budget_bytes=3 << 21, fail_map_at=3, cache_cap=1),
        Config(release_empty=False, cache_cap=16),
    ],
)
def test_model_runs_satisfy_every_invariant(config: Config) -> None:
    model = ModelAllocator(config)
    checker = InvariantChecker(config, threads=3)
    run_random(model, checker, seed=zlib.crc32(repr(config).encode()), n_ops=3000)
    assert checker.check(model.stats()) == []
    for tid in range(3):
        model.thread_exit(tid)
    assert checker.check(model.stats(), all_exited=True) == []
    assert checker.check(model.stats_tuple(), all_exited=True) == []


def test_per_op_violations() -> None:
    checker = InvariantChecker(Config(), threads=1)
    assert checker.malloc(0, 64, TINY_C3) == []
    assert checker.malloc(1, 2000, TINY_C3)  # large request must be glibc's
    assert checker.malloc(2, 100, TINY_C3)  # wrong class
    assert checker.malloc(3, 64, Loc(Owner.TINY, 3, 1, 0, 960))  # beyond slab 0
    assert checker.malloc(4, 64, LIBC)  # fallback although growth cannot be refused
    assert checker.malloc(5, 64, NULL_ENOMEM)  # NULL under the libc policy
    assert checker.calloc(6, 2**33, 2**33, NULL_ENOMEM) == []
    assert checker.calloc(7, 2**33, 2**33, LIBC)
    assert checker.posix_memalign(8, 24, 8, NULL_EINVAL) == []
    assert checker.posix_memalign(9, 24, 8, TINY_C3)
    assert checker.libc_alloc(10, 8, TINY_C3)
    assert checker.expected_fallback_allocs[3] == 1
    assert checker.expected_oom_nulls[3] == 1


def test_fallback_and_null_are_legal_only_when_growth_can_be_refused() -> None:
    capped = InvariantChecker(Config(ss_cap=1), threads=1)
    assert capped.malloc(0, 64, LIBC) == []
    assert capped.malloc(1, 64, NULL_ENOMEM)
    nulls = InvariantChecker(Config(fail_map_at=1, oom_policy=OomPolicy.NULL), threads=1)
    assert nulls.malloc(0, 64, NULL_ENOMEM) == []
    assert nulls.malloc(1, 64, NULL_EINVAL)
    assert nulls.live(0) is None


def test_realloc_rules() -> None:
    checker = InvariantChecker(Config(), threads=1)
    checker.malloc(0, 64, TINY_C3)
    assert checker.realloc(0, 40, Loc(Owner.TINY, 3, 1, 0, 1))  # same class must stay
    assert checker.realloc(0, 40, Loc(Owner.TINY, 3, 1, 0, 1)) == []  # ... where it is now
    assert checker.realloc(0, 3000, LIBC) == []
    assert checker.realloc(0, 5000, TINY_C3)  # glibc -> large stays glibc
    assert checker.realloc(0, 0, NULL_LOC) == []
    assert checker.live(0) is None
    with pytest.raises(ValueError, match="handle 0 is not live"):
        checker.free(0)
    checker.malloc(1, 8, Loc(Owner.TINY, 0, 1, 0, 0))
    with pytest.raises(ValueError, match="handle 1 is already live"):
        checker.malloc(1, 8, Loc(Owner.TINY, 0, 1, 0, 1))


def test_failed_realloc_keeps_the_handle() -> None:
    checker = InvariantChecker(Config(ss_cap=1, oom_policy=OomPolicy.NULL), threads=1)
    checker.malloc(0, 8, Loc(Owner.TINY, 0, 1, 0, 0))
    assert checker.realloc(0, 1000, NULL_ENOMEM) == []
    assert checker.live(0) == Loc(Owner.TINY, 0, 1, 0, 0)
    assert checker.live_tiny[0] == 1
    assert checker.expected_oom_nulls[7] == 1


def test_overlapping_live_blocks_are_reported() -> None:
    checker = InvariantChecker(Config(cache_cap=0), threads=1)
    checker.malloc(0, 64, TINY_C3)
    checker.malloc(1, 64, TINY_C3)
    stats = with_class(Stats(tuple(ClassStats() for _ in range(8))), 3, active_blocks=2)
    stats = with_class(stats, 3, ss_live=1, ss_created=1, slabs_in_use=1)
    stats = dataclasses.replace(stats, ss_mapped=1, os_maps=1)
    problems = checker.check(stats)
    assert problems == ["handles 0 and 1 both hold tiny C3 ss1/slab0/block0"]


def test_totals_violations_name_the_counter() -> None:
    model = ModelAllocator(Config(cache_cap=0))
    locs = [model.malloc(0, 64) for _ in range(5)]
    config = model.config
    good = model.stats()
    live = [0, 0, 0, 5, 0, 0, 0, 0]
    assert expect_quiescent_totals(good, config, live, threads=1) == []

    def problems(stats: Stats) -> list[str]:
        return expect_quiescent_totals(stats, config, live, threads=1)

    assert problems(with_class(good, 3, active_blocks=6))[0].startswith("C3: active_blocks 6")
    assert problems(with_class(good, 3, ss_created=2))
    assert problems(with_class(good, 3, slabs_in_use=40))
    assert problems(with_class(good, 3, remote_pending=-1))
    # One slab in use, one thread, and the class may hold one emptied SuperSlab.
    empty = problems(with_class(good, 3, ss_live=4, ss_created=4))
    assert any("empty SuperSlabs" in problem for problem in empty)
    assert not any("empty" in p for p in problems(with_class(good, 3, ss_live=3, ss_created=3)))
    assert problems(dataclasses.replace(good, ss_kept=3))
    assert problems(dataclasses.replace(good, os_unmaps=1))
    assert problems(dataclasses.replace(good, os_map_failures=1))
    model.free(1, locs[0])  # remote: pending until thread 0 drains
    pending = model.stats()
    assert expect_quiescent_totals(pending, config, [0, 0, 0, 4, 0, 0, 0, 0], threads=1) == []
    exited = expect_quiescent_totals(
        pending, config, [0, 0, 0, 4, 0, 0, 0, 0], threads=1, all_exited=True
    )
    assert exited
    assert "after every thread exited" in exited[0]
    assert expect_quiescent_totals(
        good, config, live, threads=1, fallback_allocs=[0] * 7 + [1]
    ) == ["C7: fallback_allocs 0, expected 1"]


def test_caps_and_budget_are_checked() -> None:
    model = ModelAllocator(Config(cache_cap=0))
    model.malloc(0, 8)
    model.malloc(0, 16)
    stats = model.stats()
    live = [1, 1, 0, 0, 0, 0, 0, 0]
    assert expect_quiescent_totals(stats, Config(ss_cap=1), live, threads=1) == []
    over = expect_quiescent_totals(stats, Config(budget_bytes=1 << 21), live, threads=1)
    assert over == ["2 live SuperSlabs exceed budget_bytes 2097152"]
    wrong_live = [0, 1, 0, 0, 0, 0, 0, 0]
    cached = expect_quiescent_totals(stats, Config(cache_cap=0), wrong_live, threads=1)
    assert cached
    assert cached[0].startswith("C0: active_blocks 1")
