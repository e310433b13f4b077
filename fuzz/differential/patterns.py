"""Fill patterns for ``write``/``verify``: bytes derived from (handle, seed).

Byte ``i`` of the pattern stream is ``(7 * i + i // 251) % 256``; a block of
n bytes holds the n bytes of the stream from ``pattern_start(handle, seed)``.
Slicing one precomputed buffer (:data:`BASE`) keeps write and verify at
memcpy speed.  The same pattern formula is used whatever executor runs the op.

:data:`BASE` covers the largest block a program can make (an 8 MiB block,
``MAX_BIG_SIZE``) from any start, so every slice is a full pattern.
"""

from __future__ import annotations

from typing import Final

from hakfuzz.program.model import MAX_BIG_SIZE, MAX_CALLOC_BYTES, MAX_SIZE

PERIOD: Final[int] = 251
"""Prime: neighbouring handles differ at every offset."""

MAX_PATTERN: Final[int] = max(MAX_CALLOC_BYTES, MAX_SIZE, MAX_BIG_SIZE)
"""The longest block a pattern is ever needed for."""


def _stream(length: int) -> bytes:
    """Bytes ``(7 * i + i // PERIOD) % 256`` for ``i < length``.

    The stream repeats every ``256 * PERIOD`` bytes (both terms grow by a
    multiple of 256 over that span), and within it each run of ``PERIOD``
    bytes is the ``7 * i`` sequence shifted by the run's number.
    """
    span = 256 * PERIOD
    times7 = bytes(7 * i % 256 for i in range(256)) * (span // 256)
    identity = bytes(range(256))
    one = b"".join(
        times7[k * PERIOD : (k + 1) * PERIOD].translate(identity[k:] + identity[:k])
        for k in range(256)
    )
    return (one * (length // span + 1))[:length]


BASE: Final[bytes] = _stream(MAX_PATTERN + PERIOD)
"""The pattern stream: ``pattern(h, s, n) == BASE[pattern_start(h, s):][:n]``."""


def pattern_start(handle: int, seed: int) -> int:
    """Where in :data:`BASE` the pattern of ``(handle, seed)`` starts (0 .. PERIOD-1)."""
    return (handle * 31 + seed * 17) % PERIOD


def pattern(handle: int, seed: int, size: int) -> bytes:
    """The bytes a block of ``size`` holds after ``write(handle, seed)``."""
    start = (handle * 31 + seed * 17) % PERIOD
    return BASE[start : start + size]
