"""The slab-level policy: docs/policy.md's take, growth, retire, release_block.

``SlabCore`` holds the SuperSlabs, slabs, thread identities and counters of
the size classes and implements every rule that moves a block between a slab
and a thread: ``take(T, c)`` (with collect, acquire and growth),
``release_block`` (local free, adoption, remote push), drains, retire and
SuperSlab release.  ``TinyHeap`` (heap.py) adds the thread caches, malloc,
free, flush and thread exit on top.

Counters are kept incrementally in one flat ``array('q')`` laid out exactly
like ``hak_stats_t`` (see stats.py), never recomputed by walking; its bytes
are what the native struct's bytes must equal.  Callers pass a
``ThreadState``; the core never decides which thread runs.  Hot paths cache
attributes in locals and allocate nothing.
"""

from __future__ import annotations

from array import array

from hakfuzz.model.config import Config
from hakfuzz.model.limits import NUM_CLASSES, SS_SIZE
from hakfuzz.model.slab import EMPTY_HELD as _EMPTY
from hakfuzz.model.slab import Slab, SlabState
from hakfuzz.model.stats import (
    ACTIVE_BLOCKS,
    N_CLASS_FIELDS,
    OS_MAP_FAILURES,
    OS_MAPS,
    OS_UNMAPS,
    REMOTE_PENDING,
    SLABS_IN_USE,
    SS_CREATED,
    SS_KEPT,
    SS_LIVE,
    SS_MAPPED,
    SS_RELEASED,
    STATS_LEN,
)
from hakfuzz.model.superslab import ALL_SLABS_FREE, ClassPool, SuperSlab
from hakfuzz.model.thread import ThreadState

_FREE = SlabState.FREE
_OWNED = SlabState.OWNED


def _stamp(slab: Slab) -> int:
    return slab.stamp


class ModelError(Exception):
    """The model was used in a way no program may use the allocator (e.g. a double free)."""


