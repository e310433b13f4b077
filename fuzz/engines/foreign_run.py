"""One run of a Program on a foreign target, and its verdict.

The foreign driver (``hakdriver-foreign``) runs in a child process started
with :func:`hakfuzz.targets.child_env` (the target's ``LD_PRELOAD`` and
nothing inherited); every run must be proven served by the target's library,
and is judged by the allocator-neutral oracles.  A finding's Program is
stamped with the target it was met on (:class:`ProgramTarget`: the
``--allocator`` text, the library's real path and its sha256).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from hakfuzz.differential.driver import run_driver
from hakfuzz.engines.parallel.stress import StressOptions, judge_foreign
from hakfuzz.program import Program, ProgramTarget
from hakfuzz.targets import Target, TargetError, TargetKind, child_env, served_by
from hakfuzz.variants import tool

if TYPE_CHECKING:
    from hakfuzz.differential.driver import RunResult
    from hakfuzz.findings import Finding

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


def run_foreign(
    program: Program,
    target: Target,
    foreign_frees: bool,
    variant: str,
    *,
    timeout: float = RUN_TIMEOUT,
) -> RunResult:
    """One run of ``program`` in the foreign driver under ``target``, proven served by it."""
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
    opts = StressOptions(variant=variant, target=target, foreign_frees=foreign_frees,
                         timeout=RUN_TIMEOUT)
    found = judge_foreign(opts, tool("hakdriver-foreign", variant), run, program, seed)
    if found is None:
        return None
    extra = {**found.extra, "foreign_frees": "on" if foreign_frees else "off"}
    program = stamp(found.program, target)
    return dataclasses.replace(found, engine=engine, program=program, extra=extra)


__all__ = ["RUN_TIMEOUT", "judge_foreign_run", "record", "run_foreign", "spec_of", "stamp"]
