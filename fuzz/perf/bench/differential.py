"""The ``differential`` engine: lockstep ops/s of model vs native, and of each side alone.

What runs: single-thread programs of the parallel generators (``mixed``,
``larson``, ``churn``; seeds 1-3, 20,000 ops each, a glibc ratio of 0.3),
with their ``check`` ops left out (a check walks the whole heap on both sides:
it measures the heap, not the lockstep).  Three modes run the same ops,
interleaved in every repetition so that all three meet the same stretch of
this shared machine's time:

- ``lockstep``: :meth:`DifferentialExecutor.run`, every oracle on every op
  (placement, usable size, NULL/errno, contents, all 69 counters);
- ``model``: the model alone, driven by the same ops (its handle table
  included);
- ``native``: the allocator calls and pattern fills alone, through cffi: no
  model, no ``hak_locate``/``hak_usable_size``/``hak_stats`` probes, no
  content checks.

Each figure is the median over ``repeat`` runs (each whole passes over the
workload's programs for at least ``seconds / 3``) of ops per second, twice:
by the wall clock, and by this process's CPU time (rows marked "CPU time":
the speed of one core of its own, which is what a shared, busy machine still
measures faithfully).  The engine also measures the memory of the model
holding one million live blocks, in a fresh child process (growth of its
resident set), which must stay under 300 MB.

``python -c 'from hakfuzz.perf.bench.differential import main; main()' [--profile
WORKLOAD]`` prints the same table, or a cProfile summary of the lockstep run
(``python -m hakfuzz.perf.bench.differential`` works too, with a runpy warning:
the package imports this module first).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import json
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from hakfuzz._errors import HakfuzzError
from hakfuzz.differential import DifferentialExecutor
from hakfuzz.differential.patterns import BASE, pattern_start
from hakfuzz.engines.parallel.stress import model_config
from hakfuzz.engines.parallel.workloads import WORKLOADS as GENERATORS
from hakfuzz.model import Loc, ModelAllocator, Owner
from hakfuzz.perf.bench.model import BenchOptions, EngineResult, Progress, Row
from hakfuzz.perf.bench.report import markdown
from hakfuzz.program import OpKind, Program
from hakfuzz.variants import load_module

WORKLOADS: tuple[str, ...] = ("mixed", "larson", "churn")
"""Generators of :mod:`hakfuzz.engines.parallel.generators` measured, in this order."""
SEEDS = (1, 2, 3)
OPS = 20_000
LIBC_RATIO = 0.3
MODES: tuple[str, ...] = ("lockstep", "model", "native")
TARGET_OPS_PER_S = 100_000
"""Issue 3's aim for lockstep ops/s on one core."""
MILLION = 1_000_000
MEMORY_LIMIT_MB = 300
MEMORY_SIZES: tuple[int, ...] = (8, 1024)
"""Block sizes of the million-block memory runs: the smallest and largest class."""

Runner = Callable[[Program], None]


def programs(workload: str) -> list[Program]:
    """The single-thread programs of ``workload``, without their ``check`` ops."""
    out = []
    for seed in SEEDS:
        p = GENERATORS[workload](seed, 1, OPS, LIBC_RATIO)
        ops = tuple(op for op in p.ops if op.kind is not OpKind.CHECK)
        out.append(dataclasses.replace(p, ops=ops))
    return out


# ---- the three modes ------------------------------------------------------------------
def lockstep_runner(hak: Any) -> Runner:
    """Run a program with every oracle; a divergence is an error (the bench needs clean runs)."""
    executor = DifferentialExecutor(hak)

    def run(program: Program) -> None:
        divergence = executor.run(program)
        if divergence is not None:
            raise HakfuzzError(f"bench program diverged: {divergence.describe()}")

    return run


def model_runner() -> Runner:
    """Run a program's ops on the model alone (what the executor asks of it, nothing more)."""
    null = Owner.NULL

    def run(program: Program) -> None:
        model = ModelAllocator(model_config(program.config))
        handles: dict[int, Loc] = {}
        malloc, libc_alloc, calloc = model.malloc, model.libc_alloc, model.calloc
        posix_memalign, realloc, free = model.posix_memalign, model.realloc, model.free
        for op in program.ops:
            kind = op.kind
            if kind <= OpKind.MEMALIGN:
                if kind is OpKind.ALLOC:
                    loc = malloc(op.thread, op.size)
                elif kind is OpKind.LIBC_ALLOC:
                    loc = libc_alloc(op.thread, op.size)
                elif kind is OpKind.CALLOC:
                    loc = calloc(op.thread, op.count, op.size)
                else:
                    loc = posix_memalign(op.thread, op.align, op.size)
                if loc.owner is not null:
                    handles[op.handle] = loc
            elif kind is OpKind.FREE:
                old = handles.pop(op.handle, None)
                if old is not None:
                    free(op.thread, old)
            elif kind is OpKind.REALLOC:
                old = handles.get(op.handle)
                if old is not None:
                    new = realloc(op.thread, old, op.size)
                    if op.size == 0:
                        del handles[op.handle]
                    elif new.owner is not null:
                        handles[op.handle] = new
            elif kind is OpKind.FLUSH:
                model.flush(op.thread)
            elif kind is OpKind.THREAD_EXIT:
                model.thread_exit(op.thread)
            elif kind is OpKind.CHECK:
                model.self_check()

    return run


