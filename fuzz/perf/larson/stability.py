"""The stability protocol for larson, as a pass/fail table.

An allocator change is accepted only if larson with ``rounds = 1`` (a
new thread every 1,024 operations: thread churn, orphaned slabs, cross-thread
frees into them) worked every time:

1. 4 threads, high contention: ``larson S 8 128 1024 1 12345 4``, 20 out of 20
   runs, with its throughput;
2. and the lighter configs kept working: 1 thread and 2 threads with the same
   arguments, and 4 threads with low contention (256 chunks per thread).

A run passes when larson exits 0, prints its throughput, and the intended
allocator served it (see :mod:`hakfuzz.perf.larson.runner`).  A test passes when
every one of its runs does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hakfuzz.perf.larson.runner import LarsonConfig, Launch, RunResult, Summary, prepare, run_once
from hakfuzz.targets import Target


@dataclass(frozen=True, slots=True)
class StabilityTest:
    """One line of the protocol."""

    name: str
    config: LarsonConfig
    runs: int


def protocol(seconds: float = 10.0, runs: int = 20,
             other_runs: int = 3) -> tuple[StabilityTest, ...]:
    """The protocol's tests: 4T high contention ``runs`` times, the others ``other_runs`` times."""
    def cfg(chunks: int, threads: int) -> LarsonConfig:
        return LarsonConfig(seconds, 8, 128, chunks, 1, 12345, threads)

    return (
        StabilityTest("4T high contention", cfg(1024, 4), runs),
        StabilityTest("1T", cfg(1024, 1), other_runs),
        StabilityTest("2T", cfg(1024, 2), other_runs),
        StabilityTest("4T low contention", cfg(256, 4), other_runs),
    )


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """Every run of one test."""

    test: StabilityTest
    summary: Summary

    @property
    def passed(self) -> bool:
        """All runs counted."""
        return self.summary.failures == 0 and len(self.summary.runs) == self.test.runs

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        doc = self.summary.as_json()
        doc.pop("ratio_to_glibc", None)
        return {"test": self.test.name, "config": self.test.config.label(),
                "passed": self.passed, "passes": len(self.summary.runs) - self.summary.failures,
                **{k: v for k, v in doc.items() if k != "allocator"}}


@dataclass(frozen=True, slots=True)
class StabilityReport:
    """The whole protocol for one allocator and variant."""

    allocator: str
    variant: str
    outcomes: tuple[TestOutcome, ...]
    target: Target | None = None  # None: hakmem linked into larson

    @property
    def passed(self) -> bool:
        """Every test passed."""
        return all(o.passed for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"allocator": self.allocator, "variant": self.variant, "passed": self.passed,
                "target": None if self.target is None else self.target.as_json(),
                "tests": [o.as_json() for o in self.outcomes]}


Progress = Callable[[StabilityTest, int, RunResult], None]
"""Called after each run with (its test, runs of that test done, the run)."""


def run_stability(tests: tuple[StabilityTest, ...], *, allocator: str = "hakmem",
                  variant: str = "release", progress: Progress | None = None,
                  launch: Launch | None = None) -> StabilityReport:
    """Run every test and collect the outcomes (a failed run does not stop the rest).

    ``allocator`` is a name or a library path (:func:`~hakfuzz.perf.larson.runner.prepare`).
    """
    launch = launch or prepare(allocator, variant)
    allocator = launch.allocator
    outcomes = []
    for test in tests:
        results: list[RunResult] = []
        for i in range(test.runs):
            results.append(run_once(launch, test.config))
            if progress is not None:
                progress(test, i + 1, results[-1])
        outcomes.append(TestOutcome(test, Summary(allocator, tuple(results))))
    return StabilityReport(allocator, variant, tuple(outcomes), launch.target)
