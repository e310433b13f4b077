"""Growth, caps, OOM policies, fault injection and SuperSlab release: one table, two sides.

Each scenario drives a :class:`Heap` and asserts what docs/policy.md says
must happen.  ``tests/test_model_growth.py`` runs every scenario on the
model, ``tests/test_native_growth.py`` on the allocator through cffi, so a
rule is written once and both sides are held to it.

With thread caches off (``cache_cap=0``) placement is exact: blocks are
carved in order, slab 0 holds ``(65536 - 4096) / size`` blocks and slabs
1..31 hold ``65536 / size``, and the 33rd slab of a class is slab 0 of a new
SuperSlab (the next ``ss_seq``).  Empty SuperSlabs are released, except a
class's first live one, which it holds unless a budget is set; up to
``ss_keep`` released ones stay mapped and are reused by the next growth
without a new OS mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from errno import ENOMEM
from functools import partial
from typing import Protocol

from hakfuzz.model import Owner, limits
from hakfuzz.model.stats import Stats

Block = object
"""What a heap's malloc returns: a model ``Loc`` or a cffi pointer."""

Where = tuple[int, int, int, int, int]
"""``hak_locate``: (owner, class_idx, ss_seq, slab_idx, block_idx)."""

C7 = 1024
NO_HOLD = 1 << 40
"""A ``budget_bytes`` no scenario reaches: any budget turns the hold off, so the
scenarios about release and reuse set it to release every empty SuperSlab."""
SS_BLOCKS: tuple[int, ...] = tuple(sum(caps) for caps in limits.SLAB_CAPACITY)
"""Blocks in one whole SuperSlab of each class (slab 0 holds the header)."""


class Heap(Protocol):
    """One side: the model or the native allocator, one thread."""

    def reset(self, **fields: int) -> None:
        """Start afresh with the default config, ``fields`` (``hak_config_t`` values) changed."""

    def configure(self, **fields: int) -> None:
        """Apply the default config with ``fields`` changed, keeping what is allocated."""

    def malloc(self, size: int) -> Block:
        """``hak_malloc``; the errno of a NULL result is ``last_errno``."""

    @property
    def last_errno(self) -> int:
        """The errno after the last ``malloc`` (0 unless it failed)."""

    def free(self, block: Block) -> None:
        """``hak_free``."""

    def flush(self) -> None:
        """``hak_flush``."""

    def where(self, block: Block) -> Where:
        """``hak_locate`` of a live block."""

    def stats(self) -> Stats:
        """``hak_stats``."""

    def problems(self) -> list[str]:
        """``hak_check``: empty when consistent."""


Scenario = Callable[[Heap], None]


def owner(heap: Heap, block: Block) -> Owner:
    """Who owns ``block``."""
    return Owner(heap.where(block)[0])


def place(heap: Heap, block: Block) -> tuple[int, int, int]:
    """``(ss_seq, slab_idx, block_idx)`` of a tiny block."""
    return heap.where(block)[2:]


def fill_class(heap: Heap, class_idx: int, superslabs: int = 1) -> list[Block]:
    """Every block of ``superslabs`` SuperSlabs' worth of a class; all tiny."""
    blocks = [heap.malloc(limits.CLASS_SIZES[class_idx])
              for _ in range(SS_BLOCKS[class_idx] * superslabs)]
    foreign = sum(owner(heap, b) is not Owner.TINY for b in blocks)
    assert foreign == 0, f"{foreign} of {len(blocks)} C{class_idx} requests were not tiny"
    return blocks


def expected_places(class_idx: int, superslabs: int) -> list[tuple[int, int, int]]:
    """Every (ss_seq, slab_idx, block_idx) of ``superslabs`` SuperSlabs, in carving order."""
    return [
        (ss_seq, slab_idx, block_idx)
        for ss_seq in range(1, superslabs + 1)
        for slab_idx in range(limits.SLABS_PER_SS)
        for block_idx in range(limits.slab_capacity(class_idx, slab_idx))
    ]


def assert_clean(heap: Heap, context: str) -> None:
    """Nothing inconsistent."""
    assert heap.problems() == [], context


# ---- growth ---------------------------------------------------------------


