"""The kill campaign: build, run engines until a kill or the budget, minimise.

For each mutant: build it, run the engines against it until one kills it or
its time is up, and minimise the killing program.

Schedule (cheapest first, then interleaved): corpus ``replay`` once (a few
seconds), then ``hypothesis`` and ``stress`` take turns in growing slices —
5 s each, then 10 s each, ... up to ``max(5 s, budget / 4)`` — until the
budget is spent, so every engine gets an early look, and a mutant only the
parallel engine can see (a race) is not starved by the state machine, nor
the other way round.  Every engine runs in a child process
(:mod:`hakfuzz.mutants.supervise`).  Time to kill is wall time from the
start of the mutant's campaign (after its build) to the kill.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hakfuzz.mutants.minimise import Minimised, minimise_kill
from hakfuzz.mutants.supervise import ChildSpec, EngineRun, Kill, run_engine
from hakfuzz.native._mutants import Mutant, mutants

ENGINES = ("replay", "hypothesis", "stress")
"""The engines of a kill campaign, in the order they first run."""


@dataclass(frozen=True, slots=True)
class CampaignOptions:
    """What ``hakfuzz mutants`` runs."""

    seconds: float = 60.0                 # budget per mutant
    only: tuple[str, ...] = ()            # mutant names; empty: all
    engines: tuple[str, ...] = ENGINES
    corpus: tuple[Path, ...] = ()         # replay input; empty: replay is skipped
    seed: int = 0
    minimise: bool = True
    minimise_seconds: float = 20.0
    shrink_seconds: float = 20.0          # Hypothesis's own shrinking, after its first failure
    hang_seconds: float = 10.0
    workdir: Path | None = None           # default: a temporary directory, removed at the end
    source: Path | None = None            # the tree the patches apply to; default native/


@dataclass(slots=True)
class MutantResult:
    """The verdict on one mutant."""

    mutant: Mutant
    build_seconds: float = 0.0
    started: float = 0.0
    seconds: float = 0.0
    runs: list[EngineRun] = field(default_factory=list)
    kill: Kill | None = None
    minimised: Minimised | None = None
    error: str | None = None

    @property
    def killed(self) -> bool:
        return self.kill is not None

    @property
    def time_to_kill(self) -> float | None:
        """Seconds from the start of this mutant's campaign to the kill."""
        return None if self.kill is None else max(0.0, self.kill.at - self.started)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready record (the killing program as op count, not text)."""
        kill, small = self.kill, self.minimised
        return {
            "mutant": self.mutant.name, "title": self.mutant.title,
            "killed": self.killed, "error": self.error,
            "engine": kill.engine if kill else None,
            "kind": kill.kind if kill else None,
            "oracle": kill.detail if kill else None,
            "signature": kill.signature if kill else None,
            "message": kill.message if kill else None,
            "where": kill.where if kill else None,
            "time_to_kill": None if self.time_to_kill is None else round(self.time_to_kill, 2),
            "finding_ops": len(kill.program.ops) if kill else None,
            "finding_threads": kill.program.threads if kill else None,
            "minimised_ops": len(small.program.ops) if small else None,
            "minimised_by": small.by if small else None,
            "reproduction_rate": small.reproduction_rate if small else None,
            "minimise_note": small.note if small else None,
            "build_seconds": round(self.build_seconds, 2),
            "campaign_seconds": round(self.seconds, 2),
            "runs": [r.as_json() for r in self.runs],
        }


Progress = Callable[[str], None]

_MIN_SLICE = 2.0  # a child needs about this long to start: a shorter slice is wasted


def selected(opts: CampaignOptions) -> list[Mutant]:
    """The mutants ``opts.only`` names (all when empty), in catalogue order."""
    from hakfuzz.native._mutants import get_mutant

    if not opts.only:
        return list(mutants().values())
    return [get_mutant(name) for name in opts.only]


def build_mutant(mutant: Mutant, source: Path | None = None) -> Path:
    """Patch, compile the module and the driver (cached); the driver's path."""
    from hakfuzz.native import NativeTree, build
    from hakfuzz.native._mutants import mutant_tree
    from hakfuzz.native._tools import build_tool

    tree = mutant_tree(mutant.name, source=NativeTree(source) if source is not None else None)
    build("release", tree=tree)
    return build_tool("hakdriver", "release", tree=tree)


