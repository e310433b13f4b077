"""``hakfuzz preload -- CMD ARGS...``: a real program under ``LD_PRELOAD=libhakmem.so``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from hakfuzz._argtypes import positive_float
from hakfuzz._errors import UsageError

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers
    from hakfuzz.larson.preload import PreloadComparison, PreloadRun


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz preload [--variant V] [--compare] [--stats] [--json] -- CMD ARGS...``."""
    parser = subparsers.add_parser(
        name, help="run a real program with the allocator preloaded (optionally vs glibc)",
        description="Run CMD with LD_PRELOAD=libhakmem.so and exit with its status. With "
        "--compare, run it under glibc too (same arguments, same stdin) and compare exit "
        "status and stdout (and stderr with --stderr); exit 1 if they differ. hakmem's "
        "counters (HAKMEM_STATS=1) show whether it really served the program.",
        epilog="example: hakfuzz preload --compare -- sort -n numbers.txt")
    parser.add_argument("--variant", default="release",
                        help="release or debug (sanitizer builds cannot be preloaded)")
    parser.add_argument("--compare", action="store_true",
                        help="also run under glibc and compare status and output")
    parser.add_argument("--stderr", action="store_true",
                        help="with --compare: compare stderr too (without the stats lines)")
    parser.add_argument("--stats", action="store_true",
                        help="print hakmem's counters at exit (HAKMEM_STATS=1)")
    parser.add_argument("--timeout", type=positive_float, default=600.0,
                        help="seconds per run when output is captured (default 600)")
    parser.add_argument("--json", action="store_true",
                        help="capture the output and print one JSON document")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                        help="the program and its arguments, after --")
    return parser


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("hakfuzz preload: no command given "
                         "(usage: hakfuzz preload -- CMD ARGS...)")
    return command


def run(args: argparse.Namespace) -> int:
    """Run the command preloaded; compare with glibc on request."""
    from hakfuzz.larson.preload import PRELOAD_VARIANTS, check_command

    if args.variant not in PRELOAD_VARIANTS:
        raise UsageError(f"hakfuzz preload: variant {args.variant!r} cannot be preloaded (a "
                         "sanitizer runtime defines malloc itself and would shadow hakmem's); "
                         f"choose from {', '.join(PRELOAD_VARIANTS)}")
    command = _command(args)
    check_command(command[0])  # exit 127 or 126, as a shell would, before building anything
    if args.compare:
        return _compare(args, command)
    if args.json:
        return _captured(args, command)
    return _passthrough(args, command)


def _passthrough(args: argparse.Namespace, command: list[str]) -> int:
    from hakfuzz.larson.preload import preload_env, spawn_error

    env = preload_env("hakmem", args.variant)
    if not args.stats:
        env.pop("HAKMEM_STATS")
    try:
        return subprocess.call(command, env=env)
    except OSError as exc:  # it went away since it was checked
        raise spawn_error(command[0], exc) from None


def _stdin() -> bytes | None:
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.buffer.read()


def _captured(args: argparse.Namespace, command: list[str]) -> int:
    from hakfuzz.larson.preload import run_program

    result = run_program(command, variant=args.variant, stdin=_stdin(), timeout=args.timeout)
    print(json.dumps({"argv": command, **result.as_json(), "stdout": result.stdout}, indent=2))
    return result.measured.returncode if result.measured.returncode >= 0 else 1


def _compare(args: argparse.Namespace, command: list[str]) -> int:
    from rich.console import Console

    from hakfuzz.larson.preload import compare_program

    err = Console(stderr=True)
    err.print(f"running {' '.join(command)} under glibc, then hakmem...", style="dim")
    result = compare_program(command, variant=args.variant, stdin=_stdin(), timeout=args.timeout,
                             compare_stderr=args.stderr)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        _print_comparison(result, args.stderr)
    return 0 if result.same else 1


def _served(run: PreloadRun) -> str:
    if run.allocator == "glibc":
        return "-"
    if not run.stats:
        return "[yellow]no stats printed[/yellow]"
    if run.served:
        return f"yes: ss_created={run.ss_created} in {len(run.stats)} process(es)"
    return "[yellow]no SuperSlab created: nothing tiny was allocated[/yellow]"


def _print_comparison(result: PreloadComparison, with_stderr: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="hakfuzz preload --compare: " + " ".join(result.argv)[:100],
                  title_justify="left")
    # No peak RSS column: wait4's ru_maxrss of a child of Python never reads below
    # Python's own (Linux keeps the high-water mark across exec).
    for col in ("allocator", "status", "stdout bytes", "seconds", "hakmem served"):
        table.add_column(col, justify="left" if col in ("allocator", "hakmem served") else "right")
    for run in (result.glibc, result.hakmem):
        m = run.measured
        table.add_row(run.allocator, m.describe_status(), f"{len(m.stdout):,}",
                      f"{m.wall_seconds:.2f}", _served(run))
    out = Console()
    out.print(table)
    if result.same:
        out.print("[green]same[/green] exit status and output" +
                  (" (stdout and stderr)" if with_stderr else " (stdout)"))
    for d in result.differences:
        out.print(f"[red]differs[/red] {d}")
    tail = result.hakmem.stderr.strip()
    if not result.same and tail:
        out.print("hakmem stderr (last lines):")
        out.print("\n".join(tail.splitlines()[-5:]), markup=False, highlight=False)
    if os.environ.get("LD_PRELOAD"):
        out.print("note: LD_PRELOAD from the environment was replaced for both runs", style="dim")
