"""The ``malloc`` engine: single-thread malloc+free pairs per second, hakmem vs glibc.

Runs ``native/bench/pairs.c``, which calls ``hak_malloc``/``hak_free`` and
glibc's ``malloc``/``free`` in one process, alternating time slices, so both
allocators meet the same machine noise.  Two patterns of 64-byte blocks:
batch 1 (a malloc immediately freed: the thread cache's best case) and batch
256 (256 mallocs, then 256 frees: past the cache cap of 64, so refills and
drains run).  The engine also runs ``pairs rss``: resident memory before,
at peak and after freeing 64 MiB of mixed small blocks, for each allocator.
"""

from __future__ import annotations

import re
import statistics

from hakfuzz._errors import HakfuzzError
from hakfuzz._process import run_measured
from hakfuzz.native._tools import build_tool
from hakfuzz.perf.bench.model import BenchOptions, EngineResult, Progress, Row
from hakfuzz.targets import child_env

PATTERNS: tuple[tuple[int, int], ...] = ((64, 1), (64, 256))
"""(block size, batch) pairs measured."""

RSS_MEGABYTES = 64

_RATE = re.compile(r"^(\w+) pairs/s = ([0-9.]+)$", re.MULTILINE)
_RSS = re.compile(r"^(\w+) rss_kb before=(-?\d+) peak=(-?\d+) after=(-?\d+)$", re.MULTILINE)


def _pairs(binary: str, *args: str) -> str:
    # Its glibc figures must be glibc's: never an LD_PRELOAD inherited from the user.
    done = run_measured([binary, *args], env=child_env(None), timeout=120.0)
    if done.returncode != 0:
        raise HakfuzzError(f"pairs {' '.join(args)} failed ({done.describe_status()}): "
                           f"{done.stderr.strip()[:200]}")
    return done.stdout


def run_malloc_engine(options: BenchOptions, progress: Progress) -> EngineResult:
    """Each pattern ``options.repeat`` times, then one RSS run."""
    binary = str(build_tool("pairs", options.variant))
    rows: list[Row] = []
    total = len(PATTERNS) * options.repeat + 1
    done = 0
    for size, batch in PATTERNS:
        rates: dict[str, list[float]] = {"hakmem": [], "glibc": []}
        for _ in range(options.repeat):
            progress(f"malloc {size} B batch {batch}", done, total)
            out = _pairs(binary, f"{options.seconds:g}", str(size), str(batch))
            for name, value in _RATE.findall(out):
                rates.setdefault(name, []).append(float(value))
            done += 1
        base = statistics.median(rates["glibc"]) if rates["glibc"] else None
        for name, values in rates.items():
            median = statistics.median(values) if values else None
            rows.append(Row("malloc", f"{size} B, batch {batch}", name, "pairs/s", median,
                            min(values, default=None), max(values, default=None),
                            median / base if base and median else None, None, len(values),
                            options.repeat - len(values)))
    progress(f"malloc rss {RSS_MEGABYTES} MiB", done, total)
    out = _pairs(binary, "rss", str(RSS_MEGABYTES))
    rss = {name: {"before_kb": int(b), "peak_kb": int(p), "after_kb": int(a)}
           for name, b, p, a in _RSS.findall(out)}
    notes = [f"rss {name}: before {v['before_kb'] / 1024:.1f} MiB, peak {v['peak_kb'] / 1024:.1f} "
             f"MiB, after freeing all {v['after_kb'] / 1024:.1f} MiB"
             for name, v in rss.items()]
    progress("malloc done", total, total)
    return EngineResult("malloc", tuple(rows), tuple(notes), {"rss": rss})
