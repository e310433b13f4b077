"""The ``larson`` engine: throughput and peak RSS of each allocator on four larson configs.

The reference configs: ``larson S 8 128 1024 100 12345 T`` for
T = 1, 2, 4, and 256 chunks at T = 4 (rounds = 100, so each thread does
102,400 operations before handing its blocks over: the allocator, not thread
creation, is measured).  Each config runs every allocator interleaved
(:func:`hakfuzz.perf.larson.runner.compare`), so the ratios to glibc come from the
same stretch of this shared machine's time.  An allocator is a name or the
path of a shared library (:func:`hakfuzz.perf.larson.runner.prepare`); every run
must be served by it.
"""

from __future__ import annotations

from hakfuzz.perf.bench.model import BenchOptions, EngineResult, Progress, Row
from hakfuzz.perf.larson.runner import LarsonConfig, RunResult, compare, prepare_all


def configs(seconds: float) -> tuple[LarsonConfig, ...]:
    """The bar's four configs, each run for ``seconds``."""
    return (
        LarsonConfig(seconds, 8, 128, 1024, 100, 12345, 1),
        LarsonConfig(seconds, 8, 128, 1024, 100, 12345, 2),
        LarsonConfig(seconds, 8, 128, 1024, 100, 12345, 4),
        LarsonConfig(seconds, 8, 128, 256, 100, 12345, 4),
    )


def short_label(config: LarsonConfig) -> str:
    """E.g. ``4T 1024ch``."""
    return f"{config.threads}T {config.chunks}ch"


def run_larson_engine(options: BenchOptions, progress: Progress) -> EngineResult:
    """Every config and allocator, ``options.repeat`` interleaved runs each."""
    launches = prepare_all(options.allocators, options.variant)
    rows: list[Row] = []
    notes: list[str] = []
    all_configs = configs(options.seconds)
    total = len(all_configs) * len(options.allocators) * options.repeat
    base = 0
    served: dict[str, set[str]] = {}
    for config in all_configs:
        def step(done: int, _total: int, result: RunResult, base: int = base,
                 config: LarsonConfig = config) -> None:
            progress(f"larson {short_label(config)} [{result.allocator}]", base + done, total)
            if not result.ok:
                notes.append(f"{config.label()} {result.allocator}: {result.problem}")
            elif result.served_by is not None:
                served.setdefault(result.allocator, set()).add(result.served_by)

        comparison = compare(options.allocators, config, repeat=options.repeat,
                             variant=options.variant, progress=step, launches=launches)
        base += len(options.allocators) * options.repeat
        for s in comparison.summaries:
            values = s.throughputs
            rows.append(Row("larson", config.label(), s.allocator, "ops/s", s.median,
                            min(values, default=None), max(values, default=None),
                            s.ratio_to_glibc, s.peak_rss_kb, len(s.runs), s.failures))
    for name, paths in served.items():
        notes.append(f"{name}: every run that counted was served by {', '.join(sorted(paths))}")
    return EngineResult("larson", tuple(rows), tuple(notes))
