"""Macro ops: plain, valid, canonical ops that walk to the deep states, in every engine."""

from __future__ import annotations

import pytest
from hypothesis import find, settings

from hakfuzz.differential import DifferentialExecutor
from hakfuzz.engines import strategies
from hakfuzz.engines.reached import milestones
from hakfuzz.program import (
    MAX_OPS,
    Op,
    OpKind,
    Program,
    ProgramConfig,
    decode,
    encode,
    is_canonical,
    validate,
)
from hakfuzz.program.macros import MACRO_ROOM, Macro, expand

L2 = b"\x80\x00\x00"  # the default header, op layout 2
_CONFIGS = (ProgramConfig(), ProgramConfig(ss_cap=1), ProgramConfig(ss_cap=1, cache_cap=0),
            ProgramConfig(budget_bytes=(2 << 20) + 1, oom_policy="null"))


@pytest.mark.parametrize("macro", list(Macro))
@pytest.mark.parametrize("arg", [0, 1, 2, 0x25, 0x7F, 0xFF])
def test_every_macro_is_plain_valid_canonical_and_within_its_room(macro: Macro, arg: int) -> None:
    for config in _CONFIGS:
        for threads, first, room in ((1, 0, MAX_OPS), (3, 5, 500), (2, 0, 0), (4, 0, 7)):
            expansion = expand(macro, arg, config=config, threads=threads,
                               first_handle=first, room=room)
            assert len(expansion.ops) <= min(room, MACRO_ROOM)
            prefix = tuple(Op.alloc(h, 8) for h in range(first))
            program = Program(config=config, threads=threads, ops=prefix + expansion.ops)
            validate(program)
            assert is_canonical(program)
            made = [op.handle for op in expansion.ops if op.kind is OpKind.ALLOC]
            freed = {op.handle for op in expansion.ops if op.kind is OpKind.FREE}
            assert made == list(range(first, first + expansion.created))
            assert list(expansion.survivors) == [h for h in made if h not in freed]


@pytest.fixture(scope="module")
def executor() -> DifferentialExecutor:
    from hakfuzz import native

    return DifferentialExecutor(native.load())


@pytest.mark.parametrize(("macro", "config", "expected"), [
    (Macro.FILL_TO_CAP, ProgramConfig(ss_cap=1), {"fallback", "cap-with-caches"}),
    (Macro.FILL_TO_CAP, ProgramConfig(ss_cap=1, cache_cap=0, oom_policy="null"),
     {"oom-null", "cap-without-caches"}),
    (Macro.FILL_TO_CAP, ProgramConfig(budget_bytes=(2 << 20) + 1), {"fallback"}),
    (Macro.FILL_TO_CAP, ProgramConfig(), {"growth"}),
    (Macro.EXHAUST_AND_RELEASE, ProgramConfig(), {"growth", "release", "kept"}),
    (Macro.EXHAUST_AND_RELEASE, ProgramConfig(ss_keep=0), {"growth", "release"}),
    # A budget turns the hold off: the class's one SuperSlab is released.
    (Macro.THREAD_LIFETIMES, ProgramConfig(cache_cap=0, budget_bytes=1 << 40), {"release"}),
])
def test_macros_reach_their_milestones_and_model_and_native_agree(
        executor: DifferentialExecutor, macro: Macro, config: ProgramConfig,
        expected: set[str]) -> None:
    reached: list[set[str]] = []
    executor.on_program_end = lambda c, stats: reached.append(milestones(c, stats))
    try:
        expansion = expand(macro, 0x20, config=config, threads=2, first_handle=0, room=MAX_OPS)
        assert executor.run(Program(config=config, threads=2, ops=expansion.ops)) is None
    finally:
        executor.on_program_end = None
    assert expected <= reached[-1]


def test_the_binary_macro_opcodes_expand_and_stay_bounded() -> None:
    ops = decode(L2 + bytes((0xFC, Macro.EXHAUST_AND_RELEASE, 0))).ops
    assert ops == expand(Macro.EXHAUST_AND_RELEASE, 0, config=ProgramConfig(), threads=1,
                         first_handle=0, room=MACRO_ROOM).ops
    # Twenty macros expand to MACRO_ROOM ops in all, then to nothing; plain ops go on.
    flood = decode(L2 + bytes((0xCC, 0, 0)) * 20 + bytes((0x00, 0x08)))
    assert MACRO_ROOM - 2100 < len(flood.ops) <= MACRO_ROOM + 1
    assert flood.ops[-1].kind is OpKind.ALLOC
    validate(flood)
    assert decode(encode(flood)) == flood  # stored as plain ops
    # Below the macro high nibbles, nibble 12 is still realloc (of NULL here).
    assert decode(L2 + bytes((0x0C, 0, 0x08))).ops == (Op.realloc_null(0, 8),)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_hypothesis_programs_expand_macros_within_max_ops() -> None:
    program = find(strategies.programs(threads=2), lambda p: len(p.ops) > 1000,
                   settings=settings(database=None, derandomize=True, max_examples=500))
    validate(program)
    assert is_canonical(program)
    assert len(program.ops) <= MAX_OPS
