"""What the model predicts for one pointer: its owner and, if tiny, its place.

A ``Loc`` is the model's name for a pointer.  For a tiny block it is exactly
what ``hak_locate`` reports (owner, class, ``ss_seq``, slab, block); a glibc
pointer gets a model-unique ``libc_id`` instead (the model cannot predict
glibc's addresses); a NULL result carries its errno.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from errno import EINVAL, ENOMEM
from typing import Final


class Owner(enum.IntEnum):
    """Who owns a pointer; values are ``hak_owner_t``'s (NULL is HAK_OWNER_UNKNOWN)."""

    NULL = 0
    TINY = 1
    LIBC = 2


LocationTuple = tuple[int, int, int, int, int]
"""``hak_location_t`` as a tuple: (owner, class_idx, ss_seq, slab_idx, block_idx)."""


@dataclass(frozen=True, slots=True, init=False)
class Loc:
    """One allocation result, as the model names it.

    Tiny: ``class_idx``, ``ss_seq`` (1-based), ``slab_idx``, ``block_idx``.
    Libc: ``libc_id`` (unique per glibc allocation in one model, never 0).
    Null: ``errno`` (ENOMEM, EINVAL, or 0 for ``realloc(p, 0)``).
    Fields a kind does not use keep the values ``hak_locate`` reports for
    non-tiny pointers (-1, 0, -1, -1).
    """

    owner: Owner
    class_idx: int = -1
    ss_seq: int = 0
    slab_idx: int = -1
    block_idx: int = -1
    libc_id: int = 0
    errno: int = 0

    def __init__(
        self,
        owner: Owner,
        class_idx: int = -1,
        ss_seq: int = 0,
        slab_idx: int = -1,
        block_idx: int = -1,
        libc_id: int = 0,
        errno: int = 0,
    ) -> None:
        # The generated frozen __init__ goes through object.__setattr__ once
        # per field; the model makes a Loc per glibc allocation and per first
        # use of a block, so set the slots directly (twice as fast).
        _set_owner(self, owner)
        _set_class_idx(self, class_idx)
        _set_ss_seq(self, ss_seq)
        _set_slab_idx(self, slab_idx)
        _set_block_idx(self, block_idx)
        _set_libc_id(self, libc_id)
        _set_errno(self, errno)

    @classmethod
    def from_location(cls, location: LocationTuple, *, errno: int = 0) -> Loc:
        """The ``Loc`` of a pointer ``hak_locate`` described (``libc_id`` unknown: 0).

        For NULL pass the errno the call set; an invariant-mode executor builds
        its observed results this way.
        """
        owner = Owner(location[0])
        if owner is Owner.TINY:
            return cls(owner, *location[1:])
        return cls(owner, errno=errno if owner is Owner.NULL else 0)

    def location(self) -> LocationTuple:
        """The ``hak_location_t`` fields that ``hak_locate`` fills for this pointer."""
        return (int(self.owner), self.class_idx, self.ss_seq, self.slab_idx, self.block_idx)

    @property
    def is_null(self) -> bool:
        """True for a NULL result."""
        return self.owner is Owner.NULL

    def __str__(self) -> str:
        if self.owner is Owner.TINY:
            place = f"ss{self.ss_seq}/slab{self.slab_idx}/block{self.block_idx}"
            return f"tiny C{self.class_idx} {place}"
        if self.owner is Owner.LIBC:
            return f"libc#{self.libc_id}"
        return f"NULL(errno={_ERRNO_NAMES.get(self.errno, str(self.errno))})"


def _slot_setter(name: str) -> Callable[[Loc, object], None]:
    setter: Callable[[Loc, object], None] = getattr(Loc, name).__set__
    return setter


_set_owner = _slot_setter("owner")
_set_class_idx = _slot_setter("class_idx")
_set_ss_seq = _slot_setter("ss_seq")
_set_slab_idx = _slot_setter("slab_idx")
_set_block_idx = _slot_setter("block_idx")
_set_libc_id = _slot_setter("libc_id")
_set_errno = _slot_setter("errno")

_ERRNO_NAMES: Final[dict[int, str]] = {0: "0", ENOMEM: "ENOMEM", EINVAL: "EINVAL"}

NULL_LOC: Final[Loc] = Loc(Owner.NULL)
"""NULL without an error: ``realloc(p, 0)``, or a NULL handed to free/realloc."""
NULL_ENOMEM: Final[Loc] = Loc(Owner.NULL, errno=ENOMEM)
NULL_EINVAL: Final[Loc] = Loc(Owner.NULL, errno=EINVAL)
