"""``hakfuzz larson``: larson under hakmem and its peers, side by side; the stability protocol."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hakfuzz._argtypes import non_negative_int, positive_float, positive_int
from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz.perf.larson.peers import ALLOCATORS, parse_allocators
from hakfuzz.perf.larson.runner import LarsonConfig, compare, prepare_all
from hakfuzz.perf.larson.stability import protocol, run_stability
from hakfuzz.targets import TargetError, inherited_preload_notice

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers
    from hakfuzz.perf.larson.runner import Comparison, LarsonConfig, Launch, RunResult
    from hakfuzz.perf.larson.stability import StabilityReport, StabilityTest

_VARIANTS = ("release", "debug", "asan", "tsan")


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz larson ARGS... [--allocator LIST] [--repeat N]`` or ``--stability``."""
    parser = subparsers.add_parser(
        name, help="run larson under hakmem, glibc and peers; or the stability protocol",
        description="Run larson (SECONDS MIN_SIZE MAX_SIZE CHUNKS ROUNDS SEED THREADS) under "
        "each allocator, interleaved A B C A B C..., and print median, min and max throughput "
        "and the ratio to glibc from the same run. An allocator is a name or the path of a "
        "shared library that replaces malloc (an LD_PRELOAD library), checked before any run. "
        "Each run must be served by its allocator (larson's malloc resolved, by dladdr, to that "
        "library; hakmem must also show SuperSlabs created) or it counts as failed. An "
        "LD_PRELOAD in your environment is not passed to the runs. With --stability, run the "
        "stability protocol instead "
        "(4T high contention RUNS times, then 1T, 2T and 4T low contention) and print a "
        "pass/fail table. Exit 1 if any run failed.",
        epilog="examples: hakfuzz larson 3 8 128 1024 100 12345 2 "
        "--allocator hakmem,glibc,mimalloc --repeat 3; "
        "hakfuzz larson --stability --allocator ./build/libmyalloc.so --runs 3")
    parser.add_argument("larson_args", nargs="*", metavar="ARG",
                        help="larson's seven arguments (not with --stability)")
    parser.add_argument("--allocator", default=None,
                        help="comma list of names (" + ", ".join(ALLOCATORS) + ") or paths of "
                        "shared libraries that replace malloc (default hakmem,glibc; with "
                        "--stability one allocator, default hakmem)")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="runs per allocator (default 3)")
    parser.add_argument("--variant", default="release",
                        help="hakmem build variant: " + ", ".join(_VARIANTS) + " (default release)")
    parser.add_argument("--stability", action="store_true",
                        help="run the stability protocol (pass/fail table)")
    parser.add_argument("--runs", type=positive_int, default=20,
                        help="--stability: runs of the 4T high contention test (default 20)")
    parser.add_argument("--other-runs", type=non_negative_int, default=3,
                        help="--stability: runs of each other test (default 3)")
    parser.add_argument("--seconds", type=positive_float, default=10.0,
                        help="--stability: seconds per run (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _allocators(args: argparse.Namespace) -> tuple[str, ...]:

    default = "hakmem" if args.stability else "hakmem,glibc"
    try:
        names = parse_allocators(args.allocator if args.allocator is not None else default)
    except ValueError as exc:
        raise UsageError(f"hakfuzz larson: --allocator: {exc}") from None
    if args.stability and len(names) != 1:
        raise UsageError("hakfuzz larson: --stability runs one allocator (got "
                         f"{','.join(names)})")
    return names


def _prepare(args: argparse.Namespace, allocators: tuple[str, ...]) -> dict[str, Launch]:
    """Every allocator ready to run, its library proven to serve malloc, before any run."""
    err = console(stderr=True)
    if err.is_terminal:  # a first build takes a while; a log needs only the outcome
        err.print(f"preparing {', '.join(allocators)} ({args.variant})...", style="dim",
                  markup=False, highlight=False, soft_wrap=True)
    try:
        launches = prepare_all(allocators, args.variant)
    except TargetError as exc:  # one line, before anything else is printed
        raise UsageError(f"hakfuzz larson: --allocator {exc}") from None
    notice = inherited_preload_notice("hakfuzz larson")
    if notice is not None:
        err.print(notice, style="yellow", markup=False, highlight=False, soft_wrap=True)
    for launch in launches.values():
        what = launch.target.describe() if launch.target is not None else \
            f"{launch.allocator}: {launch.binary.name} linked with hakmem"
        err.print(f"  {what}", style="dim", markup=False, highlight=False, soft_wrap=True)
    return launches


def _check(args: argparse.Namespace) -> None:
    if args.variant not in _VARIANTS:
        raise UsageError(f"hakfuzz larson: unknown variant {args.variant!r} "
                         f"(choose from {', '.join(_VARIANTS)})")
    if args.stability and args.larson_args:
        raise UsageError("hakfuzz larson: --stability takes no larson arguments "
                         f"(got {' '.join(args.larson_args)})")


def run(args: argparse.Namespace) -> int:
    """Compare allocators, or run the stability protocol."""
    _check(args)
    allocators = _allocators(args)
    if args.stability:
        return _run_stability(args, allocators[0])

    try:
        config = LarsonConfig.parse(args.larson_args)
    except ValueError as exc:
        raise UsageError(f"hakfuzz larson: {exc}") from None
    return _run_compare(args, allocators, config)


def _run_compare(args: argparse.Namespace, allocators: tuple[str, ...],
                 config: LarsonConfig) -> int:


    err = console(stderr=True)
    launches = _prepare(args, allocators)
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=err, disable=not err.is_terminal) as bar:
        task = bar.add_task(config.label(), total=args.repeat * len(allocators))

        def progress(done: int, total: int, result: RunResult) -> None:
            bar.update(task, completed=done, description=f"{config.label()} [{result.allocator}]")
            if not result.ok:
                err.print(f"{result.allocator}: {result.problem}", style="red", markup=False,
                          highlight=False)

        comparison = compare(allocators, config, repeat=args.repeat, variant=args.variant,
                             progress=progress, launches=launches)
    if args.json:
        print(json.dumps(comparison.as_json(), indent=2))
    else:
        print_comparison(comparison)
    return 0 if comparison.ok else 1


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.2f} M"


