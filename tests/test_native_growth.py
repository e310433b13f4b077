"""Growth, caps, OOM policies, fault injection and release, on the native allocator.

The scenarios are those of ``growth_scenarios`` (the model is held to the
same ones in ``test_model_growth.py``); what only real memory can show (a
block's address inside its 2 MiB SuperSlab, the registry forgetting a
released base) is checked here.
"""

from __future__ import annotations

import pytest
from growth_scenarios import (
    NO_HOLD,
    SCENARIOS,
    Block,
    Scenario,
    Where,
    expected_places,
    fill_class,
)
from native_helpers import (
    CLASS_SIZES,
    OWNER_LIBC,
    addr,
    assert_clean,
    check_message,
    configure,
    exact,
    locate,
    malloc_ok,
    ss_base,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.model.stats import CLASS_FIELDS, GLOBAL_FIELDS, Stats
from hakfuzz.native import HakmemModule


class NativeHeap:
    """The allocator through cffi, on the calling thread, as a :class:`growth_scenarios.Heap`."""

    def __init__(self, hak: HakmemModule) -> None:
        self.hak = hak
        self._errno = 0

    def reset(self, **fields: int) -> None:
        self.hak.lib.hak_reset()
        configure(self.hak, **fields)

    def configure(self, **fields: int) -> None:
        configure(self.hak, **fields)

    def malloc(self, size: int) -> Block:
        self.hak.ffi.errno = 0
        ptr: Block = self.hak.lib.hak_malloc(size)
        self._errno = self.hak.ffi.errno
        return ptr

    @property
    def last_errno(self) -> int:
        return self._errno

    def free(self, block: Block) -> None:
        self.hak.lib.hak_free(block)

    def flush(self) -> None:
        self.hak.lib.hak_flush()

    def where(self, block: Block) -> Where:
        at = locate(self.hak, block)
        return (at.owner, at.class_idx, at.ss_seq, at.slab_idx, at.block_idx)

    def stats(self) -> Stats:
        snap = stats(self.hak)
        flat = [c[name] for c in snap.cls for name in CLASS_FIELDS]
        return Stats.from_tuple(flat + [snap[name] for name in GLOBAL_FIELDS])

    def problems(self) -> list[str]:
        problem = check_message(self.hak)
        return [] if problem is None else [problem]


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_growth_scenario(hak: HakmemModule, scenario: Scenario) -> None:
    scenario(NativeHeap(hak))


@pytest.mark.parametrize(("class_idx", "superslabs"), [(7, 3), (5, 1)])
def test_blocks_sit_at_their_policy_offsets(
    hak: HakmemModule, class_idx: int, superslabs: int
) -> None:
    exact(hak)
    ptrs = fill_class(NativeHeap(hak), class_idx, superslabs)
    assert len({ss_base(hak, p) for p in ptrs}) == superslabs, "one 2 MiB base per SuperSlab"
    for ptr, (_, slab_idx, block_idx) in zip(ptrs, expected_places(class_idx, superslabs),
                                              strict=True):
        offset = limits.block_offset(class_idx, slab_idx, block_idx)
        assert addr(hak, ptr) - ss_base(hak, ptr) == offset, "block not at its policy offset"


def test_each_class_has_its_own_base(hak: HakmemModule) -> None:
    exact(hak)
    ptrs = [malloc_ok(hak, size) for size in CLASS_SIZES]
    assert len({ss_base(hak, p) for p in ptrs}) == limits.NUM_CLASSES


def test_growth_reuses_the_kept_mapping(hak: HakmemModule) -> None:
    exact(hak, ss_keep=2)
    ptrs = fill_class(NativeHeap(hak), 7, 2)
    kept_bases = {ss_base(hak, p) for p in ptrs}
    for ptr in ptrs:
        hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert ss_base(hak, malloc_ok(hak, 8)) in kept_bases, "growth should reuse a kept SuperSlab"


def test_stale_base_is_not_ours_after_unmapping(hak: HakmemModule) -> None:
    exact(hak, ss_keep=0, budget_bytes=NO_HOLD)  # released, not held, when it empties
    ptr = malloc_ok(hak, 64)
    hak.lib.hak_free(ptr)
    hak.lib.hak_flush()
    assert stats(hak)["os_unmaps"] == 1
    # Only the registry decides ownership: a released base is no longer tiny.
    assert locate(hak, ptr).owner == OWNER_LIBC
    assert_clean(hak)
