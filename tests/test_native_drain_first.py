"""The C allocator takes back other threads' frees before it carves (policy take step 1).

The model states the rule (tests/test_model_threads.py); these programs run
it in lockstep on the native allocator, where a slab_pop or _hak_take_run
that carves first hands out a different block than the model predicts.
"""

from __future__ import annotations

import pytest

from hakfuzz.differential import DifferentialExecutor
from hakfuzz.native import HakmemModule
from hakfuzz.program import Op, Program, ProgramConfig

pytestmark = pytest.mark.native


@pytest.mark.parametrize(
    "config",
    [ProgramConfig(cache_cap=0), ProgramConfig(cache_cap=4, refill_batch=4)],
    ids=["caches-off", "refill-4"],
)
def test_remote_frees_come_back_before_fresh_blocks(hak: HakmemModule,
                                                    config: ProgramConfig) -> None:
    ops = [Op.alloc(h, 64, 0) for h in range(4)]
    ops += [Op.free(1, 1), Op.free(2, 1), Op.flush(1)]  # remote pushes to thread 0's slab
    ops += [Op.alloc(h, 64, 0) for h in range(4, 8)]  # the owner's next takes
    ops += [Op.free(h, 0) for h in (0, 3, 4, 5, 6, 7)]
    program = Program(config=config, threads=2, ops=tuple(ops))
    assert DifferentialExecutor(hak).run(program) is None
