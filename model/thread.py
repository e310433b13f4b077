"""Per-thread state of the model: caches, current slab, partial and owned slabs.

Threads are small ints chosen by the caller.  A ``ThreadState`` is one
*identity*: ``hak_thread_exit`` ends it, and the thread's next call starts a
new one with empty state (``serial`` tells identities apart in messages).

Per class ``c`` (docs/policy.md "State"):

- ``cache[c]``: stack of ``Loc``, bottom first; holds at most ``cache_cap``.
- ``cur[c]``: the current slab, or None.
- ``partial[c]``: owned, non-current slabs with free blocks; a LIFO stack
  kept as an insertion-ordered dict (``popitem`` pops the top, and a retired
  slab leaves it in O(1)).
- ``owned[c]``: every slab the identity owns, in acquisition order (dict used
  as an ordered set), ``cur`` included.
- ``refills[c]``: refills of class ``c`` that returned a block (the slow start:
  refill ``r`` takes at most ``REFILL_START << r`` blocks; counted up to the
  doubling that reaches ``CACHE_CAP_MAX``).
- ``dirty[c]``: owned slabs that policy step 2b ("collect") may act on: it
  holds every owned non-current slab with remote blocks, with ``used == 0``,
  or with free blocks (free list or carve room) while off the partial stack
  (and may hold others).
  Collect visits only these, in ``owned`` order (by ``Slab.stamp``), which
  has the effect of visiting all of ``owned`` without its quadratic cost.
"""

from __future__ import annotations

from hakfuzz.model.limits import NUM_CLASSES
from hakfuzz.model.location import Loc
from hakfuzz.model.slab import Slab


class ThreadState:
    """State of one thread identity."""

    __slots__ = ("cache", "cur", "dirty", "owned", "partial", "refills", "serial", "tid")

    tid: int
    serial: int
    cache: list[list[Loc]]
    cur: list[Slab | None]
    partial: list[dict[Slab, None]]
    owned: list[dict[Slab, None]]
    dirty: list[dict[Slab, None]]
    refills: list[int]

    def __init__(self, tid: int, serial: int) -> None:
        self.tid = tid
        self.serial = serial
        self.cache = [[] for _ in range(NUM_CLASSES)]
        self.cur = [None] * NUM_CLASSES
        self.partial = [{} for _ in range(NUM_CLASSES)]
        self.owned = [{} for _ in range(NUM_CLASSES)]
        self.dirty = [{} for _ in range(NUM_CLASSES)]
        self.refills = [0] * NUM_CLASSES

    def __repr__(self) -> str:
        return f"<ThreadState tid={self.tid} identity={self.serial}>"

    def name(self) -> str:
        """Short name for messages: ``thread 2 (identity 5)``."""
        return f"thread {self.tid} (identity {self.serial})"
