"""``hakfuzz replay [PATH...]``: replay corpus programs on model and native."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hakfuzz._errors import UsageError

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz replay [PATH...] [--variant V] [--repeat K] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="replay corpus programs (default corpus/) and print a pass/fail table",
        description="Replay every program file under PATH (default: corpus/) differentially "
        "against the model; programs with several threads also run on real pthreads in the "
        "C driver. Every file gets a row, whatever happens: a program that crashes the "
        "allocator is a failed row naming the crash, a malformed file a row naming the "
        "problem (also on stderr). Exit 0 when every program passes, 1 if any fails, 2 if "
        "any file is malformed (after replaying all the others) or for a usage error: a "
        "missing PATH, or a directory without a program file (*.json).",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        default=["corpus"],
        metavar="PATH",
        help="program files or directories (default: corpus)",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="build variant (default: a finding's own, else release)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="driver runs per multi-threaded program (default 1)"
    )
    parser.add_argument(
        "--no-parallel", action="store_true", help="skip the driver runs of multi-threaded programs"
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="run every program in a fresh interpreter of its own (crash findings always "
        "are); without it, programs share one forked child, replaced when one crashes it",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="replay only the K-th of N shares of the files (every N-th from the K-th), so N "
        "CI jobs replay the corpus once between them",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def program_files(paths: list[str]) -> list[Path]:
    """The program files to replay; a path that names none is a usage error."""
    from hakfuzz.replay import corpus_files

    found: list[Path] = []
    for raw in paths:
        files = corpus_files([raw])
        if not files:
            raise UsageError(f"hakfuzz replay: {raw}: no program files (*.json) there")
        found.extend(files)
    return found


def run(args: argparse.Namespace) -> int:
    """Replay and report."""
    import sys

    from rich.markup import escape
    from rich.table import Table

    from hakfuzz._console import console
    from hakfuzz.replay import replay
    from hakfuzz.variants import split

    if args.repeat < 1:
        raise UsageError(f"hakfuzz replay: --repeat must be at least 1, got {args.repeat}")
    if args.variant is not None:
        split(args.variant)
    files = program_files(args.paths)
    if args.shard is not None:
        from hakfuzz.replay import parse_shard, shard

        try:
            files = shard(files, *parse_shard(args.shard))
        except UsageError as exc:
            raise UsageError(f"hakfuzz replay: --shard: {exc}") from None
    results = []
    err = console(stderr=True)
    for result in replay(
        files,
        variant=args.variant,
        parallel=not args.no_parallel,
        repeat=args.repeat,
        isolate=args.isolate,
    ):
        results.append(result)
        if result.error is not None:
            print(f"hakfuzz replay: {result.error}", file=sys.stderr, flush=True)
        elif not args.json and err.is_terminal:
            err.print(f"{'ok  ' if result.ok else 'FAIL'} {escape(str(result.path))}", style="dim")
    failed = [r for r in results if not r.ok]
    malformed = [r for r in results if r.malformed]
    if args.json:
        print(
            json.dumps(
                {
                    "programs": len(results),
                    "passed": len(results) - len(failed),
                    "failed": len(failed),
                    "malformed": len(malformed),
                    "results": [r.as_json() for r in results],
                },
                indent=2,
            )
        )
    else:
        table = Table(title=f"hakfuzz replay ({len(results)} programs)", title_justify="left")
        for col in ("program", "ops", "threads", "model vs native", "pthreads", "s"):
            table.add_column(col, overflow="fold")
        for r in results:
            if r.error is not None:
                reason = r.error.removeprefix(f"{r.path}: ")  # the row names the file already
                bad = f"[red]malformed: {escape(reason)}[/red]"
                table.add_row(escape(str(r.path)), "-", "-", bad, "-", "-")
                continue
            table.add_row(
                escape(str(r.path)),
                str(r.ops),
                str(r.threads),
                "[green]agree[/green]"
                if r.differential is None
                else f"[red]{escape(r.differential)}[/red]",
                "-"
                if not r.ran_parallel
                else (
                    "[green]pass[/green]"
                    if r.parallel is None
                    else f"[red]{escape(r.parallel)}[/red]"
                ),
                f"{r.seconds:.2f}",
            )
        out = console()
        out.print(table)
        summary = f"{len(results) - len(failed)} passed, {len(failed)} failed"
        out.print(summary + (f" ({len(malformed)} malformed)" if malformed else ""))
    if malformed:
        return 2
    return 1 if failed else 0
