"""Replay corpus programs: the regression suite every test run repeats.

Each program runs differentially (model vs native, serialised, exact mode);
a program with several threads (or a churn section) also runs in the C
driver on real pthreads,
where the driver's oracles and the model's invariant mode judge it.  Corpus
files are found under the given paths (``*.json``, recursively).

Replay never dies with the programs it runs, and never stops at the first
bad file: every file gets a row.  The differential runs happen in one forked
child that serves them all (as fast as running them here, see
:mod:`hakfuzz.campaign.forked`); a program that kills that child is a failed
row naming the crash, re-run alone in a fresh child to confirm it, and a new
child carries on with the rest.  A malformed file is a row too, with the
:class:`ProgramError` message.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz.campaign.foreign import finding_oracle, meta_finding
from hakfuzz.campaign.forked import Death, run_once, stream
from hakfuzz.campaign.reproduce import run_in_child
from hakfuzz.campaign.store import read_meta
from hakfuzz.differential import DifferentialExecutor
from hakfuzz.differential.driver import run_driver
from hakfuzz.engines.parallel.stress import judge_run
from hakfuzz.engines.preload_engine import run_job
from hakfuzz.native import LoadError
from hakfuzz.program import Program, ProgramError, load_program
from hakfuzz.targets import PRELOAD_VARIANTS, Target
from hakfuzz.variants import flags_of, load_module, tool

if TYPE_CHECKING:
    from hakfuzz.campaign.forked import Death

CRASH_KINDS = ("signal", "exit", "timeout")
"""Finding kinds that record a dead process: such findings replay in a child."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The verdict on one corpus file."""

    path: Path
    ops: int
    threads: int
    differential: str | None  # None: agreed; else the divergence (or the crash)
    parallel: str | None  # None: passed or not run; else the finding
    ran_parallel: bool
    seconds: float
    error: str | None = None  # the file is malformed: ProgramError's message (nothing ran)

    @property
    def ok(self) -> bool:
        return self.error is None and self.differential is None and self.parallel is None

    @property
    def malformed(self) -> bool:
        return self.error is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "ops": self.ops,
            "threads": self.threads,
            "differential": self.differential,
            "parallel": self.parallel,
            "ran_parallel": self.ran_parallel,
            "seconds": round(self.seconds, 4),
            "malformed": self.malformed,
            "error": self.error,
        }


def corpus_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*.json`` under ``paths``, sorted (files taken as given).

    A missing path is a usage error.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.json")))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"hakfuzz replay: {path}: no such file or directory")
    return found


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) as (K, N); a usage error otherwise."""
    k, slash, n = text.partition("/")
    if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise UsageError(f"shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(k), int(n)


def shard(files: list[Path], k: int, n: int) -> list[Path]:
    """The K-th of N shards of ``files``: every N-th file from the K-th.

    N jobs of a CI matrix, each taking its own K, replay every file exactly
    once between them.
    """
    return files[k - 1 :: n]


@dataclass(frozen=True, slots=True)
class _Entry:
    path: Path
    program: Program
    variant: str
    isolated: bool  # a fresh interpreter per run (--isolate, crash findings, sanitizers)
    job: dict[str, Any] | None = None  # a preload finding: the job to run again


def replay(
    paths: Iterable[Path],
    *,
    variant: str | None = None,
    parallel: bool = True,
    repeat: int = 1,
    isolate: bool = False,
    timeout: float = 120.0,
) -> Iterator[ReplayResult]:
    """Replay each file, in order; one result per file, whatever happens to it.

    A malformed file is a result with ``error`` set.  A finding file that
    records a crash (``signal``, ``exit``, ``timeout``) replays in a fresh
    child process (``python -m hakfuzz.campaign.child``), as does every file
    with ``isolate``; the others run in a forked child, and a crash there is
    a failed result.  A differential run longer than ``timeout`` seconds is
    killed and fails.  With no ``variant``, a finding replays on the variant
    it was found on (its metadata), anything else on ``release``.
    """
    if repeat < 1:
        raise UsageError(f"hakfuzz replay: --repeat must be at least 1, got {repeat}")
    entries: list[_Entry | ReplayResult] = []
    for path in paths:
        try:
            program = load_program(path)
        except ProgramError as exc:
            entries.append(ReplayResult(path, 0, 0, None, None, False, 0.0, str(exc)))
            continue
        meta = read_meta(path)
        chosen = variant or str(meta.get("variant") or "release")
        crashed = meta.get("kind") in CRASH_KINDS
        job = meta.get("job") if isinstance(meta.get("job"), dict) else None
        entries.append(_Entry(path, program, chosen, isolate or crashed or job is not None, job))
    in_process = {e.variant for e in entries if isinstance(e, _Entry) and not e.isolated}
    loadable = {v: _load(v, explicit=v == variant) for v in in_process}
    entries = [_placed(e, loadable) if isinstance(e, _Entry) else e for e in entries]
    forked = [e for e in entries if isinstance(e, _Entry) and not e.isolated]
    job = _DifferentialJob(forked)
    verdicts = stream(len(forked), job, timeout=timeout)
    drivers: dict[str, Path] = {}
    served = 0  # the forked entries met so far: the index of the next one in ``forked``
    try:
        for entry in entries:
            if isinstance(entry, ReplayResult):
                yield entry
                continue
            started = time.perf_counter()
            if entry.isolated:
                verdict = _in_fresh_child(entry, timeout)
            else:
                outcome = next(verdicts)
                served += 1
                if isinstance(outcome, Death):
                    verdict = _crashed(outcome, job, served - 1, timeout)
                else:
                    verdict = _verdict(outcome)
            on_pthreads = entry.program.threads > 1 or entry.program.churn is not None
            parallel_verdict, ran = None, parallel and on_pthreads
            if ran:
                parallel_verdict = _on_pthreads(entry, drivers, repeat)
            yield ReplayResult(
                entry.path,
                len(entry.program.ops),
                entry.program.threads,
                verdict,
                parallel_verdict,
                ran,
                time.perf_counter() - started,
            )
    finally:
        verdicts.close()


class _DifferentialJob:
    """Runs ``entries[i]`` differentially; called in the forked child."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.executors: dict[str, Any] = {}  # filled in the child, one per variant

    def __call__(self, index: int) -> dict[str, Any]:

        entry = self.entries[index]
        executor = self.executors.get(entry.variant)
        if executor is None:
            executor = DifferentialExecutor(load_module(entry.variant))
            self.executors[entry.variant] = executor
        divergence = executor.run(entry.program)
        return {"divergence": None if divergence is None else divergence.describe()}


