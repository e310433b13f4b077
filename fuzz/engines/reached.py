"""What the engines reach: milestones of the allocator's state and config boundaries.

A campaign that never hits a cap with the caches on, or never runs with a
budget just over one SuperSlab, cannot find the bugs that live there.  Each
engine counts, per program, the milestones it reached (from the allocator's
counters at the program's end) and the configuration boundaries the program
ran with; the report's "reached" table shows them per engine, and the
milestones no engine reached are the next work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hakfuzz.model.limits import CACHE_CAP_MAX, NUM_CLASSES, REFILL_START, SS_SIZE
from hakfuzz.model.stats import (
    FALLBACK_ALLOCS,
    N_CLASS_FIELDS,
    OOM_NULLS,
    OS_MAP_FAILURES,
    REMOTE_PENDING,
    SS_CREATED,
    SS_KEPT,
    SS_RELEASED,
    STATS_LEN,
)
from hakfuzz.program import ProgramConfig

MILESTONES: dict[str, str] = {
    "growth": "a class grew past one SuperSlab",
    "release": "an empty SuperSlab was released",
    "kept": "a released SuperSlab was kept for reuse",
    "fallback": "a request was served by glibc at a cap (policy libc)",
    "oom-null": "a request was answered NULL at a cap (policy null)",
    "cap-with-caches": "a cap was hit with the thread caches on",
    "cap-without-caches": "a cap was hit with the thread caches off",
    "two-classes-capped": "two classes were at their caps in one program",
    "map-failure": "an OS mapping failed (fault injection)",
    "remote-pending": "remote frees were still pending when the program ended",
    "churn>16-threads": "thread churn ran more than 16 pthreads at once (oversubscribed)",
    "churn-1000-lifetimes": "thread churn ran a thousand thread lifetimes in one program",
}
"""Every state milestone, with what it means (one home: the report reads these)."""

BOUNDARIES: dict[str, str] = {
    "cache_cap=0": "thread caches off",
    "cache_cap=1": "the smallest cache",
    "cache_cap=max": f"the largest cache ({CACHE_CAP_MAX})",
    "refill_batch=1": "refills of one block",
    "refill_batch>cache_cap": "a batch the cache cap clamps",
    "refill_ramp": f"refills that ramp up: batch and cap above the slow start's {REFILL_START}",
    "ss_cap=1": "one SuperSlab per class",
    "ss_cap=2": "two SuperSlabs per class",
    "budget<1ss": "a byte budget under one SuperSlab",
    "budget=1ss": "a byte budget of exactly one SuperSlab",
    "budget>1ss": "a byte budget just over one SuperSlab",
    "ss_keep=0": "no released SuperSlab kept",
    "release_empty=off": "empty SuperSlabs never released",
    "fail_map_at=1": "the first mapping fails",
    "checked=on": "checked mode",
    "oom_policy=null": "option A: NULL at the cap",
}
"""Every configuration boundary counted, with what it means."""


def boundaries(config: ProgramConfig) -> set[str]:
    """The configuration boundaries ``config`` sits on."""
    out: set[str] = set()
    if config.cache_cap in (0, 1):
        out.add(f"cache_cap={config.cache_cap}")
    if config.cache_cap == CACHE_CAP_MAX:
        out.add("cache_cap=max")
    if config.refill_batch == 1:
        out.add("refill_batch=1")
    if config.refill_batch > config.cache_cap > 0:
        out.add("refill_batch>cache_cap")
    if min(config.refill_batch, config.cache_cap) > REFILL_START:
        out.add("refill_ramp")
    if config.ss_cap in (1, 2):
        out.add(f"ss_cap={config.ss_cap}")
    if 0 < config.budget_bytes < SS_SIZE:
        out.add("budget<1ss")
    elif config.budget_bytes == SS_SIZE:
        out.add("budget=1ss")
    elif SS_SIZE < config.budget_bytes < 2 * SS_SIZE:
        out.add("budget>1ss")
    if config.ss_keep == 0:
        out.add("ss_keep=0")
    if not config.release_empty:
        out.add("release_empty=off")
    if config.fail_map_at == 1:
        out.add("fail_map_at=1")
    if config.checked:
        out.add("checked=on")
    if config.oom_policy == "null":
        out.add("oom_policy=null")
    return out


def milestones(config: ProgramConfig, stats: Sequence[int]) -> set[str]:
    """The milestones a program reached, from the flat counters at its end."""
    if len(stats) != STATS_LEN:
        return set()
    out: set[str] = set()
    capped = 0
    for c in range(NUM_CLASSES):
        base = c * N_CLASS_FIELDS
        if stats[base + SS_CREATED] >= 2:
            out.add("growth")
        if stats[base + SS_RELEASED] > 0:
            out.add("release")
        if stats[base + FALLBACK_ALLOCS] > 0:
            out.add("fallback")
        if stats[base + OOM_NULLS] > 0:
            out.add("oom-null")
        if stats[base + FALLBACK_ALLOCS] or stats[base + OOM_NULLS]:
            capped += 1
        if stats[base + REMOTE_PENDING] > 0:
            out.add("remote-pending")
    if capped:
        out.add("cap-with-caches" if config.cache_cap > 0 else "cap-without-caches")
    if capped >= 2:
        out.add("two-classes-capped")
    if stats[SS_KEPT] > 0:
        out.add("kept")
    if stats[OS_MAP_FAILURES] > 0:
        out.add("map-failure")
    return out


def churn_milestones(churn: Mapping[str, object] | None) -> set[str]:
    """The milestones of a driver run's churn phase (its result's ``churn`` member)."""
    if not churn:
        return set()
    out: set[str] = set()
    peak, lifetimes = churn.get("peak_threads"), churn.get("lifetimes")
    if isinstance(peak, int) and peak > 16:
        out.add("churn>16-threads")
    if isinstance(lifetimes, int) and lifetimes >= 1000:
        out.add("churn-1000-lifetimes")
    return out


def driver_churn(result: Mapping[str, object] | None) -> dict[str, object] | None:
    """The ``churn`` member of the C driver's JSON (None when no churn phase ran)."""
    churn = (result or {}).get("churn")
    return churn if isinstance(churn, dict) else None


