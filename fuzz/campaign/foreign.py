"""A foreign target in the campaign: one driver run, its verdict, and the record a finding keeps.

The campaign, ``replay`` and ``minimize`` all run a Program on a foreign
target the same way: the foreign driver (``hakdriver-foreign``) in a child
process started with :func:`hakfuzz.targets.child_env` (the target's
``LD_PRELOAD`` and nothing inherited), every run proven served by the
target's library, judged by the allocator-neutral oracles.  A finding's
Program carries the target it was met on (:class:`ProgramTarget`: the
``--allocator`` text, the library's real path and its sha256), so a replay
runs it there again and says when that file has changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hakfuzz.program import Program, ProgramTarget
from hakfuzz.targets import (
    PRELOAD_VARIANTS,
    Target,
    TargetError,
    TargetKind,
    child_env,
    served_by,
)
from hakfuzz.variants import flags_of

if TYPE_CHECKING:
    from pathlib import Path

    from hakfuzz.campaign.minimize import Oracle
    from hakfuzz.findings import Finding
    from hakfuzz.parallel.runner import RunResult
    from hakfuzz.replay import ReplayResult

RUN_TIMEOUT = 120.0


def spec_of(target: Target) -> str:
    """The ``--allocator`` text that names ``target`` again: its name, or its library's path."""
    return target.real_path if target.kind is TargetKind.PATH else target.name


def record(target: Target) -> ProgramTarget:
    """What a finding's Program keeps of ``target``."""
    return ProgramTarget(spec_of(target), target.real_path, target.sha256)


def stamp(program: Program, target: Target | None) -> Program:
    """``program`` marked as met on ``target`` (unchanged for the built-in hakmem)."""
    if target is None or program.target is not None:
        return program
    return dataclasses.replace(program, target=record(target))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_change(recorded: ProgramTarget) -> tuple[str, str] | None:
    """``(what, words)`` when the recorded library is gone or is another file now, else None.

    ``what`` is ``"gone"`` or ``"changed"``.
    """
    path = recorded.real_path
    if not os.path.isfile(path):
        return "gone", f"the library it was found on, {path}, is gone"
    try:
        now = _sha256(path)
    except OSError as exc:
        return "gone", f"the library it was found on, {path}, cannot be read ({exc.strerror})"
    if now != recorded.sha256:
        return "changed", (f"{path} has changed since the finding (sha256 {recorded.sha256[:12]} "
                           f"then, {now[:12]} now)")
    return None


def run_foreign(
    program: Program,
    target: Target,
    foreign_frees: bool,
    variant: str,
    *,
    timeout: float = RUN_TIMEOUT,
) -> RunResult:
    """One run of ``program`` in the foreign driver under ``target``, proven served by it."""
    from hakfuzz.parallel.runner import run_driver
    from hakfuzz.variants import tool

    run = run_driver(tool("hakdriver-foreign", variant), program, timeout=timeout,
                     env=child_env(target), foreign_frees=foreign_frees)
    if run.result is not None:
        seen = served_by(target, run.result.get("malloc_from"))
        if not seen.ok:
            raise TargetError(f"{target.name}: a driver run was not served by it: {seen.problem}")
    return run


def judge_foreign_run(
    run: RunResult,
    program: Program,
    target: Target,
    foreign_frees: bool,
    variant: str,
    *,
    seed: int | None,
    engine: str = "parallel",
) -> Finding | None:
    """The verdict on a foreign run; a crash that only foreign frees cause is named so."""
    from hakfuzz.parallel.stress import StressOptions, judge_foreign
    from hakfuzz.variants import tool

    opts = StressOptions(variant=variant, target=target, foreign_frees=foreign_frees,
                         timeout=RUN_TIMEOUT)
    found = judge_foreign(opts, tool("hakdriver-foreign", variant), run, program, seed)
    if found is None:
        return None
    extra = {**found.extra, "foreign_frees": "on" if foreign_frees else "off"}
    program = stamp(found.program, target)
    return dataclasses.replace(found, engine=engine, program=program, extra=extra)


def foreign_oracle(target: Target, foreign_frees: bool, variant: str) -> Oracle:
    """One foreign driver run per call: the failure's signature, or None."""

    def once(program: Program) -> str | None:
        run = run_foreign(program, target, foreign_frees, variant)
        found = judge_foreign_run(run, program, target, foreign_frees, variant, seed=None)
        return None if found is None else found.signature

    return once


def frees_of(extra: dict[str, object]) -> bool:
    """Whether a finding was met with foreign frees on (its extra or file says; default on)."""
    return extra.get("foreign_frees", "on") != "off"


