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

from hakfuzz.campaign import ENGINES
from hakfuzz.campaign.events import Emitter
from hakfuzz.campaign.journal import Journal


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
    parser.add_argument("rest", nargs="*", help="libFuzzer options (atheris)")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with(args.parent)
    emit = Emitter()
    journal = Journal(journal_path(args.workdir, args.job))
    target = None
    if args.allocator is not None:
        from hakfuzz.targets import resolve_target

        target = resolve_target(args.allocator, args.variant)
    frees = args.foreign_frees == "on"
    if args.engine == "preload":
        from hakfuzz.campaign import engine_preload

        engine_preload.run(
            emit, journal, seed=args.seed, deadline=args.deadline, variant=args.variant,
            target=target, foreign_frees=frees,
        )
    elif args.engine == "parallel":
        from hakfuzz.campaign import engine_parallel

        engine_parallel.run(
            emit, journal, seed=args.seed, deadline=args.deadline, variant=args.variant,
            target=target, foreign_frees=frees,
        )
    elif args.engine == "hypothesis":
        from hakfuzz.campaign import engine_hypothesis
        from hakfuzz.statemachine import use_module
        from hakfuzz.variants import load_module

        if target is None:  # a foreign target runs in the serving child, not in-process
            use_module(load_module(args.variant))
        engine_hypothesis.run(
            emit,
            journal,
            seed=args.seed,
            deadline=args.deadline,
            variant=args.variant,
            database=args.db,
            local_database=args.workdir / "hypothesis-db",
            target=target,
            foreign_frees=frees,
        )
    else:
        from hakfuzz.campaign import engine_atheris

        assert args.corpus_dir is not None
        engine_atheris.run(
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
        )
    journal.clear()
    emit.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
