"""Allocator statistics, mirroring ``hak_stats_t``, and their flat tuple form.

The model keeps its counters in one flat list laid out exactly like the C
struct: ``NUM_CLASSES`` blocks of ``len(CLASS_FIELDS)`` per-class counters,
then the ``GLOBAL_FIELDS``.  ``stats_tuple()`` is that list as a tuple, the
cheap form for comparing with the native side every op; ``Stats`` is the
readable form; ``diff_stats`` names the counters that differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Final

from hakfuzz.model.limits import NUM_CLASSES

CLASS_FIELDS: Final[tuple[str, ...]] = (
    "ss_live",
    "ss_created",
    "ss_released",
    "slabs_in_use",
    "active_blocks",
    "remote_pending",
    "fallback_allocs",
    "oom_nulls",
)
"""``hak_class_stats_t`` fields, in struct order."""

GLOBAL_FIELDS: Final[tuple[str, ...]] = (
    "ss_mapped",
    "ss_kept",
    "os_maps",
    "os_map_failures",
    "os_unmaps",
)
"""``hak_stats_t`` fields after ``cls[]``, in struct order."""

N_CLASS_FIELDS: Final[int] = len(CLASS_FIELDS)
GLOBALS_AT: Final[int] = NUM_CLASSES * N_CLASS_FIELDS
STATS_LEN: Final[int] = GLOBALS_AT + len(GLOBAL_FIELDS)

# Offsets of the per-class fields inside one class's block of the flat form.
SS_LIVE: Final[int] = 0
SS_CREATED: Final[int] = 1
SS_RELEASED: Final[int] = 2
SLABS_IN_USE: Final[int] = 3
ACTIVE_BLOCKS: Final[int] = 4
REMOTE_PENDING: Final[int] = 5
FALLBACK_ALLOCS: Final[int] = 6
OOM_NULLS: Final[int] = 7

# Absolute indices of the globals in the flat form.
SS_MAPPED: Final[int] = GLOBALS_AT + 0
SS_KEPT: Final[int] = GLOBALS_AT + 1
OS_MAPS: Final[int] = GLOBALS_AT + 2
OS_MAP_FAILURES: Final[int] = GLOBALS_AT + 3
OS_UNMAPS: Final[int] = GLOBALS_AT + 4


@dataclass(frozen=True, slots=True)
class ClassStats:
    """Counters of one class (``hak_class_stats_t``)."""

    ss_live: int = 0
    ss_created: int = 0
    ss_released: int = 0
    slabs_in_use: int = 0
    active_blocks: int = 0
    remote_pending: int = 0
    fallback_allocs: int = 0
    oom_nulls: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    """All counters (``hak_stats_t``)."""

    cls: tuple[ClassStats, ...]
    ss_mapped: int = 0
    ss_kept: int = 0
    os_maps: int = 0
    os_map_failures: int = 0
    os_unmaps: int = 0

    @classmethod
    def from_tuple(cls, flat: Sequence[int]) -> Stats:
        """Build from the flat form (see ``stats_tuple``)."""
        if len(flat) != STATS_LEN:
            raise ValueError(f"stats tuple must have {STATS_LEN} counters, got {len(flat)}")
        per_class = tuple(
            ClassStats(*flat[c * N_CLASS_FIELDS : (c + 1) * N_CLASS_FIELDS])
            for c in range(NUM_CLASSES)
        )
        return cls(per_class, *flat[GLOBALS_AT:])

    def as_tuple(self) -> tuple[int, ...]:
        """The flat form: 8 classes x 8 fields, then the 5 globals, in C order."""
        flat: list[int] = []
        for class_stats in self.cls:
            flat.extend(astuple(class_stats))
        flat.extend(
            (self.ss_mapped, self.ss_kept, self.os_maps, self.os_map_failures, self.os_unmaps)
        )
        return tuple(flat)

    def totals(self) -> ClassStats:
        """Per-class counters summed over all classes."""
        return ClassStats(*(sum(column) for column in zip(*map(astuple, self.cls), strict=True)))


def field_name(index: int) -> str:
    """Readable name of a flat-form index, e.g. ``cls[3].active_blocks``."""
    if 0 <= index < GLOBALS_AT:
        class_idx, offset = divmod(index, N_CLASS_FIELDS)
        return f"cls[{class_idx}].{CLASS_FIELDS[offset]}"
    if GLOBALS_AT <= index < STATS_LEN:
        return GLOBAL_FIELDS[index - GLOBALS_AT]
    raise IndexError(f"stats index {index} is not in 0..{STATS_LEN - 1}")


def diff_stats(
    expected: Sequence[int],
    actual: Sequence[int],
    *,
    expected_name: str = "model",
    actual_name: str = "native",
) -> list[str]:
    """One line per differing counter of two flat forms, e.g. ``cls[3].active_blocks: ...``."""
    if len(expected) != STATS_LEN or len(actual) != STATS_LEN:
        raise ValueError(f"stats tuples must have {STATS_LEN} counters")
    return [
        f"{field_name(i)}: {expected_name} {e}, {actual_name} {a}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True))
        if e != a
    ]
