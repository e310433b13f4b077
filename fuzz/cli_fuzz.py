"""``hakfuzz fuzz``: a time-boxed campaign of every engine on all cores."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hakfuzz._errors import UsageError

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers

_ENGINES = ("hypothesis", "atheris", "parallel")


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz fuzz [--engine E] [--time S] [--jobs N] [--variant V] [--json] [-- ...]``."""
    parser = subparsers.add_parser(
        name,
        help="run a fuzz campaign (hypothesis, atheris, parallel engines)",
        description="Run a time-boxed campaign: worker processes split over the engines, live "
        "progress, crash isolation (every input is journalled before it runs natively; a dead "
        "worker's input becomes a finding and the worker is restarted), deduplication by "
        "signature, minimisation, findings written to corpus/findings/, and a report directory "
        "(report.json, coverage.png). Options after -- go to libFuzzer (atheris). "
        "Exit 1 if anything was found.",
    )
    parser.add_argument(
        "--engine", default="all", help="all, or a comma list of: " + ", ".join(_ENGINES)
    )
    parser.add_argument("--time", type=float, default=60.0, help="seconds of fuzzing (default 60)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: cores; at least one per engine)",
    )
    parser.add_argument("--variant", default="release", help="build variant (default release)")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".hakfuzz"),
        help="journals and defaults for the dirs below (default .hakfuzz)",
    )
    parser.add_argument(
        "--corpus-dir",
        type=Path,
        default=None,
        help="atheris working corpus to keep (default WORKDIR/atheris-corpus)",
    )
    parser.add_argument(
        "--hypothesis-db",
        default=None,
        help="shared example database: a directory (default WORKDIR/hypothesis-db) "
        "or redis://host:port/db for several machines",
    )
    parser.add_argument(
        "--findings",
        type=Path,
        default=Path("corpus/findings"),
        help="where findings are written (default corpus/findings)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="report directory (default WORKDIR/reports/<time>)",
    )
    parser.add_argument(
        "--minimize-time",
        type=float,
        default=30.0,
        help="seconds to minimise each new finding (default 30)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "libfuzzer",
        nargs="*",
        metavar="-- LIBFUZZER_OPTION",
        help="passed to libFuzzer, e.g. -- -max_len=2048 -dict=extra.dict",
    )
    return parser


def _engines(text: str) -> tuple[str, ...]:
    names = _ENGINES if text == "all" else tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if n not in _ENGINES:
            raise UsageError(
                f"hakfuzz fuzz: unknown engine {n!r} (choose from all, {', '.join(_ENGINES)})"
            )
    if not names:
        raise UsageError("hakfuzz fuzz: --engine names no engine")
    return names


def run(args: argparse.Namespace) -> int:
    """Run the campaign; print the summary table or JSON."""
    from rich.console import Console

    from hakfuzz.campaign.report import write_report
    from hakfuzz.campaign.store import FindingStore
    from hakfuzz.campaign.supervisor import CampaignOptions
    from hakfuzz.campaign.triage import triage
    from hakfuzz.native import build
    from hakfuzz.variants import load_module, split, tool

    engines = _engines(args.engine)
    if args.time <= 0:
        raise UsageError("hakfuzz fuzz: --time must be positive")
    if args.jobs < 1:
        raise UsageError("hakfuzz fuzz: --jobs must be at least 1")
    split(args.variant)  # a usage error for an unknown variant or mutant
    err = Console(stderr=True)
    workdir: Path = args.workdir
    # Build once, here, so workers do not race to compile and the clock is fair.
    err.print(f"building hakmem ({args.variant}) and the driver...", style="dim")
    if args.variant in ("asan", "tsan"):
        build(args.variant)  # loads only under its runtime: the workers get that
    else:
        load_module(args.variant)
    if "parallel" in engines:
        tool("hakdriver", args.variant)
    if "atheris" in engines and args.variant == "release":
        from hakfuzz.campaign.engine_atheris import native_coverage_available

        if native_coverage_available():
            build("coverage")
        else:
            err.print("atheris: clang is not installed: Python coverage only (no native edges)")
    seeds = tuple(sorted(Path("corpus").rglob("*.json"))) if Path("corpus").is_dir() else ()
    opts = CampaignOptions(
        engines=engines,
        seconds=args.time,
        jobs=args.jobs,
        variant=args.variant,
        seed=args.seed,
        workdir=workdir,
        corpus_dir=args.corpus_dir or workdir / "atheris-corpus",
        db=args.hypothesis_db or str(workdir / "hypothesis-db"),
        seeds=seeds,
        libfuzzer_args=tuple(args.libfuzzer),
    )
    result = _run_live(opts, err)
    if result.findings:
        err.print(f"minimising {len(result.findings)} finding(s)...", style="dim")
    triaged = triage(
        result.findings,
        FindingStore(args.findings),
        variant=args.variant,
        seconds_each=args.minimize_time,
    )
    report_dir = args.report or workdir / "reports" / time.strftime("%Y%m%d-%H%M%S")
    doc = write_report(report_dir, result, triaged)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _summary(doc)
    return 1 if triaged else 0


