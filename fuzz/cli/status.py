"""``hakfuzz status redis://...``: every machine of a shared campaign, live."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.live import Live
from rich.table import Table

from hakfuzz._argtypes import positive_float
from hakfuzz._console import console
from hakfuzz.campaign.shared import connect, machines, pull_findings

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz status URL [--once] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="show every machine of a shared campaign (engines, execs, coverage, findings)",
        description="Read the progress every machine of a campaign started with "
        "--shared URL publishes, and the findings they share: a live table (Ctrl-C to leave), "
        "one table with --once, or one JSON document with --json. A machine that stopped "
        "reporting drops out after 30 s.",
    )
    parser.add_argument("url", metavar="redis://HOST:PORT/DB", help="the campaign's --shared URL")
    parser.add_argument("--once", action="store_true", help="print one table and exit")
    parser.add_argument(
        "--every", type=positive_float, default=1.0, help="seconds between refreshes (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document and exit")
    return parser


def snapshot(client: Any) -> dict[str, Any]:
    """Machines and shared findings, as ``--json`` prints them."""
    findings = [{k: v for k, v in f.items() if k != "program"} for f in pull_findings(client)]
    return {"format": "hakfuzz-status/1", "machines": machines(client), "findings": findings}


def _render(doc: dict[str, Any]) -> Any:

    table = Table(title="machines", title_justify="left")
    for col in ("machine", "elapsed", "engine", "execs", "coverage", "native edges", "findings"):
        table.add_column(col, justify="left" if col in ("machine", "engine") else "right")
    for m in doc["machines"]:
        for i, (engine, t) in enumerate(m["engines"].items()):
            table.add_row(
                m["machine"] if i == 0 else "",
                f"{m['elapsed']:.0f} s" if i == 0 else "",
                engine,
                f"{t['execs']:,}",
                f"{t['coverage']:,}",
                f"{t['native_edges']:,}",
                str(t["findings"]),
            )
    found = Table(title="shared findings", title_justify="left")
    for col in ("signature", "count", "machines", "ops"):
        found.add_column(col, justify="right" if col in ("count", "ops") else "left")
    for f in doc["findings"]:
        found.add_row(f["signature"], str(f["count"]), str(len(f["machines"])), str(f["ops"]))
    return Group(table, found)


def run(args: argparse.Namespace) -> int:
    """Print the status once, as JSON, or live."""
    client = connect(args.url, "hakfuzz status:")
    if args.json:
        print(json.dumps(snapshot(client), indent=2))
        return 0
    out = console()
    if args.once or not out.is_terminal:
        out.print(_render(snapshot(client)))
        return 0
    with Live(_render(snapshot(client)), console=out, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(args.every)
                live.update(_render(snapshot(client)))
        except KeyboardInterrupt:
            return 0
