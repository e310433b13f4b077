"""Growth, caps, OOM policies, fault injection and release, on the model.

The scenarios are those of ``growth_scenarios`` (the native allocator is held
to the same ones in ``test_native_growth.py``); what only the model can say
(its count of live glibc blocks) is checked here.
"""

from __future__ import annotations

import pytest
from growth_scenarios import C7, SCENARIOS, Block, Scenario, Where, fill_class

from hakfuzz.model import Config, Loc, ModelAllocator, Owner
from hakfuzz.model.stats import Stats


def _config(fields: dict[str, int]) -> Config:
    return Config.from_c_fields({**Config().c_fields(), **fields})


class ModelHeap:
    """The model, one thread, as a :class:`growth_scenarios.Heap`."""

    def __init__(self) -> None:
        self.model = ModelAllocator(Config())
        self._errno = 0

    def reset(self, **fields: int) -> None:
        self.model = ModelAllocator(_config(fields))

    def configure(self, **fields: int) -> None:
        self.model.configure(_config(fields))

    def malloc(self, size: int) -> Block:
        loc = self.model.malloc(0, size)
        self._errno = loc.errno
        return loc

    @property
    def last_errno(self) -> int:
        return self._errno

    def free(self, block: Block) -> None:
        assert isinstance(block, Loc)
        self.model.free(0, block)

    def flush(self) -> None:
        self.model.flush(0)

    def where(self, block: Block) -> Where:
        assert isinstance(block, Loc)
        return self.model.locate(block)

    def stats(self) -> Stats:
        return self.model.stats()

    def problems(self) -> list[str]:
        return self.model.self_check()


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_growth_scenario(scenario: Scenario) -> None:
    scenario(ModelHeap())


def test_a_fallback_block_is_a_live_glibc_block_until_freed() -> None:
    heap = ModelHeap()
    heap.reset(ss_cap=1, cache_cap=0)
    fill_class(heap, 7)
    extra = heap.malloc(C7)
    assert heap.where(extra)[0] == Owner.LIBC
    assert heap.model.libc_live == 1
    heap.free(extra)
    assert heap.model.libc_live == 0
