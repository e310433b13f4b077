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
from typing import TYPE_CHECKING

from hakfuzz.program import Program, ProgramTarget
from hakfuzz.targets import Target, TargetError, TargetKind, child_env, served_by

if TYPE_CHECKING:
    from hakfuzz.campaign.minimize import Oracle
    from hakfuzz.findings import Finding
    from hakfuzz.parallel.runner import RunResult

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


def recorded_target(program: Program, variant: str = "release") -> Target:
    """The target ``program`` records, resolved again (its spec: a name or the path)."""
    from hakfuzz.targets import resolve_target

    assert program.target is not None
    return resolve_target(program.target.spec, variant)


__all__ = [
    "finding_oracle",
    "foreign_oracle",
    "frees_of",
    "judge_foreign_run",
    "record",
    "recorded_change",
    "recorded_target",
    "run_foreign",
    "spec_of",
    "stamp",
]