def more_than_32_slabs_grow_new_superslabs(heap: Heap, class_idx: int, superslabs: int) -> None:
    """The 33rd slab of a class is slab 0 of a new SuperSlab, with the next ss_seq."""
    heap.reset(cache_cap=0)
    blocks = fill_class(heap, class_idx, superslabs)
    blocks.append(heap.malloc(limits.CLASS_SIZES[class_idx]))  # the first block of one more
    expected = [*expected_places(class_idx, superslabs), (superslabs + 1, 0, 0)]
    for index, (block, want) in enumerate(zip(blocks, expected, strict=True)):
        got = heap.where(block)
        assert got == (Owner.TINY, class_idx, *want), (
            f"C{class_idx} block #{index}: expected (ss_seq, slab, block) {want}, got {got}"
        )
    snap = heap.stats()
    counters = snap.cls[class_idx]
    assert counters.ss_live == counters.ss_created == superslabs + 1, str(snap)
    assert counters.slabs_in_use == superslabs * limits.SLABS_PER_SS + 1, str(snap)
    assert counters.active_blocks == len(blocks), str(snap)
    assert (snap.os_maps, snap.ss_mapped) == (superslabs + 1, superslabs + 1), str(snap)
    assert_clean(heap, f"after growing C{class_idx} to {superslabs + 1} SuperSlabs")


def each_class_grows_its_own_superslabs(heap: Heap) -> None:
    """Each class's first block gets the next ss_seq."""
    heap.reset(cache_cap=0)
    seqs = [heap.where(heap.malloc(size))[2] for size in limits.CLASS_SIZES]
    assert seqs == list(range(1, limits.NUM_CLASSES + 1)), seqs


# ---- caps and OOM policies -----------------------------------------------


def ss_cap_with_libc_policy_falls_back(heap: Heap) -> None:
    """At the cap, policy libc serves from glibc; other classes are not capped."""
    heap.reset(ss_cap=1, cache_cap=0)
    fill_class(heap, 7)
    extra = heap.malloc(C7)
    assert owner(heap, extra) is Owner.LIBC
    cls = heap.stats().cls[7]
    assert (cls.ss_live, cls.fallback_allocs, cls.oom_nulls) == (1, 1, 0)
    assert heap.stats().os_maps == 1
    heap.free(extra)
    assert owner(heap, heap.malloc(8)) is Owner.TINY
    assert_clean(heap, "after a fallback")


def ss_cap_with_null_policy_returns_enomem(heap: Heap) -> None:
    """At the cap, policy null returns NULL with ENOMEM."""
    heap.reset(ss_cap=1, cache_cap=0, oom_policy=1)
    fill_class(heap, 7)
    extra = heap.malloc(C7)
    assert (owner(heap, extra), heap.last_errno) == (Owner.NULL, ENOMEM)
    cls = heap.stats().cls[7]
    assert (cls.fallback_allocs, cls.oom_nulls) == (0, 1)
    heap.free(extra)  # free(NULL) does nothing
    assert_clean(heap, "after a NULL at the cap")


def cap_with_caches_refills_what_is_left(heap: Heap) -> None:
    """A refill at the cap takes what is left; the request after it falls back."""
    heap.reset(ss_cap=1, cache_cap=16, refill_batch=16)
    blocks = [heap.malloc(C7) for _ in range(SS_BLOCKS[7] - 3)]
    assert heap.stats().cls[7].active_blocks == SS_BLOCKS[7]  # the last refill took 16
    blocks += [heap.malloc(C7) for _ in range(3)]
    assert all(owner(heap, b) is Owner.TINY for b in blocks)
    assert owner(heap, heap.malloc(C7)) is Owner.LIBC
    assert heap.stats().cls[7].fallback_allocs == 1


