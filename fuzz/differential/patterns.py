"""Fill patterns for ``write``/``verify``: bytes derived from (handle, seed).

A block of n bytes holds ``_BASE[k : k + n]`` with ``k`` from the handle and
seed; slicing one precomputed buffer keeps write and verify at memcpy speed.
The same pattern formula is used whatever executor runs the op.
"""

from __future__ import annotations

_PERIOD = 251  # prime: neighbouring handles differ at every offset
_BASE = bytes((i * 7 + (i // _PERIOD)) % 256 for i in range(65536 + 2 * _PERIOD))


def pattern(handle: int, seed: int, size: int) -> bytes:
    """The bytes a block of ``size`` holds after ``write(handle, seed)``."""
    start = (handle * 31 + seed * 17) % _PERIOD
    return _BASE[start : start + size]
