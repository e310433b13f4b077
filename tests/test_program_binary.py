"""The binary form: decoding is total, encoding is exact, the layout is fixed."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hakfuzz import strategies
from hakfuzz.program import (
    MAX_OPS,
    Op,
    OpKind,
    Program,
    ProgramConfig,
    canonicalize,
    decode,
    dump_program,
    encode,
    is_canonical,
    loads_program,
    validate,
)
from hakfuzz.program.binary import OPCODE_OF, OPCODES
from hakfuzz.program.dictionary import dictionary_entries, libfuzzer_dict
from hakfuzz.program.model import OVERFLOW_COUNT

_PROFILE = settings(
    derandomize=True, database=None, max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@_PROFILE
@given(st.binary(max_size=512), st.booleans())
def test_decode_is_total_and_valid(data: bytes, explicit: bool) -> None:
    program = decode(b"\xff" + data if explicit else data)
    validate(program)
    assert is_canonical(program)
    assert loads_program(dump_program(program)) == program


@_PROFILE
@given(st.binary(max_size=512), st.booleans())
def test_encode_of_decode_is_a_fixed_point(data: bytes, explicit: bool) -> None:
    program = decode(b"\xff" + data if explicit else data)
    assert decode(encode(program)) == program


@_PROFILE
@given(strategies.programs(threads=None, tiny_caps=True))
def test_decode_inverts_encode_on_tiny_programs(program: Program) -> None:
    assert decode(encode(program)) == program


@_PROFILE
@given(strategies.programs(threads=None, tiny_caps=False, max_ops=80))
def test_decode_inverts_encode_on_any_config(program: Program) -> None:
    assert decode(encode(program)) == program


@_PROFILE
@given(
    strategies.configs(tiny_caps=False), st.integers(1, 16),
    st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 16)), max_size=40),
)
def test_every_size_and_thread_count_is_exact(
    config: ProgramConfig, threads: int, sizes: list[tuple[int, int]]
) -> None:
    ops = [Op.alloc(handle, size, thread=handle % threads)
           for handle, (size, _) in enumerate(sizes)]
    ops += [Op.calloc(len(ops) + i, min(count, 65535), size // 64 % 1024, thread=0)
            for i, (size, count) in enumerate(sizes)]
    program = Program(config=config, threads=threads, ops=tuple(ops))
    assert decode(encode(program)) == program


def test_non_canonical_programs_encode_to_their_canonical_form() -> None:
    program = Program(description="dropped", ops=(
        Op.alloc(9, 8), Op.libc_alloc(4, 2000), Op.free(9), Op.write(4, 1),
    ))
    expected = dataclasses.replace(canonicalize(program), description="")
    assert decode(encode(program)) == expected


def test_many_live_handles_use_two_byte_refs() -> None:
    ops = [Op.alloc(handle, 8) for handle in range(300)]
    ops += [Op.free(299), Op.free(128), Op.free(0)]
    program = Program(config=ProgramConfig(cache_cap=0), ops=tuple(ops))
    assert decode(encode(program)) == program


def test_empty_input_is_the_default_program() -> None:
    assert decode(b"") == Program()
    assert encode(Program()) == b"\x00\x00\x00"


def test_compact_header_fields() -> None:
    # threads 4, ss_cap 1, budget 2 SuperSlabs, null; cache 16, refill 4,
    # keep 3, no release, checked; fail_map_at 16.
    program = decode(bytes((0x03 | 1 << 2 | 2 << 4 | 0x40, 3 | 3 << 2 | 3 << 4 | 0xC0, 7)))
    assert program.threads == 4
    assert program.config == ProgramConfig(
        ss_cap=1, budget_bytes=4 << 20, oom_policy="null", cache_cap=16,
        refill_batch=4, ss_keep=3, release_empty=False, checked=True, fail_map_at=16,
    )
    assert decode(b"\x80\x00\xF8") == Program()  # ignored bits


def test_explicit_header() -> None:
    config = ProgramConfig(ss_cap=7, budget_bytes=(1 << 64) - 1, oom_policy="null",
                           cache_cap=1024, refill_batch=1024, release_empty=False,
                           ss_keep=9, checked=True, fail_map_at=1 << 31)
    program = Program(config=config, threads=16, ops=(Op.flush(15),))
    data = encode(program)
    assert data[0] == 0xFF
    assert data[1] == 15 | 0x10 | 0x20 | 0x40
    assert len(data) == 26 + 1
    assert data[26] == 0xF0 | OPCODE_OF[OpKind.FLUSH]
    assert decode(data) == program
    # Raw values out of range wrap into range.
    raw = bytearray(26)
    raw[0] = 0xFF
    raw[14:16] = (2000).to_bytes(2, "little")
    raw[16:18] = (1024).to_bytes(2, "little")
    assert decode(bytes(raw)).config.cache_cap == 2000 % 1025
    assert decode(bytes(raw)).config.refill_batch == 1


def test_op_layout() -> None:
    header = b"\x01\x00\x00"  # two threads
    alloc, free, realloc = (OPCODE_OF[k] for k in (OpKind.ALLOC, OpKind.FREE, OpKind.REALLOC))
    data = header + bytes((
        0x10 | alloc, 0x28,                 # t1 alloc 32 (one-byte NUM: e=2, m=8)
        alloc, 0x83, 0xE8,                  # alloc 1000 (two-byte NUM)
        alloc, 0xC0, 0xFF, 0xFF,            # alloc 65535 (three-byte NUM)
        realloc, 0x80, 0x81, 0x00,          # realloc live[129 % 3] = handle 0 to 0
        0x30 | free, 0x00,                  # thread 3 % 2 = 1 frees live[0] = handle 1
    ))
    assert decode(data).ops == (
        Op.alloc(0, 32, thread=1), Op.alloc(1, 1000), Op.alloc(2, 65535),
        Op.realloc(0, 0), Op.free(1, thread=1),
    )


def test_handle_op_without_live_handles_is_an_alloc() -> None:
    free = OPCODE_OF[OpKind.FREE]
    assert decode(bytes((0, 0, 0, free, 0x09))).ops == (Op.alloc(0, 9),)


def test_truncated_ops_read_zeros() -> None:
    calloc = OPCODE_OF[OpKind.CALLOC]
    memalign = OPCODE_OF[OpKind.MEMALIGN]
    assert decode(bytes((0, 0, 0, calloc))).ops == (Op.calloc(0, 0, 0),)
    assert decode(bytes((0, 0, 0, memalign, 9))).ops == (Op.memalign(0, 4096, 0),)


def test_calloc_products_wrap_under_one_mebibyte() -> None:
    calloc = OPCODE_OF[OpKind.CALLOC]
    # count 65534 (three-byte NUM C0 FE FF), size 1024 (two-byte NUM 84 00)
    op = decode(bytes((0, 0, 0, calloc, 0xC0, 0xFE, 0xFF, 0x84, 0x00))).ops[0]
    assert op.size == 1024
    assert op.count == 65534 % (1024 + 1)
    assert op.count * op.size <= 1 << 20


def test_the_largest_count_is_the_overflowing_calloc() -> None:
    calloc = OPCODE_OF[OpKind.CALLOC]
    # count 65535 (C0 FF FF) means 2**63: with any size >= 2 the product overflows
    op = decode(bytes((0, 0, 0, calloc, 0xC0, 0xFF, 0xFF, 0x01))).ops[0]
    assert op.count == OVERFLOW_COUNT
    assert op.size == 2  # raised from 1, so that count * size overflows size_t
    assert decode(encode(Program(ops=(op,)))).ops[0] == op


def test_align_choices() -> None:
    memalign = OPCODE_OF[OpKind.MEMALIGN]
    aligns = [decode(bytes((0, 0, 0, memalign, a, 0))).ops[0].align for a in range(20)]
    assert aligns == [8 << (a % 10) for a in range(20)]


def test_ops_are_capped() -> None:
    flush = OPCODE_OF[OpKind.FLUSH]
    assert len(decode(bytes(3) + bytes([flush]) * (MAX_OPS + 5)).ops) == MAX_OPS


def test_opcode_table_covers_every_kind() -> None:
    assert set(OPCODES) == set(OpKind)
    assert len(OPCODES) == 16


def test_dictionary_entries_are_valid_fragments() -> None:
    entries = dictionary_entries()
    assert len({name for name, _ in entries}) == len(entries)
    for name, data in entries:
        assert 0 < len(data) <= 64, name
        validate(decode(data if name.startswith("hdr") else b"\0\0\0" + data))
    text = libfuzzer_dict()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(lines) == len(entries)
    assert all(re.fullmatch(r'[a-z0-9_]+="(\\x[0-9A-F]{2})+"', line) for line in lines)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 23, 24, 1031, 1032, 16383, 16384, 65535])
def test_num_encoding_is_exact_at_its_edges(size: int) -> None:
    program = Program(ops=(Op.alloc(0, size),))
    data = encode(program)
    assert len(data) == 3 + 1 + (1 if size <= 1031 and _one_byte(size) else
                                 2 if size < 16384 else 3)
    assert decode(data) == program


def _one_byte(size: int) -> bool:
    return any((8 << e) - 8 <= size <= (8 << e) + 7 for e in range(8))
