"""``hakfuzz fuzz``: a time-boxed campaign of every engine on all cores."""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from hakfuzz._argtypes import non_negative_float, positive_float, positive_int
from hakfuzz._console import console
from hakfuzz._errors import UsageError
from hakfuzz._paths import fallback_dir, writable_dir
from hakfuzz.campaign.applies import engines_for, skipped_for
from hakfuzz.campaign.gaps import coverage_gaps
from hakfuzz.campaign.interrupt import StopSignals
from hakfuzz.campaign.report import write_report
from hakfuzz.campaign.shared import SharedCampaign, connect, machine_name, require_redis
from hakfuzz.campaign.store import FindingStore
from hakfuzz.campaign.supervisor import CampaignOptions, Supervisor, engine_variants
from hakfuzz.campaign.triage import triage
from hakfuzz.differential.driver import run_driver
from hakfuzz.differential.foreign_server import parse_pairs
from hakfuzz.engines import ENGINES, parse_engines
from hakfuzz.engines.atheris_engine import native_coverage_available, quarantine_file
from hakfuzz.engines.preload_engine import can_preload
from hakfuzz.native import build
from hakfuzz.program import Program, load_program
from hakfuzz.targets import (
    PRELOAD_VARIANTS,
    Target,
    check_env,
    child_env,
    inherited_preload_notice,
    resolve_for,
)
from hakfuzz.variants import DEFAULT_VARIANTS, prepare, split, tool

if TYPE_CHECKING:
    from hakfuzz.cli import Subparsers
    from hakfuzz.targets import Target



def add_parser(subparsers: Subparsers, name: str) -> argparse.ArgumentParser:
    """``hakfuzz fuzz [--engine E] [--time S] [--jobs N] [--variant V] [--json] [-- ...]``."""
    parser = subparsers.add_parser(
        name,
        help="run a fuzz campaign (hypothesis, atheris, parallel, preload engines)",
        description="Run a time-boxed campaign: worker processes split over the engines and "
        "builds, live progress, crash isolation (every input is journalled before it runs "
        "natively; a dead worker's input becomes a finding and the worker is restarted), "
        "deduplication by signature, every finding saved the moment it is met, minimisation, "
        "and a report directory (report.json: engines, findings, what was reached, the native "
        "lines no program ran; coverage.png). Ctrl-C or SIGTERM stops the workers, saves what "
        "was found and exits 130/143. Options after -- go to libFuzzer (atheris). Exit 1 if "
        "anything was found or an engine never ran, 2 for bad usage.",
    )
    parser.add_argument(
        "--engine", default="all", help="all, or a comma list of: " + ", ".join(ENGINES)
    )
    parser.add_argument(
        "--time", type=positive_float, default=60.0, help="seconds of fuzzing (default 60)"
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="worker processes (default: cores; at least one per engine)",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="comma list of builds to spread each engine's time over (default "
        f"{','.join(DEFAULT_VARIANTS)}; tsan only for the parallel engine, whose C driver "
        "can own the whole process; with a foreign --allocator: release or debug, default "
        "release): release, debug, asan, tsan, mutant:NAME, testfault:NAME",
    )
    parser.add_argument(
        "--allocator",
        default="hakmem",
        metavar="NAME|PATH",
        help="hakmem (default: every engine, with the model); glibc, jemalloc, mimalloc, "
        "tcmalloc or the path of an LD_PRELOAD library: the engines that apply to a foreign "
        "allocator run under it, with the allocator-neutral oracles (docs/targets.md)",
    )
    parser.add_argument(
        "--foreign-frees",
        choices=("on", "off"),
        default=None,
        help="with a foreign --allocator: glibc's blocks are freed by the allocator (on, the "
        "default: pointers it did not make) or by glibc (off)",
    )
    parser.add_argument(
        "--configure",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with a foreign --allocator that exports hakfuzz_configure: an option for it "
        "(repeatable), applied to every program the hypothesis, atheris and parallel engines "
        "run and recorded in each finding, so replay applies it too; an option the target "
        "refuses stops the campaign before it starts (docs/targets.md)",
    )
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".hakfuzz"),
        help="journals and defaults for the dirs below (default .hakfuzz)",
    )
    parser.add_argument(
        "--corpus-dir",
        type=Path,
        default=None,
        help="atheris working corpus to keep (default WORKDIR/atheris-corpus)",
    )
    parser.add_argument(
        "--hypothesis-db",
        default=None,
        help="shared example database: a directory (default WORKDIR/hypothesis-db) "
        "or redis://host:port/db for several machines",
    )
    parser.add_argument(
        "--shared",
        default=os.environ.get("HAKFUZZ_SHARED"),
        metavar="redis://HOST:PORT/DB",
        help="share findings, the atheris corpus, the quarantine, the example database and "
        "progress with every machine pointed at the same Redis (default $HAKFUZZ_SHARED; "
        "needs pip install 'hakfuzz[redis]'); see hakfuzz status and hakfuzz findings pull",
    )
    parser.add_argument(
        "--findings",
        type=Path,
        default=Path("corpus/findings"),
        help="where findings are written (default corpus/findings)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="report directory (default WORKDIR/reports/<time>)",
    )
    parser.add_argument(
        "--minimize-time",
        type=non_negative_float,
        default=30.0,
        help="seconds to minimise each new finding (default 30; 0 saves findings as met)",
    )
    parser.add_argument(
        "--no-gaps",
        dest="gaps",
        action="store_false",
        help="skip the coverage-gap report (the native lines no program of the campaign ran, "
        "measured on a gcov build after the campaign; about 10 s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "libfuzzer",
        nargs="*",
        metavar="-- LIBFUZZER_OPTION",
        help="passed to libFuzzer, e.g. -- -max_len=2048 -dict=extra.dict",
    )
    return parser


