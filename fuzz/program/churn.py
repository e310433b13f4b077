"""The ``churn`` section of a Program: thread lifetimes at scale, after the ops.

The ops of a Program run on at most MAX_THREADS program threads, in program
order.  The crash this section exists for needed more than that: thousands
of threads starting and exiting while others free what they left behind, a
size class out of SuperSlabs so glibc served the rest, and glibc's pointers
then reaching the allocator's free from other threads.  A churn section
asks the driver, once the ops are done, to run ``lifetimes`` thread
lifetimes on a pool of ``threads`` concurrent pthreads (up to 64: more than
the cores, on purpose), each allocating ``blocks`` blocks (a share
``libc_ratio`` of them by glibc itself) under the program's config,
swapping them through a shared exchange so most frees cross threads, and
exiting with blocks still out.  It stops at ``lifetimes`` or after
``seconds``, whichever comes first, then drains the exchange and runs the
usual end checks.  Everything it does follows from ``seed``; which thread
frees which block does not (that is the point).

An absent section is today's behaviour; the JSON form writes it only when
present, so older readers of section-free programs see no change.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any

from hakfuzz.program.errors import ProgramError

MAX_CHURN_THREADS = 64
"""Concurrent pthreads of the churn phase (the driver's DRV_MAX_THREADS)."""
MAX_CHURN_LIFETIMES = 100_000
MAX_CHURN_SECONDS = 3600.0
MAX_CHURN_BLOCKS = 256
"""Blocks one lifetime allocates (the exchange holds a few per thread)."""
CHURN_FIELDS = ("threads", "lifetimes", "seconds", "seed", "blocks", "libc_ratio")
"""The section's fields, in JSON order."""

_INT_RANGES: dict[str, tuple[int, int]] = {
    "threads": (1, MAX_CHURN_THREADS),
    "lifetimes": (1, MAX_CHURN_LIFETIMES),
    "seed": (0, (1 << 32) - 1),
    "blocks": (1, MAX_CHURN_BLOCKS),
}


@dataclass(frozen=True, slots=True)
class ChurnSpec:
    """How many thread lifetimes the churn phase runs, how wide, how long."""

    threads: int = 32
    lifetimes: int = 2000
    seconds: float = 10.0
    seed: int = 0
    blocks: int = 16
    libc_ratio: float = 0.3

    def as_json(self) -> dict[str, Any]:
        """The JSON object, keys in :data:`CHURN_FIELDS` order."""
        return {name: getattr(self, name) for name in CHURN_FIELDS}


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


def check_churn(spec: object, source: str) -> None:
    """Raise ProgramError naming ``churn.FIELD`` unless ``spec`` is a valid section."""
    if not isinstance(spec, ChurnSpec):
        raise ProgramError(
            f"expected a churn section, got {type(spec).__name__}", path=source, field="churn"
        )
    for name, (low, high) in _INT_RANGES.items():
        value = getattr(spec, name)
        if type(value) is not int:
            raise ProgramError(
                f"expected an integer, got {_describe(value)}", path=source, field=f"churn.{name}"
            )
        if not low <= value <= high:
            raise ProgramError(
                f"{value} is out of range {low}..{high}", path=source, field=f"churn.{name}"
            )
    seconds = spec.seconds
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ProgramError(
            f"expected a number of seconds, got {_describe(seconds)}",
            path=source, field="churn.seconds",
        )
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_CHURN_SECONDS):
        raise ProgramError(
            f"{seconds} is out of range: more than 0, at most {MAX_CHURN_SECONDS:g}",
            path=source, field="churn.seconds",
        )
    ratio = spec.libc_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise ProgramError(
            f"expected a number from 0 to 1, got {_describe(ratio)}",
            path=source, field="churn.libc_ratio",
        )
    if not (math.isfinite(ratio) and 0 <= ratio <= 1):
        raise ProgramError(
            f"{ratio} is out of range 0..1", path=source, field="churn.libc_ratio"
        )


def churn_from_json(raw: dict[str, Any], source: str) -> ChurnSpec:
    """The section of a parsed JSON object (duplicates already refused); checked."""
    unknown = [key for key in raw if key not in CHURN_FIELDS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], CHURN_FIELDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ProgramError(
            f"not a field of churn (its fields: {', '.join(CHURN_FIELDS)}){hint}",
            path=source, field=f"churn.{unknown[0]}",
        )
    spec = ChurnSpec(**raw)
    check_churn(spec, source)
    return spec


def churn_to_json(spec: ChurnSpec) -> str:
    """One line of JSON, stable key order (the dump is diffable)."""
    return json.dumps(spec.as_json())


def churn_weight(spec: ChurnSpec | None) -> int:
    """The block allocations a section asks for: what it costs, in ops."""
    return 0 if spec is None else spec.lifetimes * spec.blocks


__all__ = [
    "CHURN_FIELDS",
    "MAX_CHURN_BLOCKS",
    "MAX_CHURN_LIFETIMES",
    "MAX_CHURN_SECONDS",
    "MAX_CHURN_THREADS",
    "ChurnSpec",
    "check_churn",
    "churn_from_json",
    "churn_to_json",
    "churn_weight",
]