def native_runner(hak: Any) -> Runner:
    """Run a program's allocator calls and fills alone, through cffi (no model, no probes)."""
    ffi, lib = hak.ffi, hak.lib
    null, memmove = ffi.NULL, ffi.memmove
    fill = memoryview(BASE)
    cfg, out = ffi.new("hak_config_t *"), ffi.new("void **")

    def run(program: Program) -> None:
        lib.hak_reset()
        for name, value in program.config.as_c_fields().items():
            setattr(cfg, name, value)
        lib.hak_configure(cfg)
        handles: dict[int, list[Any]] = {}
        for op in program.ops:
            kind = op.kind
            if kind <= OpKind.MEMALIGN:
                size = op.size
                if kind is OpKind.ALLOC:
                    ptr = lib.hak_malloc(size)
                elif kind is OpKind.LIBC_ALLOC:
                    ptr = lib.hak_libc_malloc(size)
                elif kind is OpKind.CALLOC:
                    ptr = lib.hak_calloc(op.count, size)
                    if ptr != null:
                        handles[op.handle] = [ptr, op.count * size, 0]
                    continue
                else:
                    ptr = out[0] if lib.hak_posix_memalign(out, op.align, size) == 0 else null
                if ptr != null:
                    start = pattern_start(op.handle, 0)
                    handles[op.handle] = [ptr, size, start]
                    memmove(ptr, fill[start : start + size], size)
            elif kind is OpKind.FREE:
                h = handles.pop(op.handle, None)
                if h is not None:
                    lib.hak_free(h[0])
            elif kind is OpKind.REALLOC:
                h = handles.get(op.handle)
                if h is not None:
                    size = op.size
                    ptr = lib.hak_realloc(h[0], size)
                    if size == 0:
                        del handles[op.handle]
                    elif ptr != null:
                        h[0], h[1] = ptr, size
                        memmove(ptr, fill[h[2] : h[2] + size], size)
            elif kind is OpKind.WRITE:
                h = handles.get(op.handle)
                if h is not None:
                    start = h[2] = pattern_start(op.handle, op.seed)
                    memmove(h[0], fill[start : start + h[1]], h[1])
            elif kind is OpKind.FLUSH:
                lib.hak_flush()
            elif kind is OpKind.THREAD_EXIT:
                lib.hak_thread_exit()
        lib.hak_reset()

    return run


def _timed(run: Runner, batch: Sequence[Program], seconds: float) -> tuple[float, float]:
    """(wall, cpu) ops per second running all of ``batch``, again until ``seconds`` have passed.

    Whole passes only, so every figure weighs the programs alike.
    """
    ops = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while True:
        for program in batch:
            run(program)
            ops += len(program.ops)
        wall = time.perf_counter() - wall0
        if wall >= seconds:
            break
    cpu = time.process_time() - cpu0
    return ops / wall, ops / max(cpu, 1e-9)