class SlabCore:
    """SuperSlabs, slabs, thread identities and counters of the size classes."""

    __slots__ = (
        "config",
        "counters",
        "kept",
        "live_total",
        "map_attempts",
        "next_seq",
        "next_stamp",
        "pools",
        "registry",
        "thread_serial",
        "threads",
    )

    config: Config
    counters: array[int]
    """Flat ``hak_stats_t`` (stats.py layout, int64 each), updated in place."""
    pools: list[ClassPool]
    registry: dict[int, SuperSlab]
    """Every live SuperSlab by ``ss_seq``: the model's ownership registry."""
    kept: int
    """Released SuperSlabs kept mapped; they are interchangeable, so a count."""
    live_total: int
    next_seq: int
    next_stamp: int
    map_attempts: int
    """OS mapping attempts since configure (what ``fail_map_at`` counts)."""
    threads: dict[int, ThreadState]
    thread_serial: int

    def __init__(self, config: Config) -> None:
        self.config = config
        self.counters = array("q", bytes(8 * STATS_LEN))
        self.pools = [ClassPool(c) for c in range(NUM_CLASSES)]
        self.registry = {}
        self.kept = 0
        self.live_total = 0
        self.next_seq = 1
        self.next_stamp = 1
        self.map_attempts = 0
        self.threads = {}
        self.thread_serial = 0

    # -- threads -----------------------------------------------------------

    def thread(self, tid: int) -> ThreadState:
        """The current identity of thread ``tid``, created on first use."""
        state = self.threads.get(tid)
        if state is None:
            if type(tid) is not int or tid < 0:
                raise ModelError(f"thread ids are ints >= 0, got {tid!r}")
            self.thread_serial += 1
            state = self.threads[tid] = ThreadState(tid, self.thread_serial)
        return state

    # -- taking blocks -----------------------------------------------------

    def take(self, thread: ThreadState, class_idx: int) -> int:
        """Policy ``take(T, c)``: a block index of ``thread.cur[class_idx]``, or -1."""
        cur = thread.cur
        partial = thread.partial[class_idx]
        while True:
            slab = cur[class_idx]
            # Step 1: cur's free list; draining, then carving, only when no
            # partial slab has a free list to use first.
            if slab is not None and (slab.freelist or not partial):
                freelist = slab.freelist
                if freelist:
                    block = freelist.pop()
                elif slab.remote:
                    self._drain(slab)
                    block = freelist.pop()
                elif slab.carved < slab.capacity:
                    block = slab.carved
                    slab.carved = block + 1
                else:
                    block = -1
                if block >= 0:
                    slab.used += 1
                    slab.ss.active += 1
                    self.counters[class_idx * N_CLASS_FIELDS + ACTIVE_BLOCKS] += 1
                    return block
            # Step 2: cur is exhausted (or none) and stays owned.
            if partial:
                if slab is not None and slab.carved < slab.capacity:
                    thread.dirty[class_idx][slab] = None  # carve room for collect
                slab = partial.popitem()[0]
                slab.on_partial = False
                cur[class_idx] = slab
                continue
            if self._collect(thread, class_idx):
                continue
            slab = self._acquire(thread, class_idx)
            if slab is None:
                return -1
            cur[class_idx] = slab

    def _collect(self, thread: ThreadState, class_idx: int) -> bool:
        """Step 2b: drain, retire empty slabs, refill partial; True if partial is non-empty.

        The policy walks all of ``owned``; only the slabs in ``dirty`` can be
        acted on (see thread.py), so the model walks those, in owned order.
        """
        dirty = thread.dirty[class_idx]
        if not dirty:
            return bool(thread.partial[class_idx])
        slabs = sorted(dirty, key=_stamp)
        dirty.clear()
        for slab in slabs:
            if slab.remote:
                self._drain(slab)
        cur = thread.cur[class_idx]
        partial = thread.partial[class_idx]
        for slab in slabs:
            if slab is cur:
                continue
            if slab.used == 0:
                self._retire(slab)
            elif (slab.freelist or slab.carved < slab.capacity) and not slab.on_partial:
                partial[slab] = None
                slab.on_partial = True
        return bool(partial)

    def _acquire(self, thread: ThreadState, class_idx: int) -> Slab | None:
        """Steps 2c-2f: the latest orphan, else a FREE slab in policy order, growing if needed."""
        pool = self.pools[class_idx]
        if pool.orphans:
            orphan = pool.orphans.popitem()[0]
            self._own(thread, orphan)
            return orphan
        slab = pool.take_free_slab()
        if slab is None:
            if not self._grow(class_idx):
                return None
            slab = pool.take_free_slab()
            assert slab is not None, "a new SuperSlab has FREE slabs"
        if slab.held is _EMPTY:  # never acquired before
            slab.first_use()
        self._own(thread, slab)
        self.counters[class_idx * N_CLASS_FIELDS + SLABS_IN_USE] += 1
        return slab

    def _own(self, thread: ThreadState, slab: Slab) -> None:
        """``slab`` (FREE or ORPHAN) becomes OWNED by ``thread``, last in its owned order."""
        slab.state = _OWNED
        slab.owner = thread
        slab.stamp = self.next_stamp
        self.next_stamp += 1
        thread.owned[slab.class_idx][slab] = None

    def _grow(self, class_idx: int) -> bool:
        """Policy "Growth": give the class a kept or newly mapped SuperSlab."""
        config = self.config
        pool = self.pools[class_idx]
        counters = self.counters
        if config.ss_cap and len(pool.live) >= config.ss_cap:
            return False
        if config.budget_bytes and (self.live_total + 1) * SS_SIZE > config.budget_bytes:
            return False
        if self.kept:
            self.kept -= 1
            counters[SS_KEPT] -= 1
        else:
            self.map_attempts += 1
            if self.map_attempts == config.fail_map_at:
                counters[OS_MAP_FAILURES] += 1
                return False
            counters[OS_MAPS] += 1
            counters[SS_MAPPED] += 1
        ss = SuperSlab(class_idx, self.next_seq)
        self.next_seq += 1
        self.registry[ss.ss_seq] = ss
        pool.add(ss)
        self.live_total += 1
        base = class_idx * N_CLASS_FIELDS
        counters[base + SS_CREATED] += 1
        counters[base + SS_LIVE] += 1
        return True

    # -- returning blocks --------------------------------------------------

    def _drain(self, slab: Slab) -> None:
        """Move the remote stack in front of the free list, most recent push on top."""
        remote = slab.remote
        count = len(remote)
        slab.freelist.extend(remote)
        remote.clear()
        slab.used -= count
        slab.ss.active -= count
        base = slab.class_idx * N_CLASS_FIELDS
        self.counters[base + ACTIVE_BLOCKS] -= count
        self.counters[base + REMOTE_PENDING] -= count

    def release_block(self, thread: ThreadState, slab: Slab, block: int) -> None:
        """Policy ``release_block(T, p)``: local free, adoption, or remote push."""
        class_idx = slab.class_idx
        owner = slab.owner
        if owner is not thread:
            if owner is None:  # ORPHAN: adopt
                del self.pools[class_idx].orphans[slab]
                self._own(thread, slab)
            else:
                slab.remote.append(block)
                owner.dirty[class_idx][slab] = None
                self.counters[class_idx * N_CLASS_FIELDS + REMOTE_PENDING] += 1
                return
        slab.freelist.append(block)
        slab.used -= 1
        slab.ss.active -= 1
        self.counters[class_idx * N_CLASS_FIELDS + ACTIVE_BLOCKS] -= 1
        if slab is not thread.cur[class_idx]:
            if slab.used == 0:
                self._retire(slab)
            elif not slab.on_partial:
                thread.partial[class_idx][slab] = None
                slab.on_partial = True

    def _retire(self, slab: Slab) -> None:
        """Policy ``retire(s)``; releases the SuperSlab when all its slabs are FREE.

        Unless the class holds it (``Config.releases``: its first live one, no budget).
        """
        owner = slab.owner
        class_idx = slab.class_idx
        if owner is not None:
            del owner.owned[class_idx][slab]
            owner.dirty[class_idx].pop(slab, None)
            if slab.on_partial:
                del owner.partial[class_idx][slab]
        slab.on_partial = False
        slab.freelist.clear()
        slab.carved = 0
        slab.state = _FREE
        slab.owner = None
        self.counters[class_idx * N_CLASS_FIELDS + SLABS_IN_USE] -= 1
        pool = self.pools[class_idx]
        pool.slab_freed(slab)
        ss = slab.ss
        if ss.free_mask == ALL_SLABS_FREE and self.config.releases(pool.first_live() is ss):
            self._release(ss, pool)

    def _release(self, ss: SuperSlab, pool: ClassPool) -> None:
        del self.registry[ss.ss_seq]
        pool.remove(ss)
        self.live_total -= 1
        counters = self.counters
        base = ss.class_idx * N_CLASS_FIELDS
        counters[base + SS_LIVE] -= 1
        counters[base + SS_RELEASED] += 1
        if self.kept < self.config.ss_keep:
            self.kept += 1
            counters[SS_KEPT] += 1
        else:
            counters[OS_UNMAPS] += 1
            counters[SS_MAPPED] -= 1
