"""Allocator configurations at their boundaries, drawn swarm-style.

Bugs gather where a limit is hit: a cache of one block, the largest cache,
a batch larger than the cache, a budget just under, at or just over one
SuperSlab, a cap of one SuperSlab, no SuperSlab kept, the first mapping
failing.  :data:`BOUNDARY_VALUES` lists, per option, its boundary values
(0, 1, 2, max-1, max, and the values where two limits meet), boundary first;
it is the one home of those values: the Hypothesis strategies and the state
machine draw from it, and the binary form's header tables hold every one of
them (tests check that each engine reaches every value).  :data:`VALID_RANGES` is each integer
option's whole valid range.

:func:`swarm_config` turns a random subset of the options to boundary values
and leaves the others at their defaults (swarm testing: each program enables
a few features, so rare combinations are not drowned by the common ones).
"""

from __future__ import annotations

import random

from hakfuzz.model.limits import SS_SIZE as SS_BYTES
from hakfuzz.program.model import (
    CACHE_CAP_MAX,
    REFILL_BATCH_MAX,
    U32_MAX,
    U64_MAX,
    ProgramConfig,
)

BOUNDARY_VALUES: dict[str, tuple[object, ...]] = {
    # 4: a batch of 16 (the default) overfills it; 2 and 1 are the smallest caches.
    "cache_cap": (0, 1, 2, CACHE_CAP_MAX - 1, CACHE_CAP_MAX, 4),
    "refill_batch": (1, 2, REFILL_BATCH_MAX - 1, REFILL_BATCH_MAX),
    "ss_cap": (1, 2, 3, U32_MAX),
    # Where the byte budget meets the SuperSlab size: under, at, over one.
    "budget_bytes": (SS_BYTES - 1, SS_BYTES, SS_BYTES + 1, 2 * SS_BYTES, 1),
    "ss_keep": (0, 1, U32_MAX),
    "fail_map_at": (1, 2, 3, U32_MAX),
    "oom_policy": ("null",),
    "release_empty": (False,),
    "checked": (True,),
}
"""Per option, the values where it meets a limit (the defaults are docs/policy.md's)."""

VALID_RANGES: dict[str, tuple[int, int]] = {
    "ss_cap": (0, U32_MAX),
    "budget_bytes": (0, U64_MAX),
    "cache_cap": (0, CACHE_CAP_MAX),
    "refill_batch": (1, REFILL_BATCH_MAX),
    "ss_keep": (0, U32_MAX),
    "fail_map_at": (0, U32_MAX),
}
"""Each integer option's whole valid range (inclusive); the others are the booleans
and the OOM policy, whose boundary values are their only non-default values."""


def swarm_config(rnd: random.Random) -> ProgramConfig:
    """A config with a random subset of options (one to four) at boundary values."""
    options = rnd.sample(sorted(BOUNDARY_VALUES), rnd.randint(1, 4))
    return ProgramConfig(**{name: rnd.choice(BOUNDARY_VALUES[name]) for name in options})  # type: ignore[arg-type]


__all__ = ["BOUNDARY_VALUES", "SS_BYTES", "VALID_RANGES", "swarm_config"]
