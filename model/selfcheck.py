"""Walk every structure of a ``TinyHeap`` and report each broken invariant.

The model's counterpart of ``hak_check``: slow (it visits every block), used
by the model's own tests after every op.  Each violation is one sentence
naming the slab, SuperSlab, thread or counter concerned.
"""

from __future__ import annotations

from collections import Counter

from hakfuzz.model.heap import TinyHeap
from hakfuzz.model.limits import CACHE_CAP_MAX, NUM_CLASSES, SLABS_PER_SS
from hakfuzz.model.location import Owner
from hakfuzz.model.slab import Slab, SlabState
from hakfuzz.model.stats import (
    ACTIVE_BLOCKS,
    N_CLASS_FIELDS,
    OS_MAPS,
    OS_UNMAPS,
    REMOTE_PENDING,
    SLABS_IN_USE,
    SS_CREATED,
    SS_KEPT,
    SS_LIVE,
    SS_MAPPED,
    SS_RELEASED,
    field_name,
)
from hakfuzz.model.superslab import ALL_SLABS_FREE


def check_heap(heap: TinyHeap) -> list[str]:
    """Every violated invariant of ``heap``, as sentences (empty when consistent)."""
    problems: list[str] = []
    cached = _check_threads(heap, problems)
    _check_superslabs(heap, cached, problems)
    _check_counters(heap, problems)
    return problems


def _check_threads(heap: TinyHeap, problems: list[str]) -> Counter[tuple[int, int, int]]:
    """Thread-side invariants; returns how often each (ss_seq, slab, block) is cached."""
    cached: Counter[tuple[int, int, int]] = Counter()
    for tid, thread in heap.threads.items():
        who = thread.name()
        if thread.tid != tid:
            problems.append(f"{who} is registered under thread id {tid}")
        for class_idx in range(NUM_CLASSES):
            owned = thread.owned[class_idx]
            partial = thread.partial[class_idx]
            cur = thread.cur[class_idx]
            if cur is not None and cur not in owned:
                problems.append(f"{who}: current slab {cur.name()} is not in its owned list")
            stamps = [slab.stamp for slab in owned]
            if stamps != sorted(stamps) or len(set(stamps)) != len(stamps):
                problems.append(f"{who}: owned slabs of C{class_idx} are not in stamp order")
            for slab in owned:
                if slab.state is not SlabState.OWNED or slab.owner is not thread:
                    problems.append(f"{who} lists {slab.name()} as owned, but it is {slab!r}")
                if slab.class_idx != class_idx:
                    problems.append(f"{who}: {slab.name()} is in the owned list of C{class_idx}")
                has_room = slab.freelist or slab.carved < slab.capacity
                collectable = slab.remote or slab.used == 0 or (has_room and not slab.on_partial)
                if slab is not cur and collectable and slab not in thread.dirty[class_idx]:
                    problems.append(f"{who}: {slab!r} needs collecting but is not marked dirty")
            for slab in thread.dirty[class_idx]:
                if slab not in owned:
                    problems.append(f"{who}: dirty slab {slab.name()} is not owned")
            for slab in partial:
                if slab not in owned:
                    problems.append(f"{who}: partial slab {slab.name()} is not owned")
                if slab is cur:
                    problems.append(f"{who}: current slab {slab.name()} is on the partial stack")
                if not slab.on_partial:
                    problems.append(f"{who}: {slab.name()} is on partial without its mark")
                if not slab.freelist or slab.used == 0:
                    problems.append(f"{who}: partial slab {slab!r} has no free block or no use")
            cache = thread.cache[class_idx]
            if len(cache) > CACHE_CAP_MAX:
                problems.append(f"{who}: cache of C{class_idx} holds {len(cache)} blocks")
            for loc in cache:
                if loc.owner is not Owner.TINY or loc.class_idx != class_idx:
                    problems.append(f"{who}: cache of C{class_idx} holds {loc}")
                cached[(loc.ss_seq, loc.slab_idx, loc.block_idx)] += 1
    for key, count in cached.items():
        if count > 1:
            problems.append(f"block ss{key[0]}/slab{key[1]}/block{key[2]} is cached {count} times")
    return cached


def _check_superslabs(
    heap: TinyHeap, cached: Counter[tuple[int, int, int]], problems: list[str]
) -> None:
    registered = 0
    seen_cached = 0
    # The cached blocks of each slab, in block order: a slab then visits only
    # its own cached blocks, not every block it has carved.
    by_slab: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (ss_seq, slab_idx, block), count in sorted(cached.items()):
        by_slab.setdefault((ss_seq, slab_idx), []).append((block, count))
    for class_idx, pool in enumerate(heap.pools):
        problems.extend(pool.check())
        first = pool.first_live()
        for ss_seq, ss in pool.live.items():
            registered += 1
            name = f"C{class_idx} ss{ss_seq}"
            if heap.registry.get(ss_seq) is not ss:
                problems.append(f"{name} is live but not registered")
            if ss.class_idx != class_idx or not ss.live:
                problems.append(f"{name} is in the wrong pool or marked released: {ss!r}")
            slabs = ss.existing()
            if ss.active != sum(slab.used for slab in slabs):
                problems.append(f"{name}: active {ss.active} != sum of slab.used")
            free_mask = sum(1 << idx for idx, slab in enumerate(ss.slabs) if slab is None)
            for slab in slabs:
                if slab.state is SlabState.FREE:
                    free_mask |= 1 << slab.slab_idx
                mine = by_slab.get((slab.ss_seq, slab.slab_idx), [])
                seen_cached += _check_slab(heap, slab, cached, mine, problems)
            if free_mask != ss.free_mask:
                problems.append(f"{name}: free mask {ss.free_mask:#x} != FREE slabs {free_mask:#x}")
            # Held (policy "Retire and release") only as its class's first live
            # SuperSlab; one held before hak_configure set a budget stays held.
            if free_mask == ALL_SLABS_FREE and heap.config.release_empty and ss is not first:
                problems.append(f"{name}: all {SLABS_PER_SS} slabs FREE but not released")
    if registered != len(heap.registry):
        problems.append(f"registry holds {len(heap.registry)} SuperSlabs, pools {registered}")
    if seen_cached != sum(cached.values()):
        problems.append("some cached blocks are not blocks of a live SuperSlab")


