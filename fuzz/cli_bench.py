"""``hakfuzz bench``: benchmark engines, a table and a PNG chart."""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import TYPE_CHECKING, Any

from hakfuzz._argtypes import positive_float, positive_int
from hakfuzz._errors import UsageError

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers

_VARIANTS = ("release", "debug")
_DEFAULT_ALLOCATORS = "hakmem,glibc,jemalloc,mimalloc,tcmalloc"


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz bench [--engine E] [--allocator LIST] [--repeat N] [--seconds S] [--out DIR]``."""
    from hakfuzz.bench.engines import ENGINES

    parser = subparsers.add_parser(
        name, help="benchmark hakmem against glibc and peers: table and PNG chart",
        description="Run benchmark engines and write DIR/bench.md (table), DIR/bench.json and "
        "DIR/bench.png (throughput by allocator and config, peak RSS per allocator). Engines: "
        "larson (the performance bar's four larson configs, every allocator interleaved, "
        "peak RSS per run) and malloc (single-thread malloc+free pairs/s of 64-byte blocks, "
        "hakmem vs glibc in one process, and RSS after freeing everything). Peers that are not "
        "installed are skipped with a note naming their package. Exit 1 if any run failed.")
    parser.add_argument("--engine", default="all",
                        help="one of " + ", ".join(ENGINES) + ", a comma list, or all (default)")
    parser.add_argument("--allocator", default=_DEFAULT_ALLOCATORS,
                        help=f"larson engine: comma list (default {_DEFAULT_ALLOCATORS})")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="runs per figure (default 3)")
    parser.add_argument("--seconds", type=positive_float, default=3.0,
                        help="seconds per run (default 3)")
    parser.add_argument("--variant", default="release", help="hakmem build: release or debug")
    parser.add_argument("--out", default="bench-results", metavar="DIR",
                        help="where bench.md, bench.json, bench.png go (default bench-results)")
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the engines, write the files, print the table."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from hakfuzz._paths import writable_dir
    from hakfuzz.bench import ENGINES, BenchOptions, select
    from hakfuzz.bench.report import markdown, write_chart, write_json
    from hakfuzz.larson.peers import available, parse_allocators

    try:
        engines = select(args.engine)
        wanted = parse_allocators(args.allocator)
    except ValueError as exc:
        raise UsageError(f"hakfuzz bench: {exc}") from None
    if args.variant not in _VARIANTS:
        raise UsageError(f"hakfuzz bench: variant {args.variant!r} is not for benchmarks "
                         f"(choose from {', '.join(_VARIANTS)})")
    err = Console(stderr=True)
    allocators, missing = available(wanted)
    for why in missing.values():
        err.print(f"[yellow]skipped:[/yellow] {why}")
    options = BenchOptions(allocators, args.repeat, args.seconds, args.variant)
    out = writable_dir(Path(args.out), "hakfuzz bench: --out")  # before the runs, not after
    results = []
    started = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=err, disable=not err.is_terminal) as bar:
        for name in engines:
            task = bar.add_task(name, total=None)

            def progress(what: str, done: int, total: int, task: Any = task) -> None:
                bar.update(task, description=what, completed=done, total=total)

            results.append(ENGINES[name](options, progress))
    header: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
        "cpus": _cpus(), "variant": args.variant, "repeat": args.repeat,
        "seconds": args.seconds, "elapsed_s": round(time.time() - started, 1),
        "skipped": sorted(missing)}
    text = markdown(results, header)
    (out / "bench.md").write_text(text)
    write_json(out / "bench.json", results, header)
    write_chart(out / "bench.png", results,
                f"hakfuzz bench ({args.variant}, median of {args.repeat}, {args.seconds:g} s runs)")
    if args.json:
        print(json.dumps({**header, "engines": [r.as_json() for r in results]}, indent=2))
    else:
        _print_tables(results)
        err.print(f"wrote {out / 'bench.md'}, {out / 'bench.json'}, {out / 'bench.png'}",
                  style="dim")
    return 1 if any(r.failures for r in results) else 0


def _print_tables(results: list[Any]) -> None:
    """One compact table per engine on stdout (the full labels are in bench.md)."""
    from rich.console import Console
    from rich.table import Table

    out = Console()
    for result in results:
        table = Table(title=f"bench: {result.engine}", title_justify="left")
        for col in ("config", "allocator", "median", "min", "max", "vs glibc", "peak RSS", "ok"):
            table.add_column(col, justify="left" if col in ("config", "allocator") else "right")
        for r in result.rows:
            table.add_row(r.config.replace("larson ", ""), r.allocator, _millions(r.median),
                          _millions(r.low), _millions(r.high),
                          "-" if r.ratio_to_glibc is None else f"{r.ratio_to_glibc:.2f}x",
                          "-" if r.peak_rss_kb is None else f"{r.peak_rss_kb / 1024:.1f} MiB",
                          f"{r.runs - r.failures}/{r.runs}")
        out.print(table)
        for note in result.notes:
            out.print(f"  {note}")


def _millions(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} M"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