# ---- memory -------------------------------------------------------------------------
def million_blocks(size: int) -> dict[str, Any]:
    """Hold one million live ``size``-byte blocks in a fresh model; its memory, in this process.

    Run it in a fresh process (:func:`measure_memory` does): the growth of
    the resident set is then the model's state plus the caller's list of the
    million ``Loc`` it got back (8 MB of pointers; the Locs themselves are
    the model's memo).
    """
    def rss_kb() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() // 1024

    gc.collect()
    before = rss_kb()
    start = time.perf_counter()
    model = ModelAllocator()
    malloc = model.malloc
    held = [malloc(0, size) for _ in range(MILLION)]
    seconds = time.perf_counter() - start
    after = rss_kb()
    live = model.stats().totals().active_blocks
    if live != len(held):
        raise AssertionError(f"the model counts {live} active blocks, {len(held)} are held")
    return {
        "size": size,
        "blocks": MILLION,
        "rss_growth_mb": round((after - before) / 1024, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(seconds, 2),
    }


def measure_memory(size: int) -> dict[str, Any]:
    """:func:`million_blocks` in a child process (a clean heap)."""
    code = (
        f"import json; from hakfuzz.perf.bench.differential import million_blocks as m; "
        f"print(json.dumps(m({size})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:

        raise HakfuzzError(f"million-block memory run failed: {done.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---- the engine -----------------------------------------------------------------------
def run_differential_engine(options: BenchOptions, progress: Progress) -> EngineResult:
    """Every workload in every mode, ``options.repeat`` interleaved runs; then the memory runs."""
    hak = load_module(options.variant)
    runners: dict[str, Runner] = {
        "lockstep": lockstep_runner(hak),
        "model": model_runner(),
        "native": native_runner(hak),
    }
    batches = {w: programs(w) for w in WORKLOADS}
    total = len(WORKLOADS) * options.repeat + len(MEMORY_SIZES)
    done = 0
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    slice_s = options.seconds / len(MODES)
    for workload, batch in batches.items():
        for run in runners.values():  # warm up: first-use costs out of the figures
            run(batch[0])
        for _ in range(options.repeat):
            progress(f"differential {workload}", done, total)
            for mode, run in runners.items():
                w, c = _timed(run, batch, slice_s)
                wall.setdefault((workload, mode), []).append(w)
                cpu.setdefault((workload, mode), []).append(c)
            done += 1
    memory = []
    for size in MEMORY_SIZES:
        progress(f"differential: 1M live {size}-byte blocks in the model", done, total)
        memory.append(measure_memory(size))
        done += 1
    progress("differential done", total, total)

    rows: list[Row] = []
    notes: list[str] = []
    for clock, rates in (("wall", wall), ("cpu", cpu)):
        suffix = "" if clock == "wall" else ", CPU time"
        medians = {key: statistics.median(values) for key, values in rates.items()}
        for (workload, mode), values in rates.items():
            rows.append(
                Row(
                    "differential",
                    f"{workload} 1T{suffix}",
                    mode,
                    "ops/s",
                    medians[workload, mode],
                    min(values),
                    max(values),
                    None,
                    None,
                    len(values),
                    0,
                )
            )
        for workload in WORKLOADS:
            notes.append(_breakdown(f"{workload}{suffix}", medians, workload))
    busy = statistics.median(w / c for w, c in zip(_flat(wall), _flat(cpu), strict=True))
    if busy < 0.85:
        notes.append(
            f"the machine was busy: wall-clock rates were {busy:.0%} of CPU-time rates "
            "(other processes had the cores); the CPU-time rows are this process's own speed"
        )
    for m in memory:
        verdict = "under" if m["rss_growth_mb"] < MEMORY_LIMIT_MB else "OVER"
        notes.append(
            f"model memory: 1M live {m['size']}-byte blocks: +{m['rss_growth_mb']:.0f} "
            f"MB RSS ({verdict} {MEMORY_LIMIT_MB} MB), built in {m['seconds']:.1f} s"
        )
    extra = {
        "model_memory": memory,
        "workloads": {
            "names": list(WORKLOADS),
            "seeds": list(SEEDS),
            "ops": OPS,
            "libc_ratio": LIBC_RATIO,
            "check_ops": "removed",
        },
    }
    return EngineResult("differential", tuple(rows), tuple(notes), extra)


def _flat(rates: dict[tuple[str, str], list[float]]) -> list[float]:
    return [v for key in sorted(rates) for v in rates[key]]


def _breakdown(label: str, medians: dict[tuple[str, str], float], workload: str) -> str:
    """One line: lockstep ops/s against the target, and its time per op split by side."""
    lock = medians[workload, "lockstep"]
    model, native = medians[workload, "model"], medians[workload, "native"]
    # Per op: lockstep time = model + native + the oracles (probes, checks, dispatch).
    oracles_us = 1e6 / lock - 1e6 / model - 1e6 / native
    verdict = "meets" if lock >= TARGET_OPS_PER_S else "below"
    return (
        f"{label}: lockstep {lock:,.0f} ops/s ({verdict} the {TARGET_OPS_PER_S:,} target); "
        f"per op {1e6 / lock:.1f} us = model {1e6 / model:.1f} + native {1e6 / native:.1f} "
        f"+ oracles and executor {oracles_us:.1f}"
    )


def _profile(workload: str, seconds: float, top: int) -> None:
    """Print a cProfile summary of the lockstep run of ``workload``."""
    run = lockstep_runner(load_module("release"))
    batch = programs(workload)
    run(batch[0])
    profiler = cProfile.Profile()
    profiler.enable()
    _timed(run, batch, seconds)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hakfuzz.perf.bench.differential [--seconds S] [--repeat N] [--profile W]``."""
    parser = argparse.ArgumentParser(prog="python -m hakfuzz.perf.bench.differential")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variant", default="release")
    parser.add_argument(
        "--profile",
        metavar="WORKLOAD",
        choices=WORKLOADS,
        help="print a cProfile summary of the lockstep run instead",
    )
    parser.add_argument("--top", type=int, default=25, help="--profile: entries (default 25)")
    args = parser.parse_args(argv)
    if args.profile:
        _profile(args.profile, args.seconds, args.top)
        return 0
    options = BenchOptions(("hakmem",), args.repeat, args.seconds, args.variant)
    result = run_differential_engine(options, lambda what, done, total: None)
    print(markdown([result], {"variant": args.variant, "repeat": args.repeat}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