def _load(variant: str, *, explicit: bool) -> bool | str:
    """:func:`loads_here`, or why the variant cannot be built.

    A variant named on the command line that cannot be built is the user's
    error (raised); one recorded in a finding (a mutant patch that no longer
    applies, say) fails that finding's rows only.
    """
    try:
        return loads_here(variant)
    except HakfuzzError as exc:
        if explicit:
            raise
        return f"cannot build variant {variant}: {exc}"


def _placed(entry: _Entry, loadable: dict[str, bool | str]) -> _Entry | ReplayResult:
    """The entry as it will run: forked, in a fresh child, or a failed row now."""
    if entry.isolated:
        return entry
    status = loadable[entry.variant]
    if isinstance(status, str):
        program = entry.program
        return ReplayResult(entry.path, len(program.ops), program.threads, status, None, False, 0.0)
    return entry if status else _Entry(entry.path, entry.program, entry.variant, True)


def loads_here(variant: str) -> bool:
    """Load ``variant`` into this process (building it if needed); False if it cannot be.

    A sanitizer variant loads only into a process started with its runtime
    preloaded, which :func:`~hakfuzz.campaign.reproduce.run_in_child` arranges.
    Loading happens here, before any fork, so every forked child inherits it.
    """
    try:
        load_module(variant)
    except LoadError:
        return False
    return True


def _verdict(outcome: dict[str, Any]) -> str | None:
    if "exception" in outcome:
        text = str(outcome["exception"])
        print(text, file=sys.stderr, end="")
        return f"replay error: {text.strip().splitlines()[-1]}"
    divergence = outcome.get("divergence")
    return None if divergence is None else str(divergence)


def _crashed(death: Death, job: _DifferentialJob, index: int, timeout: float) -> str:
    """The row of a program that killed (or hung) the child serving the runs.

    A crash runs again alone in a fresh fork, so the row says whether it is
    the program's own or left behind by the programs before it.  A hang is
    not run again: that would cost another ``timeout``.
    """
    if death.returncode is None:
        return f"hung: {death.detail} [{death.signature}]"
    again = run_once(lambda: job(index), timeout=timeout)
    first = f"crashed: {death.detail}"
    if isinstance(again, Death):
        if again.signature == death.signature:
            return f"{first} [{death.signature}]"
        return f"{first}; alone: {again.detail} [{again.signature}]"
    alone = _verdict(again)
    if alone is None:
        return f"{first}; alone it passed (the programs before it matter)"
    return f"{first}; alone: {alone}"


def _in_fresh_child(entry: _Entry, timeout: float) -> str | None:

    if entry.job is not None:  # a preload finding: its job, under LD_PRELOAD again

        found = run_job(entry.job, entry.program, entry.variant)
        return None if found is None else f"under the preload: {found.signature}"

    signature = run_in_child(entry.program, entry.variant, timeout=timeout)
    return None if signature is None else f"in a child process: {signature}"


def _on_pthreads(entry: _Entry, drivers: dict[str, Path], repeat: int) -> str | None:
    """The C driver's verdict (a child process already), ``repeat`` runs."""
    if entry.variant not in drivers:
        drivers[entry.variant] = tool("hakdriver", entry.variant)
    for _ in range(repeat):
        run = run_driver(drivers[entry.variant], entry.program)
        finding = judge_run(run, entry.program, variant=entry.variant, seed=None, engine="replay")
        if finding is not None:
            return finding.summary()
    return None


__all__ = [
    "CRASH_KINDS",
    "ProgramError",
    "ReplayResult",
    "corpus_files",
    "loads_here",
    "parse_shard",
    "replay",
    "replay_foreign",
    "shard",
]


def replay_foreign(
    path: Path, program: Program, meta: dict[str, object], target: Target, *, repeat: int = 1
) -> ReplayResult:
    """One row of ``hakfuzz replay`` for a file run on a foreign target.

    The program runs as its finding ran (its preload job, or the foreign
    driver), ``repeat`` times or until it fails; there is no model to
    compare with, so the row's verdict is in its ``parallel`` column.
    """
    variant = str(meta.get("variant", "release"))
    if flags_of(variant) not in PRELOAD_VARIANTS:
        variant = "release"
    oracle = finding_oracle(meta_finding(program, meta, variant), variant, target)
    started = time.perf_counter()
    verdict = None
    for _ in range(repeat):
        verdict = oracle(program)
        if verdict is not None:
            break
    return ReplayResult(path, len(program.ops), program.threads, None, verdict, True,
                        time.perf_counter() - started)
