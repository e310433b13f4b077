"""The registry of benchmark engines: ``hakfuzz bench --engine NAME`` looks names up here.

Adding an engine is one line in :data:`ENGINES`: a function taking
:class:`~hakfuzz.perf.bench.model.BenchOptions` and a progress callback and
returning an :class:`~hakfuzz.perf.bench.model.EngineResult`.  ``--engine all``
runs every registered engine in this order.
"""

from __future__ import annotations

from hakfuzz.perf.bench.differential import run_differential_engine
from hakfuzz.perf.bench.larson_engine import run_larson_engine
from hakfuzz.perf.bench.malloc_engine import run_malloc_engine
from hakfuzz.perf.bench.model import Engine
from hakfuzz.perf.bench.xthread_engine import run_xthread_engine

ENGINES: dict[str, Engine] = {
    "larson": run_larson_engine,
    "malloc": run_malloc_engine,
    "differential": run_differential_engine,
    "xthread": run_xthread_engine,
}
"""Engines by name."""

SUMMARIES: dict[str, str] = {
    "larson": "the four reference larson configs, every allocator interleaved, peak RSS per run",
    "malloc": "single-thread malloc+free pairs/s of 64-byte blocks, hakmem vs glibc in one "
    "process, and RSS after freeing everything",
    "differential": "lockstep ops/s of the model against the native allocator, and of each "
    "side alone",
    "xthread": "cross-thread frees (prodcons), short-lived threads (churn), thread exit with "
    "large caches (exitcache) and larson, every allocator interleaved, with ratios to glibc and "
    "mimalloc, peak RSS, system time, faults and mmap/munmap/madvise counts",
}
"""What each engine measures, for ``hakfuzz bench --help``."""
if SUMMARIES.keys() != ENGINES.keys():
    raise AssertionError("every bench engine needs a line in SUMMARIES, and only they")


def select(name: str) -> tuple[str, ...]:
    """``"all"`` → every engine; a name → itself; a :class:`ValueError` names an unknown one."""
    if name == "all":
        return tuple(ENGINES)
    names = tuple(n.strip() for n in name.split(",") if n.strip())
    for n in names:
        if n not in ENGINES:
            raise ValueError(f"unknown engine {n!r} (choose from {', '.join(ENGINES)}, all)")
    if not names:
        raise ValueError("no engine named")
    return names
