"""``python -m hakfuzz.campaign.worker``: one engine until a deadline.

Started by the supervisor, one process per job.  Events go to stdout (see
``events``); the input in flight is in ``<workdir>/journal-<job>``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from pathlib import Path

from hakfuzz.differential.foreign_server import parse_pairs
from hakfuzz.engines import (
    ENGINES,
    atheris_engine,
    hypothesis_engine,
    parallel_engine,
    preload_engine,
)
from hakfuzz.engines.events import Emitter
from hakfuzz.engines.journal import Journal
from hakfuzz.targets import resolve_target


def journal_path(workdir: Path, job: int) -> Path:
    """Where job ``job`` journals its in-flight input."""
    return workdir / f"journal-{job}"


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """End this worker when the supervisor dies, even by SIGKILL.

    Workers run in sessions of their own (a terminal's Ctrl-C is the
    supervisor's), so nothing else would stop them before their deadline.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the supervisor died before the line above
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """Run one engine until the deadline."""
    parser = argparse.ArgumentParser(prog="hakfuzz.campaign.worker")
    parser.add_argument("--engine", required=True, choices=ENGINES)
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, required=True, help="unix time to stop at")
    parser.add_argument("--variant", default="release")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--db", default=None, help="example database: a directory or redis:// URL")
    parser.add_argument("--corpus-dir", type=Path, default=None)
    parser.add_argument("--seeds", type=Path, action="append", default=[])
    parser.add_argument("--parent", type=int, default=None, help="the supervisor's pid")
    parser.add_argument(
        "--allocator",
        default=None,
        metavar="NAME|PATH",
        help="a foreign target (resolved again here); default: the built-in hakmem",
    )
    parser.add_argument("--foreign-frees", choices=("on", "off"), default="on")
    parser.add_argument("--configure", action="append", default=[], metavar="KEY=VALUE",
                        help="a foreign target's hakfuzz_configure option (repeatable)")
    parser.add_argument("rest", nargs="*", help="libFuzzer options (atheris)")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with(args.parent)
    emit = Emitter()
    journal = Journal(journal_path(args.workdir, args.job))
    target = None
    if args.allocator is not None:

        target = resolve_target(args.allocator, args.variant)
    frees = args.foreign_frees == "on"
    pairs = parse_pairs(args.configure) or None
    if args.engine == "preload":
        if pairs:
            emit.notice("the preload engine does not apply --configure: its jobs are remade "
                        "from a name and a seed")
        preload_engine.run(
            emit, journal, seed=args.seed, deadline=args.deadline, variant=args.variant,
            target=target, foreign_frees=frees,
        )
    elif args.engine == "parallel":

        parallel_engine.run(
            emit, journal, seed=args.seed, deadline=args.deadline, variant=args.variant,
            target=target, foreign_frees=frees, target_config=pairs,
        )
    elif args.engine == "hypothesis":

        hypothesis_engine.run(
            emit,
            journal,
            seed=args.seed,
            deadline=args.deadline,
            variant=args.variant,
            database=args.db,
            local_database=args.workdir / "hypothesis-db",
            target=target,
            foreign_frees=frees,
            target_config=pairs,
        )
    else:
        assert args.corpus_dir is not None
        atheris_engine.run(
            emit,
            journal,
            seed=args.seed,
            deadline=args.deadline,
            variant=args.variant,
            corpus_dir=args.corpus_dir,
            workdir=args.workdir,
            seeds=args.seeds,
            libfuzzer_args=args.rest,
            target=target,
            foreign_frees=frees,
            target_config=pairs,
        )
    journal.clear()
    emit.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
