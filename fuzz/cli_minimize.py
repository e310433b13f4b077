"""``hakfuzz minimize FILE``: minimise a failing program by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hakfuzz._errors import HakfuzzError, UsageError

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz minimize FILE [--engine E] [--runs K] [--time S] [--out PATH] [--json]``."""
    parser = subparsers.add_parser(
        name,
        help="minimise a failing program (ddmin over ops and threads)",
        description="Run FILE the way its engine would (in-process differential, a child "
        "process for crashes, the C driver for multi-threaded programs), take the failure's "
        "signature, and delta-debug the ops and threads while the same signature reproduces "
        "in at least one of K runs. Writes the result to --out (default FILE.min.json) and "
        "reports the reproduction rate. Exit 1 if FILE does not fail at all.",
    )
    parser.add_argument("file", type=Path, help="a program or finding file")
    parser.add_argument(
        "--engine",
        choices=("auto", "differential", "child", "parallel"),
        default="auto",
        help="how to run it (auto: from the finding's metadata, else parallel for several "
        "threads, differential otherwise)",
    )
    parser.add_argument("--variant", default="release", help="build variant (default release)")
    parser.add_argument("--runs", type=int, default=3, help="runs per candidate (default 3)")
    parser.add_argument("--time", type=float, default=120.0, help="time budget in seconds")
    parser.add_argument("--out", type=Path, default=None, help="where to write the result")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def run(args: argparse.Namespace) -> int:
    """Minimise and report."""
    from hakfuzz.campaign.minimize import minimize
    from hakfuzz.campaign.reproduce import oracle_for
    from hakfuzz.campaign.store import read_meta
    from hakfuzz.findings import Finding
    from hakfuzz.program import load_program, save_program
    from hakfuzz.variants import split

    if not args.file.is_file():
        raise UsageError(f"hakfuzz minimize: {args.file}: no such file")
    if args.runs < 1 or args.time <= 0:
        raise UsageError("hakfuzz minimize: --runs and --time must be positive")
    split(args.variant)
    program = load_program(args.file)
    meta = read_meta(args.file)
    engine = args.engine
    if engine == "auto":
        if meta.get("kind") in ("signal", "exit", "timeout") and meta.get("engine") != "parallel":
            engine = "child"
        elif meta.get("engine") == "parallel" or program.threads > 1:
            engine = "parallel"
        else:
            engine = "differential"
    probe = Finding(
        {"parallel": "parallel", "child": "atheris", "differential": "atheris"}[engine],
        "divergence" if engine == "differential" else "signal",
        "",
        "",
        program,
    )
    oracle = oracle_for(probe, args.variant)
    signature = None
    for _ in range(args.runs):
        signature = oracle(program)
        if signature is not None:
            break
    if signature is None:
        raise HakfuzzError(
            f"hakfuzz minimize: {args.file} does not fail ({engine}, {args.runs} runs): "
            "nothing to minimise"
        )
    result = minimize(program, signature, oracle, runs=args.runs, budget_seconds=args.time)
    out = args.out or args.file.with_suffix(".min.json")
    save_program(result.program, out)
    doc = {
        "file": str(args.file),
        "out": str(out),
        "engine": engine,
        "signature": signature,
        "ops_before": result.original_ops,
        "ops": len(result.program.ops),
        "threads": result.program.threads,
        "reproduction_rate": result.reproduction_rate,
        "candidates_tried": result.candidates_tried,
        "seconds": round(result.seconds, 2),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{signature}: {result.original_ops} -> {len(result.program.ops)} ops, "
            f"{result.program.threads} thread(s), reproduces {result.reproduction_rate:.0%} "
            f"({result.candidates_tried} runs, {result.seconds:.1f} s)\nwritten to {out}"
        )
    return 0