def budget_counts_superslabs_of_all_classes(heap: Heap) -> None:
    """The byte budget is shared by every class."""
    heap.reset(budget_bytes=limits.SS_SIZE + limits.SS_SIZE // 2, cache_cap=0)
    assert owner(heap, heap.malloc(C7)) is Owner.TINY
    assert owner(heap, heap.malloc(8)) is Owner.LIBC
    assert heap.stats().cls[0].fallback_allocs == 1
    heap.reset(budget_bytes=2 * limits.SS_SIZE, cache_cap=0)
    assert owner(heap, heap.malloc(C7)) is Owner.TINY
    assert owner(heap, heap.malloc(8)) is Owner.TINY
    assert owner(heap, heap.malloc(100)) is Owner.LIBC
    assert heap.stats().ss_mapped == 2


# ---- fault injection -----------------------------------------------------


def fail_map_at_fails_only_the_nth_attempt(heap: Heap) -> None:
    """``fail_map_at=2``: the second mapping attempt fails, the third succeeds."""
    heap.reset(fail_map_at=2, cache_cap=0)
    assert heap.where(heap.malloc(8)) == (1, 0, 1, 0, 0)
    assert owner(heap, heap.malloc(16)) is Owner.LIBC  # the injected failure
    stats = heap.stats()
    assert (stats.os_maps, stats.os_map_failures, stats.cls[1].fallback_allocs) == (1, 1, 1)
    assert heap.where(heap.malloc(16)) == (1, 1, 2, 0, 0)
    assert heap.stats().os_map_failures == 1


def fail_map_at_with_null_policy_and_caches(heap: Heap) -> None:
    """An injected failure under policy null is a NULL, once."""
    heap.reset(fail_map_at=1, oom_policy=1)
    assert (owner(heap, heap.malloc(8)), heap.last_errno) == (Owner.NULL, ENOMEM)
    assert heap.stats().cls[0].oom_nulls == 1
    assert owner(heap, heap.malloc(8)) is Owner.TINY


def configure_restarts_the_attempt_counter(heap: Heap) -> None:
    """``hak_configure`` counts mapping attempts from zero again."""
    heap.reset(fail_map_at=2, cache_cap=0)
    heap.malloc(8)
    heap.configure(fail_map_at=2, cache_cap=0)
    assert owner(heap, heap.malloc(16)) is Owner.TINY  # attempt 1 since configure
    assert owner(heap, heap.malloc(32)) is Owner.LIBC  # attempt 2
    assert heap.stats().os_map_failures == 1


# ---- release and reuse ---------------------------------------------------


def empty_superslab_is_released_and_kept(heap: Heap) -> None:
    """Retired slabs release their SuperSlab; growth reuses a kept one with a new ss_seq."""
    heap.reset(cache_cap=0, ss_keep=1, budget_bytes=NO_HOLD)
    first = fill_class(heap, 7)
    second = heap.malloc(C7)
    assert place(heap, second)[0] == 2
    for block in first:  # every slab of ss1 is not current: each retires when empty
        heap.free(block)
    stats = heap.stats()
    cls = stats.cls[7]
    assert (cls.ss_live, cls.ss_created, cls.ss_released, cls.slabs_in_use) == (1, 2, 1, 1)
    assert (stats.ss_mapped, stats.ss_kept, stats.os_maps, stats.os_unmaps) == (2, 1, 2, 0)
    heap.free(second)  # ss2/slab0 is current: it stays in use until a flush
    assert heap.stats().cls[7].slabs_in_use == 1
    heap.flush()
    stats = heap.stats()
    assert (stats.cls[7].ss_live, stats.cls[7].ss_released, stats.cls[7].slabs_in_use) == (0, 2, 0)
    assert (stats.ss_mapped, stats.ss_kept, stats.os_unmaps) == (1, 1, 1)
    assert heap.where(heap.malloc(8)) == (1, 0, 3, 0, 0)  # the kept one, no OS mapping
    stats = heap.stats()
    assert (stats.ss_mapped, stats.ss_kept, stats.os_maps) == (1, 0, 2)
    assert stats.cls[0].ss_created == 1
    assert_clean(heap, "after reuse")


def empty_superslabs_are_released(heap: Heap, ss_keep: int, kept: int, unmapped: int) -> None:
    """Every empty SuperSlab is released; ``ss_keep`` of them stay mapped."""
    heap.reset(cache_cap=0, ss_keep=ss_keep, budget_bytes=NO_HOLD)
    for block in reversed(fill_class(heap, 7, 3)):
        heap.free(block)
    heap.flush()  # the current slab is retired only by a flush
    snap = heap.stats()
    assert snap.totals().active_blocks == snap.totals().remote_pending == 0, str(snap)
    counters = snap.cls[7]
    assert (counters.ss_live, counters.ss_released, counters.slabs_in_use) == (0, 3, 0), str(snap)
    assert (snap.ss_kept, snap.os_unmaps, snap.ss_mapped) == (kept, unmapped, kept), (
        f"ss_keep={ss_keep}: {kept} kept mapped, {unmapped} unmapped:\n{snap}"
    )
    assert_clean(heap, "after release")


def kept_superslabs_are_reused_without_mapping(heap: Heap) -> None:
    """Growth takes kept SuperSlabs (any class, a new ss_seq), then maps afresh."""
    heap.reset(cache_cap=0, ss_keep=2, budget_bytes=NO_HOLD)
    for block in fill_class(heap, 7, 2):
        heap.free(block)
    heap.flush()
    before = heap.stats()
    assert (before.ss_kept, before.os_maps) == (2, 2), str(before)
    assert heap.where(heap.malloc(8)) == (1, 0, 3, 0, 0)
    after = heap.stats()
    assert (after.os_maps, after.ss_kept, after.ss_mapped) == (2, 1, 2), str(after)
    assert place(heap, fill_class(heap, 7, 1)[0]) == (4, 0, 0)
    assert heap.stats().os_maps == 2, "the second kept SuperSlab is reused too"
    assert place(heap, heap.malloc(C7)) == (5, 0, 0)
    final = heap.stats()
    assert (final.os_maps, final.ss_kept, final.ss_mapped) == (3, 0, 3), str(final)
    assert_clean(heap, "after reuse")


def ss_keep_0_unmaps_and_kept_reuse_is_not_a_mapping_attempt(heap: Heap) -> None:
    """``ss_keep=0`` unmaps at once; taking a kept SuperSlab is no mapping attempt."""
    heap.reset(cache_cap=0, ss_keep=0, budget_bytes=NO_HOLD)
    heap.free(heap.malloc(8))
    heap.flush()
    stats = heap.stats()
    assert (stats.ss_mapped, stats.ss_kept, stats.os_maps, stats.os_unmaps) == (0, 0, 1, 1)
    heap.reset(cache_cap=0, ss_keep=2, fail_map_at=2, budget_bytes=NO_HOLD)
    heap.free(heap.malloc(8))
    heap.flush()
    assert heap.stats().ss_kept == 1
    assert heap.where(heap.malloc(8)) == (1, 0, 2, 0, 0)  # kept: no attempt made
    assert owner(heap, heap.malloc(16)) is Owner.LIBC  # the second attempt fails


def release_empty_off_keeps_superslabs_live(heap: Heap) -> None:
    """``release_empty=0`` keeps an empty SuperSlab registered; its slab 0 serves again."""
    heap.reset(cache_cap=0, release_empty=0)
    for block in fill_class(heap, 7):
        heap.free(block)
    heap.flush()
    snap = heap.stats()
    cls = snap.cls[7]
    assert (cls.ss_live, cls.ss_released, cls.slabs_in_use, snap.os_unmaps) == (1, 0, 0, 0), (
        str(snap)
    )
    assert cls.active_blocks == 0
    assert heap.where(heap.malloc(1000)) == (1, 7, 1, 0, 0)
    assert heap.stats().os_maps == 1
    assert_clean(heap, "after reuse")


def the_first_superslab_of_a_class_is_held(heap: Heap) -> None:
    """A class's first live SuperSlab is held when it empties: same ss_seq, no mapping.

    A later one that empties is released.  Once a budget is set, the held
    one is released at its next emptying.
    """
    heap.reset(cache_cap=0, ss_keep=1)
    heap.free(heap.malloc(8))
    heap.flush()  # the current slab is retired only by a flush
    snap = heap.stats()
    cls = snap.cls[0]
    assert (cls.ss_live, cls.ss_released, cls.slabs_in_use) == (1, 0, 0), str(snap)
    assert (snap.ss_mapped, snap.ss_kept, snap.os_maps) == (1, 0, 1), str(snap)
    assert heap.where(heap.malloc(8)) == (1, 0, 1, 0, 0)  # slab 0 of the held one again
    heap.flush()
    assert_clean(heap, "holding")
    blocks = fill_class(heap, 7, 2)  # ss2 and ss3: all of class 7
    for block in blocks[SS_BLOCKS[7]:]:  # ss3 empties while ss2 is live: released
        heap.free(block)
    heap.flush()
    snap = heap.stats()
    assert (snap.cls[7].ss_live, snap.cls[7].ss_released, snap.ss_kept) == (1, 1, 1), str(snap)
    for block in blocks[: SS_BLOCKS[7]]:  # ss2, the class's first: held
        heap.free(block)
    heap.flush()
    snap = heap.stats()
    assert (snap.cls[7].ss_live, snap.cls[7].ss_released, snap.cls[7].slabs_in_use) == (1, 1, 0)
    heap.configure(cache_cap=0, ss_keep=1, budget_bytes=NO_HOLD)
    assert heap.stats().cls[7].ss_live == 1, "configure releases nothing"
    heap.free(heap.malloc(C7))
    heap.flush()  # emptied again, under a budget: released
    snap = heap.stats()
    assert (snap.cls[7].ss_live, snap.cls[7].ss_released, snap.os_unmaps) == (0, 2, 1), str(snap)
    assert_clean(heap, "after the held SuperSlab was released")


def the_held_superslab_does_not_depend_on_which_empties_last(
    heap: Heap, first_emptied_last: bool
) -> None:
    """Two SuperSlabs empty in one flush, in either order: the first one is held.

    A flush retires the slabs it empties in its own order (the allocator by
    address); the policy's answer must not depend on it.
    """
    heap.reset(cache_cap=0)
    blocks = fill_class(heap, 7, 2)
    last = {1: blocks[SS_BLOCKS[7] - 1], 2: blocks[-1]}  # each SuperSlab's last block
    for block in blocks:
        if block is not last[1] and block is not last[2]:
            heap.free(block)
    heap.flush()
    assert heap.stats().cls[7].ss_live == 2
    for seq in (2, 1) if first_emptied_last else (1, 2):
        heap.free(last[seq])
    heap.flush()
    snap = heap.stats()
    assert (snap.cls[7].ss_live, snap.cls[7].ss_released, snap.ss_kept) == (1, 1, 1), str(snap)
    got = place(heap, heap.malloc(C7))
    assert got == (1, 0, 0), f"ss1 is held, ss2 released: {got}"
    assert_clean(heap, "after the two SuperSlabs emptied")


def released_superslab_frees_capacity_under_the_cap(heap: Heap) -> None:
    """A released SuperSlab no longer counts against ``ss_cap``."""
    heap.reset(cache_cap=0, ss_cap=1, ss_keep=0, budget_bytes=NO_HOLD)
    heap.free(heap.malloc(8))
    heap.flush()
    assert heap.stats().cls[0].ss_live == 0
    assert heap.where(heap.malloc(8)) == (1, 0, 2, 0, 0)


SCENARIOS: dict[str, Scenario] = {
    **{
        f"grow-C{c}-to-{n + 1}": partial(more_than_32_slabs_grow_new_superslabs,
                                         class_idx=c, superslabs=n)
        for c, n in ((7, 3), (6, 2), (5, 1), (4, 1), (3, 1))
    },
    "each-class-grows-its-own": each_class_grows_its_own_superslabs,
    "cap-libc-falls-back": ss_cap_with_libc_policy_falls_back,
    "cap-null-enomem": ss_cap_with_null_policy_returns_enomem,
    "cap-with-caches": cap_with_caches_refills_what_is_left,
    "budget-all-classes": budget_counts_superslabs_of_all_classes,
    "fail-map-at-nth": fail_map_at_fails_only_the_nth_attempt,
    "fail-map-at-null": fail_map_at_with_null_policy_and_caches,
    "configure-restarts-attempts": configure_restarts_the_attempt_counter,
    "release-and-keep": empty_superslab_is_released_and_kept,
    **{
        f"release-ss_keep={keep}": partial(empty_superslabs_are_released,
                                           ss_keep=keep, kept=kept, unmapped=unmapped)
        for keep, kept, unmapped in ((2, 2, 1), (0, 0, 3), (1, 1, 2))
    },
    "kept-reused": kept_superslabs_are_reused_without_mapping,
    "ss_keep-0": ss_keep_0_unmaps_and_kept_reuse_is_not_a_mapping_attempt,
    "release-empty-off": release_empty_off_keeps_superslabs_live,
    "release-frees-cap": released_superslab_frees_capacity_under_the_cap,
    "first-held": the_first_superslab_of_a_class_is_held,
    **{
        f"first-held-{order}": partial(the_held_superslab_does_not_depend_on_which_empties_last,
                                       first_emptied_last=order == "first-last")
        for order in ("first-last", "first-first")
    },
}
"""Every scenario by name; both test files parametrize over it."""
