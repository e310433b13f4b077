"""``hakfuzz findings pull redis://...``: bring a shared campaign's findings home."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hakfuzz._paths import writable_dir
from hakfuzz.campaign.shared import connect, pull_findings
from hakfuzz.campaign.store import FindingStore
from hakfuzz.findings import Finding
from hakfuzz.program import loads_program

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz findings pull URL [--into DIR] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="work with the findings of a shared campaign (pull them home)",
        description="pull: write every finding a shared campaign (--shared URL) holds into "
        "--into (default corpus/findings) as an ordinary finding file, with the count and "
        "the machines that met it, ready for hakfuzz replay and hakfuzz promote. A file "
        "already holding the same program only has its count raised.",
    )
    parser.add_argument("action", choices=("pull",), help="what to do")
    parser.add_argument("url", metavar="redis://HOST:PORT/DB", help="the campaign's --shared URL")
    parser.add_argument(
        "--into", type=Path, default=Path("corpus/findings"), help="default corpus/findings"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def run(args: argparse.Namespace) -> int:
    """Pull the shared findings into --into."""
    client = connect(args.url, "hakfuzz findings pull:")
    store = FindingStore(writable_dir(args.into, "--into"))
    pulled = []
    for shared in pull_findings(client):
        if shared["program"] is None:
            continue
        meta = shared["meta"]
        program = loads_program(shared["program"], source=f"<shared {shared['signature']}>")
        kind, _, detail = shared["signature"].partition("-")
        finding = Finding(
            str(meta.get("engine", "shared")),
            kind,
            detail,
            f"{meta.get('message', '')} (met {shared['count']} times on "
            f"{len(shared['machines'])} machine(s))",
            program,
            None,
            str(meta.get("variant", "release")),
            meta.get("seed"),
            {"job": meta["job"]} if meta.get("job") else {},
        )
        saved = store.save(finding, program, minimised=False, count=shared["count"])
        pulled.append(
            {
                "signature": shared["signature"],
                "path": str(saved.path),
                "new": saved.new,
                "count": shared["count"],
                "machines": shared["machines"],
            }
        )
    if args.json:
        print(json.dumps({"format": "hakfuzz-pulled/1", "findings": pulled}, indent=2))
    else:
        for row in pulled:
            state = "new" if row["new"] else "known"
            print(f"{row['path']} ({state}; met {row['count']} times on "
                  f"{len(row['machines'])} machine(s))")
        if not pulled:
            print("no shared findings")
    return 0
