"""hakfuzz.model: the executable reference model of the hakmem allocator.

``ModelAllocator`` implements docs/policy.md exactly for serialized calls
(exact mode: every ``Loc`` and every counter is predicted).
``InvariantChecker`` and ``expect_quiescent_totals`` judge runs with truly
concurrent threads, where placement is not predictable but ownership and
conservation of counts are (invariant mode).
"""

from hakfuzz.model.allocator import ModelAllocator
from hakfuzz.model.config import Config, OomPolicy
from hakfuzz.model.core import ModelError
from hakfuzz.model.invariants import InvariantChecker, expect_quiescent_totals
from hakfuzz.model.limits import class_of, slab_capacity
from hakfuzz.model.location import NULL_EINVAL, NULL_ENOMEM, NULL_LOC, Loc, Owner
from hakfuzz.model.stats import ClassStats, Stats, diff_stats

__all__ = [
    "NULL_EINVAL",
    "NULL_ENOMEM",
    "NULL_LOC",
    "ClassStats",
    "Config",
    "InvariantChecker",
    "Loc",
    "ModelAllocator",
    "ModelError",
    "OomPolicy",
    "Owner",
    "Stats",
    "class_of",
    "diff_stats",
    "expect_quiescent_totals",
    "slab_capacity",
]
