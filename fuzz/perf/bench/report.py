"""Writing a benchmark's results: a Markdown table, a JSON document and a PNG chart.

The chart (matplotlib, Agg backend, no display needed) has one panel of
grouped bars per engine — median throughput by config, one bar per
allocator, min..max as an error bar — and, when an engine measured it, a
panel of peak RSS per allocator and config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hakfuzz.perf.bench.model import EngineResult, Row


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}{unit}"


def _metric(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(map(str, value)) if value else "none"
    return str(value)


def markdown(results: Sequence[EngineResult], header: dict[str, Any]) -> str:
    """All results as Markdown: one table per engine, then its notes."""
    lines = ["# hakfuzz bench", ""]
    lines += [f"- {k}: {_value(v)}" for k, v in header.items()]
    for result in results:
        metrics = list(dict.fromkeys(k for r in result.rows for k in r.metrics))
        lines += ["", f"## {result.engine}", "",
                  "| config | allocator | median | min | max | vs glibc | peak RSS | runs ok |"
                  + "".join(f" {m} |" for m in metrics),
                  "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(metrics)]
        for r in result.rows:
            ratio = "-" if r.ratio_to_glibc is None else f"{r.ratio_to_glibc:.2f}x"
            rss = "-" if r.peak_rss_kb is None else f"{r.peak_rss_kb / 1024:.1f} MiB"
            lines.append(f"| {r.config} | {r.allocator} | {_num(r.median)} {r.unit} | "
                         f"{_num(r.low)} | {_num(r.high)} | {ratio} | {rss} | "
                         f"{r.runs - r.failures}/{r.runs} |"
                         + "".join(f" {_metric(r.metrics.get(m))} |" for m in metrics))
        if result.notes:
            lines.append("")
            lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_json(path: Path, results: Sequence[EngineResult], header: dict[str, Any]) -> None:
    """One JSON document with the header and every engine's rows."""
    path.write_text(json.dumps({**header, "engines": [r.as_json() for r in results]}, indent=2)
                    + "\n")


def _grouped(ax: Any, rows: Sequence[Row], value: str, ylabel: str, title: str) -> None:
    configs = list(dict.fromkeys(r.config for r in rows))
    allocators = list(dict.fromkeys(r.allocator for r in rows))
    width = 0.8 / max(1, len(allocators))
    for i, allocator in enumerate(allocators):
        xs, heights, low_err, high_err = [], [], [], []
        for j, config in enumerate(configs):
            row = next((r for r in rows if r.config == config and r.allocator == allocator), None)
            v = None if row is None else (row.median if value == "median" else row.peak_rss_kb)
            if row is None or v is None:
                continue
            xs.append(j + (i - (len(allocators) - 1) / 2) * width)
            if value == "median":
                heights.append(v / 1e6)
                low_err.append(max(0.0, (v - (row.low or v)) / 1e6))
                high_err.append(max(0.0, ((row.high or v) - v) / 1e6))
            else:
                heights.append(v / 1024)
        if value == "median":
            ax.bar(xs, heights, width, label=allocator, yerr=[low_err, high_err], capsize=2)
        else:
            ax.bar(xs, heights, width, label=allocator)
    ax.set_xticks(range(len(configs)))
    ax.set_xticklabels([c.replace("larson ", "") for c in configs], fontsize=7, rotation=10)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def write_chart(path: Path, results: Sequence[EngineResult], title: str) -> None:
    """The PNG chart of every engine's throughput and, where measured, peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[Sequence[Row], str, str, str]] = []
    for result in results:
        if not result.rows:
            continue
        unit = result.rows[0].unit
        panels.append((result.rows, "median", f"million {unit} (median, min..max)",
                       f"{result.engine}: throughput"))
        if any(r.peak_rss_kb is not None for r in result.rows):
            panels.append((result.rows, "rss", "peak RSS, MiB (median)",
                           f"{result.engine}: peak RSS"))
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.4 * len(panels)), squeeze=False)
    for ax, (rows, value, ylabel, panel_title) in zip(axes[:, 0], panels, strict=True):
        _grouped(ax, rows, value, ylabel, panel_title)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
