"""``hakfuzz build``: compile the allocator (or find it in the cache)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from hakfuzz._errors import UsageError
from hakfuzz.native import build
from hakfuzz.native._mutants import get_mutant, resolve_variant
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
    add_variant_argument(parser, mutants=True)
    parser.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def add_variant_argument(parser: argparse.ArgumentParser, *, mutants: bool = False) -> None:
    """``--variant`` with the known variants as choices (shared by other commands).

    ``mutants=True`` also accepts ``mutant:NAME`` (a patch of native/mutants/).
    """
    parser.add_argument(
        "--variant",
        choices=None if mutants else list(VARIANTS),
        type=_variant_or_mutant if mutants else str,
        metavar="{" + ",".join([*VARIANTS, "mutant:NAME"]) + "}" if mutants else None,
        default=None,  # $HAKFUZZ_VARIANT, read (and checked) when the command runs
        help="build variant (default: $HAKFUZZ_VARIANT or release): "
        + "; ".join(f"{v.name}: {v.summary}" for v in VARIANTS.values())
        + ("; mutant:NAME: a mutant of native/mutants/ with release flags "
           "(hakfuzz mutants --list)" if mutants else ""),
    )


def _variant_or_mutant(text: str) -> str:
    if text.startswith("mutant:"):

        try:
            get_mutant(text.removeprefix("mutant:"))
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    elif text not in VARIANTS:
        choices = ", ".join([*VARIANTS, "mutant:NAME"])
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {choices})")
    return text


def run(args: argparse.Namespace) -> int:
    """Build, then report the module path (and whether it was a cache hit)."""

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    args.variant = args.variant or variant_from_env()
    variant, tree = resolve_variant(args.variant)  # mutant:NAME -> release flags, patched tree
    result = build(variant, force=args.force, progress=progress, tree=tree)
    if args.json:
        doc = result.to_json()
        if tree is not None:
            doc.update(mutant=args.variant.removeprefix("mutant:"), tree=str(tree.root))
        print(json.dumps(doc, indent=2))
    else:
        how = "cached" if result.cached else f"built in {result.seconds:.1f}s"
        name = "hakmem" if tree is None else args.variant
        print(f"{name} ({result.variant}) {how}: {result.path}")
    return 0
