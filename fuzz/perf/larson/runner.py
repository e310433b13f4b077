"""Running larson under an allocator, checking who served it, and comparing allocators.

One run (:func:`run_once`) starts larson with ``LARSON_SHOW_MALLOC=1`` (larson
prints the object its ``malloc`` resolved to, found with ``dladdr``) and
``HAKMEM_STATS=1`` (hakmem prints its counters at exit).  A run counts only
when the intended allocator served it:

- a target preloaded or glibc (:mod:`hakfuzz.targets`): ``malloc`` resolved to
  the target's library, by real path (:func:`hakfuzz.targets.served_by`);
- hakmem through ``LD_PRELOAD``: that, *and* its counters show SuperSlabs
  created (``ss_created > 0``);
- hakmem linked: its counters show ``ss_created > 0``.

``dladdr`` on the address the dynamic linker bound for ``malloc`` is the same
lookup that binds larson's calls, so it names the allocator that served them;
no second process or ``/proc`` scan is needed.  The environment of a run is
built from scratch for it: an ``LD_PRELOAD`` inherited from the user never
reaches a run (the glibc baseline above all), only the target's own.

:func:`compare` runs the allocators interleaved, ``A B C A B C ...``, so slow
phases of this shared machine hit every allocator alike, and reports median,
min and max throughput and the ratio of medians to glibc's from the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hakfuzz._process import Measured, parse_hakmem_stats, parse_served_by, run_measured
from hakfuzz.native._toolchain import get_variant, sanitizer_env
from hakfuzz.native._tools import build_tool
from hakfuzz.perf.larson.peers import Kind
from hakfuzz.targets import Target, TargetKind, child_env, preload_vars, resolve_target, served_by

_FIELDS = ("seconds", "min_size", "max_size", "chunks", "rounds", "seed", "threads")


@dataclass(frozen=True, slots=True)
class LarsonConfig:
    """larson's seven arguments."""

    seconds: float
    min_size: int
    max_size: int
    chunks: int
    rounds: int
    seed: int
    threads: int

    @classmethod
    def parse(cls, args: Sequence[str]) -> LarsonConfig:
        """From the command line; a :class:`ValueError` names the bad argument."""
        if len(args) != len(_FIELDS):
            raise ValueError(f"larson takes {len(_FIELDS)} arguments ({' '.join(_FIELDS)}), "
                             f"got {len(args)}")
        values: list[float | int] = []
        for name, text in zip(_FIELDS, args, strict=True):
            try:
                values.append(float(text) if name == "seconds" else int(text))
            except ValueError:
                raise ValueError(f"larson argument {name} is not a number: {text!r}") from None
        seconds, lo, hi, chunks, rounds, seed, threads = values
        config = cls(float(seconds), int(lo), int(hi), int(chunks), int(rounds), int(seed),
                     int(threads))
        config.validate()
        return config

    def validate(self) -> None:
        """A :class:`ValueError` naming the first argument out of range."""
        if not self.seconds > 0:
            raise ValueError(f"larson seconds must be > 0, got {self.seconds}")
        if self.min_size < 1:
            raise ValueError(f"larson min_size must be >= 1, got {self.min_size}")
        if self.max_size < self.min_size:
            raise ValueError(f"larson max_size {self.max_size} is below min_size {self.min_size}")
        for name in ("chunks", "rounds", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"larson {name} must be >= 1, got {getattr(self, name)}")
        if self.threads > 1024:
            raise ValueError(f"larson threads must be <= 1024, got {self.threads}")

    def argv(self) -> list[str]:
        """The seven arguments as larson takes them."""
        return [f"{self.seconds:g}", *(str(getattr(self, f)) for f in _FIELDS[1:])]

    def label(self) -> str:
        """E.g. ``larson 3 8 128 1024 100 12345 2``."""
        return "larson " + " ".join(self.argv())

    def with_seconds(self, seconds: float) -> LarsonConfig:
        """The same config run for ``seconds``."""
        return LarsonConfig(seconds, self.min_size, self.max_size, self.chunks, self.rounds,
                            self.seed, self.threads)


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start larson under one allocator."""

    allocator: str  # the name tables show
    kind: Kind
    binary: Path
    env: dict[str, str]  # all a run adds to the environment, LD_PRELOAD included
    target: Target | None  # what must serve the run; None for hakmem linked into larson

    @property
    def library(self) -> str | None:
        """The preloaded library's real path, if any."""
        return self.target.real_path if self.target is not None and self.target.preloaded \
            else None

    @property
    def is_hakmem(self) -> bool:
        """True when hakmem serves the run (preloaded or linked): its counters must show it."""
        return self.target is None or self.target.kind is TargetKind.HAKMEM


