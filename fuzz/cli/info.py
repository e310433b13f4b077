"""``hakfuzz info``: the toolchain, flags, cache entry and the allocator's options."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from rich.table import Table

from hakfuzz._console import console
from hakfuzz.cli.build import add_variant_argument
from hakfuzz.model.options import OPTIONS
from hakfuzz.native import info

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz info [--variant V] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="show the compiler, flags, cache entry and allocator options (HAKMEM_*)",
        description="Describe a build variant without compiling it: compiler, flags, "
        "cache path, and the allocator's options: each HAKMEM_<NAME> variable, its "
        "range, meaning and (once built) this build's default.",
    )
    add_variant_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the description as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print :func:`hakfuzz.native.info` as a table, or as JSON."""
    described = info(args.variant)
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        _print_table(described)
    return 0


def _print_table(described: dict[str, Any]) -> None:


    table = Table(title=f"hakmem ({described['variant']})", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("variant", f"{described['variant']} — {described['summary']}")
    table.add_row("compiler", f"{described['compiler']}")
    table.add_row("cflags", " ".join(described["cflags"]))
    table.add_row("ldflags", " ".join(described["ldflags"]))
    table.add_row("sources", f"{described['source_dir']}: {' '.join(described['sources'])}")
    table.add_row("cache", described["cache_dir"])
    table.add_row(
        "built",
        "yes"
        if described["built"]
        else f"no (run: hakfuzz build --variant {described['variant']})",
    )
    for name, value in described["runtime_env"].items():
        table.add_row(f"env {name}", value)
    # The options, with this build's defaults once it is built (debug turns checked on).
    defaults = described["config"] or {}
    for option in OPTIONS:
        default = option.describe(defaults.get(option.name, option.default))
        table.add_row(option.env, f"{option.name} = {default} ({option.describe_range()}): "
                      f"{option.doc}")
    table.add_row("python / cffi", f"{described['python']} / {described['cffi']}")
    console().print(table)
