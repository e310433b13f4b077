"""``hakfuzz minimize FILE``: minimise a failing program by hand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz._paths import writable_dir
from hakfuzz.campaign.foreign import Resolver, finding_oracle, meta_finding, stamp
from hakfuzz.campaign.forked import Death, run_once
from hakfuzz.campaign.reproduce import oracle_for, run_in_child
from hakfuzz.campaign.store import read_meta
from hakfuzz.differential import DifferentialExecutor
from hakfuzz.findings import Finding, slug
from hakfuzz.program import Program, load_program, save_program
from hakfuzz.program.minimize import minimize
from hakfuzz.replay import loads_here
from hakfuzz.targets import PRELOAD_VARIANTS
from hakfuzz.variants import flags_of, load_module, split

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers
    from hakfuzz.program import Program
    from hakfuzz.program.minimize import Oracle

RUN_TIMEOUT = 120.0
"""Seconds one run of a candidate may take before it counts as a hang."""


def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz minimize FILE [--engine E] [--variant V] [--runs K] [--time S] [--out PATH]``."""
    parser = subparsers.add_parser(
        name,
        help="minimise a failing program (ddmin over ops and threads)",
        description="Run FILE the way its engine would, take the failure's signature, and "
        "delta-debug the ops and threads while the same signature reproduces in at least one "
        "of K runs. Every run happens in a child process, so a program that crashes the "
        "allocator is minimised like any other. Writes the result to --out (default "
        "FILE.min.json beside FILE; for a FILE under a regressions/ directory, "
        "findings/NAME.min.json beside that directory instead, where it is not collected as a "
        "regression test) and reports the reproduction rate. Exit 1 if FILE does not fail.",
    )
    parser.add_argument("file", type=Path, help="a program or finding file")
    parser.add_argument(
        "--engine",
        choices=("auto", "differential", "child", "parallel"),
        default="auto",
        help="how to run it: differential (model vs native, in a forked child per run), "
        "child (a fresh interpreter per run: slower; what sanitizer variants need), "
        "parallel (the C driver on real pthreads); auto: parallel for a finding of the "
        "parallel engine or several threads, else differential (child for a variant that "
        "cannot be loaded here)",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="build variant (default: the one a finding records, else release)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per candidate (default 3)")
    parser.add_argument("--time", type=float, default=120.0, help="time budget in seconds")
    parser.add_argument("--out", type=Path, default=None, help="where to write the result")
    parser.add_argument(
        "--allocator",
        default=None,
        metavar="NAME|PATH",
        help="run the candidates on this allocator: hakmem, glibc, jemalloc, mimalloc, tcmalloc "
        "or the path of an LD_PRELOAD library (the foreign driver, or the finding's preload "
        "job). Default: the target the file records (said when its library has changed; an "
        "error, exit 2, when it is gone), else hakmem",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def default_out(file: Path) -> Path:
    """Where the result goes without ``--out``.

    Beside ``file``, except under a ``regressions`` directory: every program
    there is replayed as a test, and a minimised failure is not a passing
    regression, so it goes to the ``findings`` directory beside it (git
    ignores it; ``hakfuzz promote`` moves it back once fixed).
    """
    name = f"{file.stem}.min.json"
    for parent in file.absolute().parents:
        if parent.name == "regressions":
            out = parent.parent / "findings" / name
            try:
                return out.relative_to(Path.cwd())
            except ValueError:
                return out
    return file.with_name(name)


def choose_engine(requested: str, meta: dict[str, object], threads: int, variant: str) -> str:
    """The engine ``auto`` stands for (any other choice is kept)."""
    if requested != "auto":
        return requested
    if meta.get("engine") == "parallel" or threads > 1:
        return "parallel"

    return "differential" if loads_here(variant) else "child"


def forked_oracle(variant: str) -> Oracle:
    """A differential run per call, in a forked child: a crash is a signature."""
    module = load_module(variant)  # here, once; each child inherits it

    def once(program: Program) -> str | None:
        def job() -> dict[str, object]:
            divergence = DifferentialExecutor(module).run(program)
            return {"field": None if divergence is None else divergence.field}

        outcome = run_once(job, timeout=RUN_TIMEOUT)
        if isinstance(outcome, Death):
            return outcome.signature
        if "exception" in outcome:
            raise RuntimeError(f"the differential run failed in the child:\n{outcome['exception']}")
        field = outcome["field"]
        return None if field is None else f"divergence-{slug(str(field))}"

    return once


def oracle(engine: str, variant: str) -> Oracle:
    """How one run of a candidate is judged, for ``engine``."""
    if engine == "differential":
        return forked_oracle(variant)
    if engine == "child":
        return lambda program: run_in_child(program, variant, timeout=RUN_TIMEOUT)
    return oracle_for(Finding("parallel", "oracle", "", "", Program()), variant)


def run(args: argparse.Namespace) -> int:
    """Minimise and report."""
    if not args.file.is_file():
        raise UsageError(f"hakfuzz minimize: {args.file}: no such file")
    if args.runs < 1 or args.time <= 0:
        raise UsageError("hakfuzz minimize: --runs and --time must be positive")
    program = load_program(args.file)
    meta = read_meta(args.file)
    variant = str(args.variant or meta.get("variant") or "release")
    split(variant)
    chosen = Resolver(args.allocator, "hakfuzz minimize").choose(program, args.file)
    if chosen.words is not None:
        print(chosen.words, file=sys.stderr, flush=True)
    out: Path = args.out or default_out(args.file)
    writable_dir(out.parent, "--out")
    if chosen.target is not None:
        if flags_of(variant) not in PRELOAD_VARIANTS:
            variant = "release"  # the driver under a preloaded target: no sanitizer runtime
        engine = f"foreign ({chosen.target.name})"
        run_once = finding_oracle(meta_finding(program, meta, variant), variant, chosen.target)
    else:
        engine = choose_engine(args.engine, meta, program.threads, variant)
        run_once = oracle(engine, variant)
    signature = None
    for _ in range(args.runs):
        signature = run_once(program)
        if signature is not None:
            break
    if signature is None:
        raise HakfuzzError(
            f"hakfuzz minimize: {args.file} does not fail ({engine}, variant {variant}, "
            f"{args.runs} runs): nothing to minimise"
        )
    result = minimize(program, signature, run_once, runs=args.runs, budget_seconds=args.time)
    save_program(stamp(result.program, chosen.target), out)
    doc = {
        "file": str(args.file),
        "out": str(out),
        "engine": engine,
        "variant": variant,
        "signature": signature,
        "ops_before": result.original_ops,
        "ops": len(result.program.ops),
        "threads": result.program.threads,
        "reproduction_rate": result.reproduction_rate,
        "candidates_tried": result.candidates_tried,
        "seconds": round(result.seconds, 2),
        **chosen.as_json(),
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
