"""After a campaign: settle suspects, minimise each new finding, store the result.

Every finding is already on disk, unminimised, from the moment the
supervisor met it (:mod:`ledger`).  Triage first re-runs the inputs of
workers killed from outside (only what reproduces is a finding), then
replaces each new finding's file with its minimised program.  Findings the
Hypothesis engine reports are already shrunk by Hypothesis; the others are
minimised by delta debugging (:mod:`minimize`), re-running each candidate the
way the finding was found, on the build it was found on (:mod:`reproduce`),
up to ``runs`` times and
reporting the reproduction rate.  A divergence re-run in this process is
then checked in a new one, where ``hakfuzz replay`` runs it (see
:func:`_fresh`).

A stop signal during triage (see :mod:`interrupt`) cuts the minimisation
short: the findings not yet minimised stay as they were saved, marked
unminimised, and nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hakfuzz.campaign.interrupt import Interrupted, StopSignals
from hakfuzz.campaign.ledger import Ledger, Seen, Suspect
from hakfuzz.campaign.reproduce import fresh_process_oracle, oracle_for
from hakfuzz.campaign.store import FindingStore, Saved
from hakfuzz.findings import Finding
from hakfuzz.program import Program
from hakfuzz.program.minimize import Oracle, minimize


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


NEEDS_HISTORY = (
    "does not fail in a new process: it needs what earlier programs left behind in the "
    "process that met it (state that outlived hak_reset); kept as met"
)
REMINIMISED = "minimised in a new process per run (in one process, smaller programs failed " \
    "only after earlier runs)"


@dataclass(frozen=True, slots=True)
class _Outcome:
    program: Program
    rate: float | None
    note: str


def _fresh(
    finding: Finding, got: _Outcome, fresh: Oracle, *, runs: int, seconds: float
) -> _Outcome:
    """``got`` if its program fails in a new process too; else what does, and says so.

    A program minimised (or shrunk by Hypothesis) in one process may fail there
    only because of what earlier runs left behind; ``hakfuzz replay`` would
    then pass it and the finding would be lost.  So the result is checked in
    a new process; if it passes there, the finding's own program is minimised
    again with a new process per run, or, when even that passes, kept as met
    with a reproduction rate of 0 and a note.
    """
    signature = finding.signature
    if fresh(got.program) == signature:
        return got
    original = finding.program
    if original != got.program and fresh(original) == signature:
        again = minimize(original, signature, fresh, runs=runs, budget_seconds=seconds)
        note = "; ".join(n for n in (again.note, REMINIMISED) if n)
        return _Outcome(again.program, again.reproduction_rate, note)
    return _Outcome(original, 0.0, NEEDS_HISTORY)


def _settle(
    seen: Seen,
    store: FindingStore,
    program: Program,
    *,
    minimised: bool,
    reproduction: float | None,
    note: str = "",
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
        note=note,
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
                        oracle_for(finding, finding.variant, timeout=max(10.0, seconds_each)),
                        runs=runs,
                        budget_seconds=seconds_each,
                    )
                program, rate, minimised = result.program, result.reproduction_rate, True
                note = result.note
            except Interrupted:
                pass
        fresh = fresh_process_oracle(finding, finding.variant)
        if seen.saved.new and minimised and fresh is not None and stop.signum is None:
            try:
                with stop.raising():
                    got = _fresh(finding, _Outcome(program, rate, note), fresh,
                                 runs=runs, seconds=seconds_each)
                program, rate, note = got.program, got.rate, got.note
                if note == NEEDS_HISTORY:  # the program as met: shrunk only by Hypothesis
                    minimised = finding.engine == "hypothesis"
            except Interrupted:
                pass
        saved = _settle(seen, store, program, minimised=minimised, reproduction=rate, note=note)
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