def prepare(allocator: str, variant: str = "release") -> Launch:
    """Build (or find in the cache) what ``allocator`` needs and prove its library serves malloc.

    ``allocator`` is a name of :data:`~hakfuzz.perf.larson.peers.ALLOCATORS` or the
    path of a shared library (:func:`hakfuzz.targets.resolve_target`; a bad
    one is a :class:`~hakfuzz.targets.TargetError`).
    """
    sanitized = get_variant(variant).runtime is not None
    if allocator == "hakmem-direct" or (allocator == "hakmem" and sanitized):
        binary = build_tool("larson-hakmem", variant)
        return Launch(allocator, Kind.LINKED, binary, sanitizer_env(variant, {}), None)
    target = resolve_target(allocator, variant)
    plain = build_tool("larson", "release")
    kind = Kind.PRELOAD if target.preloaded else Kind.SYSTEM
    return Launch(target.name, kind, plain, preload_vars(target), target)


def prepare_all(allocators: Sequence[str], variant: str = "release") -> dict[str, Launch]:
    """:func:`prepare` each; two libraries with the same file name are shown by their path."""
    launches = {a: prepare(a, variant) for a in allocators}
    names = [launch.allocator for launch in launches.values()]
    return {a: launch if names.count(launch.allocator) == 1 else replace(launch, allocator=a)
            for a, launch in launches.items()}


@dataclass(frozen=True, slots=True)
class RunResult:
    """One larson run under one allocator."""

    allocator: str
    config: LarsonConfig
    status: str  # "exit 0", "killed by SIGSEGV", "timed out"
    throughput: float | None  # operations per second, as larson printed it
    threads_started: int | None
    maxrss_kb: int  # peak RSS: larson's VmHWM (wait4's ru_maxrss if it printed none)
    served_by: str | None  # real path of the object larson's malloc came from
    evidence: str  # why we believe the intended allocator served it
    problem: str | None  # None when the run counts
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        """The run exited 0, printed its throughput and was served by its allocator."""
        return self.problem is None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"allocator": self.allocator, "config": self.config.label(), "ok": self.ok,
                "status": self.status, "throughput": self.throughput,
                "threads_started": self.threads_started, "maxrss_kb": self.maxrss_kb,
                "served_by": self.served_by, "evidence": self.evidence, "problem": self.problem}


def number_after(text: str, prefix: str) -> float | None:
    """The number after ``prefix`` on the first output line that starts with it."""
    for line in text.splitlines():
        if line.startswith(prefix):
            try:
                return float(line[len(prefix):].split()[0])
            except (IndexError, ValueError):
                return None
    return None


def _verify(launch: Launch, done: Measured) -> tuple[str | None, str, str | None]:
    """Did the intended allocator serve this run?  Returns (served by, evidence, problem)."""
    served: str | None = parse_served_by(done.stderr)
    if launch.target is not None:
        verdict = served_by(launch.target, served)
        if not verdict.ok:
            return verdict.real_path or served, f"malloc from {served}", verdict.problem
        served = verdict.real_path
    if not launch.is_hakmem:
        return served, str(served), None
    stats = parse_hakmem_stats(done.stderr)
    if stats is None:
        return served, "no stats", "hakmem printed no stats (HAKMEM_STATS=1)"
    if stats.ss_created == 0:
        return served, stats.summary(), "hakmem created no SuperSlab: it served nothing"
    return served, stats.summary(), None


