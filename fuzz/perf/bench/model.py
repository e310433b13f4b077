"""The records every benchmark engine produces and the options it receives.

An engine turns :class:`BenchOptions` into an :class:`EngineResult`: rows of
one figure per (config, allocator), each a median over repeated runs with its
min, max and ratio to glibc's median from the same run, plus peak RSS where
the engine measures it, and free-form notes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[str, int, int], None]
"""Called as work proceeds: (what is running, steps done, steps in all)."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What the user asked for; each engine takes what applies to it."""

    allocators: tuple[str, ...]  # larson engine: names or library paths to compare
    repeat: int = 3
    seconds: float = 3.0
    variant: str = "release"
    threads: tuple[int, ...] | None = None  # xthread engine: only these thread counts
    syscalls: bool = True  # xthread engine: one strace counting run per config and allocator
    xthread_seconds: float | None = None  # xthread engine: seconds per run (None: its default)


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: an allocator on a config."""

    engine: str
    config: str
    allocator: str
    unit: str  # e.g. "ops/s", "pairs/s"
    median: float | None
    low: float | None
    high: float | None
    ratio_to_glibc: float | None
    peak_rss_kb: int | None = None
    runs: int = 0
    failures: int = 0
    # Engine-specific figures by name (xthread: ratio_to_mimalloc, sys_seconds, minflt,
    # madvise_per_mop, ...); None where not measured.
    metrics: dict[str, float | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"engine": self.engine, "config": self.config, "allocator": self.allocator,
                "unit": self.unit, "median": self.median, "min": self.low, "max": self.high,
                "ratio_to_glibc": self.ratio_to_glibc, "peak_rss_kb": self.peak_rss_kb,
                "runs": self.runs, "failures": self.failures, **self.metrics}


@dataclass(frozen=True, slots=True)
class EngineResult:
    """Everything one engine measured."""

    engine: str
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default=())
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific, goes to JSON

    @property
    def failures(self) -> int:
        """Runs that did not count, over every row."""
        return sum(r.failures for r in self.rows)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"engine": self.engine, "rows": [r.as_json() for r in self.rows],
                "notes": list(self.notes), **self.extra}


Engine = Callable[[BenchOptions, Progress], EngineResult]
"""An engine: options and a progress callback in, measurements out."""