def _target(args: argparse.Namespace) -> Target | None:
    """The foreign target, proven to load and serve malloc (None: the built-in hakmem).

    Any problem is one line, exit 2, before any build or worker starts.
    """
    if args.allocator == "hakmem":
        if args.foreign_frees is not None:
            raise UsageError(
                "hakfuzz fuzz: --foreign-frees needs a foreign --allocator (hakmem's engines "
                "always free glibc's blocks through hak_free)"
            )
        if args.configure:
            raise UsageError(
                "hakfuzz fuzz: --configure needs a foreign --allocator (hakmem's options are "
                "drawn by the engines, per program)"
            )
        return None
    target = resolve_for("hakfuzz fuzz", args.allocator)
    seen = check_env(target, child_env(target))
    if not seen.ok:
        raise UsageError(f"hakfuzz fuzz: --allocator {args.allocator}: {seen.problem}")
    return target


def _engines(
    args: argparse.Namespace, target: Target | None
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The engines asked for that apply to ``target``, and ``{engine: why}`` for the others."""
    asked = parse_engines(args.engine, "hakfuzz fuzz")
    skipped = skipped_for(target, asked)
    engines = tuple(e for e in asked if e in engines_for(target))
    if not engines:
        raise UsageError(
            f"hakfuzz fuzz: no engine of {', '.join(asked)} applies to --allocator "
            f"{args.allocator} (those that do: {', '.join(engines_for(target))})"
        )
    return engines, skipped


def _variants(
    text: str | None, engines: tuple[str, ...], target: Target | None = None
) -> tuple[str, ...]:
    """The builds named by ``--variant``, each checked; every engine must have one to run."""
    if text is None:
        text = ",".join(DEFAULT_VARIANTS) if target is None else "release"

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError("hakfuzz fuzz: --variant names no build")
    for name in names:
        try:
            split(name)
        except UsageError as exc:
            raise UsageError(f"hakfuzz fuzz: --variant: {exc}") from None
    if target is not None and not engine_variants(engines[0], names, foreign=True):
        raise UsageError(
            f"hakfuzz fuzz: --variant {text} cannot run under --allocator {target.name} (a "
            "sanitizer's runtime must be loaded before any preloaded allocator); choose from "
            f"{', '.join(PRELOAD_VARIANTS)}"
        )
    for engine in engines:
        if target is None and not engine_variants(engine, names):
            raise UsageError(
                f"hakfuzz fuzz: the {engine} engine cannot run {', '.join(names)} (in-process "
                "engines cannot load tsan; preload only release and debug builds): add one "
                "it can run to --variant, or leave the engine out"
            )
    return names


def _check_configure(
    pairs: tuple[tuple[str, str], ...], target: Target, driver: Path, foreign_frees: bool
) -> str | None:
    """The target takes every ``--configure`` option, or the campaign stops here (exit 2).

    One empty program through the foreign driver applies them as every run
    will.  A target without ``hakfuzz_configure`` runs as it is: the notice
    to print then.
    """
    if not pairs:
        return None
    run = run_driver(driver, Program(target_config=pairs), env=child_env(target),
                     foreign_frees=foreign_frees, timeout=60.0)
    if run.returncode != 0:
        said = [line for line in run.stderr.splitlines() if "configure" in line]
        why = said[0].removeprefix("hakdriver: ") if said else run.stderr.strip()[-300:]
        raise UsageError(f"hakfuzz fuzz: --configure: {target.name}: {why or 'refused'}")
    hooks = (run.result or {}).get("hooks")
    if isinstance(hooks, list) and "configure" not in hooks:
        return (f"{target.name} has no hakfuzz_configure: --configure "
                f"{' '.join(f'{k}={v}' for k, v in pairs)} is not applied")
    return None


def _check_outputs(args: argparse.Namespace, engines: tuple[str, ...], report_dir: Path) -> None:
    """Every place the campaign writes, proven writable before any work starts."""
    if args.shared is not None:
        require_redis(args.shared, "hakfuzz fuzz: --shared")
    writable_dir(args.workdir, "--workdir")
    writable_dir(args.findings, "--findings")
    writable_dir(report_dir, "--report")
    if "atheris" in engines and args.corpus_dir is not None:
        writable_dir(args.corpus_dir, "--corpus-dir")
    db = args.hypothesis_db or args.shared
    if "hypothesis" in engines and db is not None:
        if db.startswith("redis://"):
            require_redis(db, "hakfuzz fuzz: --hypothesis-db")
        else:
            writable_dir(Path(db), "--hypothesis-db")


def run(args: argparse.Namespace) -> int:
    """Run the campaign; print the summary table or JSON."""
    err = console(stderr=True)
    parse_engines(args.engine, "hakfuzz fuzz")
    target = _target(args)
    engines, skipped = _engines(args, target)
    variants = _variants(args.variant, engines, target)
    workdir: Path = args.workdir
    report_dir = args.report or workdir / "reports" / time.strftime("%Y%m%d-%H%M%S")
    _check_outputs(args, engines, report_dir)
    for engine, why in skipped.items():
        err.print(f"{engine}: {why}", style="yellow", markup=False)
    foreign_frees = args.foreign_frees != "off"
    pairs = tuple(parse_pairs(args.configure, "hakfuzz fuzz: --configure").items())
    ignored = None
    if target is not None:  # a refused option is a usage error: before anything is printed
        ignored = _check_configure(pairs, target, tool("hakdriver-foreign", variants[0]),
                                   foreign_frees)
    if target is not None:

        notice = inherited_preload_notice("hakfuzz fuzz")
        if notice is not None:
            err.print(notice, soft_wrap=True, markup=False)
        err.print(f"target {target.describe()}, foreign frees {'on' if foreign_frees else 'off'}",
                  style="dim", markup=False)
        if ignored is not None:
            err.print(ignored, style="yellow", markup=False)
    # Build once, here, so workers do not race to compile and the clock is fair.
    err.print(f"building hakmem ({', '.join(variants)}) and the driver...", style="dim")
    for variant in variants:
        if target is not None:
            tool("hakdriver-foreign", variant)
            if "preload" in engines:
                tool("preloadcalls", variant)
            continue
        prepare(variant)
        if "parallel" in engines or "preload" in engines:
            tool("hakdriver", variant)
        if "preload" in engines and can_preload(variant):
            tool("libhakmem.so", variant)
            tool("preloadcalls", variant)
    if "atheris" in engines and "release" in variants and native_coverage_available():
        build("coverage")
    seeds = tuple(sorted(Path("corpus").rglob("*.json"))) if Path("corpus").is_dir() else ()
    opts = CampaignOptions(
        engines=engines,
        seconds=args.time,
        jobs=args.jobs,
        variants=variants,
        seed=args.seed,
        workdir=workdir,
        corpus_dir=args.corpus_dir or workdir / "atheris-corpus",
        db=args.hypothesis_db or args.shared or str(workdir / "hypothesis-db"),
        seeds=seeds,
        libfuzzer_args=tuple(args.libfuzzer),
        findings_dir=args.findings,
        target=target,
        foreign_frees=foreign_frees,
        target_config=pairs,
    )
    shared = _shared(args, opts, err)
    stop = StopSignals()
    with stop.installed():
        result = _run_live(opts, err, stop, shared)
        if result.findings and stop.signum is None:
            err.print(f"minimising {len(result.findings)} finding(s)...", style="dim")
        triaged = triage(
            result.ledger,
            FindingStore(args.findings),
            seconds_each=args.minimize_time,
            stop=stop,
        )
        result.interrupted = result.interrupted or stop.name
        extra: dict[str, Any] = {}
        if target is not None:
            extra["target"] = target.as_json()
            extra["foreign_frees"] = "on" if foreign_frees else "off"
            extra["skipped_engines"] = skipped
        if shared is not None:  # offer the minimised programs: the smallest is kept
            for t in triaged:
                program = load_program(t.path)
                shared.publish(replace(t.finding, program=program), t.engines[0], count=False)
            extra["shared"] = {
                "machine": shared.machine,
                "corpus_pulled": shared.pulled,
                "up": shared.up,
            }
        if stop.signum is None and args.gaps and target is None:  # gaps are hakmem's lines
            err.print("measuring which native lines the campaign's programs reach...", style="dim")
            sources = [*opts.seeds, args.findings]
            if opts.corpus_dir is not None:
                sources.append(opts.corpus_dir)
            extra["coverage_gaps"] = coverage_gaps(sources, workdir)
        doc = _write_report(report_dir, result, triaged, err, extra)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _summary(doc)
    if stop.signum is not None:
        return stop.exit_code
    return 1 if triaged or result.failures else 0


def _shared(args: argparse.Namespace, opts: Any, err: Any) -> Any:
    """The shared state of --shared (connected now: a usage error if it cannot be)."""
    if args.shared is None:
        return None

    client = connect(args.shared)
    machine = machine_name()
    err.print(f"shared state: {args.shared} as {machine}", style="dim")
    return SharedCampaign(
        client,
        machine,
        corpus_dir=opts.corpus_dir if "atheris" in opts.engines else None,
        quarantine_file=quarantine_file(opts.workdir),
        on_notice=lambda message: err.print(f"[yellow]{message}[/yellow]"),
    )


def _write_report(
    report_dir: Path, result: Any, triaged: Any, err: Any, extra: dict[str, Any]
) -> dict[str, Any]:
    """The report, in a temporary directory if ``report_dir`` fails now (it was checked)."""
    try:
        return write_report(report_dir, result, triaged, extra)
    except OSError as exc:
        fallback = fallback_dir("report")
        err.print(f"could not write the report to {report_dir} ({exc}); writing it to {fallback}")
        return write_report(fallback, result, triaged, extra)


def _table(tallies: dict[str, Any], elapsed: float, title: str) -> Any:

    table = Table(title=title, title_justify="left")
    for col in ("engine", "workers", "execs", "execs/s", "coverage", "findings", "restarts"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, t in tallies.items():
        rate = t.execs / elapsed if elapsed > 0 else 0.0
        table.add_row(
            name,
            str(t.workers),
            f"{t.execs:,}",
            f"{rate:,.1f}",
            f"{t.coverage:,}",
            str(t.findings),
            str(t.restarts),
        )
    return table


def _run_live(opts: Any, err: Any, stop: Any, shared: Any) -> Any:
    """Run the supervisor with live progress: a table in a terminal, a line each 10 s in a log."""
    live = Live(console=err, refresh_per_second=4) if err.is_terminal else None
    last = [0.0]

    def update(tallies: dict[str, Any], elapsed: float) -> None:
        if live is not None:
            title = f"hakfuzz fuzz — {elapsed:.0f}/{opts.seconds:.0f} s"
            live.update(_table(tallies, elapsed, title))
        elif elapsed - last[0] >= 10:
            last[0] = elapsed
            parts = ", ".join(
                f"{n} {t.execs:,} execs cov {t.coverage:,} found {t.findings}"
                for n, t in tallies.items()
            )
            err.print(f"[{elapsed:5.0f}s] {parts}")

    shown = "[red]finding[/red]" if live is not None else "finding:"
    with live if live is not None else nullcontext():
        return Supervisor(
            opts,
            on_update=update,
            on_finding=lambda f: err.print(f"{shown} {escape(f.summary())}"),
            should_stop=stop.requested,
            on_notice=lambda message: err.print(f"[yellow]{escape(message)}[/yellow]"),
            shared=shared,
        ).run()


def _reached(out: Any, rows: list[dict[str, Any]]) -> None:
    """Programs that reached each milestone and config boundary, per engine."""
    if not rows:
        return
    engines = list(rows[0]["programs"])
    table = Table(title="reached (programs per engine)", title_justify="left")
    table.add_column("milestone / boundary")
    for engine in engines:
        table.add_column(engine, justify="right")
    for row in rows:
        table.add_row(row["name"], *(f"{row['programs'][e]:,}" for e in engines))
    out.print(table)
    missed = [r["name"] for r in rows if not any(r["programs"].values())]
    if missed:
        out.print(f"[yellow]no engine reached: {', '.join(missed)}[/yellow]")


def _summary(doc: dict[str, Any]) -> None:

    out = console()
    stopped = f", stopped by {doc['interrupted']}" if doc["interrupted"] else ""
    table = Table(
        title=f"hakfuzz fuzz: {doc['seconds']:.0f} s, variant {doc['variant']}{stopped}",
        title_justify="left",
    )
    cols = (
        "engine",
        "workers",
        "execs",
        "execs/s",
        "ops",
        "coverage",
        "native edges",
        "findings",
        "restarts",
        "execs by build",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, t in doc["engines"].items():
        table.add_row(
            name,
            str(t["workers"]),
            f"{t['execs']:,}",
            f"{t['execs_per_sec']:,.1f}",
            f"{t['ops']:,}",
            f"{t['coverage']:,}",
            f"{t['native_edges']:,}" if name == "atheris" else "-",
            str(t["findings"]),
            str(t["restarts"]),
            " / ".join(f"{v} {n:,}" for v, n in t["by_variant"].items()),
        )
    out.print(table)
    if doc.get("target"):
        target = doc["target"]
        out.print(f"target {target['name']}: {target['real_path']} (sha256 "
                  f"{target['sha256'][:12]}), foreign frees {doc['foreign_frees']}",
                  soft_wrap=True, markup=False)
        for name, why in doc.get("skipped_engines", {}).items():
            out.print(f"{name}: {why}", style="yellow", markup=False)
    out.print(
        "coverage: hypothesis = distinct (op kind, counters changed) behaviours; atheris = "
        "libFuzzer's features (Python + native edges); parallel = distinct (workload, "
        "counters, verdict) outcomes; preload = distinct (job, verdict) outcomes",
        style="dim",
    )
    _reached(out, doc["reached"])
    for name, t in doc["engines"].items():
        for note in t["notices"]:
            out.print(f"[yellow]{name}[/yellow]: {escape(note)}")
    for name, why in doc["failures"].items():
        out.print(f"[red]{name} failed[/red]: {escape(why)}")
    for event in doc["events"]:
        out.print(f"[dim]event (not a finding): {escape(event)}[/dim]")
    for path in doc["unconfirmed"]:
        out.print(f"[yellow]not re-run (interrupted): {path}[/yellow]")
    if not doc["findings"]:
        out.print("findings: none")
    for f in doc["findings"]:
        rate = (
            "" if f["reproduction_rate"] is None else f", reproduces {f['reproduction_rate']:.0%}"
        )
        size = f"{f['ops_before']} -> {f['ops']} ops" if f["minimised"] else f"{f['ops']} ops, "
        size += "" if f["minimised"] else "not minimised"
        seen = f", met {f['count']} times by {', '.join(f['found_by'])}" if f["count"] > 1 else ""
        out.print(
            f"[red]{f['signature']}[/red] ({f['engine']}, {size}{rate}{seen}): "
            f"{escape(f['message'])}\n"
            f"  {f['replay']}"
        )
        if f["minimise_note"]:
            out.print(f"  [dim]{escape(f['minimise_note'])}[/dim]")
    gaps = doc.get("coverage_gaps")
    if gaps and "error" not in gaps:
        out.print(
            f"native lines reached: {gaps['executed']}/{gaps['executable']} "
            f"({gaps['percent']}%), {len(gaps['gaps'])} unreached ranges (in report.json; "
            "hakfuzz coverage shows them)"
        )
    elif gaps:
        out.print(f"[yellow]coverage gaps not measured: {escape(gaps['error'])}[/yellow]")
    out.print(f"report: {doc['report_dir']}/report.json, coverage.png")
