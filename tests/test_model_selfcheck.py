"""self_check() fires on each kind of corruption; stats helpers name counters."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hakfuzz.model import Config, ModelAllocator, diff_stats
from hakfuzz.model.heap import TinyHeap
from hakfuzz.model.slab import Slab
from hakfuzz.model.stats import ACTIVE_BLOCKS, SS_KEPT, STATS_LEN, Stats, field_name


def _busy_model() -> ModelAllocator:
    model = ModelAllocator(Config(cache_cap=4, refill_batch=2))
    slab0 = [model.malloc(0, 1024) for _ in range(60)]
    model.malloc(0, 1024)  # slab 1 is cur
    model.free(0, slab0[0])  # cached
    model.free(0, slab0[1])
    model.free(0, slab0[2])
    model.free(0, slab0[3])
    model.free(0, slab0[4])  # cache full: slab0[0], [1] go back; slab 0 is on partial
    model.free(1, slab0[10])  # cached by thread 1
    model.malloc(2, 8)
    model.free(1, model.malloc(2, 8))
    model.flush(1)  # remote push onto thread 2's slab
    assert model.self_check() == []
    return model


def _heap(model: ModelAllocator) -> TinyHeap:
    heap = model._heap  # the checker's own test may look inside
    assert isinstance(heap, TinyHeap)
    return heap


def _slab(model: ModelAllocator, class_idx: int, slab_idx: int) -> Slab:
    ss = next(iter(_heap(model).pools[class_idx].live.values()))
    slab = ss.slabs[slab_idx]
    assert slab is not None
    return slab


def _more_used(m: ModelAllocator) -> None:
    _slab(m, 7, 0).used += 1


def _duplicate_free_block(m: ModelAllocator) -> None:
    slab = _slab(m, 7, 0)
    slab.freelist.append(slab.freelist[0])


def _held_flag(m: ModelAllocator) -> None:
    slab = _slab(m, 7, 0)
    slab.held[slab.freelist[0]] = 1


def _partial_mark(m: ModelAllocator) -> None:
    _slab(m, 7, 0).on_partial = False


def _cache_twice(m: ModelAllocator) -> None:
    cache = _heap(m).threads[0].cache[7]
    cache.append(cache[0])


def _counter(m: ModelAllocator) -> None:
    _heap(m).counters[7 * 8 + ACTIVE_BLOCKS] += 1


def _kept(m: ModelAllocator) -> None:
    _heap(m).counters[SS_KEPT] += 1


def _remote(m: ModelAllocator) -> None:
    _slab(m, 0, 0).remote.append(40)


def _free_mask(m: ModelAllocator) -> None:
    ss = next(iter(_heap(m).pools[7].live.values()))
    ss.free_mask ^= 1 << 5


def _cur_not_owned(m: ModelAllocator) -> None:
    thread = _heap(m).threads[0]
    del thread.owned[7][_slab(m, 7, 1)]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_more_used, "used 60 != carved 60 - free 1"),
        (_duplicate_free_block, "twice on the free list"),
        (_held_flag, "is not carved, or held, or cached"),
        (_partial_mark, "partial"),
        (_cache_twice, "is cached 2 times"),
        (_counter, "cls[7].active_blocks is"),
        (_kept, "ss_kept is 1, 0 are kept"),
        (_remote, "remote"),
        (_free_mask, "free mask"),
        (_cur_not_owned, "is not in its owned list"),
    ],
)
def test_self_check_reports_corruption(
    corrupt: Callable[[ModelAllocator], None], message: str
) -> None:
    model = _busy_model()
    corrupt(model)
    problems = model.self_check()
    assert any(message in problem for problem in problems), problems


def test_field_names_and_diff() -> None:
    assert field_name(0) == "cls[0].ss_live"
    assert field_name(7 * 8 + 4) == "cls[7].active_blocks"
    assert field_name(64) == "ss_mapped"
    assert field_name(68) == "os_unmaps"
    with pytest.raises(IndexError):
        field_name(STATS_LEN)
    model = _busy_model()
    stats = model.stats_tuple()
    other = list(stats)
    other[3 * 8 + 5] += 2
    assert diff_stats(stats, other) == ["cls[3].remote_pending: model 0, native 2"]
    assert diff_stats(stats, stats) == []
    with pytest.raises(ValueError, match="69"):
        diff_stats(stats, stats[:-1])
    with pytest.raises(ValueError, match="69"):
        Stats.from_tuple(stats[1:])
