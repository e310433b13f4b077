"""``hakfuzz build``: compile the allocator (or find it in the cache)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from hakfuzz.native._toolchain import VARIANTS, variant_from_env

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz build [--variant V] [--force] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="compile the allocator into a cffi module (cached)",
        description="Compile the hakmem allocator into a cffi extension module. "
        "Builds are cached by the hash of their sources, flags and toolchain; "
        "a repeated build is a cache hit.",
    )
    add_variant_argument(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def add_variant_argument(parser: argparse.ArgumentParser) -> None:
    """``--variant`` with the known variants as choices (shared by other commands)."""
    parser.add_argument(
        "--variant",
        choices=list(VARIANTS),
        default=variant_from_env(),
        help="build variant (default: $HAKFUZZ_VARIANT or release): "
        + "; ".join(f"{v.name}: {v.summary}" for v in VARIANTS.values()),
    )


def run(args: argparse.Namespace) -> int:
    """Build, then report the module path (and whether it was a cache hit)."""
    from hakfuzz.native import build

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = build(args.variant, force=args.force, progress=progress)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        how = "cached" if result.cached else f"built in {result.seconds:.1f}s"
        print(f"hakmem ({result.variant}) {how}: {result.path}")
    return 0
