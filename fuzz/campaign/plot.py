"""The campaign's ``coverage.png``: one coverage panel per engine, then the findings.

Each engine counts coverage in its own unit: libFuzzer features for
atheris (thousands), distinct behaviours for the hypothesis and parallel
engines (tens).  On one shared axis the small counts lie flat on zero and
look like an engine that found nothing new, so every engine gets its own
panel, its own y scale and a y label naming its unit.  The last panel shows
unique findings over time, one step line per engine, in the same colours.

The figure is built on a bare :class:`matplotlib.figure.Figure` (no pyplot):
no global figure state, no GUI backend, safe in a worker thread.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from hakfuzz.campaign.supervisor import CampaignResult, EngineTally

COVERAGE_UNITS: dict[str, str] = {
    "hypothesis": "behaviours: (op kind, counters it changed)",
    "atheris": "libFuzzer features (cov:)",
    "parallel": "behaviours: (workload, counters set, verdict)",
}
"""What each engine's coverage number counts, for the y label of its panel."""

COVERAGE_LABEL_PREFIX = "coverage:"
"""Each coverage panel's axes label is this plus the engine name (for tests and tools)."""

_PANEL_HEIGHT = 1.9  # inches per panel
_WIDTH = 8.0


def coverage_unit(engine: str) -> str:
    """The unit of ``engine``'s coverage count."""
    return COVERAGE_UNITS.get(engine, "the engine's own measure")


def campaign_figure(result: CampaignResult) -> Figure:
    """The figure of ``result``: a coverage panel per engine, then a findings panel."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    engines = list(result.tallies)
    figure = Figure(
        figsize=(_WIDTH, _PANEL_HEIGHT * (len(engines) + 1) + 0.6), layout="constrained"
    )
    axes = list(figure.subplots(len(engines) + 1, 1, sharex=True, squeeze=False)[:, 0])
    colours = [f"C{i % 10}" for i in range(len(engines))]
    for ax, name, colour in zip(axes, engines, colours, strict=False):
        _coverage_panel(ax, name, result.tallies[name], colour)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))

    findings = axes[-1]
    findings.set_label("findings")
    for name, colour in zip(engines, colours, strict=True):
        history = result.tallies[name].history
        if history:
            times = [h[0] for h in history]
            findings.step(times, [h[2] for h in history], where="post", color=colour, label=name)
    most = max((t.findings for t in result.tallies.values()), default=0)
    findings.set_ylim(0, max(1, most) + 0.5)
    findings.yaxis.set_major_locator(MaxNLocator(integer=True))
    findings.set_ylabel("unique findings")
    findings.set_title("findings", loc="left", fontsize="medium")
    findings.set_xlabel("seconds")
    if findings.has_data():
        findings.legend(loc="upper left", fontsize="small")
    figure.suptitle(
        f"hakfuzz campaign ({result.options.variant}, {result.seconds:.0f} s): "
        "coverage per engine, each in its own unit"
    )
    return figure


def _coverage_panel(ax: Axes, name: str, tally: EngineTally, colour: str) -> None:
    ax.set_label(COVERAGE_LABEL_PREFIX + name)
    title = f"{name}: coverage"
    if tally.native_edges:
        title += f" (allocator edges hit: {tally.native_edges})"
    ax.set_title(title, loc="left", fontsize="medium")
    ax.set_ylabel("\n".join(textwrap.wrap(coverage_unit(name), 24)), fontsize="small")
    if not tally.history:
        ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center", va="center")
        return
    times = [h[0] for h in tally.history]
    counts = [h[1] for h in tally.history]
    ax.plot(times, counts, color=colour, drawstyle="steps-post")
    ax.set_ylim(0, max(1, max(counts)) * 1.1)


def write_coverage_png(path: Path, result: CampaignResult) -> None:
    """Draw :func:`campaign_figure` of ``result`` into the PNG file ``path``."""
    campaign_figure(result).savefig(path, dpi=100)


__all__ = [
    "COVERAGE_LABEL_PREFIX",
    "COVERAGE_UNITS",
    "campaign_figure",
    "coverage_unit",
    "write_coverage_png",
]
