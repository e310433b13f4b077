"""``hakfuzz mutants``: show that the engines kill every shipped mutant."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hakfuzz._errors import UsageError

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz mutants [--time S] [--only NAME[,NAME]] [--json] [--list]``."""
    parser = subparsers.add_parser(
        name, help="build each mutant (a re-introduced real bug) and show the engines kill it",
        description="Each mutant in native/mutants/ re-introduces one real bug class into "
        "the allocator. For each: build it, then run corpus replay, then the Hypothesis state "
        "machine and the parallel stress engine in turns (each in a child process, so a crash "
        "is a kill, not our death) until one kills it or its time is up; minimise the killing "
        "program; print a table. Exit 1 if any mutant survives, 2 for bad usage.")
    parser.add_argument("--time", type=float, default=60.0, metavar="S",
                        help="seconds of campaign per mutant (default 60; builds not counted)")
    parser.add_argument("--only", default="", metavar="NAME[,NAME]",
                        help="run only these mutants (comma list)")
    parser.add_argument("--engines", default="replay,hypothesis,stress", metavar="E[,E]",
                        help="engines to use, from replay, hypothesis, stress (default: all)")
    parser.add_argument("--corpus", action="append", default=None, metavar="PATH",
                        help="corpus for replay (default: corpus/ of this checkout, if found)")
    parser.add_argument("--seed", type=int, default=0, help="first stress seed (default 0)")
    parser.add_argument("--no-minimise", action="store_true",
                        help="report the killing program as found")
    parser.add_argument("--minimise-time", type=float, default=20.0, metavar="S",
                        help="seconds of ddmin per killing program (default 20)")
    parser.add_argument("--source", type=Path, default=None, metavar="DIR",
                        help="the allocator tree the patches apply to, laid out like native/ "
                        "(src/ include/ driver/ bench/; default: the shipped native/)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep journals and child stderr here (default: a temporary dir)")
    parser.add_argument("--save", type=Path, default=None, metavar="DIR",
                        help="write each mutant's (minimised) killing program to DIR/NAME.json, "
                        "ready for hakfuzz replay")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _default_corpus() -> tuple[Path, ...]:
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / "corpus").is_dir():
            return (base / "corpus",)
    return ()


def _options(args: argparse.Namespace) -> object:
    from hakfuzz.mutants.campaign import ENGINES, CampaignOptions
    from hakfuzz.native._mutants import get_mutant

    if args.time <= 0:
        raise UsageError(f"hakfuzz mutants: --time {args.time} must be positive")
    if args.minimise_time <= 0:
        raise UsageError("hakfuzz mutants: --minimise-time must be positive")
    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    for name in only:
        try:
            get_mutant(name)
        except UsageError as exc:
            raise UsageError(f"hakfuzz mutants: --only: {exc}") from None
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    for engine in engines:
        if engine not in ENGINES:
            raise UsageError(f"hakfuzz mutants: unknown engine {engine!r} "
                             f"(choose from {', '.join(ENGINES)})")
    if not engines:
        raise UsageError("hakfuzz mutants: --engines is empty")
    if args.source is not None and not (args.source / "src").is_dir():
        raise UsageError(f"hakfuzz mutants: --source {args.source}: no src/ directory there")
    corpus = tuple(Path(p) for p in args.corpus) if args.corpus else _default_corpus()
    for path in corpus:
        if not path.exists():
            raise UsageError(f"hakfuzz mutants: --corpus {path}: no such file or directory")
    return CampaignOptions(seconds=args.time, only=only, engines=engines, corpus=corpus,
                           seed=args.seed, minimise=not args.no_minimise,
                           minimise_seconds=args.minimise_time, workdir=args.workdir,
                           source=args.source.resolve() if args.source else None)


def run(args: argparse.Namespace) -> int:
    """Run the campaigns and print the table (or JSON); 1 if any mutant survives."""
    from rich.console import Console

    from hakfuzz.mutants.campaign import (
        CampaignOptions,
        MutantResult,
        run_campaign,
        save_killing_program,
    )
    from hakfuzz.mutants.report import mutants_json, print_table
    from hakfuzz.native._mutants import mutants

    if args.list:
        for mutant in mutants().values():
            print(f"{mutant.name}: {mutant.title}")
        return 0
    opts = _options(args)
    assert isinstance(opts, CampaignOptions)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the engine children are stopped.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(128 + signal.SIGTERM))
    err = Console(stderr=True)
    started = time.time()
    save_dir: Path | None = args.save

    def saved(result: MutantResult) -> None:
        if save_dir is not None and result.minimised is not None:
            path = save_killing_program(result, save_dir)
            if path is not None:
                err.print(f"saved {path}", style="dim", highlight=False)

    results = run_campaign(opts, progress=lambda line: err.print(line, style="dim",
                                                                 highlight=False),
                           on_result=saved)
    doc = mutants_json(opts, results, time.time() - started)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    sys.stdout.flush()
    return 0 if not doc["survived"] and not doc["errors"] else 1
