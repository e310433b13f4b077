"""Measure the model's speed and memory (a script, not a test).

Run: ``python -m hakfuzz.perf.model_speed``.  Prints ops/s for malloc/free pairs
(caches off and on), for a mixed workload over a window of live blocks, and
the memory of one million live blocks (tracemalloc: model state, then model
plus the caller's ``Loc`` objects).  The differential executor needs the
model to cost a few microseconds per op (~100k ops/s with native in lockstep).
"""

from __future__ import annotations

import gc
import random
import resource
import time
import tracemalloc

from hakfuzz.model.allocator import ModelAllocator
from hakfuzz.model.config import Config
from hakfuzz.model.location import Loc


def _pairs(config: Config, size: int, count: int) -> float:
    model = ModelAllocator(config)
    malloc, free = model.malloc, model.free
    start = time.perf_counter()
    for _ in range(count):
        free(0, malloc(0, size))
    return 2 * count / (time.perf_counter() - start)


def _mixed(config: Config, count: int, window: int, threads: int) -> float:
    rng = random.Random(1)
    model = ModelAllocator(config)
    live: list[Loc] = []
    sizes = [rng.randrange(0, 1100) for _ in range(4096)]
    tids = [rng.randrange(threads) for _ in range(4096)]
    start = time.perf_counter()
    for i in range(count):
        tid = tids[i & 4095]
        if len(live) < window and (i & 1 or not live):
            live.append(model.malloc(tid, sizes[i & 4095]))
        else:
            index = sizes[(i * 7) & 4095] % len(live)
            live[index], live[-1] = live[-1], live[index]
            model.free(tid, live.pop())
    return count / (time.perf_counter() - start)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1e6


def _million(size: int, traced: bool) -> tuple[float, float]:
    """(MB, seconds) to hold 1M live blocks of ``size`` bytes: model state plus the Locs.

    The model memoizes each block's Loc, so the caller's list of Locs adds only
    its 8 MB of pointers.  ``traced``: count with tracemalloc (slow, exact),
    else by the growth of the resident set.
    """
    gc.collect()
    if traced:
        tracemalloc.start()
    before = _rss_mb()
    start = time.perf_counter()
    model = ModelAllocator(Config(cache_cap=0))
    held = [model.malloc(0, size) for _ in range(1_000_000)]
    seconds = time.perf_counter() - start
    if traced:
        megabytes = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
    else:
        megabytes = _rss_mb() - before
    assert len(held) == model.stats().cls[held[0].class_idx].active_blocks
    return megabytes, seconds


def main() -> None:
    """Print the measurements."""
    n = 200_000
    print(f"malloc/free pairs, caches off: {_pairs(Config(cache_cap=0), 64, n):,.0f} ops/s")
    print(f"malloc/free pairs, caches on:  {_pairs(Config(), 64, n):,.0f} ops/s")
    mixed_off = _mixed(Config(cache_cap=0), n, 2000, 1)
    print(f"mixed 0..1100 B, 2000 live, 1 thread, caches off: {mixed_off:,.0f} ops/s")
    mixed_on = _mixed(Config(cache_cap=16, refill_batch=8), n, 2000, 4)
    print(f"mixed 0..1100 B, 2000 live, 4 threads, caches 16: {mixed_on:,.0f} ops/s")
    for size in (8, 1024):
        megabytes, seconds = _million(size, traced=False)
        traced, _ = _million(size, traced=True)
        print(
            f"1M live {size}-byte blocks: +{megabytes:.0f} MB RSS ({traced:.0f} MB traced),"
            f" built in {seconds:.1f} s ({1e6 / seconds:,.0f} mallocs/s)"
        )
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of this process: {max_rss:.0f} MB")


if __name__ == "__main__":
    main()
