"""hakfuzz bench --engine xthread: the cross-thread and thread-churn workloads, by the CLI.

No timing asserts: the runs are tiny, only their shape is checked (every
workload ran under every allocator asked for, and the ratios were printed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hakfuzz.perf.bench import select
from hakfuzz.perf.bench.xthread_engine import _STRACE_ROW, BIG_CACHES, SYSCALLS, workloads

STRACE_SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 90.96    0.003945          25       154           madvise
  6.48    0.000281          13        21         2 mmap
  2.56    0.000111          11        10           munmap
------ ----------- ----------- --------- --------- ----------------
100.00    0.004337          23       185           total
"""


def test_xthread_is_an_engine() -> None:
    assert "xthread" in select("all")


def test_workloads_cover_every_thread_count_and_filter() -> None:
    labels = [w.label() for w in workloads()]
    assert labels[:4] == ["prodcons 1 pairs", "prodcons 2 pairs", "prodcons 4 pairs",
                          "prodcons 8 pairs"]
    assert "churn 16 threads" in labels
    assert "larson 4T 256ch" in labels
    assert all(w.env == BIG_CACHES for w in workloads() if w.name == "exitcache")
    assert [w.label() for w in workloads((2,))] == [
        "prodcons 2 pairs", "churn 2 threads", "exitcache 2 threads", "larson 2T 1024ch"]


def test_strace_summary_rows() -> None:
    calls = {name: int(n) for n, name in _STRACE_ROW.findall(STRACE_SUMMARY)}
    assert {k: calls[k] for k in SYSCALLS} == {"madvise": 154, "mmap": 21, "munmap": 10}


def test_cli_bench_xthread_runs_every_workload_and_prints_ratios(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", "bench", "--engine", "xthread", "--seconds", "0.05",
         "--reps", "1", "--threads", "1", "--allocator", "hakmem,glibc,mimalloc", "--no-strace",
         "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rows = doc["engines"][0]["rows"]
    configs = {r["config"] for r in rows}
    assert configs == {"prodcons 1 pairs", "churn 1 threads", "exitcache 1 threads",
                       "larson 1T 1024ch"}
    allocators = {r["allocator"] for r in rows}
    assert {"hakmem", "glibc"} <= allocators
    for r in rows:
        assert r["failures"] == 0, r
        assert r["ratio_to_glibc"] is not None
        assert r["ratio_to_glibc"] > 0
        assert r["sys_seconds"] is not None
        assert r["minflt"] is not None
        if "mimalloc" in allocators:
            assert r["ratio_to_mimalloc"] is not None
    text = (tmp_path / "bench.md").read_text()
    assert "ratio_to_mimalloc" in text
    assert "madvise_per_mop" in text
    # Without --json: the rich table with both ratio columns.
    table = subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", "bench", "--engine", "xthread", "--seconds", "0.05",
         "--reps", "1", "--threads", "1", "--allocator", "hakmem,glibc", "--no-strace",
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "COLUMNS": "250"})
    assert table.returncode == 0, table.stderr
    assert "vs glibc" in table.stdout
    assert "vs mimalloc" in table.stdout
    assert "exitcache 1 threads" in table.stdout


def test_cli_bench_threads_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", "bench", "--threads", "0,x"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "--threads" in done.stderr