def finding_oracle(finding: Finding, variant: str, target: Target) -> Oracle:
    """How to re-run a program of ``finding`` on ``target``: its preload job, or the driver."""
    frees = frees_of(finding.extra)
    job = finding.extra.get("job")
    if finding.engine == "preload" and isinstance(job, dict):
        from hakfuzz.campaign.engine_preload import run_job

        def preloaded(program: Program) -> str | None:
            found = run_job(job, program, variant, target=target, foreign_frees=frees)
            return None if found is None else found.signature

        return preloaded
    return foreign_oracle(target, frees, variant)


@dataclass(frozen=True, slots=True)
class Chosen:
    """The target a replay or minimisation runs a file on, and what changed since."""

    target: Target | None  # None: the built-in hakmem
    change: str | None = None  # "changed" when the recorded library's file differs now
    words: str | None = None  # the one line that says so

    def as_json(self) -> dict[str, object]:
        return {
            "target": None if self.target is None else self.target.as_json(),
            "target_change": self.change,
            "target_note": self.words,
        }


class Resolver:
    """Chooses each file's target: ``--allocator`` if given, else the one its program records.

    Targets are resolved once per name or path.  A recorded library that is
    gone is a usage error (exit 2) unless ``--allocator`` names another.
    """

    def __init__(self, allocator: str | None, prog: str, variant: str = "release") -> None:
        self.allocator = allocator
        self.prog = prog
        self.variant = variant
        self._known: dict[str, Target] = {}
        self.given: Target | None = None
        if allocator is not None and allocator != "hakmem":
            self.given = self._resolve(allocator, "--allocator ")

    def _resolve(self, spec: str, what: str) -> Target:
        from hakfuzz._errors import HakfuzzError, UsageError
        from hakfuzz.targets import resolve_target

        if spec not in self._known:
            try:
                self._known[spec] = resolve_target(spec, self.variant)
            except UsageError as exc:
                raise UsageError(f"{self.prog}: {what}{exc}") from None
            except HakfuzzError as exc:
                raise UsageError(f"{self.prog}: {what}{spec}: {exc}") from None
        return self._known[spec]

    def choose(self, program: Program, path: object) -> Chosen:
        """The target for ``program`` (read from ``path``)."""
        from hakfuzz._errors import UsageError
        from hakfuzz.targets import NAMES

        if self.allocator is not None:
            return Chosen(self.given)
        recorded = program.target
        if recorded is None:
            return Chosen(None)
        change = recorded_change(recorded)
        if change is not None and change[0] == "gone":
            raise UsageError(f"{self.prog}: {path}: {change[1]} (give --allocator to run it on "
                             "another allocator)")
        spec = recorded.spec if recorded.spec in NAMES else recorded.real_path
        target = self._resolve(spec, f"{path}: recorded target ")
        if change is None:
            return Chosen(target)
        return Chosen(target, change[0], f"{self.prog}: {path}: note: {change[1]}; running it "
                      "on the library as it is now")


def meta_finding(program: Program, meta: dict[str, object], variant: str) -> Finding:
    """A finding file's program and metadata as a Finding (what its oracle needs)."""
    from hakfuzz.findings import Finding

    extra: dict[str, object] = {k: meta[k] for k in ("job", "foreign_frees") if k in meta}
    return Finding(str(meta.get("engine", "replay")), str(meta.get("kind", "oracle")), "", "",
                   program, None, variant, None, extra)


def replay_foreign(
    path: Path, program: Program, meta: dict[str, object], target: Target, *, repeat: int = 1
) -> ReplayResult:
    """One row of ``hakfuzz replay`` for a file run on a foreign target.

    The program runs as its finding ran (its preload job, or the foreign
    driver), ``repeat`` times or until it fails; there is no model to
    compare with, so the row's verdict is in its ``parallel`` column.
    """
    import time

    from hakfuzz.replay import ReplayResult

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


def recorded_target(program: Program, variant: str = "release") -> Target:
    """The target ``program`` records, resolved again (its spec: a name or the path)."""
    from hakfuzz.targets import resolve_target

    assert program.target is not None
    return resolve_target(program.target.spec, variant)


__all__ = [
    "Chosen",
    "Resolver",
    "finding_oracle",
    "foreign_oracle",
    "frees_of",
    "judge_foreign_run",
    "meta_finding",
    "record",
    "recorded_change",
    "recorded_target",
    "replay_foreign",
    "run_foreign",
    "spec_of",
    "stamp",
]
