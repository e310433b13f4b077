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

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz.engines.foreign_run import (
    judge_foreign_run,
    record,
    run_foreign,
    spec_of,
    stamp,
)
from hakfuzz.engines.preload_engine import run_job
from hakfuzz.findings import Finding
from hakfuzz.program import Program, ProgramTarget
from hakfuzz.targets import (
    NAMES,
    Target,
    resolve_target,
    sha256_of,
)

if TYPE_CHECKING:

    from hakfuzz.findings import Finding
    from hakfuzz.program.minimize import Oracle

def recorded_change(recorded: ProgramTarget) -> tuple[str, str] | None:
    """``(what, words)`` when the recorded library is gone or is another file now, else None.

    ``what`` is ``"gone"`` or ``"changed"``.
    """
    path = recorded.real_path
    if not os.path.isfile(path):
        return "gone", f"the library it was found on, {path}, is gone"
    try:
        now = sha256_of(path)
    except OSError as exc:
        return "gone", f"the library it was found on, {path}, cannot be read ({exc.strerror})"
    if now != recorded.sha256:
        return "changed", (f"{path} has changed since the finding (sha256 {recorded.sha256[:12]} "
                           f"then, {now[:12]} now)")
    return None


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
    extra: dict[str, object] = {k: meta[k] for k in ("job", "foreign_frees") if k in meta}
    return Finding(str(meta.get("engine", "replay")), str(meta.get("kind", "oracle")), "", "",
                   program, None, variant, None, extra)


def recorded_target(program: Program, variant: str = "release") -> Target:
    """The target ``program`` records, resolved again (its spec: a name or the path)."""
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
    "run_foreign",
    "spec_of",
    "stamp",
]
