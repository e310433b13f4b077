"""The tiny heap: thread caches, malloc, free, flush and thread exit.

``TinyHeap`` extends ``SlabCore`` (core.py) with the rules of docs/policy.md
that involve a thread's caches: "malloc(size)" (refill in batches, b1 on
top), "free(p)" (push, or drain the oldest half when full), "flush" and
"thread exit".  It also checks that every freed ``Loc`` is a block the user
holds, so a misused model fails at once instead of drifting.
"""

from __future__ import annotations

from hakfuzz.model.core import ModelError, SlabCore
from hakfuzz.model.limits import CACHE_CAP_MAX, NUM_CLASSES, REFILL_START, SLABS_PER_SS
from hakfuzz.model.location import Loc, Owner
from hakfuzz.model.slab import Slab, SlabState
from hakfuzz.model.stats import ACTIVE_BLOCKS, N_CLASS_FIELDS
from hakfuzz.model.thread import ThreadState

_FREE = SlabState.FREE
_ORPHAN = SlabState.ORPHAN
_TINY = Owner.TINY
REFILL_DOUBLINGS = (CACHE_CAP_MAX // REFILL_START).bit_length() - 1
"""Refills after which the slow start no longer limits a refill (REFILL_START << it is the cap)."""

__all__ = ["ModelError", "TinyHeap"]


class TinyHeap(SlabCore):
    """The model's whole tiny-block state, with the per-thread front end."""

    __slots__ = ()

    # -- malloc and free of tiny blocks --------------------------------------

    def alloc(self, thread: ThreadState, class_idx: int) -> Loc | None:
        """A block of ``class_idx`` for ``thread`` (policy "malloc"), or None if refused."""
        cache_cap = self.config.cache_cap
        if cache_cap == 0:
            block = self.take(thread, class_idx)
            if block < 0:
                return None
            slab = thread.cur[class_idx]
            assert slab is not None
            slab.held[block] = 1
            locs = slab.locs
            if block < len(locs):
                return locs[block]
            loc = Loc(_TINY, class_idx, slab.ss_seq, slab.slab_idx, block)
            locs.append(loc)  # block == len(locs): carved just now (see slab.loc_memo)
            return loc
        cache = thread.cache[class_idx]
        if not cache:
            self._refill(thread, class_idx, cache)
            if not cache:
                return None
        loc = cache.pop()
        # A cached Loc is a block of a used slab of a live SuperSlab (selfcheck).
        self.registry[loc.ss_seq].slabs[loc.slab_idx].held[loc.block_idx] = 1  # type: ignore[union-attr]
        return loc

    def _refill(self, thread: ThreadState, class_idx: int, cache: list[Loc]) -> None:
        config = self.config
        want = config.refill_batch  # config.refill_count, inlined (cache_cap > 0 here)
        if want > config.cache_cap:
            want = config.cache_cap
        refills = thread.refills[class_idx]
        ramp = REFILL_START << refills  # the slow start (docs/policy.md, "malloc")
        if want > ramp:
            want = ramp
        if want < 1:
            want = 1
        taken: list[Loc] = []
        cur = thread.cur
        while len(taken) < want:
            slab = cur[class_idx]
            if slab is not None:
                # What take() would return from cur's free list and carve point,
                # in the same order, taken in one go: pops (the top first), then
                # carving upwards, but only while no partial slab has holes to
                # use first and no remote block waits (take step 1: a drain
                # comes first).  Anything else (drain, next slab) is take()'s.
                need = want - len(taken)
                freelist = slab.freelist
                blocks: list[int] = []
                if freelist:
                    n = min(need, len(freelist))
                    blocks = freelist[-n:]
                    del freelist[-n:]
                    blocks.reverse()
                    need -= n
                carved = slab.carved
                if (need and carved < slab.capacity and not slab.remote
                        and not thread.partial[class_idx]):
                    n = min(need, slab.capacity - carved)
                    blocks.extend(range(carved, carved + n))
                    slab.carved = carved + n
                if blocks:
                    count = len(blocks)
                    slab.used += count
                    slab.ss.active += count
                    self.counters[class_idx * N_CLASS_FIELDS + ACTIVE_BLOCKS] += count
                    locs = slab.locs
                    known = len(locs)
                    for block in blocks:
                        if block < known:
                            taken.append(locs[block])
                        else:  # carved just now, in index order (see slab.loc_memo)
                            loc = Loc(_TINY, class_idx, slab.ss_seq, slab.slab_idx, block)
                            locs.append(loc)
                            taken.append(loc)
                    continue
            block = self.take(thread, class_idx)
            if block < 0:
                break
            slab = cur[class_idx]
            assert slab is not None
            locs = slab.locs
            if block < len(locs):
                taken.append(locs[block])
            else:  # carved just now (see slab.loc_memo)
                loc = Loc(_TINY, class_idx, slab.ss_seq, slab.slab_idx, block)
                locs.append(loc)
                taken.append(loc)
        if taken and refills < REFILL_DOUBLINGS:
            thread.refills[class_idx] = refills + 1
        # b1 on top: the next pops return the blocks in take order.
        taken.reverse()
        cache.extend(taken)

    def slab_of(self, loc: Loc) -> Slab:
        """The slab of a tiny ``Loc`` of a live SuperSlab (ModelError otherwise)."""
        ss = self.registry.get(loc.ss_seq)
        if ss is not None and ss.class_idx == loc.class_idx and 0 <= loc.slab_idx < SLABS_PER_SS:
            slab = ss.slabs[loc.slab_idx]
            if slab is not None:
                return slab
        raise ModelError(f"{loc} is not in a used slab of a live SuperSlab of its class")

    def free(self, thread: ThreadState, loc: Loc) -> None:
        """Policy "free(p)" for a tiny block; ModelError unless ``loc`` is held by the user."""
        # slab_of(loc), inlined: the hottest caller.
        class_idx = loc.class_idx
        ss = self.registry.get(loc.ss_seq)
        slab = None
        if ss is not None and ss.class_idx == class_idx and 0 <= loc.slab_idx < SLABS_PER_SS:
            slab = ss.slabs[loc.slab_idx]
        block = loc.block_idx
        if slab is None:
            raise ModelError(f"{loc} is not in a used slab of a live SuperSlab of its class")
        if slab.state is _FREE or not 0 <= block < slab.carved or not slab.held[block]:
            raise ModelError(f"free of {loc}, which is not a live block (double free?)")
        slab.held[block] = 0
        cache_cap = self.config.cache_cap
        if cache_cap == 0:
            self.release_block(thread, slab, block)
            return
        cache = thread.cache[class_idx]
        # '>=' rather than '==': a configure that lowers cache_cap leaves
        # fuller caches behind, which must drain on their next free.
        if len(cache) >= cache_cap:
            count = max(1, cache_cap // 2)
            oldest = cache[:count]
            del cache[:count]
            registry, release_block = self.registry, self.release_block
            for old in oldest:
                # Cached Locs are blocks of used slabs of live SuperSlabs (selfcheck).
                old_slab = registry[old.ss_seq].slabs[old.slab_idx]
                assert old_slab is not None
                release_block(thread, old_slab, old.block_idx)
        cache.append(loc)

    def is_held(self, loc: Loc) -> bool:
        """True if the tiny ``loc`` is a block currently held by the user."""
        ss = self.registry.get(loc.ss_seq)
        if ss is None or ss.class_idx != loc.class_idx or not 0 <= loc.slab_idx < SLABS_PER_SS:
            return False
        slab = ss.slabs[loc.slab_idx]
        block = loc.block_idx
        return (
            slab is not None
            and slab.state is not _FREE
            and 0 <= block < slab.carved
            and bool(slab.held[block])
        )

    # -- flush and thread exit -----------------------------------------------

    def flush(self, thread: ThreadState) -> None:
        """Policy "flush": drain caches, drain remote stacks, retire empty owned slabs."""
        registry, release_block = self.registry, self.release_block
        for cache in thread.cache:
            if cache:
                blocks = cache[:]
                cache.clear()
                for loc in blocks:
                    # Cached Locs are blocks of used slabs of live SuperSlabs (selfcheck).
                    slab = registry[loc.ss_seq].slabs[loc.slab_idx]
                    assert slab is not None
                    release_block(thread, slab, loc.block_idx)
        for owned in thread.owned:
            for slab in owned:
                if slab.remote:
                    self._drain(slab)
        for class_idx, owned in enumerate(thread.owned):
            for slab in list(owned):
                if slab.used == 0:
                    if slab is thread.cur[class_idx]:
                        thread.cur[class_idx] = None
                    self._retire(slab)

    def thread_exit(self, thread: ThreadState) -> None:
        """Policy "thread exit": flush, orphan the slabs still owned, forget the identity."""
        self.flush(thread)
        for class_idx in range(NUM_CLASSES):
            orphans = self.pools[class_idx].orphans
            for slab in thread.owned[class_idx]:
                slab.state = _ORPHAN
                slab.owner = None
                slab.on_partial = False
                orphans[slab] = None
            thread.owned[class_idx].clear()
            thread.partial[class_idx].clear()
            thread.dirty[class_idx].clear()
            thread.cur[class_idx] = None
        if self.threads.get(thread.tid) is thread:
            del self.threads[thread.tid]