def driver_stats(result: dict[str, object] | None) -> list[int]:
    """The C driver's JSON counters in the flat order (empty when it printed none)."""
    stats = (result or {}).get("stats")
    if not isinstance(stats, dict):
        return []
    flat = [int(v) for cls in stats.get("classes", []) for v in cls]
    flat += [int(stats.get(k, 0)) for k in ("ss_mapped", "ss_kept", "os_maps",
                                             "os_map_failures", "os_unmaps")]
    return flat


class Counter:
    """Per-engine counts of programs that reached each milestone and boundary."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def program(self, config: ProgramConfig, stats: Sequence[int] | None,
                churn: Mapping[str, object] | None = None) -> None:
        """Count one program's boundaries, and its milestones when its counters are known.

        ``churn`` is what its churn phase reported, when it had one.
        """
        names = boundaries(config) | (milestones(config, stats) if stats else set())
        names |= churn_milestones(churn)
        for name in names:
            self.counts[name] = self.counts.get(name, 0) + 1


def table(by_engine: dict[str, dict[str, int]]) -> list[dict[str, object]]:
    """Rows for the report: every milestone and boundary, its meaning, counts per engine."""
    rows: list[dict[str, object]] = []
    for kind, names in (("milestone", MILESTONES), ("boundary", BOUNDARIES)):
        for name, meaning in names.items():
            counts = {engine: got.get(name, 0) for engine, got in by_engine.items()}
            rows.append({"name": name, "kind": kind, "meaning": meaning, "programs": counts})
    return rows


__all__ = ["BOUNDARIES", "MILESTONES", "Counter", "boundaries", "churn_milestones", "driver_churn",
           "driver_stats", "milestones", "table"]
