"""``python -m hakfuzz.mutants.child ENGINE --mutant NAME ...``: one engine, one mutant.

Runs one engine of a kill campaign against one mutant, in a process of its
own.  Started by :mod:`hakfuzz.mutants.supervise`; events go to stdout (see
:class:`hakfuzz.mutants.engines.Reporter`), the program in flight to the
``--journal`` file.  A crash of the mutant kills this process, not the
campaign.  Core dumps are switched off (a dying mutant must die fast).
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

ENGINES = ("replay", "hypothesis", "stress", "serve")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hakfuzz.mutants.child",
                                     description="Run one kill-campaign engine against a mutant.")
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("--mutant", required=True, help="the mutant's name")
    parser.add_argument("--deadline", type=float, default=0.0, help="unix time to stop at")
    parser.add_argument("--seed", type=int, default=0, help="first seed (stress)")
    parser.add_argument("--journal", type=Path, default=None,
                        help="write-ahead journal of the program in flight")
    parser.add_argument("--corpus", type=Path, action="append", default=[],
                        help="corpus file or directory (replay; repeatable)")
    parser.add_argument("--steps", type=int, default=50, help="state machine steps (hypothesis)")
    parser.add_argument("--source", type=Path, default=None,
                        help="the allocator tree to mutate (default: the shipped native/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Load the mutant, run the engine, report ``done``."""
    args = _parser().parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    from hakfuzz.campaign.journal import Journal
    from hakfuzz.mutants import engines
    from hakfuzz.native import NativeTree, load
    from hakfuzz.native._mutants import mutant_tree
    from hakfuzz.native._tools import build_tool

    source = NativeTree(args.source) if args.source is not None else None
    tree = mutant_tree(args.mutant, source=source)
    hak = load("release", tree=tree, progress=None)
    label = f"mutant:{args.mutant}"
    if args.engine == "serve":
        engines.serve(hak, sys.stdin, sys.stdout)
        return 0
    reporter = engines.Reporter()
    journal = Journal(args.journal) if args.journal is not None else None
    if args.engine == "replay":
        from hakfuzz.replay import corpus_files

        assert journal is not None, "replay needs --journal"
        driver = build_tool("hakdriver", "release", tree=tree)
        engines.run_replay(hak, driver, corpus_files(args.corpus), reporter, journal,
                           deadline=args.deadline, label=label)
    elif args.engine == "hypothesis":
        assert journal is not None, "hypothesis needs --journal"
        engines.run_hypothesis(hak, reporter, journal, deadline=args.deadline, label=label,
                               steps=args.steps)
    else:
        driver = build_tool("hakdriver", "release", tree=tree)
        engines.run_stress_rounds(driver, reporter, deadline=args.deadline, seed=args.seed,
                                  label=label)
    if journal is not None:
        journal.clear()
    reporter.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