def _table(tallies: dict[str, Any], elapsed: float, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("engine", "workers", "execs", "execs/s", "coverage", "findings", "restarts"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, t in tallies.items():
        rate = t.execs / elapsed if elapsed > 0 else 0.0
        table.add_row(
            name,
            str(t.workers),
            f"{t.execs:,}",
            f"{rate:,.1f}",
            f"{t.coverage:,}",
            str(t.findings),
            str(t.restarts),
        )
    return table


def _run_live(opts: Any, err: Any) -> Any:
    from rich.live import Live

    from hakfuzz.campaign.supervisor import Supervisor

    if not err.is_terminal:
        last = [0.0]

        def quiet(tallies: dict[str, Any], elapsed: float) -> None:
            if elapsed - last[0] >= 10:
                last[0] = elapsed
                parts = ", ".join(
                    f"{n} {t.execs:,} execs cov {t.coverage:,} found {t.findings}"
                    for n, t in tallies.items()
                )
                err.print(f"[{elapsed:5.0f}s] {parts}")

        return Supervisor(
            opts, on_update=quiet, on_finding=lambda f: err.print(f"finding: {f.summary()}")
        ).run()
    with Live(console=err, refresh_per_second=4) as live:

        def update(tallies: dict[str, Any], elapsed: float) -> None:
            live.update(
                _table(tallies, elapsed, f"hakfuzz fuzz — {elapsed:.0f}/{opts.seconds:.0f} s")
            )

        return Supervisor(
            opts,
            on_update=update,
            on_finding=lambda f: err.print(f"[red]finding[/red] {f.summary()}"),
        ).run()


def _summary(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=None if sys.stdout.isatty() else 150)  # pipes: no truncated columns
    table = Table(
        title=f"hakfuzz fuzz: {doc['seconds']:.0f} s, variant {doc['variant']}",
        title_justify="left",
    )
    cols = (
        "engine",
        "workers",
        "execs",
        "execs/s",
        "ops",
        "coverage",
        "native edges",
        "findings",
        "restarts",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, t in doc["engines"].items():
        table.add_row(
            name,
            str(t["workers"]),
            f"{t['execs']:,}",
            f"{t['execs_per_sec']:,.1f}",
            f"{t['ops']:,}",
            f"{t['coverage']:,}",
            f"{t['native_edges']:,}" if name == "atheris" else "-",
            str(t["findings"]),
            str(t["restarts"]),
        )
    out.print(table)
    out.print(
        "coverage: hypothesis = distinct (op kind, counters changed) behaviours; atheris = "
        "libFuzzer's features (Python + native edges); parallel = distinct (workload, "
        "counters, verdict) outcomes",
        style="dim",
    )
    for name, t in doc["engines"].items():
        for note in t["notices"]:
            out.print(f"[yellow]{name}[/yellow]: {note}")
    if not doc["findings"]:
        out.print("findings: none")
    for f in doc["findings"]:
        rate = (
            "" if f["reproduction_rate"] is None else f", reproduces {f['reproduction_rate']:.0%}"
        )
        out.print(
            f"[red]{f['signature']}[/red] ({f['engine']}, {f['ops_before']} -> {f['ops']} ops"
            f"{rate}): {f['message']}\n  {f['replay']}"
        )
    out.print(f"report: {doc['report_dir']}/report.json, coverage.png")
