"""After a campaign: settle suspects, minimise each new finding, store the result.

Every finding is already on disk, unminimised, from the moment the
supervisor met it (:mod:`ledger`).  Triage first re-runs the inputs of
workers killed from outside (only what reproduces is a finding), then
replaces each new finding's file with its minimised program.  Findings the
Hypothesis engine reports are already shrunk by Hypothesis; the others are
minimised by delta debugging (:mod:`minimize`), re-running each candidate the
way the finding was found, on the build it was found on (:mod:`reproduce`),
up to ``runs`` times and
reporting the reproduction rate.

A stop signal during triage (see :mod:`interrupt`) cuts the minimisation
short: the findings not yet minimised stay as they were saved, marked
unminimised, and nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hakfuzz.campaign.interrupt import Interrupted, StopSignals
from hakfuzz.campaign.ledger import Ledger, Seen, Suspect
from hakfuzz.campaign.reproduce import oracle_for
from hakfuzz.campaign.store import FindingStore, Saved
from hakfuzz.findings import Finding
from hakfuzz.program import Program
from hakfuzz.program.minimize import minimize


@dataclass(frozen=True, slots=True)
class Triaged:
    """A finding as stored: where, whether new, sizes and reproduction rate."""

    finding: Finding
    path: Path
    new: bool
    ops_before: int
    ops_after: int
    reproduction_rate: float | None
    minimised: bool = True
    count: int = 1
    engines: tuple[str, ...] = ()
    note: str = ""  # what minimisation kept, when a flaky race constrained it
    first_met: float = 0.0  # unix time the campaign first met it


def _reproduce(suspect: Suspect, runs: int) -> Finding | None:
    """Re-run a suspect's input on its build; the finding it reproduces, if any."""
    variant = suspect.finding.variant
    oracle = oracle_for(suspect.finding, variant)
    for _ in range(runs):
        signature = oracle(suspect.program)
        if signature is not None:
            kind, _, detail = signature.partition("-")
            return Finding(
                suspect.engine,
                kind,
                detail,
                f"{suspect.engine} job {suspect.job} was killed by {suspect.signal_name}; "
                f"its input, re-run alone, fails: {signature}",
                suspect.program,
                None,
                variant,
                suspect.finding.seed,
            )
    return None


def _settle(
    seen: Seen,
    store: FindingStore,
    program: Program,
    *,
    minimised: bool,
    reproduction: float | None,
) -> Saved:
    """Write the final state of a finding this campaign saved unminimised."""
    assert seen.saved is not None
    if not seen.saved.new:  # an older file holds this program: only count the repeats
        if seen.count > 1:
            store.save(seen.finding, seen.finding.program, minimised=False, count=seen.count - 1)
        return seen.saved
    saved = store.save(
        seen.finding,
        program,
        minimised=minimised,
        reproduction=reproduction,
        minimized_from=len(seen.finding.program.ops),
        count=seen.count,
        replace=seen.saved.path,
    )
    return Saved(saved.path, True)


def triage(  # noqa: D103 - see the module docstring
    ledger: Ledger,
    store: FindingStore,
    *,
    runs: int = 3,
    seconds_each: float = 30.0,
    stop: StopSignals | None = None,
) -> list[Triaged]:
    stop = stop or StopSignals()
    if ledger.store is None:
        ledger.store = store
    for suspect in list(ledger.suspects):
        if stop.signum is not None:
            break
        try:
            with stop.raising():
                reproduced = _reproduce(suspect, runs)
        except Interrupted:
            break
        ledger.settle(suspect, reproduced)
        ledger.suspects.remove(suspect)
    for seen in ledger.seen.values():
        if seen.saved is None:
            seen.saved = ledger.store.save(seen.finding, seen.finding.program, minimised=False)
    out: list[Triaged] = []
    store = ledger.store
    for seen in ledger.seen.values():
        finding = seen.finding
        before = len(finding.program.ops)
        program, rate, minimised = finding.program, None, finding.engine == "hypothesis"
        note = ""
        assert seen.saved is not None
        if seen.saved.new and not minimised and stop.signum is None:
            try:
                with stop.raising():
                    result = minimize(
                        finding.program,
                        finding.signature,
                        oracle_for(finding, finding.variant),
                        runs=runs,
                        budget_seconds=seconds_each,
                    )
                program, rate, minimised = result.program, result.reproduction_rate, True
                note = result.note
            except Interrupted:
                pass
        saved = _settle(seen, store, program, minimised=minimised, reproduction=rate)
        out.append(
            Triaged(
                finding,
                saved.path,
                seen.saved.new,
                before,
                len(program.ops),
                rate,
                minimised,
                seen.count,
                tuple(seen.engines),
                note,
                seen.at,
            )
        )
    return out