def run_once(launch: Launch, config: LarsonConfig, *, timeout: float | None = None) -> RunResult:
    """Run larson once and judge the run."""
    env = child_env(None) | launch.env
    env["LARSON_SHOW_MALLOC"] = "1"
    env["HAKMEM_STATS"] = "1"
    limit = timeout if timeout is not None else 60.0 + 4.0 * config.seconds
    done = run_measured([str(launch.binary), *config.argv()], env=env, timeout=limit)
    throughput = number_after(done.stdout, "Throughput = ")
    started = number_after(done.stdout, "Threads started = ")
    peak = number_after(done.stdout, "Peak RSS = ")  # larson's own VmHWM: exact
    served, evidence, problem = _verify(launch, done)
    if done.timed_out or done.returncode != 0:
        problem = done.describe_status() + _first_error(done.stderr)
    elif throughput is None:
        problem = "larson printed no throughput"
    tail = "\n".join(done.stderr.strip().splitlines()[-5:])
    return RunResult(launch.allocator, config, done.describe_status(), throughput,
                     None if started is None else int(started),
                     int(peak) if peak is not None and peak > 0 else done.maxrss_kb,
                     served, evidence, problem, tail)


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith(("larson:", "hakmem:", "==", "ERROR", "WARNING: ThreadSanitizer")) and \
                "malloc from" not in line:
            return f" ({line.strip()[:160]})"
    return ""


# ---- comparisons ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """Every run of one allocator on one config."""

    allocator: str
    runs: tuple[RunResult, ...]
    ratio_to_glibc: float | None = None

    @property
    def throughputs(self) -> list[float]:
        """Throughputs of the runs that count."""
        return [r.throughput for r in self.runs if r.ok and r.throughput is not None]

    @property
    def median(self) -> float | None:
        """Median throughput of the runs that count."""
        values = self.throughputs
        return statistics.median(values) if values else None

    @property
    def failures(self) -> int:
        """Runs that did not count."""
        return sum(1 for r in self.runs if not r.ok)

    @property
    def peak_rss_kb(self) -> int | None:
        """Median peak RSS of the runs that count."""
        values = [r.maxrss_kb for r in self.runs if r.ok]
        return int(statistics.median(values)) if values else None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        values = self.throughputs
        return {"allocator": self.allocator, "runs": len(self.runs), "failures": self.failures,
                "median": self.median, "min": min(values, default=None),
                "max": max(values, default=None), "ratio_to_glibc": self.ratio_to_glibc,
                "peak_rss_kb": self.peak_rss_kb,
                "served_by": self.runs[-1].served_by if self.runs else None,
                "evidence": self.runs[-1].evidence if self.runs else None,
                "results": [r.as_json() for r in self.runs]}


@dataclass(frozen=True, slots=True)
class Comparison:
    """Allocators side by side on one config, from one interleaved run."""

    config: LarsonConfig
    variant: str
    repeat: int
    summaries: tuple[Summary, ...] = field(default=())
    targets: tuple[Target, ...] = field(default=())  # the libraries that had to serve the runs

    @property
    def ok(self) -> bool:
        """Every run of every allocator counted."""
        return all(s.failures == 0 for s in self.summaries)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"config": self.config.label(), "variant": self.variant, "repeat": self.repeat,
                "ok": self.ok, "targets": [t.as_json() for t in self.targets],
                "allocators": [s.as_json() for s in self.summaries]}


Progress = Callable[[int, int, RunResult], None]
"""Called after each run with (runs done, runs in all, the run)."""


def compare(allocators: Sequence[str], config: LarsonConfig, *, repeat: int = 3,
            variant: str = "release", progress: Progress | None = None,
            launches: dict[str, Launch] | None = None) -> Comparison:
    """Run every allocator ``repeat`` times, interleaved, and summarise."""
    launches = launches or prepare_all(allocators, variant)
    runs: dict[str, list[RunResult]] = {launches[a].allocator: [] for a in allocators}
    total, done = repeat * len(allocators), 0
    for _ in range(repeat):
        for name in allocators:
            result = run_once(launches[name], config)
            runs[result.allocator].append(result)
            done += 1
            if progress is not None:
                progress(done, total, result)
    targets = tuple(launches[a].target for a in allocators)
    return Comparison(config, variant, repeat, summarise(runs),
                      tuple(t for t in targets if t is not None))


def summarise(runs: dict[str, list[RunResult]]) -> tuple[Summary, ...]:
    """Summaries with ratios of medians to glibc's (when glibc ran and counted)."""
    plain = {a: Summary(a, tuple(rs)) for a, rs in runs.items()}
    base = plain["glibc"].median if "glibc" in plain else None
    return tuple(Summary(s.allocator, s.runs,
                         (s.median / base) if base and s.median is not None else None)
                 for s in plain.values())
