"""A kill campaign: the fuzz campaign itself, aimed at one mutant, until its first finding.

For each mutant (``native/mutants/NAME.patch``, or a user's own directory of
patches): build it with every requested set of flags (``mutant:NAME``,
``mutant:NAME@asan``, ``mutant:NAME@tsan``), optionally replay the corpus on
it, then run the very campaign ``hakfuzz fuzz`` runs (every engine, every
build, the same supervisor, journals and oracles) and stop at its first
finding.  The finding is minimised and re-run like any other.  So what this
measures is what ``hakfuzz fuzz`` does, not a second set of engines; with
the corpus left out (``replay=False``: no replay, no seeds), it measures
the engines alone.

``as_foreign``: each mutant is built as an ``LD_PRELOAD`` ``libhakmem.so``
(release) and fuzzed the way any foreign allocator is, by the engines that
apply to one (:func:`~hakfuzz.campaign.applies.engines_for`), with its
``hakfuzz_*`` hooks ignored (``HAKFUZZ_NO_HOOKS=1``) and no model: what the
allocator-neutral oracles alone can kill.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hakfuzz.campaign.applies import engines_for
from hakfuzz.campaign.store import FindingStore
from hakfuzz.campaign.supervisor import CampaignOptions, Supervisor
from hakfuzz.campaign.triage import triage
from hakfuzz.engines import ENGINES
from hakfuzz.engines.preload_engine import can_preload
from hakfuzz.native._mutants import Mutant
from hakfuzz.program import Program, load_program
from hakfuzz.replay import corpus_files, replay
from hakfuzz.targets import resolve_target
from hakfuzz.variants import DEFAULT_VARIANTS, MUTANT_PREFIX, prepare, tool, with_flags

if TYPE_CHECKING:
    from hakfuzz.targets import Target

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class KillOptions:
    """What ``hakfuzz mutants`` runs against each mutant."""

    seconds: float = 60.0  # campaign budget per mutant (builds not counted)
    engines: tuple[str, ...] = ENGINES
    builds: tuple[str, ...] = DEFAULT_VARIANTS  # flags each mutant is built with
    jobs: int = 2
    replay: bool = True  # replay the corpus first and seed the engines with it
    corpus: tuple[Path, ...] = ()
    minimise_seconds: float = 20.0
    seed: int = 1
    as_foreign: bool = False  # the mutant's libhakmem.so as a foreign target, no hooks, no model


@dataclass(slots=True)
class MutantResult:
    """The verdict on one mutant."""

    mutant: Mutant
    build_seconds: float = 0.0
    seconds: float = 0.0  # wall time of replay + campaign
    killed_by: str | None = None  # an engine, or "replay"
    build: str | None = None  # the variant it was killed on
    time_to_kill: float | None = None
    signature: str | None = None
    message: str | None = None
    ops_found: int | None = None
    ops_minimised: int | None = None
    minimised: bool = False
    reproduction_rate: float | None = None
    program: Program | None = None  # the (minimised) killing program
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    execs: dict[str, int] = field(default_factory=dict)

    @property
    def killed(self) -> bool:
        return self.killed_by is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "mutant": self.mutant.name,
            "title": self.mutant.title,
            "killed": self.killed,
            "error": self.error,
            "engine": self.killed_by,
            "build": self.build,
            "signature": self.signature,
            "message": self.message,
            "time_to_kill": None if self.time_to_kill is None else round(self.time_to_kill, 2),
            "finding_ops": self.ops_found,
            "minimised_ops": self.ops_minimised,
            "minimised": self.minimised,
            "reproduction_rate": self.reproduction_rate,
            "build_seconds": round(self.build_seconds, 2),
            "seconds": round(self.seconds, 2),
            "execs": self.execs,
            "notes": self.notes,
        }


def _replay_kill(result: MutantResult, opts: KillOptions, variant: str, started: float) -> None:
    """Replay the corpus on the mutant; the first failing file is the kill."""
    for row in replay(corpus_files(opts.corpus), variant=variant):
        if not row.ok:
            result.killed_by, result.build = "replay", variant
            result.time_to_kill = time.time() - started
            result.signature = f"replay {row.path.name}"
            result.message = str(row.differential or row.parallel)
            program = load_program(row.path)
            result.ops_found = result.ops_minimised = len(program.ops)
            result.program = program
            return


def run_mutant(
    mutant: Mutant, opts: KillOptions, workdir: Path, progress: Progress | None = None
) -> MutantResult:
    """Build ``mutant`` with every flag set, then replay and fuzz it until its first finding."""
    say = progress or (lambda line: None)
    result = MutantResult(mutant)
    if opts.as_foreign:
        return _foreign_kill(result, opts, workdir / mutant.name, say)
    variants = tuple(with_flags(f"{MUTANT_PREFIX}{mutant.name}", f) for f in opts.builds)
    began = time.time()
    try:
        for variant in variants:
            prepare(variant)
            if "parallel" in opts.engines or "preload" in opts.engines:
                tool("hakdriver", variant)
            if "preload" in opts.engines and can_preload(variant):
                tool("libhakmem.so", variant)
                tool("preloadcalls", variant)
    except Exception as exc:  # a patch that no longer applies or compiles: say which
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.build_seconds = time.time() - began
    started = time.time()
    if opts.replay and opts.corpus:
        say(f"{mutant.name}: replaying the corpus")
        _replay_kill(result, opts, variants[0], started)
    if not result.killed:
        _campaign_kill(result, opts, variants, workdir / mutant.name, started, say)
    result.seconds = time.time() - started
    if result.killed:
        say(
            f"{mutant.name}: killed by {result.killed_by} on {result.build} after "
            f"{result.time_to_kill or 0:.1f} s ({result.signature})"
        )
    elif result.error is None:
        say(f"{mutant.name}: survived {opts.seconds:.0f} s")
    return result


NO_HOOKS_ENV = "HAKFUZZ_NO_HOOKS"
"""Set to 1, the foreign driver ignores a target's hakfuzz_* hooks (native/driver/foreign.c)."""


