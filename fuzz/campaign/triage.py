"""After a campaign: minimise each new finding and write it to the store.

Findings the Hypothesis engine reports are already shrunk by Hypothesis;
the others are minimised by delta debugging (:mod:`minimize`), re-running
each candidate the way the finding was found (:mod:`reproduce`) up to
``runs`` times and reporting the reproduction rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hakfuzz.campaign.minimize import minimize
from hakfuzz.campaign.reproduce import oracle_for
from hakfuzz.campaign.store import FindingStore
from hakfuzz.findings import Finding


@dataclass(frozen=True, slots=True)
class Triaged:
    """A finding as stored: where, whether new, sizes and reproduction rate."""

    finding: Finding
    path: Path
    new: bool
    ops_before: int
    ops_after: int
    reproduction_rate: float | None


def triage(  # noqa: D103 - see the module docstring
    findings: list[Finding],
    store: FindingStore,
    *,
    variant: str,
    runs: int = 3,
    seconds_each: float = 30.0,
) -> list[Triaged]:
    out: list[Triaged] = []
    for finding in findings:
        if store.path_for(finding).exists():
            saved = store.save(finding, finding.program)
            out.append(
                Triaged(
                    finding,
                    saved.path,
                    False,
                    len(finding.program.ops),
                    len(finding.program.ops),
                    None,
                )
            )
            continue
        program, rate = finding.program, None
        if finding.engine != "hypothesis":
            result = minimize(
                finding.program,
                finding.signature,
                oracle_for(finding, variant),
                runs=runs,
                budget_seconds=seconds_each,
            )
            program, rate = result.program, result.reproduction_rate
        saved = store.save(
            finding, program, reproduction=rate, minimized_from=len(finding.program.ops)
        )
        out.append(
            Triaged(
                finding, saved.path, saved.new, len(finding.program.ops), len(program.ops), rate
            )
        )
    return out
