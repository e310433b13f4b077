"""SuperSlabs of the model and, per class, the pool that hands out free slabs.

A ``SuperSlab`` is 32 slabs given to one class under one ``ss_seq``.  A kept
SuperSlab reused for growth gets a new ``ss_seq`` and is, for the model, a new
``SuperSlab`` object: nothing of its previous life is observable.

``ClassPool`` keeps the class's ORPHAN slabs in orphaning order (step 2c
adopts the most recent one), and answers "the lowest slab index of the
lowest-``ss_seq`` SuperSlab of the class that has a FREE slab" (step 2d) in
O(log n):
each SuperSlab keeps a bit mask of its FREE slabs, and a heap holds the
``ss_seq`` of every live SuperSlab that may have one (stale entries are
dropped when they reach the top).
"""

from __future__ import annotations

import heapq

from hakfuzz.model.limits import SLABS_PER_SS
from hakfuzz.model.slab import Slab

ALL_SLABS_FREE = (1 << SLABS_PER_SS) - 1


class SuperSlab:
    """One live SuperSlab of a class.  Invariant: ``active == sum(slab.used)``."""

    __slots__ = ("active", "class_idx", "free_mask", "in_heap", "live", "slabs", "ss_seq")

    class_idx: int
    ss_seq: int
    slabs: list[Slab | None]
    """Slab objects are made on first acquisition; None is a never-used FREE slab."""
    active: int
    free_mask: int
    """Bit ``s`` is set while slab ``s`` is FREE."""
    live: bool
    """False once released (unregistered)."""
    in_heap: bool
    """True while the pool's heap holds an entry for this SuperSlab."""

    def __init__(self, class_idx: int, ss_seq: int) -> None:
        self.class_idx = class_idx
        self.ss_seq = ss_seq
        self.active = 0
        self.free_mask = ALL_SLABS_FREE
        self.live = True
        self.in_heap = False
        self.slabs = [None] * SLABS_PER_SS

    def existing(self) -> list[Slab]:
        """The slabs made so far (the others are FREE and were never used)."""
        return [slab for slab in self.slabs if slab is not None]

    def __repr__(self) -> str:
        return (
            f"<SuperSlab C{self.class_idx} ss{self.ss_seq} active={self.active}"
            f" free_slabs={self.free_mask.bit_count()}{'' if self.live else ' released'}>"
        )


class ClassPool:
    """The live SuperSlabs of one class, in ``ss_seq`` order."""

    __slots__ = ("_with_free", "class_idx", "live", "orphans")

    class_idx: int
    live: dict[int, SuperSlab]
    """``ss_seq -> SuperSlab``; insertion order is ``ss_seq`` order."""
    orphans: dict[Slab, None]
    """The class's ORPHAN slabs; insertion order is orphaning order."""
    _with_free: list[int]

    def __init__(self, class_idx: int) -> None:
        self.class_idx = class_idx
        self.live = {}
        self.orphans = {}
        self._with_free = []

    def add(self, ss: SuperSlab) -> None:
        """Append a new SuperSlab (all slabs FREE) to the class."""
        self.live[ss.ss_seq] = ss
        heapq.heappush(self._with_free, ss.ss_seq)
        ss.in_heap = True

    def first_live(self) -> SuperSlab | None:
        """The live SuperSlab with the lowest ``ss_seq`` (the one a class holds), or None."""
        return next(iter(self.live.values()), None)

    def remove(self, ss: SuperSlab) -> None:
        """Remove a released SuperSlab from the class."""
        del self.live[ss.ss_seq]
        ss.live = False

    def take_free_slab(self) -> Slab | None:
        """Mark the first FREE slab in policy order as taken and return it, or None."""
        heap = self._with_free
        live = self.live
        while heap:
            ss = live.get(heap[0])
            if ss is None or not ss.free_mask:
                heapq.heappop(heap)
                if ss is not None:
                    ss.in_heap = False
                continue
            mask = ss.free_mask
            slab_idx = (mask & -mask).bit_length() - 1
            ss.free_mask = mask ^ (1 << slab_idx)
            slab = ss.slabs[slab_idx]
            if slab is None:
                slab = ss.slabs[slab_idx] = Slab(ss, slab_idx)
            return slab
        return None

    def slab_freed(self, slab: Slab) -> None:
        """Record that ``slab`` became FREE."""
        ss = slab.ss
        ss.free_mask |= 1 << slab.slab_idx
        if not ss.in_heap:
            heapq.heappush(self._with_free, ss.ss_seq)
            ss.in_heap = True

    def check(self) -> list[str]:
        """Violations of the pool's own bookkeeping (for ``selfcheck``)."""
        problems: list[str] = []
        in_heap = set(self._with_free)
        previous = 0
        for ss_seq, ss in self.live.items():
            if ss_seq <= previous:
                problems.append(f"C{self.class_idx}: SuperSlabs not in ss_seq order at ss{ss_seq}")
            previous = ss_seq
            if ss.free_mask and ss_seq not in in_heap:
                problems.append(f"C{self.class_idx} ss{ss_seq} has a FREE slab but is not findable")
            if ss.in_heap != (ss_seq in in_heap):
                problems.append(f"C{self.class_idx} ss{ss_seq}: in_heap flag disagrees with heap")
        return problems
