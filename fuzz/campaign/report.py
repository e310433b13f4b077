"""The campaign report directory: ``report.json`` and ``coverage.png``.

The PNG shows coverage and findings over time (see :mod:`hakfuzz.campaign.plot`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hakfuzz.campaign.plot import write_coverage_png
from hakfuzz.campaign.supervisor import CampaignResult
from hakfuzz.campaign.triage import Triaged
from hakfuzz.engines.reached import table as reached_table


def campaign_json(  # noqa: D103
    result: CampaignResult, triaged: list[Triaged]
) -> dict[str, Any]:
    o = result.options
    return {
        "format": "hakfuzz-campaign/1",
        "variant": o.variant,
        "seconds": round(result.seconds, 2),
        "interrupted": result.interrupted,
        "failures": result.failures,
        "events": result.ledger.events,
        "unconfirmed": [str(s.path) for s in result.ledger.suspects],
        "jobs": o.jobs,
        "engine": ",".join(result.tallies),
        "programs": sum(t.execs for t in result.tallies.values()),
        "ops": sum(t.ops for t in result.tallies.values()),
        "engines": {name: t.as_json() for name, t in result.tallies.items()},
        "reached": reached_table({name: t.reached for name, t in result.tallies.items()}),
        "findings": [
            {
                "signature": t.finding.signature,
                "engine": t.engines[0] if t.engines else t.finding.engine,
                "kind": t.finding.kind,
                "message": t.finding.message,
                "path": str(t.path),
                "new": t.new,
                "minimised": t.minimised,
                "count": t.count,
                "found_by": list(t.engines),
                "found_after_seconds": round(max(0.0, t.first_met - result.started), 2)
                if result.started
                else None,
                "ops_before": t.ops_before,
                "ops": t.ops_after,
                "reproduction_rate": t.reproduction_rate,
                "minimise_note": t.note,
                "replay": f"hakfuzz replay {t.path}",
            }
            for t in triaged
        ],
    }


def write_report(  # noqa: D103
    directory: Path,
    result: CampaignResult,
    triaged: list[Triaged],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    doc = {**campaign_json(result, triaged), **(extra or {})}
    doc["report_dir"] = str(directory)
    history = {name: t.history for name, t in result.tallies.items()}
    (directory / "report.json").write_text(json.dumps({**doc, "history": history}, indent=2))
    write_coverage_png(directory / "coverage.png", result)
    return doc
