"""hakfuzz bench: the engine registry, the malloc engine, the report files, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hakfuzz.perf.bench import ENGINES, BenchOptions, EngineResult, Row, select
from hakfuzz.perf.bench.larson_engine import configs
from hakfuzz.perf.bench.malloc_engine import run_malloc_engine
from hakfuzz.perf.bench.report import markdown, write_chart, write_json


def _quiet(_what: str, _done: int, _total: int) -> None:
    pass


def test_registry_and_selection() -> None:
    assert list(ENGINES)[:2] == ["larson", "malloc"]
    assert select("all") == tuple(ENGINES)
    assert select("malloc") == ("malloc",)
    with pytest.raises(ValueError, match="unknown engine 'nope'"):
        select("larson,nope")


def test_larson_engine_configs_are_the_performance_bar() -> None:
    labels = [c.label() for c in configs(3.0)]
    assert labels == ["larson 3 8 128 1024 100 12345 1", "larson 3 8 128 1024 100 12345 2",
                      "larson 3 8 128 1024 100 12345 4", "larson 3 8 128 256 100 12345 4"]


def test_malloc_engine_measures_hakmem_and_glibc() -> None:
    result = run_malloc_engine(BenchOptions(("hakmem", "glibc"), repeat=1, seconds=0.2), _quiet)
    assert {(r.config, r.allocator) for r in result.rows} == {
        ("64 B, batch 1", "hakmem"), ("64 B, batch 1", "glibc"),
        ("64 B, batch 256", "hakmem"), ("64 B, batch 256", "glibc")}
    assert all(r.median is not None and r.median > 0 for r in result.rows)
    rss = result.extra["rss"]
    assert set(rss) == {"hakmem", "glibc"}
    # After freeing 64 MiB, hakmem has given its empty SuperSlabs back to the OS.
    assert rss["hakmem"]["after_kb"] - rss["hakmem"]["before_kb"] < 16 * 1024
    assert rss["hakmem"]["peak_kb"] - rss["hakmem"]["before_kb"] > 48 * 1024


def _synthetic() -> list[EngineResult]:
    rows = tuple(Row("larson", f"larson 1 8 128 1024 100 1 {t}", a, "ops/s", m, m * 0.9, m * 1.1,
                     m / 20e6, 4096 + t, 3, 0)
                 for t in (1, 2) for a, m in (("hakmem", 25e6), ("glibc", 20e6)))
    return [EngineResult("larson", rows, ("a note",))]


def test_report_files(tmp_path: Path) -> None:
    results = _synthetic()
    text = markdown(results, {"variant": "release"})
    assert "| larson 1 8 128 1024 100 1 2 | hakmem | 25,000,000 ops/s |" in text
    assert "1.25x" in text
    assert "- a note" in text
    write_json(tmp_path / "b.json", results, {"variant": "release"})
    assert json.loads((tmp_path / "b.json").read_text())["engines"][0]["rows"][0]["median"] == 25e6
    write_chart(tmp_path / "b.png", results, "test")
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_malloc(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", "bench", "--engine", "malloc",
                           "--seconds", "0.2", "--repeat", "1", "--out", str(tmp_path), "--json"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [e["engine"] for e in doc["engines"]] == ["malloc"]
    for name in ("bench.md", "bench.json", "bench.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_cli_bench_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", "bench", "--engine", "fast"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "unknown engine 'fast'" in done.stderr


@pytest.mark.slow
def test_cli_bench_all(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", "bench", "--seconds", "0.3",
                           "--repeat", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "larson 0.3 8 128 256 100 12345 4" in (tmp_path / "bench.md").read_text()
