"""The Program records: constructors, config fields, canonical form, limits."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from hakfuzz.model.limits import SS_SIZE as SS_BYTES
from hakfuzz.program import (
    DEFAULT_CONFIG,
    NO_HANDLE,
    OP_FIELDS,
    Op,
    OpKind,
    Program,
    ProgramConfig,
    ProgramError,
    canonicalize,
    is_canonical,
    model,
    validate,
)

_HEADER = Path(__file__).resolve().parents[1] / "native" / "include" / "hakmem.h"


def _header_constant(name: str) -> int:
    match = re.search(rf"#define\s+{name}\s+(\d+)", _HEADER.read_text())
    assert match, name
    return int(match.group(1))


def test_limits_agree_with_hakmem_h() -> None:
    assert _header_constant("HAK_CACHE_CAP_MAX") == model.CACHE_CAP_MAX
    assert _header_constant("HAK_SS_SIZE") == SS_BYTES


def test_limits_agree_with_the_model() -> None:
    limits = pytest.importorskip("hakfuzz.model.limits")
    assert (limits.CACHE_CAP_MAX, limits.SS_SIZE) == (model.CACHE_CAP_MAX, SS_BYTES)
    assert (limits.U32_MAX, limits.U64_MAX) == (model.U32_MAX, model.U64_MAX)


def test_config_defaults_agree_with_the_model() -> None:
    config = pytest.importorskip("hakfuzz.model.config")
    assert config.Config().c_fields() == DEFAULT_CONFIG.as_c_fields()


def test_config_defaults_match_policy_md() -> None:
    assert DEFAULT_CONFIG.as_c_fields() == {
        "ss_cap": 0, "budget_bytes": 0, "oom_policy": 0, "cache_cap": 64,
        "refill_batch": 16, "release_empty": 1, "ss_keep": 2, "checked": 0,
        "fail_map_at": 0,
    }
    assert list(DEFAULT_CONFIG.as_c_fields()) == list(model.CONFIG_FIELDS)


def test_as_c_fields_maps_policy_and_bools() -> None:
    config = ProgramConfig(oom_policy="null", release_empty=False, checked=True)
    fields = config.as_c_fields()
    assert (fields["oom_policy"], fields["release_empty"], fields["checked"]) == (1, 0, 1)


def test_named_constructors_fill_only_their_fields() -> None:
    assert Op.alloc(3, 40, thread=1) == Op(OpKind.ALLOC, 1, 3, 40)
    assert Op.calloc(0, 4, 10).count == 4
    assert Op.memalign(0, 64, 8).align == 64
    assert Op.write(2, 7).seed == 7
    assert Op.flush(2) == Op(OpKind.FLUSH, 2, NO_HANDLE, 0, 0, 0, 0)
    for kind in OpKind:
        assert kind in OP_FIELDS


def test_ops_are_frozen_and_comparable() -> None:
    op = Op.alloc(0, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.size = 9  # type: ignore[misc]
    assert dataclasses.replace(op, size=9) == Op.alloc(0, 9)
    assert hash(op) == hash(Op.alloc(0, 8))


def test_kills_handle() -> None:
    assert Op.free(0).kills_handle()
    assert Op.realloc(0, 0).kills_handle()
    assert not Op.realloc(0, 1).kills_handle()
    assert not Op.alloc(0, 0).kills_handle()


def test_canonicalize_renumbers_in_creation_order() -> None:
    program = Program(threads=2, ops=(
        Op.libc_alloc(7, 40), Op.alloc(3, 8), Op.free(7, thread=1),
        Op.realloc(3, 2000), Op.alloc(100, 1), Op.write(100, 5), Op.check(),
    ))
    validate(program)
    assert not is_canonical(program)
    canonical = canonicalize(program)
    assert is_canonical(canonical)
    assert [op.handle for op in canonical.ops] == [0, 1, 0, 1, 2, 2, NO_HANDLE]
    assert canonicalize(canonical) == canonical


def test_canonicalize_rejects_unknown_handles() -> None:
    with pytest.raises(ProgramError, match="op 0 \\(free\\): field 'handle'"):
        canonicalize(Program(ops=(Op.free(4),)))


def test_validate_rejects_fields_a_kind_does_not_use() -> None:
    with pytest.raises(ProgramError, match="field 'size': not used by flush"):
        validate(Program(ops=(Op(OpKind.FLUSH, size=3),)))


def test_validate_rejects_bad_objects() -> None:
    with pytest.raises(ProgramError, match=r"field 'config\.cache_cap'"):
        validate(Program(config=ProgramConfig(cache_cap=1025)))
    with pytest.raises(ProgramError, match=r"field 'config\.release_empty'"):
        validate(Program(config=ProgramConfig(release_empty=1)))  # type: ignore[arg-type]
    with pytest.raises(ProgramError, match="op 0 \\(alloc\\): field 'size'"):
        validate(Program(ops=(Op.alloc(0, True),)))
    with pytest.raises(ProgramError, match="field 'format'"):
        validate(Program(format="hakfuzz-program/0"))