def run_mutant(mutant: Mutant, opts: CampaignOptions, workdir: Path,
               progress: Progress | None = None) -> MutantResult:
    """Build ``mutant`` and run the engines against it until a kill or the budget."""
    result = MutantResult(mutant)
    say = progress or (lambda _line: None)
    built = time.time()
    try:
        driver = build_mutant(mutant, opts.source)
    except Exception as exc:  # a patch that no longer applies or compiles: say which
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.build_seconds = time.time() - built
    result.started = time.time()
    deadline = result.started + opts.seconds
    for turn, engine in enumerate(_schedule(opts)):
        now = time.time()
        if deadline - now < _MIN_SLICE or result.kill is not None:
            break
        if engine == "replay" and not opts.corpus:
            continue
        end = deadline if engine == "replay" else min(deadline, now + slice_length(opts, turn))
        say(f"{mutant.name}: {engine} for up to {end - now:.0f} s")
        spec = ChildSpec(engine, mutant.name, end, workdir / mutant.name, seed=opts.seed + turn *
                         100_000, corpus=opts.corpus, shrink_seconds=opts.shrink_seconds,
                         hang_seconds=opts.hang_seconds, source=opts.source)
        run = run_engine(spec)
        result.runs.append(run)
        result.kill = run.kill
    result.seconds = time.time() - result.started
    if result.kill is not None:
        kill = result.kill
        say(f"{mutant.name}: killed by {kill.engine} ({kill.signature}) after "
            f"{result.time_to_kill or 0:.1f} s")
        if opts.minimise:
            result.minimised = minimise_kill(kill, mutant.name, driver,
                                             seconds=opts.minimise_seconds, source=opts.source)
        else:
            result.minimised = Minimised(kill.program, len(kill.program.ops), kill.minimised_by,
                                         note="minimisation off")
    else:
        say(f"{mutant.name}: survived {opts.seconds:.0f} s")
    return result


def _schedule(opts: CampaignOptions) -> list[str]:
    """``replay`` once, then the other engines in turn (more turns than can fit)."""
    rest = [e for e in opts.engines if e != "replay"]
    head = ["replay"] if "replay" in opts.engines else []
    turns = int(opts.seconds // _FIRST_SLICE) + 2
    return head + rest * turns


_FIRST_SLICE = 5.0


def slice_length(opts: CampaignOptions, turn: int) -> float:
    """Seconds for the ``turn``-th entry of the schedule.

    5 s for the first round of the interleaved engines, 10 s for the second,
    and so on, at most ``max(5 s, budget / 4)``.
    """
    engines = max(1, len([e for e in opts.engines if e != "replay"]))
    first = 1 if "replay" in opts.engines else 0
    round_index = max(0, turn - first) // engines
    return min(max(_FIRST_SLICE, opts.seconds / 4), _FIRST_SLICE * (round_index + 1))


def save_killing_program(result: MutantResult, directory: Path) -> Path | None:
    """Write the (minimised) killing program to ``directory/<mutant>.json``; its path."""
    from dataclasses import replace

    from hakfuzz.program import save_program

    if result.kill is None or result.minimised is None or not result.minimised.program.ops:
        return None
    kill = result.kill
    program = replace(result.minimised.program,
                      description=f"kills mutant {result.mutant.name} ({kill.engine}, "
                      f"{kill.signature}): {result.mutant.title}")
    path = directory / f"{result.mutant.name}.json"
    save_program(program, path)
    return path


def run_campaign(opts: CampaignOptions, *, progress: Progress | None = None,
                 on_result: Callable[[MutantResult], None] | None = None) -> list[MutantResult]:
    """Run every selected mutant's campaign in turn."""
    chosen = selected(opts)
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="hakfuzz-mutants-"))
    results: list[MutantResult] = []
    try:
        for mutant in chosen:
            result = run_mutant(mutant, opts, workdir, progress)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        if opts.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


__all__ = ["ENGINES", "CampaignOptions", "MutantResult", "build_mutant", "run_campaign",
           "run_mutant", "save_killing_program", "selected"]
