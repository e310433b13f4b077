"""One slab of the model: its state, free list, carve point, remote stack.

Invariants (docs/policy.md "State"; ``selfcheck`` verifies each sentence):

- ``used == carved - len(freelist)``; blocks on the remote stack, in a
  thread cache or held by the user all count as used.
- ``used == held blocks + cached blocks + len(remote)``.
- A FREE slab has ``owner is None``, ``used == carved == 0``, empty stacks.
- An ORPHAN slab has ``owner is None``, is on no partial stack and has an
  empty remote stack (its last owner drained it when exiting).
- ``on_partial`` is True exactly when the slab is on its owner's partial stack.

Blocks are plain ints (indices from the slab's first block).  Per block a
used slab keeps one byte (``held``) and, once carved, one slot of its ``Loc``
memo; free lists and remote stacks are lists of ints, and no other per-block
object exists in the model.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from hakfuzz.model.limits import SLAB_CAPACITY
from hakfuzz.model.location import Loc

if TYPE_CHECKING:
    from hakfuzz.model.superslab import SuperSlab
    from hakfuzz.model.thread import ThreadState


# Building a Loc costs about a microsecond, more than the rest of a malloc,
# so each slab memoizes the Loc of its blocks: a Loc depends only on (class,
# ss_seq, slab, block).  The memo is a list that grows as blocks are carved:
# blocks are carved in index order and a block is handed out only once it
# has been carved, so ``len(locs) >= carved`` always, and ``locs[b]`` exists
# for every block that can be free, cached, remote or held.  (A memo of
# ``capacity`` slots made up front would cost 64 KiB per 8-byte slab and,
# worse, the cyclic GC would walk every empty slot of it at each collection.)
# Slabs at the places every short program uses (the first slabs of the first
# SuperSlabs) share one memo across model instances, so a fresh model per
# program starts warm; the shared memory is bounded by the places below.
_SHARED_SS_SEQ_MAX = 8
_SHARED_SLAB_IDX_MAX = 1
EMPTY_HELD = _EMPTY = bytearray()
"""``held`` of a slab never acquired (its per-block arrays are made on first use)."""
_shared_locs: dict[tuple[int, int, int], list[Loc]] = {}


def loc_memo(class_idx: int, ss_seq: int, slab_idx: int) -> list[Loc]:
    """The Loc memo list for a slab: shared for the first places, else a new one."""
    if ss_seq > _SHARED_SS_SEQ_MAX or slab_idx > _SHARED_SLAB_IDX_MAX:
        return []
    key = (class_idx, ss_seq, slab_idx)
    memo = _shared_locs.get(key)
    if memo is None:
        memo = _shared_locs[key] = []
    return memo


class SlabState(enum.IntEnum):
    """Lifecycle of a slab."""

    FREE = 0
    """Not in use; ready to be acquired by any thread of the class."""
    OWNED = 1
    """In use, owned by ``owner``."""
    ORPHAN = 2
    """In use, its owner exited; the next thread freeing into it adopts it."""


class Slab:
    """Mutable state of one 64 KiB slab of a SuperSlab."""

    __slots__ = (
        "capacity",
        "carved",
        "class_idx",
        "freelist",
        "held",
        "locs",
        "on_partial",
        "owner",
        "remote",
        "slab_idx",
        "ss",
        "ss_seq",
        "stamp",
        "state",
        "used",
    )

    ss: SuperSlab
    slab_idx: int
    class_idx: int
    ss_seq: int
    capacity: int
    state: SlabState
    owner: ThreadState | None
    freelist: list[int]
    """LIFO stack of free block indices; the top is the end of the list."""
    carved: int
    """Blocks handed out by bump allocation so far: 0..capacity."""
    used: int
    remote: list[int]
    """LIFO stack of blocks freed by other threads, not yet drained."""
    on_partial: bool
    stamp: int
    """Increases with each entry into an ``owned`` list: sorts slabs in owned order."""
    held: bytearray
    """``held[b]`` is 1 while block ``b`` is held by the user (not cached)."""
    locs: list[Loc]
    """Memo of the ``Loc`` of each block carved so far (see ``loc_memo``)."""

    def __init__(self, ss: SuperSlab, slab_idx: int) -> None:
        self.ss = ss
        self.slab_idx = slab_idx
        self.class_idx = ss.class_idx
        self.ss_seq = ss.ss_seq
        self.capacity = SLAB_CAPACITY[ss.class_idx][slab_idx]
        self.state = SlabState.FREE
        self.owner = None
        self.freelist = []
        self.carved = 0
        self.used = 0
        self.remote = []
        self.on_partial = False
        self.stamp = 0
        self.held = _EMPTY
        self.locs = []

    def first_use(self) -> None:
        """Allocate the per-block arrays (on first acquisition)."""
        self.held = bytearray(self.capacity)
        self.locs = loc_memo(self.class_idx, self.ss_seq, self.slab_idx)

    def __repr__(self) -> str:
        return (
            f"<Slab C{self.class_idx} ss{self.ss_seq}/slab{self.slab_idx} {self.state.name}"
            f" used={self.used} carved={self.carved}/{self.capacity}"
            f" free={len(self.freelist)} remote={len(self.remote)}>"
        )

    def name(self) -> str:
        """Short name for messages: ``C3 ss1/slab0``."""
        return f"C{self.class_idx} ss{self.ss_seq}/slab{self.slab_idx}"