def _total(flags: bytearray) -> int:
    """``sum(flags)``, counted at C speed when every flag is 0 or 1 (as the model keeps them)."""
    ones = flags.count(1)
    if ones + flags.count(0) == len(flags):
        return ones
    return sum(flags)


def _check_slab(
    heap: TinyHeap,
    slab: Slab,
    cached: Counter[tuple[int, int, int]],
    mine: list[tuple[int, int]],
    problems: list[str],
) -> int:
    """Check one slab; returns how many cached blocks belong to it.

    ``mine`` is (block, times cached) of every cached block of this slab, by block.
    """
    name = slab.name()
    if not 0 <= slab.carved <= slab.capacity:
        problems.append(f"{name}: carved {slab.carved} outside 0..{slab.capacity}")
    if slab.used != slab.carved - len(slab.freelist):
        free = len(slab.freelist)
        problems.append(f"{name}: used {slab.used} != carved {slab.carved} - free {free}")
    if slab.state is SlabState.FREE:
        if slab.owner is not None or slab.used or slab.carved or slab.freelist or slab.remote:
            problems.append(f"FREE slab {slab!r} is not empty")
        if slab.on_partial or slab.held.count(0) != len(slab.held):  # any(held), at C speed
            problems.append(f"FREE slab {name} is on partial or has held blocks")
        return 0
    if slab.state is SlabState.ORPHAN:
        if slab.owner is not None or slab.on_partial or slab.remote:
            problems.append(f"ORPHAN slab {slab!r} has an owner, a partial mark or remote blocks")
    else:
        owner = slab.owner
        if owner is None or heap.threads.get(owner.tid) is not owner:
            problems.append(f"OWNED slab {name} is owned by a dead identity {owner!r}")
        elif slab not in owner.owned[slab.class_idx]:
            problems.append(f"OWNED slab {name} is missing from {owner.name()}'s owned list")
        elif slab.on_partial != (slab in owner.partial[slab.class_idx]):
            problems.append(f"{name}: partial mark disagrees with {owner.name()}'s partial stack")
    free_blocks = slab.freelist + slab.remote
    if len(set(free_blocks)) != len(free_blocks):
        problems.append(f"{name}: a block is twice on the free list or remote stack")
    n_cached = 0
    for block in free_blocks:
        key = (slab.ss_seq, slab.slab_idx, block)
        if not 0 <= block < slab.carved or slab.held[block] or key in cached:
            problems.append(f"{name}: free block {block} is not carved, or held, or cached")
    held = _total(slab.held)
    if slab.held.count(0, slab.carved) != len(slab.held) - slab.carved:  # any(held[carved:])
        problems.append(f"{name}: a block beyond carved is held")
    for block, count in mine:
        if not 0 <= block < slab.carved:
            continue  # not a carved block: counted by no slab, reported by the caller
        n_cached += count
        if slab.held[block]:
            problems.append(f"{name}: block {block} is both cached and held")
    if slab.used != held + n_cached + len(slab.remote):
        problems.append(
            f"{name}: used {slab.used} != held {held} + cached {n_cached}"
            f" + remote {len(slab.remote)}"
        )
    return n_cached


def _check_counters(heap: TinyHeap, problems: list[str]) -> None:
    counters = heap.counters
    for index, value in enumerate(counters):
        if value < 0:
            problems.append(f"counter {field_name(index)} is negative: {value}")
    for class_idx, pool in enumerate(heap.pools):
        base = class_idx * N_CLASS_FIELDS
        slabs = [slab for ss in pool.live.values() for slab in ss.existing()]
        expected = {
            SS_LIVE: len(pool.live),
            SLABS_IN_USE: sum(slab.state is not SlabState.FREE for slab in slabs),
            ACTIVE_BLOCKS: sum(ss.active for ss in pool.live.values()),
            REMOTE_PENDING: sum(len(slab.remote) for slab in slabs),
        }
        for offset, value in expected.items():
            if counters[base + offset] != value:
                name = field_name(base + offset)
                problems.append(f"{name} is {counters[base + offset]}, walk says {value}")
        if counters[base + SS_CREATED] - counters[base + SS_RELEASED] != counters[base + SS_LIVE]:
            problems.append(f"C{class_idx}: ss_created - ss_released != ss_live")
    if heap.live_total != len(heap.registry):
        problems.append(f"live_total {heap.live_total} != {len(heap.registry)} registered")
    if counters[SS_KEPT] != heap.kept:
        problems.append(f"ss_kept is {counters[SS_KEPT]}, {heap.kept} are kept")
    if counters[SS_MAPPED] != heap.live_total + heap.kept:
        mapped = counters[SS_MAPPED]
        problems.append(f"ss_mapped {mapped} != live {heap.live_total} + kept {heap.kept}")
    if counters[OS_MAPS] - counters[OS_UNMAPS] != counters[SS_MAPPED]:
        problems.append("os_maps - os_unmaps != ss_mapped")
