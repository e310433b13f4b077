"""The campaign report directory: ``report.json`` and ``coverage.png``.

The PNG shows coverage and findings over time, one line per engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hakfuzz.campaign.supervisor import CampaignResult
from hakfuzz.campaign.triage import Triaged


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
                "ops_before": t.ops_before,
                "ops": t.ops_after,
                "reproduction_rate": t.reproduction_rate,
                "replay": f"hakfuzz replay {t.path}",
            }
            for t in triaged
        ],
    }


def write_report(  # noqa: D103
    directory: Path, result: CampaignResult, triaged: list[Triaged]
) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    doc = campaign_json(result, triaged)
    doc["report_dir"] = str(directory)
    history = {name: t.history for name, t in result.tallies.items()}
    (directory / "report.json").write_text(json.dumps({**doc, "history": history}, indent=2))
    _plot(directory / "coverage.png", result)
    return doc


def _plot(path: Path, result: CampaignResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cov_ax, find_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, tally in result.tallies.items():
        if not tally.history:
            continue
        t = [h[0] for h in tally.history]
        cov_ax.plot(t, [h[1] for h in tally.history], label=name)
        find_ax.step(t, [h[2] for h in tally.history], where="post", label=name)
    cov_ax.set_ylabel("coverage (engine's measure)")
    cov_ax.set_title("hakfuzz campaign: coverage and findings over time")
    cov_ax.legend(loc="lower right")
    from matplotlib.ticker import MaxNLocator

    find_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    most = max((t.findings for t in result.tallies.values()), default=0)
    find_ax.set_ylim(0, max(1, most) + 0.5)
    find_ax.set_ylabel("unique findings")
    find_ax.set_xlabel("seconds")
    find_ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
