"""``hakfuzz bench``: benchmark engines, a table and a PNG chart."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hakfuzz._argtypes import positive_float, positive_int
from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz._paths import writable_dir
from hakfuzz.perf.bench import BenchOptions, select
from hakfuzz.perf.bench.engines import ENGINES, SUMMARIES
from hakfuzz.perf.bench.report import markdown, write_chart, write_json
from hakfuzz.perf.larson.peers import available, parse_allocators
from hakfuzz.targets import inherited_preload_notice, resolve_for

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers
    from hakfuzz.targets import Target

_VARIANTS = ("release", "debug")
_DEFAULT_ALLOCATORS = "hakmem,glibc,jemalloc,mimalloc,tcmalloc"


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz bench [--engine E] [--allocator LIST] [--repeat N] [--seconds S] [--out DIR]``."""
    parser = subparsers.add_parser(
        name, help="benchmark hakmem against glibc and peers: table and PNG chart",
        description="Run benchmark engines and write DIR/bench.md (table), DIR/bench.json and "
        "DIR/bench.png (throughput by allocator and config, peak RSS per allocator). Engines: "
        + "; ".join(f"{n} ({what})" for n, what in SUMMARIES.items()) + ". An allocator of the "
        "larson and xthread engines is a name or the path of a shared library that replaces "
        "malloc (an LD_PRELOAD library); each is checked before any run and every run must be "
        "served by it. Peers that are not installed are skipped with a note naming their "
        "package. Exit 1 if any run failed.",
        epilog="example: hakfuzz bench --engine larson --allocator glibc,./libmyalloc.so")
    parser.add_argument("--engine", default="all",
                        help="one of " + ", ".join(ENGINES) + ", a comma list, or all (default)")
    parser.add_argument("--allocator", default=_DEFAULT_ALLOCATORS,
                        help="larson and xthread engines: comma list of names or paths of "
                        f"shared libraries (default {_DEFAULT_ALLOCATORS})")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="runs per figure (default 3; --reps is the same)")
    parser.add_argument("--reps", dest="repeat", type=positive_int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=positive_float, default=None,
                        help="seconds per run (default 3; xthread engine 0.5)")
    parser.add_argument("--threads", type=_thread_list, default=None, metavar="LIST",
                        help="xthread engine: only these thread (or pair) counts, e.g. 2,4")
    parser.add_argument("--no-strace", dest="syscalls", action="store_false",
                        help="xthread engine: skip the strace runs that count mmap/munmap/madvise")
    parser.add_argument("--variant", default="release", help="hakmem build: release or debug")
    parser.add_argument("--out", default="bench-results", metavar="DIR",
                        help="where bench.md, bench.json, bench.png go (default bench-results)")
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the engines, write the files, print the table."""
    try:
        engines = select(args.engine)
    except ValueError as exc:
        raise UsageError(f"hakfuzz bench: {exc}") from None
    try:
        wanted = parse_allocators(args.allocator)
    except ValueError as exc:
        raise UsageError(f"hakfuzz bench: --allocator: {exc}") from None
    if args.variant not in _VARIANTS:
        raise UsageError(f"hakfuzz bench: variant {args.variant!r} is not for benchmarks "
                         f"(choose from {', '.join(_VARIANTS)})")
    err = console(stderr=True)
    allocators, missing = available(wanted)
    targets = _targets(allocators, args.variant) if "larson" in engines else []
    out = writable_dir(Path(args.out), "hakfuzz bench: --out")  # before the runs, not after
    for why in missing.values():
        err.print(f"skipped: {why}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    notice = inherited_preload_notice("hakfuzz bench")
    if notice is not None:
        err.print(notice, style="yellow", markup=False, highlight=False, soft_wrap=True)
    for target in targets:
        err.print(f"  {target.describe()}", style="dim", markup=False, highlight=False,
                  soft_wrap=True)
    seconds = 3.0 if args.seconds is None else args.seconds
    options = BenchOptions(allocators, args.repeat, seconds, args.variant,
                           threads=args.threads, syscalls=args.syscalls,
                           xthread_seconds=args.seconds)
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
        "seconds": seconds, "elapsed_s": round(time.time() - started, 1),
        "skipped": sorted(missing),
        "targets": [f"{t.name} = {t.real_path} sha256:{t.sha256}" for t in targets]}
    text = markdown(results, header)
    (out / "bench.md").write_text(text)
    write_json(out / "bench.json", results, header)
    write_chart(out / "bench.png", results,
                f"hakfuzz bench ({args.variant}, median of {args.repeat}, {seconds:g} s runs)")
    if args.json:
        print(json.dumps({**header, "engines": [r.as_json() for r in results]}, indent=2))
    else:
        _print_tables(results)
        err.print(f"wrote {out / 'bench.md'}, {out / 'bench.json'}, {out / 'bench.png'}",
                  style="dim", soft_wrap=True)
    return 1 if any(r.failures for r in results) else 0


def _thread_list(text: str) -> tuple[int, ...]:
    """``--threads 1,2,4``: positive whole numbers."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive whole numbers, "
                                         f"got {text!r}")
    return values


def _targets(allocators: tuple[str, ...], variant: str) -> list[Target]:
    """Each allocator's library, proven to serve malloc before any run (a bad path: exit 2)."""
    return [resolve_for("hakfuzz bench", a, variant) for a in allocators if a != "hakmem-direct"]


def _print_tables(results: list[Any]) -> None:
    """One compact table per engine on stdout (the full labels are in bench.md)."""
    out = console()
    for result in results:
        table = Table(title=f"bench: {result.engine}", title_justify="left")
        extra = any(r.metrics for r in result.rows)
        columns = ["config", "allocator", "median", "min", "max", "vs glibc"]
        if extra:
            columns += ["vs mimalloc"]
        columns += ["peak RSS"]
        if extra:
            columns += ["sys s", "minflt", "madvise/Mop", "munmap/Mop"]
        for col in [*columns, "ok"]:
            table.add_column(col, justify="left" if col in ("config", "allocator") else "right")
        for r in result.rows:
            cells = [r.config.replace("larson ", "") if not extra else r.config, r.allocator,
                     _millions(r.median), _millions(r.low), _millions(r.high),
                     _ratio(r.ratio_to_glibc)]
            if extra:
                cells.append(_ratio(r.metrics.get("ratio_to_mimalloc")))
            cells.append("-" if r.peak_rss_kb is None else f"{r.peak_rss_kb / 1024:.1f} MiB")
            if extra:
                cells += [_fixed(r.metrics.get("sys_seconds"), 2),
                          _fixed(r.metrics.get("minflt"), 0),
                          _fixed(r.metrics.get("madvise_per_mop"), 0),
                          _fixed(r.metrics.get("munmap_per_mop"), 0)]
            style = "bold" if r.allocator == "hakmem" else None
            table.add_row(*cells, f"{r.runs - r.failures}/{r.runs}", style=style)
        out.print(table)
        for note in result.notes:
            out.print(f"  {note}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _millions(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} M"


def _cpus() -> int:

    return len(os.sched_getaffinity(0))
