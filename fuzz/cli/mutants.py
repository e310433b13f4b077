"""``hakfuzz mutants``: show that the campaign kills every mutant (a real bug put back)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hakfuzz._argtypes import parse_names, positive_float, positive_int
from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz._paths import writable_dir
from hakfuzz.engines import ENGINES, parse_engines
from hakfuzz.mutants import KillOptions, MutantResult, run_mutant
from hakfuzz.mutants.kill import NO_HOOKS_ENV
from hakfuzz.mutants.report import mutants_json, print_table
from hakfuzz.native import VARIANTS
from hakfuzz.native._mutants import get_mutant, mutants
from hakfuzz.program import save_program
from hakfuzz.variants import DEFAULT_VARIANTS, MUTANTS_DIR_ENV, MUTANTS_SOURCE_ENV

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers
    from hakfuzz.mutants import KillOptions



def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz mutants [--time S] [--only N,..] [--patches DIR] [--no-replay] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="run the fuzz campaign against each mutant (a real bug put back) until it is killed",
        description="Each mutant re-introduces one real bug class into the allocator. For "
        "each: build it with every --builds flag set, replay the corpus on it (unless "
        "--no-replay), then run the same campaign as hakfuzz fuzz (every engine, every build) "
        "until its first finding or --time runs out; minimise the killing program; print a "
        "table. --no-replay leaves the corpus out entirely (no replay, no seeds), so it "
        "measures the engines alone. Exit 1 if any mutant survives, 2 for bad usage.",
    )
    parser.add_argument(
        "--time",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="seconds of campaign per mutant (default 60; builds not counted)",
    )
    parser.add_argument(
        "--only", default="", metavar="NAME[,NAME]", help="run only these mutants (comma list)"
    )
    parser.add_argument(
        "--engine",
        default="all",
        help="all, or a comma list of: " + ", ".join(ENGINES),
    )
    parser.add_argument(
        "--builds",
        default=",".join(DEFAULT_VARIANTS),
        help="comma list of flags each mutant is built with (default "
        f"{','.join(DEFAULT_VARIANTS)}): release, debug, asan, tsan",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="campaign worker processes (default: cores)",
    )
    parser.add_argument(
        "--no-replay",
        action="store_true",
        help="leave the corpus out: no replay and no seeds (the engines alone)",
    )
    parser.add_argument(
        "--corpus",
        action="append",
        default=None,
        metavar="PATH",
        help="corpus to replay and seed from (default: corpus/regressions of this checkout)",
    )
    parser.add_argument(
        "--patches",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the mutants in DIR (NAME.patch, with NAME.md for a title) instead of "
        "native/mutants",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        metavar="DIR",
        help="the allocator tree the patches apply to, laid out like native/ "
        "(src/ include/ driver/ bench/; default: the shipped native/)",
    )
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    parser.add_argument(
        "--minimise-time",
        type=positive_float,
        default=20.0,
        metavar="S",
        help="seconds of minimisation per killing program (default 20)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep each mutant's campaign (journals, findings) here (default: a temporary dir)",
    )
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="DIR",
        help="write each mutant's killing program to DIR/NAME.json, ready for hakfuzz replay",
    )
    parser.add_argument(
        "--as-foreign",
        action="store_true",
        help="build each mutant as an LD_PRELOAD libhakmem.so (release) and fuzz it as a foreign "
        "allocator: only the engines that apply to one, its hakfuzz_* hooks ignored, no model, "
        "no corpus; shows what the allocator-neutral oracles alone kill",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _default_corpus() -> tuple[Path, ...]:
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / "corpus" / "regressions").is_dir():
            return (base / "corpus" / "regressions",)
    return ()


def _options(args: argparse.Namespace) -> KillOptions:

    engines = parse_engines(args.engine, "hakfuzz mutants")
    builds = parse_names(args.builds, tuple(VARIANTS), "build", "hakfuzz mutants")
    corpus = tuple(Path(p) for p in args.corpus) if args.corpus else _default_corpus()
    for path in corpus:
        if not path.exists():
            raise UsageError(f"hakfuzz mutants: --corpus {path}: no such file or directory")
    return KillOptions(
        seconds=args.time,
        engines=engines,
        builds=builds,
        jobs=args.jobs,
        replay=not args.no_replay and not args.as_foreign,  # a foreign target has no model
        corpus=corpus,
        minimise_seconds=args.minimise_time,
        seed=args.seed,
        as_foreign=args.as_foreign,
    )


def _point_at_patches(args: argparse.Namespace) -> None:
    """Make ``mutant:NAME`` resolve in --patches and --source, here and in every worker."""
    if args.patches is not None:
        if not args.patches.is_dir():
            raise UsageError(f"hakfuzz mutants: --patches {args.patches}: not a directory")
        os.environ[MUTANTS_DIR_ENV] = str(args.patches.resolve())
    if args.source is not None:
        if not (args.source / "src").is_dir():
            raise UsageError(f"hakfuzz mutants: --source {args.source}: no src/ directory there")
        os.environ[MUTANTS_SOURCE_ENV] = str(args.source.resolve())


def run(args: argparse.Namespace) -> int:
    """Run a kill campaign per mutant and print the table (or JSON); 1 if any survives."""
    _point_at_patches(args)
    catalogue = mutants(args.patches)
    if args.list:
        for mutant in catalogue.values():
            print(f"{mutant.name}: {mutant.title}")
        return 0
    opts = _options(args)
    if opts.as_foreign:  # the workers and the drivers they start inherit it

        os.environ[NO_HOOKS_ENV] = "1"
    only = tuple(catalogue)
    if args.only:
        only = parse_names(args.only, only, "mutant", "hakfuzz mutants")
    chosen = [get_mutant(name, args.patches) for name in only]
    if args.save is not None:
        writable_dir(args.save, "--save")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hakfuzz-mutants-"))
    writable_dir(workdir, "--workdir")
    err = console(stderr=True)
    started = time.time()
    results: list[MutantResult] = []
    try:
        for mutant in chosen:
            result = run_mutant(mutant, opts, workdir, lambda line: err.print(line, style="dim"))
            results.append(result)
            if args.save is not None and result.program is not None:
                program = replace(
                    result.program,
                    description=f"kills mutant {mutant.name} ({result.killed_by} on "
                    f"{result.build}: {result.signature}): {mutant.title}",
                )
                save_program(program, args.save / f"{mutant.name}.json")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    doc = mutants_json(opts, results, time.time() - started)
    if opts.as_foreign:
        doc["as_foreign"] = {"hooks": False, "model": False}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    sys.stdout.flush()
    return 0 if not doc["survived"] and not doc["errors"] else 1
