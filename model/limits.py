"""Limits and size classes of hakmem, mirroring ``native/include/hakmem.h``.

Every ``HAK_<NAME>`` constant of the header has a counterpart ``<NAME>`` here
(``tests/test_model_limits.py`` parses the header and checks they agree), so
the rest of hakfuzz imports the allocator's limits from this one place.
"""

from __future__ import annotations

from typing import Final

NUM_CLASSES: Final[int] = 8
MIN_BLOCK: Final[int] = 8
MAX_BLOCK: Final[int] = 1024
SLAB_SIZE: Final[int] = 65536
SLABS_PER_SS: Final[int] = 32
SS_SIZE: Final[int] = 2 * 1024 * 1024
SS_HEADER_SIZE: Final[int] = 4096
CACHE_CAP_MAX: Final[int] = 1024
DIRTY_MAX: Final[int] = 16
"""FREE slabs per class that keep their pages (docs/policy.md, "Pages"; the model has no pages)."""
REFILL_START: Final[int] = 16
"""Most blocks of a thread identity's first refill of a class; refill ``r`` takes at most
``REFILL_START << r`` (docs/policy.md, "malloc")."""
CHECK_MSG_MAX: Final[int] = 256

FREE_OK: Final[int] = 0
FREE_DOUBLE: Final[int] = 1
FREE_INTERIOR: Final[int] = 2

CLASS_SIZES: Final[tuple[int, ...]] = tuple(MIN_BLOCK << c for c in range(NUM_CLASSES))
"""Block size of each class: 8, 16, ..., 1024 bytes."""

SIZE_MAX: Final[int] = (1 << 64) - 1
"""Largest C ``size_t`` (64-bit): ``calloc`` products above it overflow."""

POINTER_SIZE: Final[int] = 8
"""``sizeof(void *)``: ``posix_memalign`` alignments must be multiples of it."""

U32_MAX: Final[int] = (1 << 32) - 1
U64_MAX: Final[int] = SIZE_MAX


def _class_table() -> bytes:
    table = bytearray(MAX_BLOCK + 1)
    class_idx = 0
    for size in range(MAX_BLOCK + 1):
        while CLASS_SIZES[class_idx] < max(size, 1):
            class_idx += 1
        table[size] = class_idx
    return bytes(table)


CLASS_OF_SIZE: Final[bytes] = _class_table()
"""``CLASS_OF_SIZE[size]`` is the class of ``size`` for ``0 <= size <= MAX_BLOCK``."""


SLAB_CAPACITY: Final[tuple[tuple[int, ...], ...]] = tuple(
    tuple(
        (SLAB_SIZE - (SS_HEADER_SIZE if slab_idx == 0 else 0)) // block
        for slab_idx in range(SLABS_PER_SS)
    )
    for block in CLASS_SIZES
)
"""``SLAB_CAPACITY[class_idx][slab_idx]``: blocks in that slab (see ``slab_capacity``)."""


def class_of(size: int) -> int | None:
    """Class serving a request of ``size`` bytes, or None above ``MAX_BLOCK`` (glibc's)."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if size > MAX_BLOCK:
        return None
    return CLASS_OF_SIZE[size]


def class_size(class_idx: int) -> int:
    """Block size of class ``class_idx``."""
    return CLASS_SIZES[_check_class(class_idx)]


def slab_capacity(class_idx: int, slab_idx: int) -> int:
    """Blocks of class ``class_idx`` in slab ``slab_idx`` (slab 0 holds the header)."""
    size = CLASS_SIZES[_check_class(class_idx)]
    if not 0 <= slab_idx < SLABS_PER_SS:
        raise ValueError(f"slab_idx must be in 0..{SLABS_PER_SS - 1}, got {slab_idx}")
    if slab_idx == 0:
        return (SLAB_SIZE - SS_HEADER_SIZE) // size
    return SLAB_SIZE // size


def block_offset(class_idx: int, slab_idx: int, block_idx: int) -> int:
    """Byte offset of a block from its SuperSlab's base (docs/policy.md)."""
    header = SS_HEADER_SIZE if slab_idx == 0 else 0
    return slab_idx * SLAB_SIZE + header + block_idx * class_size(class_idx)


def _check_class(class_idx: int) -> int:
    if not 0 <= class_idx < NUM_CLASSES:
        raise ValueError(f"class_idx must be in 0..{NUM_CLASSES - 1}, got {class_idx}")
    return class_idx
