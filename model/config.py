"""The allocator configuration, mirroring ``hak_config_t`` field by field.

Defaults are those of docs/policy.md ("Configuration").  ``Config`` can hold
invalid values (so a test can hand them to ``hak_configure`` and expect
EINVAL); ``validate()`` rejects them with a ValueError naming the field, and
the model validates every config it is given.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

from hakfuzz.model.limits import CACHE_CAP_MAX, U32_MAX, U64_MAX


class OomPolicy(enum.IntEnum):
    """What a class does when growth is refused (``hak_oom_policy_t``)."""

    LIBC = 0
    """Serve the request from glibc (counted as ``fallback_allocs``)."""
    NULL = 1
    """Return NULL with errno ENOMEM (counted as ``oom_nulls``)."""


@dataclass(frozen=True, slots=True)
class Config:
    """Allocator configuration; fields in ``hak_config_t`` order."""

    ss_cap: int = 0
    """Max live SuperSlabs per class; 0 = no cap."""
    budget_bytes: int = 0
    """Max bytes of live SuperSlabs over all classes; 0 = no budget."""
    oom_policy: OomPolicy = OomPolicy.LIBC
    cache_cap: int = 64
    """Thread cache cap per class; 0 = caches off."""
    refill_batch: int = 16
    """Blocks per cache refill; clamped to ``cache_cap`` when used."""
    release_empty: bool = True
    """Release a SuperSlab when all its slabs are free."""
    ss_keep: int = 2
    """Released SuperSlabs kept mapped for reuse."""
    checked: bool = False
    """Detect double and interior frees (not modelled beyond this flag)."""
    fail_map_at: int = 0
    """The Nth OS mapping attempt after configure fails; 0 = never."""

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if type(value) is not int:
                raise ValueError(f"config field {name}: expected an int, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"config field {name}: {value} is not in {low}..{high}")
        policy: object = self.oom_policy  # typed OomPolicy, but a caller may pass anything
        if not isinstance(policy, OomPolicy):
            raise ValueError(f"config field oom_policy: expected an OomPolicy, got {policy!r}")
        for name in ("release_empty", "checked"):
            value = getattr(self, name)
            if type(value) is not bool:
                raise ValueError(f"config field {name}: expected a bool, got {value!r}")

    @property
    def refill_count(self) -> int:
        """Blocks taken per refill: ``refill_batch`` clamped to 1..``cache_cap`` (0 if off)."""
        if self.cache_cap == 0:
            return 0
        return max(1, min(self.refill_batch, self.cache_cap))

    def c_fields(self) -> dict[str, int]:
        """The config as ``hak_config_t`` field values (enums and bools as ints)."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


# (field, min, max) of the integer fields: the C types are uint32/uint64.
# refill_batch above cache_cap is valid and clamped when used, as on the C side.
_INT_RANGES: tuple[tuple[str, int, int], ...] = (
    ("ss_cap", 0, U32_MAX),
    ("budget_bytes", 0, U64_MAX),
    ("cache_cap", 0, CACHE_CAP_MAX),
    ("refill_batch", 1, U32_MAX),
    ("ss_keep", 0, U32_MAX),
    ("fail_map_at", 0, U32_MAX),
)