def print_comparison(comparison: Comparison) -> None:
    """The comparison as a rich table on stdout."""
    table = Table(title=f"{comparison.config.label()} ({comparison.variant}, "
                        f"{comparison.repeat} runs each, interleaved)", title_justify="left")
    for col in ("allocator", "median ops/s", "min", "max", "vs glibc", "peak RSS", "ok",
                "served by"):
        table.add_column(col, justify="left" if col in ("allocator", "served by") else "right",
                         overflow="fold" if col == "served by" else "ellipsis")
    for s in comparison.summaries:
        values = s.throughputs
        ratio = "-" if s.ratio_to_glibc is None else f"{s.ratio_to_glibc:.2f}x"
        rss = "-" if s.peak_rss_kb is None else f"{s.peak_rss_kb / 1024:,.1f} MiB"
        ok = f"{len(s.runs) - s.failures}/{len(s.runs)}"
        table.add_row(s.allocator, _fmt(s.median), _fmt(min(values, default=None)),
                      _fmt(max(values, default=None)), ratio, rss,
                      ok if not s.failures else f"[red]{ok}[/red]",
                      _served(s.runs[-1]) if s.runs else "-")
    console().print(table)


def _served(result: RunResult) -> str:
    """The object that served a run, and hakmem's counters when they are the evidence."""
    if result.evidence.startswith("ss_created="):
        return f"{result.served_by or '?'} ({result.evidence.split(' (')[0]})"
    return result.served_by or result.evidence


def _run_stability(args: argparse.Namespace, allocator: str) -> int:


    tests = tuple(t for t in protocol(args.seconds, args.runs, args.other_runs) if t.runs > 0)
    err = console(stderr=True)
    (launch,) = _prepare(args, (allocator,)).values()
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=err, disable=not err.is_terminal) as bar:
        tasks = {t.name: bar.add_task(t.name, total=t.runs) for t in tests}

        def progress(test: StabilityTest, done: int, result: RunResult) -> None:
            bar.update(tasks[test.name], completed=done)
            if not result.ok:
                err.print(f"{test.name} run {done}: {result.problem}", style="red",
                          markup=False, highlight=False, soft_wrap=True)

        report = run_stability(tests, allocator=launch.allocator, variant=args.variant,
                               progress=progress, launch=launch)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print_stability(report)
    return 0 if report.passed else 1


def print_stability(report: StabilityReport) -> None:
    """The protocol's pass/fail table on stdout."""
    table = Table(title=f"larson stability ({report.allocator}, {report.variant})",
                  title_justify="left")
    for col in ("test", "config", "passed", "median ops/s", "min", "max", "peak RSS", "result"):
        table.add_column(col, justify="left" if col in ("test", "config", "result") else "right")
    for o in report.outcomes:
        s = o.summary
        values = s.throughputs
        rss = "-" if s.peak_rss_kb is None else f"{s.peak_rss_kb / 1024:,.1f} MiB"
        table.add_row(o.test.name, o.test.config.label(),
                      f"{len(s.runs) - s.failures}/{o.test.runs}", _fmt(s.median),
                      _fmt(min(values, default=None)), _fmt(max(values, default=None)), rss,
                      "[green]PASS[/green]" if o.passed else "[red]FAIL[/red]")
    out = console()
    out.print(table)
    served = sorted({r.served_by or "?" for o in report.outcomes for r in o.summary.runs
                     if r.ok})
    if report.target is not None:
        out.print(f"target {report.target.describe()}", markup=False, highlight=False,
                  soft_wrap=True)
    for where in served:
        out.print(f"every run that passed was served by {where}", markup=False,
                  highlight=False, soft_wrap=True)
    for o in report.outcomes:
        for i, r in enumerate(o.summary.runs):
            if not r.ok:
                out.print(f"  {o.test.name} run {i + 1}: {r.problem}", markup=False,
                          highlight=False)
    out.print("[green]PASS[/green]" if report.passed else "[red]FAIL[/red]")
