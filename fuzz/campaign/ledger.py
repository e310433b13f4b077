"""What a campaign has met so far: findings, suspect deaths and infrastructure events.

A finding is written to the store the moment the supervisor learns of it,
unminimised and marked so; triage later replaces that file with the
minimised program.  So neither a Ctrl-C, nor a killed supervisor, nor a
failure of the minimiser can lose a finding that was shown.

A worker killed from outside (SIGKILL, SIGTERM, SIGHUP, SIGINT: an
operator, the OOM killer, a CI time-out) is not an allocator finding by
itself.  With no input in flight it is an infrastructure event; with an
input in flight the input is a *suspect*, kept in the work directory, and
triage re-runs it in a child: only what reproduces becomes a finding.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hakfuzz._paths import fallback_dir
from hakfuzz.campaign.store import FindingStore, Saved
from hakfuzz.findings import Finding
from hakfuzz.program import Program, save_program

EXTERNAL_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
"""Signals a worker dies of when someone else ends it; never a finding by themselves."""


def program_size(finding: Finding) -> float:
    """How small a finding's program is, for keeping the smallest.

    One with no ops (a preload job, replayed from its name and seed) ranks
    after every real program, which any engine can replay.
    """
    return len(finding.program.ops) or float("inf")


@dataclass(slots=True)
class Seen:
    """One signature met in this campaign."""

    finding: Finding  # the smallest program met so far
    credited: str  # the engine whose worker met it first
    engines: list[str]  # every engine that met it, first first
    count: int = 1
    saved: Saved | None = None  # the unminimised file, written when first met
    at: float = field(default_factory=time.time)  # when it was first met


@dataclass(frozen=True, slots=True)
class Suspect:
    """An input in flight in a worker killed from outside, waiting to be re-run."""

    engine: str
    job: int
    signal_name: str
    program: Program
    path: Path  # where the program waits (the work directory)
    finding: Finding  # what it would be if it reproduced as it died


@dataclass(slots=True)
class Ledger:
    """Findings, suspects and events of one campaign, saved as they arrive."""

    store: FindingStore | None
    workdir: Path
    on_notice: Callable[[str], None] = lambda message: None
    seen: dict[str, Seen] = field(default_factory=dict)
    suspects: list[Suspect] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def add(self, finding: Finding, credited: str) -> bool:
        """Record ``finding`` met by a worker of ``credited``; True if its signature is new."""
        known = self.seen.get(finding.signature)
        if known is None:
            self.seen[finding.signature] = Seen(finding, credited, [credited])
            self.seen[finding.signature].saved = self._save(finding, None)
            return True
        known.count += 1
        if credited not in known.engines:
            known.engines.append(credited)
        if program_size(finding) < program_size(known.finding):
            known.finding = finding
            replace = known.saved.path if known.saved and known.saved.new else None
            saved = self._save(finding, replace)
            if saved is not None:
                # a file this campaign made stays "new" however it was rewritten
                new = replace is not None or saved.new
                known.saved = Saved(saved.path, new)
        return False

    def _save(self, finding: Finding, replace: Path | None) -> Saved | None:
        if self.store is None:
            return None
        try:
            return self.store.save(finding, finding.program, minimised=False, replace=replace)
        except OSError as exc:
            self.store = FindingStore(fallback_dir("findings"))
            self.on_notice(
                f"could not write findings ({exc.strerror or exc}); "
                f"they go to {self.store.root} instead"
            )
            return self.store.save(finding, finding.program, minimised=False)

    def suspect(self, finding: Finding, job: int, signal_name: str) -> None:
        """Keep the input of a worker killed from outside until triage re-runs it."""
        directory = self.workdir / "suspects"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{finding.engine}-job{job}-{len(self.suspects)}.json"
        save_program(finding.program, path)
        suspect = Suspect(finding.engine, job, signal_name, finding.program, path, finding)
        self.suspects.append(suspect)
        self.on_notice(
            f"{finding.engine} job {job} was killed by {signal_name} from outside while running "
            f"a {len(finding.program.ops)}-op input: it will be re-run before it counts ({path})"
        )

    def event(self, message: str) -> None:
        """An infrastructure event (not a finding): said now, in the summary and the report."""
        self.events.append(message)
        self.on_notice(f"event (not a finding): {message}")

    def settle(self, suspect: Suspect, reproduced: Finding | None) -> None:
        """The verdict of a suspect's re-run: a finding, or an infrastructure event."""
        if reproduced is not None:
            self.add(reproduced, suspect.engine)
        else:
            self.event(
                f"{suspect.engine} job {suspect.job} was killed by {suspect.signal_name} from "
                f"outside while running a {len(suspect.program.ops)}-op input; the input "
                "passed when re-run: not a finding"
            )
        with contextlib.suppress(OSError):
            suspect.path.unlink()
