"""The binary form: decoding is total, encoding is exact, both op layouts are fixed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hakfuzz.engines import strategies
from hakfuzz.program import (
    MAX_BIG_LIVE,
    MAX_BIG_SIZE,
    MAX_OPS,
    Op,
    OpKind,
    Program,
    ProgramConfig,
    ProgramError,
    canonicalize,
    decode,
    dump_program,
    encode,
    is_canonical,
    load_program,
    loads_program,
    validate,
)
from hakfuzz.program.binary import OPCODE_OF, OPCODE_OF_1, OPCODES, OPCODES_2
from hakfuzz.program.dictionary import dictionary_entries, libfuzzer_dict
from hakfuzz.program.model import OVERFLOW_COUNT, V1_KINDS

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "regressions"
L2 = b"\x80\x00\x00"  # the default header, op layout 2

_PROFILE = settings(
    derandomize=True, database=None, max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@_PROFILE
@given(st.booleans(), st.booleans(), st.binary(max_size=512))
def test_decode_is_total_and_valid(explicit: bool, layout_2: bool, data: bytes) -> None:
    program = decode(_with_header(explicit, layout_2, data))
    validate(program)
    assert is_canonical(program)
    assert loads_program(dump_program(program)) == program


@_PROFILE
@given(st.booleans(), st.booleans(), st.binary(max_size=512))
def test_encode_of_decode_is_a_fixed_point(explicit: bool, layout_2: bool, data: bytes) -> None:
    program = decode(_with_header(explicit, layout_2, data))
    assert decode(encode(program)) == program


def _with_header(explicit: bool, layout_2: bool, data: bytes) -> bytes:
    """``data`` whose header is of the given form and op layout (bit 7 of H0 or E0)."""
    first = data[0] if data else 0
    first = first | 0x80 if layout_2 else first & 0x7F
    if explicit:
        return b"\xff" + bytes((first,)) + data[1:]
    return bytes((0xFE if first == 0xFF else first,)) + data[1:]


@_PROFILE
@given(st.lists(st.sampled_from((0xFF, 0xFE, 0x80, 0x00, 0x7F, 0xC0, 0x01)), max_size=300))
def test_decode_is_total_on_byte_soup_near_the_edges(raw: list[int]) -> None:
    # 0xFF starts 4-byte NUMs, 0x7F REFs that often pick NULL: big blocks and NULL ops galore.
    for head in (b"\x80\x00\x00", b"\x83\x00\x00"):
        program = decode(head + bytes(raw))
        validate(program)
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
    assert encode(Program()) == L2  # the default header with the layout-2 bit


def test_compact_header_fields() -> None:
    # threads 4, ss_cap 1, budget 2 SuperSlabs, null; cache 16, refill 4,
    # keep 3, no release, checked; fail_map_at 16.
    program = decode(bytes((0x03 | 1 << 2 | 2 << 4 | 0x40, 3 | 3 << 2 | 3 << 4 | 0xC0, 7)))
    assert program.threads == 4
    assert program.config == ProgramConfig(
        ss_cap=1, budget_bytes=4 << 20, oom_policy="null", cache_cap=16,
        refill_batch=4, ss_keep=3, release_empty=False, checked=True, fail_map_at=16,
    )
    assert decode(b"\x80\x00\xF8") == Program()  # ignored bits (and layout 2, no ops)


def test_explicit_header() -> None:
    config = ProgramConfig(ss_cap=7, budget_bytes=(1 << 64) - 1, oom_policy="null",
                           cache_cap=1024, refill_batch=1024, release_empty=False,
                           ss_keep=9, checked=True, fail_map_at=1 << 31)
    program = Program(config=config, threads=16, ops=(Op.flush(15),))
    data = encode(program)
    assert data[0] == 0xFF
    assert data[1] == 15 | 0x10 | 0x20 | 0x40 | 0x80
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


def test_op_layout_1() -> None:
    header = b"\x01\x00\x00"  # two threads, layout 1
    alloc, free, realloc = (OPCODE_OF_1[k] for k in (OpKind.ALLOC, OpKind.FREE, OpKind.REALLOC))
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


def test_op_layout_2() -> None:
    header = b"\x81\x00\x00"  # two threads, layout 2
    free, realloc, usable, aligned, libc = (OPCODE_OF[k] for k in (
        OpKind.FREE, OpKind.REALLOC, OpKind.USABLE_SIZE, OpKind.ALIGNED_ALLOC, OpKind.LIBC_ALLOC))
    data = header + bytes((
        realloc, 0x00, 0x28,                # REF 0 of [NULL]: realloc(NULL, 32) makes handle 0
        free, 0x01,                         # REF 1 of [0, NULL]: free(NULL)
        0x10 | usable, 0x01,                # t1: REF 1 of [0, NULL]: usable_size(NULL)
        usable, 0x00,                       # usable_size(handle 0)
        libc, 0xFF, 0x00, 0x00, 0x80,       # libc_alloc 8 MiB (four-byte NUM)
        aligned, 0x06, 0x90, 0x00,          # aligned_alloc(1 << 6, 4096)
        realloc, 0x01, 0xFF, 0x01, 0x00, 0x02,  # realloc handle 1 to 131073
        free, 0x00,                         # free handle 0
    ))
    assert decode(data).ops == (
        Op.realloc_null(0, 32), Op.free_null(), Op.usable_size_null(thread=1),
        Op.usable_size(0), Op.libc_alloc(1, MAX_BIG_SIZE), Op.aligned_alloc(2, 64, 4096),
        Op.realloc(1, 131073), Op.free(0),
    )
    assert encode(decode(data)) == data


def test_handle_op_without_live_handles_is_an_alloc() -> None:
    free = OPCODE_OF_1[OpKind.FREE]
    assert decode(bytes((0, 0, 0, free, 0x09))).ops == (Op.alloc(0, 9),)  # layout 1
    write, verify = OPCODE_OF[OpKind.WRITE], OPCODE_OF[OpKind.VERIFY]
    assert decode(L2 + bytes((write, 0x09, verify, 0x10))).ops == (
        Op.alloc(0, 9), Op.verify(0),
    )


def test_layout_2_ops_on_null_never_lack_a_pointer() -> None:
    free, realloc, usable = (OPCODE_OF[k] for k in (
        OpKind.FREE, OpKind.REALLOC, OpKind.USABLE_SIZE))
    assert decode(L2 + bytes((free, 0x05, usable, 0x7F, realloc, 0x80, 0x00, 0x00))).ops == (
        Op.free_null(), Op.usable_size_null(), Op.realloc_null(0, 0),
    )


def test_truncated_ops_read_zeros() -> None:
    calloc = OPCODE_OF[OpKind.CALLOC]
    memalign = OPCODE_OF[OpKind.MEMALIGN]
    aligned = OPCODE_OF[OpKind.ALIGNED_ALLOC]
    for header in (bytes(3), L2):
        assert decode(header + bytes((calloc,))).ops == (Op.calloc(0, 0, 0),)
        assert decode(header + bytes((memalign, 9))).ops == (Op.memalign(0, 4096, 0),)
    assert decode(L2 + bytes((aligned,))).ops == (Op.aligned_alloc(0, 1, 0),)
    assert decode(L2 + bytes((OPCODE_OF[OpKind.LIBC_ALLOC], 0xFF, 0x01))).ops == (
        Op.libc_alloc(0, 1),
    )


def test_calloc_products_wrap_under_one_mebibyte() -> None:
    calloc = OPCODE_OF[OpKind.CALLOC]
    # count 65534 (three-byte NUM C0 FE FF), size 1024 (two-byte NUM 84 00)
    for header in (bytes(3), L2):
        op = decode(header + bytes((calloc, 0xC0, 0xFE, 0xFF, 0x84, 0x00))).ops[0]
        assert op.size == 1024
        assert op.count == 65534 % (1024 + 1)
        assert op.count * op.size <= 1 << 20


def test_the_largest_count_is_the_overflowing_calloc() -> None:
    calloc = OPCODE_OF[OpKind.CALLOC]
    # count 65535 (C0 FF FF) means 2**63: with any size >= 2 the product overflows
    for header in (bytes(3), L2):
        op = decode(header + bytes((calloc, 0xC0, 0xFF, 0xFF, 0x01))).ops[0]
        assert op.count == OVERFLOW_COUNT
        assert op.size == 2  # raised from 1, so that count * size overflows size_t
        assert decode(encode(Program(ops=(op,)))).ops[0] == op


def test_layout_2_calloc_never_takes_a_big_num() -> None:
    calloc = OPCODE_OF[OpKind.CALLOC]
    # count: four-byte NUM 0x01_0003 -> & 0xFFFF = 3; size: 0x7F_FFFF -> & 0xFFFF = 65535,
    # then count wraps so that count * size <= 1 MiB.
    op = decode(L2 + bytes((calloc, 0xFF, 3, 0, 1, 0xFF, 0xFF, 0xFF, 0x7F))).ops[0]
    assert (op.count, op.size) == (3, 0xFFFF)


def test_align_choices() -> None:
    memalign = OPCODE_OF[OpKind.MEMALIGN]
    aligns = [decode(bytes((0, 0, 0, memalign, a, 0))).ops[0].align for a in range(20)]
    assert aligns == [8 << (a % 10) for a in range(20)]
    aligned = OPCODE_OF[OpKind.ALIGNED_ALLOC]
    aligns = [decode(L2 + bytes((aligned, a, 0))).ops[0].align for a in range(30)]
    assert aligns == [1 << (a % 13) for a in range(30)]


def test_big_nums_wrap_at_eight_mebibytes() -> None:
    libc = OPCODE_OF[OpKind.LIBC_ALLOC]
    op = decode(L2 + bytes((libc, 0xFF, 0xFF, 0xFF, 0xFF))).ops[0]
    assert op.size == 0xFFFFFF % (MAX_BIG_SIZE + 1)
    # In layout 1, 0xFF is an ordinary three-byte NUM.
    assert decode(bytes((0, 0, 0, libc, 0xFF, 0x34, 0x12))).ops[0] == Op.libc_alloc(0, 0x1234)


def test_at_most_four_big_blocks_are_live() -> None:
    libc, free = OPCODE_OF[OpKind.LIBC_ALLOC], OPCODE_OF[OpKind.FREE]
    big = bytes((libc, 0xFF, 0x01, 0x00, 0x10))  # libc_alloc 0x10_0001 (1 MiB + 1)
    program = decode(L2 + big * (MAX_BIG_LIVE + 2) + bytes((free, 0)) + big)
    sizes = [op.size for op in program.ops if op.kind is OpKind.LIBC_ALLOC]
    assert sizes == [0x100001] * MAX_BIG_LIVE + [0x0001, 0x0001, 0x100001]
    validate(program)
    with pytest.raises(ProgramError, match="at most 4 may be live at once"):
        validate(Program(ops=tuple(Op.libc_alloc(h, 1 << 20) for h in range(MAX_BIG_LIVE + 1))))


def test_ops_are_capped() -> None:
    flush = OPCODE_OF[OpKind.FLUSH]
    assert len(decode(bytes(3) + bytes([flush]) * (MAX_OPS + 5)).ops) == MAX_OPS


def test_opcode_tables_cover_every_kind() -> None:
    assert set(OPCODES) == V1_KINDS  # layout 1: exactly the kinds of /1
    null_forms = {OpKind.REALLOC_NULL, OpKind.FREE_NULL, OpKind.USABLE_SIZE_NULL}
    assert set(OPCODES_2) | null_forms == set(OpKind)
    assert len(OPCODES) == len(OPCODES_2) == 16
    assert OPCODES_2[:10] == OPCODES[:10]
    assert OPCODES_2[12:] == OPCODES[12:]


# What the binary form's encoder wrote before layout 2 existed (header bit 7 clear) for two
# corpus files: old seeds and old atheris corpora must decode to the same programs.
_LAYOUT_1_GOLDEN = {
    "realloc-across-owners": "0000000020080005050087d0090005008064090004812c08010905018028"
    "090105013405013805019388090104938805029f400502000008050200010001000f",
    "calloc-one-mebibyte-write-verify": "0000000628c00080090008000709000602c050c30801ff0501c06"
    "0ea0901010001000f",
}


@pytest.mark.parametrize("name", sorted(_LAYOUT_1_GOLDEN))
def test_layout_1_inputs_decode_as_they_always_did(name: str) -> None:
    program = canonicalize(load_program(CORPUS / f"{name}.json"))
    expected = dataclasses.replace(program, description="")
    assert decode(bytes.fromhex(_LAYOUT_1_GOLDEN[name])) == expected
    assert decode(encode(program)) == expected  # and layout 2 holds it too


def test_dictionary_entries_are_valid_fragments() -> None:
    entries = dictionary_entries()
    assert len({name for name, _ in entries}) == len(entries)
    for name, data in entries:
        assert 0 < len(data) <= 64, name
        validate(decode(data if name.startswith("hdr") else L2 + data))
        if name.startswith("hdr"):
            assert data[0] & 0x80, name  # every header picks layout 2
    text = libfuzzer_dict()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(lines) == len(entries)
    assert all(re.fullmatch(r'[a-z0-9_]+="(\\x[0-9A-F]{2})+"', line) for line in lines)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 23, 24, 1031, 1032, 16383, 16384, 65535,
                                  65536, 131072, MAX_BIG_SIZE])
def test_num_encoding_is_exact_at_its_edges(size: int) -> None:
    program = Program(ops=(Op.alloc(0, size),))
    data = encode(program)
    assert len(data) == 3 + 1 + (1 if size <= 1031 and _one_byte(size) else
                                 2 if size < 16384 else 3 if size < 65536 else 4)
    assert decode(data) == program


def _one_byte(size: int) -> bool:
    return any((8 << e) - 8 <= size <= (8 << e) + 7 for e in range(8))
