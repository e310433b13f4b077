"""``hakfuzz replay [PATH...]``: replay corpus programs on model and native."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz.campaign.foreign import Resolver
from hakfuzz.campaign.store import read_meta
from hakfuzz.program import ProgramError, load_program
from hakfuzz.replay import corpus_files, parse_shard, replay, replay_foreign, shard
from hakfuzz.variants import split

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hakfuzz.cli import Subparsers
    from hakfuzz.program import Program
    from hakfuzz.replay import ReplayResult
    from hakfuzz.targets import Target


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
    parser.add_argument(
        "--allocator",
        default=None,
        metavar="NAME|PATH",
        help="run every file on this allocator: hakmem (the model and the driver), glibc, "
        "jemalloc, mimalloc, tcmalloc or the path of an LD_PRELOAD library (the foreign "
        "driver). Default: the target a finding records (said on stderr when its library "
        "has changed; an error, exit 2, when it is gone), else hakmem",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _split_foreign(
    files: list[Path], allocator: str | None
) -> tuple[list[Path], list[tuple[Path, Program, Target]], dict[Path, dict[str, object]]]:
    """Files for the built-in replay, files to run on a foreign target, and each one's notes.

    Every target is resolved (and a gone library refused) before anything runs.
    """
    resolver = Resolver(allocator, "hakfuzz replay")
    if allocator is None and not any(_records_target(f) for f in files):
        return files, [], {}
    ours: list[Path] = []
    foreign: list[tuple[Path, Program, Target]] = []
    notes: dict[Path, dict[str, object]] = {}
    for path in files:
        try:
            program = load_program(path)
        except ProgramError:
            ours.append(path)  # the built-in replay names the problem in its row
            continue
        chosen = resolver.choose(program, path)
        notes[path] = chosen.as_json()
        if chosen.words is not None:
            print(chosen.words, file=sys.stderr, flush=True)
        if chosen.target is None:
            ours.append(path)
        else:
            foreign.append((path, program, chosen.target))
    return ours, foreign, notes


def _target_name(note: dict[str, object] | None) -> str | None:
    """The foreign target a row ran on, by name; None for the built-in hakmem."""
    target = (note or {}).get("target")
    return str(target["name"]) if isinstance(target, dict) else None


def _records_target(path: Path) -> bool:
    try:
        return '"target"' in path.read_text(errors="replace")
    except OSError:
        return False


def program_files(paths: list[str]) -> list[Path]:
    """The program files to replay; a path that names none is a usage error."""
    found: list[Path] = []
    for raw in paths:
        files = corpus_files([raw])
        if not files:
            raise UsageError(f"hakfuzz replay: {raw}: no program files (*.json) there")
        found.extend(files)
    return found


def _chain(ours: Iterator[ReplayResult], foreign: list[tuple[Path, Program, Target]],
           repeat: int) -> Iterator[ReplayResult]:
    """The built-in replay's rows, then one row per file run on its foreign target."""
    yield from ours
    for path, program, target in foreign:
        yield replay_foreign(path, program, read_meta(path), target, repeat=repeat)


def run(args: argparse.Namespace) -> int:
    """Replay and report."""
    if args.repeat < 1:
        raise UsageError(f"hakfuzz replay: --repeat must be at least 1, got {args.repeat}")
    if args.variant is not None:
        split(args.variant)
    files = program_files(args.paths)
    if args.shard is not None:

        try:
            files = shard(files, *parse_shard(args.shard))
        except UsageError as exc:
            raise UsageError(f"hakfuzz replay: --shard: {exc}") from None
    results = []
    err = console(stderr=True)
    files, foreign, notes = _split_foreign(files, args.allocator)
    for result in _chain(
        replay(
            files,
            variant=args.variant,
            parallel=not args.no_parallel,
            repeat=args.repeat,
            isolate=args.isolate,
        ),
        foreign,
        args.repeat,
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
                    "results": [{**r.as_json(), **notes.get(r.path, {})} for r in results],
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
                f"- (no model for {on})"
                if (on := _target_name(notes.get(r.path))) is not None
                else "[green]agree[/green]"
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
