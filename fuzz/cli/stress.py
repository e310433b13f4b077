"""``hakfuzz stress``: mixed glibc/hakmem workloads on real pthreads."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hakfuzz._argtypes import positive_float, positive_int
from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz._paths import fallback_dir, writable_dir
from hakfuzz.engines.parallel.stress import StressOptions, run_stress
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.program import save_program
from hakfuzz.targets import (
    PRELOAD_VARIANTS,
    check_env,
    child_env,
    inherited_preload_notice,
    resolve_for,
)
from hakfuzz.variants import tool

if TYPE_CHECKING:
    from rich.console import Console

    from hakfuzz.cli import Subparsers
    from hakfuzz.findings import Finding
    from hakfuzz.targets import Target

_VARIANTS = ("release", "debug", "asan", "tsan")


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz stress --threads N --ops M --libc-ratio R --seed S ...``."""
    parser = subparsers.add_parser(
        name,
        help="run seeded multi-threaded workloads in the C driver",
        description="Generate seeded programs that mix glibc and hakmem pointers across "
        "threads (workloads: " + ", ".join(WORKLOADS) + "), run each one REPEAT times on "
        "real pthreads in a child process, and report every finding (signal, failed oracle, "
        "broken invariant). Exit 1 if anything was found.",
    )
    parser.add_argument("--threads", type=int, default=4, help="program threads (1..16; default 4)")
    parser.add_argument(
        "--ops", type=positive_int, default=200_000, help="total ops generated (default 200000)"
    )
    parser.add_argument(
        "--libc-ratio",
        type=float,
        default=0.3,
        help="share of allocations made by glibc and freed by hak_free (0..1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument(
        "--workload", default="all", help="a workload name, a comma list, or 'all' (default)"
    )
    parser.add_argument(
        "--repeat", type=positive_int, default=1, help="runs per program (default 1)"
    )
    parser.add_argument(
        "--variant", default="release", help="build variant: " + ", ".join(_VARIANTS)
    )
    parser.add_argument(
        "--allocator",
        default="hakmem",
        metavar="NAME|PATH",
        help="hakmem (default: the driver linked with hakmem, every oracle); glibc, jemalloc, "
        "mimalloc, tcmalloc or the path of an LD_PRELOAD library: the foreign driver under "
        "that allocator, with the allocator-neutral oracles (docs/targets.md)",
    )
    parser.add_argument(
        "--foreign-frees",
        choices=("on", "off"),
        default=None,
        help="with a foreign --allocator: glibc's blocks are freed by the allocator (on, the "
        "default: pointers it did not make) or by glibc (off)",
    )
    parser.add_argument(
        "--minimize-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="with a foreign --allocator: seconds to shrink each finding's program by re-running "
        "the driver (default 30; 0 keeps the program as found)",
    )
    parser.add_argument(
        "--program-ops", type=int, default=20_000, help="ops per program (max 32768)"
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=300.0, help="seconds per driver run (default 300)"
    )
    parser.add_argument(
        "--save",
        metavar="DIR",
        default=None,
        help="write each finding's program to DIR/<signature>.json (checked before any run; "
        "if writing fails later, the programs go to a temporary directory, named at the end)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _options(args: argparse.Namespace) -> object:

    if not 1 <= args.threads <= 16:
        raise UsageError(f"hakfuzz stress: --threads {args.threads} is not in 1..16")
    if not 0.0 <= args.libc_ratio <= 1.0:
        raise UsageError(f"hakfuzz stress: --libc-ratio {args.libc_ratio} is not in 0..1")
    if not 1 <= args.program_ops <= 32768:
        raise UsageError("hakfuzz stress: --program-ops must be in 1..32768")
    if args.variant not in _VARIANTS and ":" not in args.variant:
        raise UsageError(
            f"hakfuzz stress: unknown variant {args.variant!r} (choose from {', '.join(_VARIANTS)})"
        )
    names = (
        tuple(WORKLOADS)
        if args.workload == "all"
        else tuple(n.strip() for n in args.workload.split(",") if n.strip())
    )
    for n in names:
        if n not in WORKLOADS:
            raise UsageError(
                f"hakfuzz stress: unknown workload {n!r} (choose from {', '.join(WORKLOADS)}, all)"
            )
    target = None
    if args.allocator != "hakmem":
        target = _target(args)
    elif args.foreign_frees is not None:
        raise UsageError(
            "hakfuzz stress: --foreign-frees needs a foreign --allocator (hakmem's driver always "
            "frees glibc's blocks through hak_free)"
        )
    return StressOptions(
        args.threads,
        args.ops,
        args.libc_ratio,
        args.seed,
        names,
        args.repeat,
        args.variant,
        args.program_ops,
        args.timeout,
        args.allocator,
        target,
        args.foreign_frees != "off",
        max(0.0, args.minimize_seconds),
    )


def _target(args: argparse.Namespace) -> Target:
    """The foreign target, proven to load and serve malloc: any problem is one line, exit 2."""
    if args.variant not in PRELOAD_VARIANTS:
        raise UsageError(
            f"hakfuzz stress: --variant {args.variant} cannot run under --allocator "
            f"{args.allocator} (a sanitizer's runtime must be loaded before any preloaded "
            f"allocator); choose from {', '.join(PRELOAD_VARIANTS)}"
        )
    return resolve_for("hakfuzz stress", args.allocator, args.variant)


def run(args: argparse.Namespace) -> int:
    """Build the driver, run the campaign, print the table or JSON."""
    opts = _options(args)
    assert isinstance(opts, StressOptions)
    # A finding that cannot be written is lost: prove --save works before any run.
    saver = _Saver(writable_dir(Path(args.save), "hakfuzz stress: --save")) if args.save else None
    err = console(stderr=True)
    err.print(f"building the driver ({opts.variant})...", style="dim")
    if opts.target is None:
        driver = tool("hakdriver", opts.variant)
    else:
        driver = tool("hakdriver-foreign", opts.variant)
        notice = inherited_preload_notice("hakfuzz stress")
        if notice is not None:
            err.print(notice, soft_wrap=True, markup=False)
        seen = check_env(opts.target, child_env(opts.target))
        if not seen.ok:
            raise UsageError(f"hakfuzz stress: --allocator {args.allocator}: {seen.problem}")
        err.print(f"target {opts.target.describe()}, foreign frees "
                  f"{'on' if opts.foreign_frees else 'off'}", style="dim", markup=False)

    def on_finding(f: Finding) -> None:
        err.print(f"[red]finding[/red] {f.summary()}")
        if saver is not None:
            saver.save(f, err)

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        tasks = {
            n: bar.add_task(n, total=max(1, opts.ops // len(opts.workloads)))
            for n in opts.workloads
        }

        def progress(name: str, done: int, total: int) -> None:
            bar.update(tasks[name], completed=done, total=total)

        report = run_stress(opts, driver, progress=progress, on_finding=on_finding)

    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_table(report.as_json())
    if saver is not None and saver.fallback is not None:
        err.print(
            f"[yellow]could not write to {saver.directory}: "
            f"the findings' programs are in {saver.fallback}[/yellow]",
            soft_wrap=True,  # a path broken over lines cannot be copied
        )
    return 1 if report.findings else 0


class _Saver:
    """Writes findings' programs to ``--save``; to a temporary directory if that fails."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fallback: Path | None = None

    def save(self, finding: Finding, err: Console) -> None:

        name = f"{finding.signature}.json"
        if self.fallback is None:
            try:
                save_program(finding.program, self.directory / name)
            except OSError as exc:
                self.fallback = fallback_dir("stress")
                err.print(
                    f"[yellow]cannot write {self.directory / name} "
                    f"({exc.strerror or exc}); saving to {self.fallback} instead[/yellow]",
                    soft_wrap=True,
                )
            else:
                err.print(f"  saved {self.directory / name}", soft_wrap=True)
                return
        save_program(finding.program, self.fallback / name)
        err.print(f"  saved {self.fallback / name}", soft_wrap=True)


def _print_table(doc: dict[str, object]) -> None:


    frees = f", foreign frees {doc['foreign_frees']}" if "foreign_frees" in doc else ""
    table = Table(
        title=f"hakfuzz stress ({doc['allocator']}, {doc['variant']}, "
        f"{doc['threads']} threads, repeat {doc['repeat']}{frees})",
        title_justify="left",
    )
    for col in ("workload", "programs", "runs", "ops", "ops/s"):
        table.add_column(col, justify="right" if col != "workload" else "left")
    workloads = doc["workloads"]
    assert isinstance(workloads, dict)
    for name, t in workloads.items():
        table.add_row(
            name, str(t["programs"]), str(t["runs"]), f"{t['ops']:,}", f"{t['ops_per_sec']:,.0f}"
        )
    table.add_row(
        "total", "", str(doc["runs"]), f"{doc['ops']:,}", f"{doc['ops_per_sec']:,.0f}", style="bold"
    )
    out = console()
    out.print(table)
    for name, t in workloads.items():
        if t.get("lifetimes"):
            out.print(f"{name}: {t['lifetimes']:,} thread lifetimes, at most "
                      f"{t['peak_threads']} pthreads at once", markup=False)
    if "served_by" in doc:
        out.print(f"every run was served by {doc['served_by']}", soft_wrap=True, markup=False)
    findings = doc["findings"]
    assert isinstance(findings, list)
    out.print(f"findings: {len(findings)}" + ("" if findings else " (none)"))
    for f in findings:
        out.print(f"  {f['signature']}: {f['message']}", soft_wrap=True, markup=False)
        if "original_ops" in f:
            out.print(f"    minimised: {f['ops']} ops, {f['threads']} threads (from "
                      f"{f['original_ops']} ops)", markup=False)
    sys.stdout.flush()
