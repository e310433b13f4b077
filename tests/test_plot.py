"""coverage.png: every engine's coverage on its own axis, in its own unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hakfuzz.campaign.ledger import Ledger
from hakfuzz.campaign.supervisor import CampaignOptions, CampaignResult, EngineTally


def _tally(coverage: list[int], findings: list[int], native_edges: int = 0) -> EngineTally:
    history = [(float(i), c, f) for i, (c, f) in enumerate(zip(coverage, findings, strict=True))]
    return EngineTally(
        workers=1,
        execs=100,
        coverage=coverage[-1],
        native_edges=native_edges,
        findings=findings[-1],
        seconds=float(len(coverage)),
        history=history,
    )


def fake_result(engines: tuple[str, ...] = ("hypothesis", "atheris", "parallel")) -> CampaignResult:
    """Units as a real campaign has them: atheris in thousands, the others in tens."""
    shapes = {
        "hypothesis": _tally([5, 20, 31, 40, 44, 45], [0, 0, 1, 1, 1, 1]),
        "atheris": _tally([900, 1800, 2400, 2900, 3100, 3200], [0, 1, 1, 2, 2, 2], 140),
        "parallel": _tally([2, 6, 9, 11, 12, 12], [0, 0, 0, 0, 1, 1]),
    }
    options = CampaignOptions(engines=engines, seconds=6.0)
    return CampaignResult(options, {e: shapes[e] for e in engines}, Ledger(None, Path(".")), 6.0)


def test_one_coverage_axis_per_engine_labelled_with_its_unit() -> None:
    from hakfuzz.campaign.plot import COVERAGE_LABEL_PREFIX, campaign_figure, coverage_unit

    result = fake_result()
    figure = campaign_figure(result)
    by_label = {ax.get_label(): ax for ax in figure.axes}
    assert set(by_label) == {COVERAGE_LABEL_PREFIX + e for e in result.tallies} | {"findings"}
    for engine in result.tallies:
        ax = by_label[COVERAGE_LABEL_PREFIX + engine]
        assert " ".join(ax.get_ylabel().split()) == coverage_unit(engine)
        # The engine's curve fills its own axis: 12 behaviours are not flat
        # under 3200 libFuzzer features.
        top = max(h[1] for h in result.tallies[engine].history)
        low, high = ax.get_ylim()
        assert low == 0
        assert top / high > 0.8, (engine, ax.get_ylim())
    atheris = by_label[COVERAGE_LABEL_PREFIX + "atheris"]
    assert "allocator edges hit: 140" in atheris.get_title("left")
    assert len({coverage_unit(e) for e in result.tallies}) == len(result.tallies)


def test_findings_panel_has_a_step_line_per_engine() -> None:
    from hakfuzz.campaign.plot import campaign_figure

    figure = campaign_figure(fake_result())
    (findings,) = [ax for ax in figure.axes if ax.get_label() == "findings"]
    assert sorted(line.get_label() for line in findings.get_lines()) == [
        "atheris",
        "hypothesis",
        "parallel",
    ]
    assert findings.get_ylim()[1] == pytest.approx(2.5)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_png_grows_a_panel_per_engine(tmp_path: Path) -> None:
    from hakfuzz.campaign.report import write_report

    one = write_report(tmp_path / "one", fake_result(("parallel",)), [])
    three = write_report(tmp_path / "three", fake_result(), [])
    width_one, height_one = _png_size(Path(one["report_dir"]) / "coverage.png")
    width_three, height_three = _png_size(Path(three["report_dir"]) / "coverage.png")
    assert width_one == width_three
    assert height_three > height_one  # two more coverage panels, not one shared axis
    doc = json.loads((tmp_path / "three" / "report.json").read_text())
    assert set(doc["history"]) == {"hypothesis", "atheris", "parallel"}


def test_an_engine_without_samples_still_gets_its_panel() -> None:
    from hakfuzz.campaign.plot import campaign_figure

    result = fake_result(("parallel",))
    result.tallies["atheris"] = EngineTally()
    figure = campaign_figure(result)
    labels = [ax.get_label() for ax in figure.axes]
    assert labels == ["coverage:parallel", "coverage:atheris", "findings"]
