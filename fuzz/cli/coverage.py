"""``hakfuzz coverage [PATH...]``: the lines of native/src/ that no program runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from hakfuzz._argtypes import positive_float
from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz.campaign.gaps import find_inputs, measure

if TYPE_CHECKING:
    from hakfuzz.campaign.gaps import CoverageReport
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz coverage [PATH...] [--workdir W] [--timeout S] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="replay programs on a gcov build and list the native lines none of them runs",
        description="Replay every program under PATH (default: corpus) and the atheris corpus "
        "of the campaign's work directory on the gcov build (gcc --coverage): differentially "
        "in a forked child, and multi-threaded programs also in the C driver. Then print, "
        "per source file of native/src/, the executable lines that ran and the ranges that "
        "did not, each within one function (slab.c:120-128 in _hak_retire): the next work "
        "for the engines. Sources no program can run in these builds (the LD_PRELOAD shim, "
        "the ASan support) are listed apart. *.json files are programs; files without a "
        "suffix are atheris inputs; the Hypothesis example database holds no programs and "
        "is skipped. Exit 0 with a report, 2 for a usage error.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="program files or directories (default: corpus, if it exists)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".hakfuzz"),
        help="campaign work directory whose atheris-corpus is replayed too, if it is there "
        "(default .hakfuzz)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=60.0,
        help="seconds one program may run before it counts as hung (default 60)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def run(args: argparse.Namespace) -> int:
    """Replay on the gcov build and report the gaps."""
    paths = args.paths or ([Path("corpus")] if Path("corpus").exists() else [])
    inputs = find_inputs(paths, args.workdir)
    if not inputs.programs:
        looked = ", ".join(map(str, [*paths, args.workdir / "atheris-corpus"]))
        raise UsageError(f"hakfuzz coverage: no programs to replay (looked in {looked})")
    err = console(stderr=True)
    progress = (lambda line: err.print(line, style="dim")) if err.is_terminal else None
    report = measure(inputs, timeout=args.timeout, progress=progress)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print(report)
    return 0


def _print(report: CoverageReport) -> None:


    out = console()
    table = Table(
        title=f"hakfuzz coverage: {report.programs} programs, {report.driver_runs} driver runs "
        f"({report.gcov})",
        title_justify="left",
    )
    table.add_column("file")
    for column in ("lines run", "%", "ranges not run", "lines not run"):
        table.add_column(column, justify="right")
    for f in report.files:
        table.add_row(
            f.file,
            f"{f.executed}/{f.executable}",
            _percent(f.executed, f.executable),
            str(len(f.gaps)),
            str(f.executable - f.executed),
        )
    table.add_section()
    table.add_row(
        "total",
        f"{report.executed}/{report.executable}",
        _percent(report.executed, report.executable),
        str(len(report.gaps)),
        str(report.executable - report.executed),
    )
    out.print(table)
    gaps = report.gaps
    if gaps:
        lines = sum(g.lines for g in gaps)
        out.print(f"\nNot run ({len(gaps)} ranges, {lines} lines): the next work")
        for gap in gaps:
            size = f"{gap.lines} line{'s' if gap.lines != 1 else ''}"
            never = ", never called" if not gap.called else ""
            out.print(f"  {escape(str(gap))}  ({size}{never})")
    else:
        out.print("\nEvery executable line ran.")
    if report.outside:
        out.print("\nNot in these builds (not counted above):")
        for o in report.outside:
            out.print(f"  {o.file}: {escape(o.reason)}")
    for title, notes in (
        ("Crashed or hung (counts of that run are lost)", report.crashed),
        ("Malformed (not replayed)", report.malformed),
        ("Skipped", report.skipped),
    ):
        if notes:
            out.print(f"\n{title}:")
            for note in notes:
                out.print(f"  {escape(note.path)}: {escape(note.reason)}")


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f}" if whole else "-"
