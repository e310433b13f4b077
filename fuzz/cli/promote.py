"""``hakfuzz promote FINDING``: move a finding into the regression corpus."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hakfuzz.campaign.store import promote

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz promote FINDING... [--to DIR]``."""
    parser = subparsers.add_parser(
        name,
        help="move findings into corpus/regressions (replayed by every test run)",
        description="Move each finding file into the regression corpus, keeping its "
        "program and a description made from its message; the finding metadata is dropped. "
        "From then on pytest replays it as its own test case.",
    )
    parser.add_argument("findings", type=Path, nargs="+", metavar="FINDING")
    parser.add_argument(
        "--to",
        type=Path,
        default=Path("corpus/regressions"),
        help="regression directory (default corpus/regressions)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Promote each file; one line per file."""
    for path in args.findings:
        print(f"{path} -> {promote(path, args.to)}")
    return 0
