"""The allocator configuration, mirroring ``hak_config_t`` field by field.

Defaults, bounds and meanings are those of the C option table
(:mod:`hakfuzz.model.options`, docs/options.md).  ``Config`` can hold
invalid values (so a test can hand them to ``hak_configure`` and expect
EINVAL); ``validate()`` rejects them with a ValueError naming the field, and
the model validates every config it is given.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from hakfuzz.model.options import OPTION, OPTIONS


class OomPolicy(enum.IntEnum):
    """What a class does when growth is refused (``hak_oom_policy_t``)."""

    LIBC = 0
    """Serve the request from glibc (counted as ``fallback_allocs``)."""
    NULL = 1
    """Return NULL with errno ENOMEM (counted as ``oom_nulls``)."""


_DEFAULT_POLICY = OomPolicy(OPTION["oom_policy"].default)


@dataclass(frozen=True, slots=True)
class Config:
    """Allocator configuration; fields in ``hak_config_t`` order, meanings in docs/options.md."""

    ss_cap: int = OPTION["ss_cap"].default
    budget_bytes: int = OPTION["budget_bytes"].default
    oom_policy: OomPolicy = _DEFAULT_POLICY
    cache_cap: int = OPTION["cache_cap"].default
    refill_batch: int = OPTION["refill_batch"].default
    release_empty: bool = bool(OPTION["release_empty"].default)
    ss_keep: int = OPTION["ss_keep"].default
    checked: bool = bool(OPTION["checked"].default)
    fail_map_at: int = OPTION["fail_map_at"].default

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        for option in OPTIONS:
            value: object = getattr(self, option.name)
            if option.values:
                expected: type = OomPolicy
                ok = isinstance(value, OomPolicy)
            else:
                expected = bool if option.type == "bool" else int
                ok = type(value) is expected
            if not ok:
                raise ValueError(
                    f"config field {option.name}: expected {expected.__name__}, got {value!r}"
                )
            assert isinstance(value, int)
            if not option.accepts(value):
                raise ValueError(
                    f"config field {option.name}: {value} is not in {option.min}..{option.max}"
                )

    @property
    def refill_count(self) -> int:
        """Most blocks per refill: ``refill_batch`` clamped to 1..``cache_cap`` (0 if off).

        A thread's first refills of a class take fewer (the slow start, ``TinyHeap._refill``).
        """
        if self.cache_cap == 0:
            return 0
        return max(1, min(self.refill_batch, self.cache_cap))

    def releases(self, first_live: bool) -> bool:
        """Whether a SuperSlab whose 32 slabs are all FREE is released now.

        Policy "Retire and release": with ``release_empty``, unless it is its
        class's first live SuperSlab (lowest ``ss_seq``: ``first_live``) and
        no budget is set, in which case the class holds it.
        """
        return self.release_empty and (not first_live or self.budget_bytes != 0)

    def c_fields(self) -> dict[str, int]:
        """The config as ``hak_config_t`` field values (enums and bools as ints)."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_c_fields(cls, c_fields: Mapping[str, int]) -> Config:
        """The config of ``hak_config_t`` field values: the inverse of :meth:`c_fields`."""
        typed: dict[str, Any] = {}
        for option in OPTIONS:
            value = c_fields[option.name]
            if option.values:
                typed[option.name] = OomPolicy(value)
            else:
                typed[option.name] = bool(value) if option.type == "bool" else value
        return cls(**typed)