def _foreign_kill(result: MutantResult, opts: KillOptions, workdir: Path,
                  say: Progress) -> MutantResult:
    """Fuzz the mutant's ``libhakmem.so`` as a foreign target until its first finding."""
    variant = f"{MUTANT_PREFIX}{result.mutant.name}"
    began = time.time()
    try:
        library = tool("libhakmem.so", variant)
        tool("hakdriver-foreign", "release")
        tool("preloadcalls", "release")
        target = resolve_target(str(library))
    except Exception as exc:  # a patch that no longer applies or compiles: say which
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.build_seconds = time.time() - began
    engines = tuple(e for e in opts.engines if e in engines_for(target))
    if not engines:
        result.error = f"none of {', '.join(opts.engines)} runs a foreign target"
        return result
    started = time.time()
    foreign = dataclasses.replace(opts, engines=engines, builds=("release",), replay=False,
                                  corpus=())
    _campaign_kill(result, foreign, ("release",), workdir, started, say, target=target)
    result.seconds = time.time() - started
    if result.killed:
        result.build = f"{variant} (LD_PRELOAD)"
        say(f"{result.mutant.name}: killed by {result.killed_by} as a foreign target after "
            f"{result.time_to_kill or 0:.1f} s ({result.signature})")
    elif result.error is None:
        say(f"{result.mutant.name}: survived {opts.seconds:.0f} s as a foreign target")
    return result


def _campaign_kill(
    result: MutantResult,
    opts: KillOptions,
    variants: tuple[str, ...],
    workdir: Path,
    started: float,
    say: Progress,
    *,
    target: Target | None = None,
) -> None:
    seeds = tuple(corpus_files(opts.corpus)) if opts.replay and opts.corpus else ()
    campaign = CampaignOptions(
        engines=opts.engines,
        seconds=max(1.0, opts.seconds - (time.time() - started)),
        jobs=opts.jobs,
        variants=variants,
        seed=opts.seed,
        workdir=workdir,
        corpus_dir=workdir / "atheris-corpus",
        db=str(workdir / "hypothesis-db"),
        seeds=seeds,
        findings_dir=workdir / "findings",
        target=target,
    )
    say(f"{result.mutant.name}: campaign of {', '.join(opts.engines)} on {', '.join(variants)}")
    supervisor = Supervisor(campaign)
    supervisor.should_stop = lambda: "killed" if supervisor.ledger.seen else None
    done = supervisor.run()
    result.execs = {name: t.execs for name, t in done.tallies.items()}
    result.notes = [f"{name}: {why}" for name, why in done.failures.items()]
    if not done.ledger.seen:
        return
    first = next(iter(done.ledger.seen.values()))
    result.killed_by, result.build = first.credited, first.finding.variant
    result.time_to_kill = first.at - started
    result.signature, result.message = first.finding.signature, first.finding.message
    triaged = triage(
        done.ledger, FindingStore(workdir / "findings"), seconds_each=opts.minimise_seconds
    )
    killing = next(t for t in triaged if t.finding.signature == first.finding.signature)
    result.ops_found, result.ops_minimised = killing.ops_before, killing.ops_after
    result.minimised, result.reproduction_rate = killing.minimised, killing.reproduction_rate
    result.program = load_program(killing.path)


__all__ = ["NO_HOOKS_ENV", "KillOptions", "MutantResult", "run_mutant"]
