"""``hakfuzz preload [--allocator A] -- CMD ARGS...``: a real program, an allocator preloaded."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from hakfuzz._argtypes import positive_float
from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz.perf.larson.preload import (
    check_command,
    compare_program,
    preload_env,
    run_program,
    spawn_error,
)
from hakfuzz.targets import (
    PRELOAD_VARIANTS,
    TargetKind,
    check_env,
    inherited_preload_notice,
    resolve_for,
)

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers
    from hakfuzz.perf.larson.preload import PreloadComparison, PreloadRun
    from hakfuzz.targets import Target


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz preload [--allocator A] [--variant V] [--compare] [--json] -- CMD ARGS...``."""
    parser = subparsers.add_parser(
        name, help="run a real program with an allocator preloaded (optionally vs glibc)",
        description="Run CMD with LD_PRELOAD of the allocator (default libhakmem.so) and exit "
        "with its status. The allocator is a name or the path of a shared library that "
        "replaces malloc; it is checked before the run, and the run's environment is checked "
        "to serve malloc from it (dladdr), which is said on stderr. With --compare, run it "
        "under glibc too (same arguments, same stdin) and compare exit status and stdout (and "
        "stderr with --stderr); exit 1 if they differ. hakmem's counters (HAKMEM_STATS=1) "
        "show whether it really served the program. An LD_PRELOAD in your environment is not "
        "passed on.",
        epilog="examples: hakfuzz preload --compare -- sort -n numbers.txt; "
        "hakfuzz preload --allocator ./libmyalloc.so -- python3 -c 'print(1)'")
    parser.add_argument("--allocator", default="hakmem", metavar="NAME|PATH",
                        help="hakmem (default), glibc, jemalloc, mimalloc, tcmalloc, or the path "
                        "of a shared library that replaces malloc")
    parser.add_argument("--variant", default="release",
                        help="hakmem's build: release or debug (sanitizer builds cannot be "
                        "preloaded)")
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
    if args.variant not in PRELOAD_VARIANTS:
        raise UsageError(f"hakfuzz preload: variant {args.variant!r} cannot be preloaded (a "
                         "sanitizer runtime defines malloc itself and would shadow hakmem's); "
                         f"choose from {', '.join(PRELOAD_VARIANTS)}")
    command = _command(args)
    check_command(command[0])  # exit 127 or 126, as a shell would, before building anything
    target = _target(args)
    notice = inherited_preload_notice("hakfuzz preload")
    if notice is not None:
        print(notice, file=sys.stderr)
    if args.compare:
        return _compare(args, command, target)
    if args.json:
        return _captured(args, command, target)
    return _passthrough(args, command, target)


def _target(args: argparse.Namespace) -> Target:

    return resolve_for("hakfuzz preload", args.allocator, args.variant)


def _passthrough(args: argparse.Namespace, command: list[str], target: Target) -> int:

    env = preload_env(target, args.variant)
    env.pop("HAKMEM_STATS")
    verdict = check_env(target, env)
    if not verdict.ok:
        raise UsageError(f"hakfuzz preload: --allocator {target.library}: {verdict.problem}")
    print(f"hakfuzz preload: malloc served by {verdict.real_path} ({target.name}, sha256 "
          f"{target.sha256[:12]})", file=sys.stderr, flush=True)
    if args.stats:
        env["HAKMEM_STATS"] = "1"
    try:
        return subprocess.call(command, env=env)
    except OSError as exc:  # it went away since it was checked
        raise spawn_error(command[0], exc) from None


def _stdin() -> bytes | None:
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.buffer.read()


def _captured(args: argparse.Namespace, command: list[str], target: Target) -> int:

    result = run_program(command, allocator=target, variant=args.variant, stdin=_stdin(),
                         timeout=args.timeout)
    print(json.dumps({"argv": command, **result.as_json(), "stdout": result.stdout}, indent=2))
    return result.measured.returncode if result.measured.returncode >= 0 else 1


def _compare(args: argparse.Namespace, command: list[str], target: Target) -> int:

    err = console(stderr=True)
    err.print(f"running {' '.join(command)} under glibc, then {target.name}...", style="dim",
              markup=False, highlight=False)
    result = compare_program(command, allocator=target, variant=args.variant, stdin=_stdin(),
                             timeout=args.timeout, compare_stderr=args.stderr)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        _print_comparison(result, args.stderr)
    return 0 if result.same else 1


def _served(run: PreloadRun) -> str:
    """The object serving malloc in the run's environment, and hakmem's counters."""
    if not run.check.ok:
        return f"[red]NO: {escape(run.check.problem or '')}[/red]"
    where = escape(run.check.real_path or "?")
    if run.target.kind is not TargetKind.HAKMEM:
        return where
    if not run.stats:
        return f"{where} [yellow](no stats printed)[/yellow]"
    if run.served:
        return f"{where} (ss_created={run.ss_created} in {len(run.stats)} process(es))"
    return f"{where} [yellow](no SuperSlab created: nothing tiny was allocated)[/yellow]"


def _print_comparison(result: PreloadComparison, with_stderr: bool) -> None:


    table = Table(title="hakfuzz preload --compare: " + " ".join(result.argv)[:100],
                  title_justify="left")
    # No peak RSS column: wait4's ru_maxrss of a child of Python never reads below
    # Python's own (Linux keeps the high-water mark across exec).
    for col in ("allocator", "status", "stdout bytes", "seconds", "malloc served by"):
        table.add_column(col, justify="left" if col in ("allocator", "malloc served by")
                         else "right", overflow="fold")
    for run in (result.glibc, result.target):
        m = run.measured
        table.add_row(escape(run.allocator), m.describe_status(), f"{len(m.stdout):,}",
                      f"{m.wall_seconds:.2f}", _served(run))
    out = console()
    out.print(table)
    if result.same:
        out.print("[green]same[/green] exit status and output" +
                  (" (stdout and stderr)" if with_stderr else " (stdout)"))
    for d in result.differences:
        out.print(f"[red]differs[/red] {escape(d)}")
    tail = result.target.stderr.strip()
    if not result.same and tail:
        out.print(f"{escape(result.target.allocator)} stderr (last lines):")
        out.print("\n".join(tail.splitlines()[-5:]), markup=False, highlight=False)
