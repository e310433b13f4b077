"""The ``xthread`` engine: the workloads where frees cross threads and threads are short-lived.

Runs ``native/bench/xthread.c`` (``prodcons`` at 1, 2, 4, 8 producer/consumer
pairs; ``churn``, short-lived threads with cross-thread frees, at 1 to 16
chains on this 2-core machine, oversubscribed; ``exitcache``, short-lived
threads with key destructors under ``HAKMEM_CACHE_CAP=1024
HAKMEM_REFILL_BATCH=1024``) and plain ``larson`` on the four reference
configs, every allocator preloaded (:func:`hakfuzz.targets.child_env`) and
interleaved ``A B C A B C ...`` in each config, so that every ratio comes
from the same stretch of this shared machine's time.

Per run: throughput (what the program prints), peak RSS (its own VmHWM),
and from ``wait4`` the child's system time and minor page faults.  After
the timed runs, one counting run per config and allocator under ``strace -f
-c`` gives the ``mmap``/``munmap``/``madvise`` calls (per million
operations: strace slows each allocator differently, so raw counts over a
fixed time would not compare).  Every run must be served by its allocator
(the ``dladdr`` line; for hakmem also its counters), or it does not count.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hakfuzz._process import parse_hakmem_stats
from hakfuzz.native._tools import build_tool
from hakfuzz.perf.bench.model import BenchOptions, EngineResult, Progress, Row
from hakfuzz.perf.larson.runner import number_after
from hakfuzz.targets import Target, TargetKind, child_env, resolve_target, served_by

PRODCONS_PAIRS: tuple[int, ...] = (1, 2, 4, 8)
CHURN_THREADS: tuple[int, ...] = (1, 2, 4, 8, 16)
EXIT_THREADS: tuple[int, ...] = (1, 2, 4, 8)
LARSON_THREADS: tuple[int, ...] = (1, 2, 4)
BIG_CACHES: dict[str, str] = {"HAKMEM_CACHE_CAP": "1024", "HAKMEM_REFILL_BATCH": "1024"}
SYSCALLS: tuple[str, ...] = ("mmap", "munmap", "madvise")
DEFAULT_SECONDS = 0.5
"""Seconds per run when ``--seconds`` is not given: short runs, more of them."""

_SERVED = re.compile(r"^(?:xthread|larson): malloc from (.+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Workload:
    """One config: a program line and the environment it adds (besides the allocator's)."""

    name: str  # prodcons, churn, exitcache, larson
    threads: int  # pairs for prodcons, chains for churn/exitcache, threads for larson
    chunks: int = 1024  # larson only
    env: Mapping[str, str] = field(default_factory=dict)

    def label(self) -> str:
        """E.g. ``prodcons 2 pairs``, ``larson 4T 256ch``."""
        if self.name == "larson":
            return f"larson {self.threads}T {self.chunks}ch"
        unit = "pairs" if self.name == "prodcons" else "threads"
        return f"{self.name} {self.threads} {unit}"

    def argv(self, binaries: Mapping[str, Path], seconds: float) -> list[str]:
        """The command line of one run."""
        if self.name == "larson":
            return [str(binaries["larson"]), f"{seconds:g}", "8", "128", str(self.chunks), "100",
                    "12345", str(self.threads)]
        return [str(binaries["xthread"]), self.name, f"{seconds:g}", str(self.threads)]


def workloads(threads: Sequence[int] | None = None) -> tuple[Workload, ...]:
    """Every config, in run order; ``threads`` keeps only those thread counts."""
    def keep(n: int) -> bool:
        return not threads or n in threads

    out = [Workload("prodcons", n) for n in PRODCONS_PAIRS if keep(n)]
    out += [Workload("churn", n) for n in CHURN_THREADS if keep(n)]
    out += [Workload("exitcache", n, env=BIG_CACHES) for n in EXIT_THREADS if keep(n)]
    out += [Workload("larson", n) for n in LARSON_THREADS if keep(n)]
    if keep(4):
        out.append(Workload("larson", 4, chunks=256))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run."""

    ok: bool
    problem: str | None
    throughput: float | None
    peak_rss_kb: int | None
    sys_seconds: float
    minflt: int


def _spawn(argv: Sequence[str], env: Mapping[str, str],
           timeout: float) -> tuple[int, str, str, Any, bool]:
    """(exit code, stdout, stderr, the child's own rusage, timed out)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=dict(env))
        deadline, nap, timed_out = time.monotonic() + timeout, 0.001, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() >= deadline:
                os.kill(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(nap)
            nap = min(nap * 2, 0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"), usage, timed_out)


def _env(target: Target, workload: Workload) -> dict[str, str]:
    env = child_env(target)
    env.update(workload.env)
    env.update({"XTHREAD_SHOW_MALLOC": "1", "LARSON_SHOW_MALLOC": "1", "HAKMEM_STATS": "1"})
    return env


def _problem(target: Target, code: int, stdout: str, stderr: str, timed_out: bool) -> str | None:
    if timed_out:
        return "timed out"
    if code != 0:
        return f"exit {code}: {stderr.strip()[-200:]}"
    if number_after(stdout, "Throughput = ") is None:
        return "printed no throughput"
    match = _SERVED.search(stderr)
    verdict = served_by(target, match.group(1).strip() if match else None)
    if not verdict.ok:
        return verdict.problem
    if target.kind is TargetKind.HAKMEM:
        stats = parse_hakmem_stats(stderr)
        if stats is None or stats.ss_created == 0:
            return "hakmem's counters show no SuperSlab: it served nothing"
    return None


def run_once(target: Target, workload: Workload, binaries: Mapping[str, Path],
             seconds: float) -> Run:
    """One timed run of ``workload`` under ``target``, judged."""
    code, stdout, stderr, usage, timed_out = _spawn(
        workload.argv(binaries, seconds), _env(target, workload), 60.0 + 10.0 * seconds)
    problem = _problem(target, code, stdout, stderr, timed_out)
    peak = number_after(stdout, "Peak RSS = ")
    return Run(problem is None, problem, number_after(stdout, "Throughput = "),
               int(peak) if peak is not None and peak > 0 else None,
               float(usage.ru_stime), int(usage.ru_minflt))


_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", re.MULTILINE)


def count_syscalls(target: Target, workload: Workload, binaries: Mapping[str, Path],
                   seconds: float) -> dict[str, float] | None:
    """Calls of :data:`SYSCALLS` per million operations, from one run under ``strace -f -c``."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    env = _env(target, workload)
    preload = env.pop("LD_PRELOAD", None)
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "strace.txt"
        argv = [strace, "-f", "-c", "-o", str(summary), "-e", "trace=" + ",".join(SYSCALLS)]
        if preload is not None:
            argv += ["-E", f"LD_PRELOAD={preload}"]  # the program's, not strace's
        code, stdout, _, _, timed_out = _spawn([*argv, *workload.argv(binaries, seconds)], env,
                                               120.0 + 20.0 * seconds)
        throughput = number_after(stdout, "Throughput = ")
        if code != 0 or timed_out or not throughput or not summary.is_file():
            return None
        calls = {name: int(n) for n, name in _STRACE_ROW.findall(summary.read_text())}
    mops = throughput * seconds / 1e6
    return {name: calls.get(name, 0) / mops for name in SYSCALLS}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def run_xthread_engine(options: BenchOptions, progress: Progress) -> EngineResult:
    """Every workload and allocator, ``options.repeat`` interleaved runs each, then strace."""
    seconds = options.xthread_seconds or DEFAULT_SECONDS
    binaries = {"xthread": build_tool("xthread", "release"),
                "larson": build_tool("larson", "release")}
    targets = {a: resolve_target(a, options.variant) for a in options.allocators
               if a != "hakmem-direct"}  # every workload runs preloaded
    loads = workloads(options.threads)
    total = len(loads) * len(targets) * (options.repeat + (1 if options.syscalls else 0))
    done = 0
    rows: list[Row] = []
    notes: list[str] = []
    for load in loads:
        runs: dict[str, list[Run]] = {a: [] for a in targets}
        for _ in range(options.repeat):
            for name, target in targets.items():
                progress(f"xthread {load.label()} [{name}]", done, total)
                run = run_once(target, load, binaries, seconds)
                runs[name].append(run)
                if not run.ok:
                    notes.append(f"{load.label()} {name}: {run.problem}")
                done += 1
        calls: dict[str, dict[str, float] | None] = {}
        if options.syscalls:
            for name, target in targets.items():
                progress(f"xthread {load.label()} [{name}, strace]", done, total)
                calls[name] = count_syscalls(target, load, binaries, seconds)
                done += 1
        medians = {a: _median([r.throughput for r in rs if r.ok and r.throughput is not None])
                   for a, rs in runs.items()}
        glibc, mimalloc = medians.get("glibc"), medians.get("mimalloc")
        for name, rs in runs.items():
            good = [r for r in rs if r.ok]
            median = medians[name]
            values = [r.throughput for r in good if r.throughput is not None]
            rss = [r.peak_rss_kb for r in good if r.peak_rss_kb is not None]
            metrics: dict[str, float | None] = {
                "ratio_to_mimalloc": median / mimalloc if median and mimalloc else None,
                "sys_seconds": _median([r.sys_seconds for r in good]),
                "minflt": _median([float(r.minflt) for r in good]),
            }
            per_mop = calls.get(name)
            for sc in SYSCALLS:
                metrics[f"{sc}_per_mop"] = None if per_mop is None else per_mop[sc]
            rows.append(Row("xthread", load.label(), name, "ops/s", median,
                            min(values, default=None), max(values, default=None),
                            median / glibc if median and glibc else None,
                            int(statistics.median(rss)) if rss else None, len(rs),
                            len(rs) - len(good), metrics))
    if options.syscalls and shutil.which("strace") is None:
        notes.append("strace is not installed: no system-call counts")
    progress("xthread done", total, total)
    return EngineResult("xthread", tuple(rows), tuple(notes),
                        {"seconds_per_run": seconds})
