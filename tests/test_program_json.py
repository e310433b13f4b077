"""The JSON form: round trips, stable dumps, and errors that name the culprit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from hakfuzz._errors import HakfuzzError
from hakfuzz.engines import strategies
from hakfuzz.program import (
    FORMAT,
    Op,
    OpKind,
    Program,
    ProgramConfig,
    ProgramError,
    dump_program,
    load_program,
    loads_program,
    save_program,
)

_PROFILE = settings(
    derandomize=True, database=None, max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_DOC_EXAMPLE = """{
  "format": "hakfuzz-program/1",
  "description": "free a glibc pointer from another thread",
  "config": {"ss_cap": 1, "oom_policy": "libc", "cache_cap": 0},
  "threads": 2,
  "ops": [
    {"op": "libc_alloc", "thread": 0, "handle": 0, "size": 40},
    {"op": "free", "thread": 1, "handle": 0}
  ]
}"""

_DOC_EXAMPLE_DUMPED = """{
  "format": "hakfuzz-program/2",
  "description": "free a glibc pointer from another thread",
  "config": {
    "ss_cap": 1,
    "budget_bytes": 0,
    "oom_policy": "libc",
    "cache_cap": 0,
    "refill_batch": 16,
    "release_empty": true,
    "ss_keep": 2,
    "checked": false,
    "fail_map_at": 0
  },
  "threads": 2,
  "ops": [
    {"op": "libc_alloc", "thread": 0, "handle": 0, "size": 40},
    {"op": "free", "thread": 1, "handle": 0}
  ]
}
"""


def test_doc_example_loads() -> None:
    program = loads_program(_DOC_EXAMPLE)
    assert program == Program(
        FORMAT, "free a glibc pointer from another thread",
        ProgramConfig(ss_cap=1, cache_cap=0), 2,
        (Op.libc_alloc(0, 40), Op.free(0, thread=1)),
    )


def test_dump_is_stable_and_explicit() -> None:
    # A /1 document loads, and is written back as /2 with the same ops.
    assert dump_program(loads_program(_DOC_EXAMPLE)) == _DOC_EXAMPLE_DUMPED
    assert loads_program(_DOC_EXAMPLE_DUMPED) == loads_program(_DOC_EXAMPLE)


def test_every_kind_round_trips() -> None:
    program = Program(description="all kinds: é", threads=3, ops=(
        Op.alloc(0, 0), Op.libc_alloc(1, 4096), Op.calloc(2, 3, 100, thread=1),
        Op.memalign(3, 4096, 8, thread=2), Op.realloc(1, 16), Op.write(2, 255),
        Op.verify(2), Op.flush(1), Op.thread_exit(2), Op.check(), Op.free(3),
        Op.realloc(0, 0),
    ))
    text = dump_program(program)
    assert loads_program(text) == program
    assert json.loads(text)["ops"][2] == {
        "op": "calloc", "thread": 1, "handle": 2, "count": 3, "size": 100,
    }
    assert "\n    {\"op\": \"check\", \"thread\": 0},\n" in text


_V2_OPS: list[tuple[Op, dict[str, object]]] = [
    (Op.aligned_alloc(1, 1, 0, thread=1),
     {"op": "aligned_alloc", "thread": 1, "handle": 1, "align": 1, "size": 0}),
    (Op.aligned_alloc(2, 4096, 5000),
     {"op": "aligned_alloc", "thread": 0, "handle": 2, "align": 4096, "size": 5000}),
    (Op.realloc_null(3, 0), {"op": "realloc_null", "thread": 0, "handle": 3, "size": 0}),
    (Op.free_null(thread=1), {"op": "free_null", "thread": 1}),
    (Op.usable_size(0), {"op": "usable_size", "thread": 0, "handle": 0}),
    (Op.usable_size_null(), {"op": "usable_size_null", "thread": 0}),
    (Op.libc_alloc(4, 8 << 20), {"op": "libc_alloc", "thread": 0, "handle": 4, "size": 8388608}),
    (Op.realloc(4, 131073), {"op": "realloc", "thread": 0, "handle": 4, "size": 131073}),
    (Op.realloc(2, 200000), {"op": "realloc", "thread": 0, "handle": 2, "size": 200000}),
]
"""Each op /2 adds (and the big sizes), with the JSON object it is written as."""


@pytest.mark.parametrize(("op", "expected"), _V2_OPS, ids=[o.kind.json_name for o, _ in _V2_OPS])
def test_each_v2_op_round_trips(op: Op, expected: dict[str, object]) -> None:
    before = (Op.alloc(0, 8), Op.alloc(1, 8), Op.alloc(2, 8), Op.alloc(3, 8), Op.alloc(4, 8))
    ops = tuple(o for o in before if o.handle != op.handle or op.kind in (
        OpKind.USABLE_SIZE, OpKind.REALLOC))
    program = Program(threads=2, ops=(*ops, op))
    text = dump_program(program)
    assert json.loads(text)["format"] == "hakfuzz-program/2"
    assert json.loads(text)["ops"][-1] == expected
    assert loads_program(text) == program


def test_v1_documents_keep_v1_rules() -> None:
    for op in ('{"op": "free_null"}', '{"op": "usable_size_null"}',
               '{"op": "realloc_null", "handle": 0, "size": 1}',
               '{"op": "aligned_alloc", "handle": 0, "align": 8, "size": 1}'):
        with pytest.raises(ProgramError, match=r"is an op of hakfuzz-program/2, not of "
                           r"hakfuzz-program/1") as info:
            loads_program(_program(op), "x.json")
        assert (info.value.op_index, info.value.field) == (0, "op")
        loads_program(_program(op).replace("program/1", "program/2"))  # fine in /2
    big = '{"op": "libc_alloc", "handle": 0, "size": 65536}'
    with pytest.raises(ProgramError, match=r"65536 is out of range 0..65535 "
                       r"\(hakfuzz-program/1; hakfuzz-program/2 allows up to 8388608\)"):
        loads_program(_program(big))
    assert loads_program(_program(big).replace("program/1", "program/2")).ops[0].size == 65536


def test_every_v1_corpus_file_loads_unchanged() -> None:
    corpus = Path(__file__).resolve().parents[1] / "corpus" / "regressions"
    files = sorted(corpus.glob("*.json"))
    assert files
    for path in files:
        text = path.read_text()
        program = load_program(path)
        assert program.format == FORMAT
        # A /1 file is written back as /2: the same document but for the format line.
        assert dump_program(program) == text.replace(
            '"hakfuzz-program/1"', '"hakfuzz-program/2"', 1)


def test_empty_program_dumps_an_empty_list() -> None:
    text = dump_program(Program())
    assert '"ops": []' in text
    assert loads_program(text) == Program()


def test_optional_fields_take_defaults() -> None:
    program = loads_program(
        '{"format": "hakfuzz-program/1", "ops": [{"op": "alloc", "handle": 5, "size": 1}]}'
    )
    assert program == Program(ops=(Op.alloc(5, 1),))


@_PROFILE
@given(strategies.programs(threads=None, tiny_caps=False))
def test_generated_programs_round_trip(program: Program) -> None:
    assert loads_program(dump_program(program)) == program


def test_save_and_load(tmp_path: Path) -> None:
    program = loads_program(_DOC_EXAMPLE)
    path = tmp_path / "sub" / "x.json"
    save_program(program, path)
    assert path.read_text() == _DOC_EXAMPLE_DUMPED
    assert load_program(path) == program
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_save_refuses_invalid_programs(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="not live"):
        save_program(Program(ops=(Op.free(0),)), tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ProgramError) as info:
        load_program(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: cannot read")
    assert isinstance(info.value, HakfuzzError)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "hakfuzz-program/1", "ops": [{"op": "free", "handle": 12}]}')
    with pytest.raises(ProgramError) as info:
        load_program(path)
    assert str(info.value) == (
        f"{path}: op 0 (free): field 'handle': 12 is not live (never created)"
    )


def _program(ops: str, **top: str) -> str:
    extra = "".join(f', "{key}": {value}' for key, value in top.items())
    return f'{{"format": "hakfuzz-program/1"{extra}, "ops": [{ops}]}}'


_ALLOC0 = '{"op": "alloc", "handle": 0, "size": 8}'


def _v2(ops: str) -> str:
    return f'{{"format": "hakfuzz-program/2", "ops": [{ops}]}}'


# (document, op index, field, words the message must contain)
_ERRORS: list[tuple[str, int | None, str | None, str]] = [
    ('{"format": "hakfuzz-program/1",\n "ops": [}', None, None,
     "line 2, column 10: invalid JSON"),
    ("[]", None, None, "expected an object"),
    ('{"ops": []}', None, "format", "missing"),
    ('{"format": "hakfuzz-program/9", "ops": []}', None, "format",
     'expected "hakfuzz-program/1" or "hakfuzz-program/2", got "hakfuzz-program/9"'),
    ('{"format": ["hakfuzz-program/2"], "ops": []}', None, "format", "got ['hakfuzz-program/2']"),
    ('{"format": "hakfuzz-program/1"}', None, "ops", "missing"),
    ('{"format": "hakfuzz-program/1", "ops": {}}', None, "ops", "expected a list"),
    ('{"format": "hakfuzz-program/1", "ops": [], "opz": 1}', None, "opz",
     "did you mean 'ops'"),
    (_program("", threads="0"), None, "threads", "0 is out of range 1..16"),
    (_program("", threads="17"), None, "threads", "17 is out of range 1..16"),
    (_program("", threads="true"), None, "threads", "expected an integer"),
    (_program("", description="3"), None, "description", "expected a string"),
    (_program("", config="[]"), None, "config", "expected an object"),
    (_program("", config='{"ss_cap": -1}'), None, "config.ss_cap",
     "-1 is out of range 0..4294967295"),
    (_program("", config='{"cache_cap": 1025}'), None, "config.cache_cap",
     "out of range 0..1024"),
    (_program("", config='{"refill_batch": 0}'), None, "config.refill_batch",
     "out of range 1..1024"),
    (_program("", config='{"oom_policy": "abort"}'), None, "config.oom_policy",
     '"libc" or "null"'),
    (_program("", config='{"checked": 1}'), None, "config.checked",
     "expected true or false"),
    (_program("", config='{"cache_capp": 1}'), None, "config.cache_capp",
     "did you mean 'cache_cap'"),
    (_program("3"), 0, None, "expected an object"),
    (_program('{"handle": 0}'), 0, "op", "missing"),
    (_program('{"op": "mallox", "handle": 0, "size": 1}'), 0, "op",
     "unknown op \"mallox\""),
    (_program('{"op": 3}'), 0, "op", "unknown op 3"),
    (_program('{"op": "alloc", "handle": 0}'), 0, "size",
     "missing (alloc needs handle, size)"),
    (_program('{"op": "alloc", "handle": 0, "sise": 8}'), 0, "sise",
     "did you mean 'size'"),
    (_program('{"op": "flush", "handle": 0}'), 0, "handle", "not a field of op flush"),
    (_program('{"op": "alloc", "handle": 0, "size": 8, "size": 9}'), 0, "size",
     "duplicate key"),
    (_program('{"op": "alloc", "handle": 0, "size": 65536}'), 0, "size",
     "65536 is out of range 0..65535"),
    (_program('{"op": "alloc", "handle": -1, "size": 1}'), 0, "handle", "out of range"),
    (_program('{"op": "alloc", "handle": 0, "size": 8.0}'), 0, "size",
     "expected an integer, got 8.0"),
    (_program('{"op": "alloc", "handle": "0", "size": 8}'), 0, "handle",
     'expected an integer, got "0"'),
    (_program(f'{_ALLOC0}, {{"op": "calloc", "handle": 1, "count": 65536, "size": 1}}'),
     1, "count", "out of range 0..65534"),
    (_program('{"op": "calloc", "handle": 0, "count": 2048, "size": 1024}'), 0,
     "count", "over the limit 1048576"),
    (_program('{"op": "memalign", "handle": 0, "align": 12, "size": 8}'), 0,
     "align", "12 is not a power of two in 8..4096"),
    (_program('{"op": "memalign", "handle": 0, "align": 4, "size": 8}'), 0,
     "align", "not a power of two in 8..4096"),
    (_v2('{"op": "aligned_alloc", "handle": 0, "align": 3, "size": 8}'), 0,
     "align", "3 is not a power of two in 1..4096"),
    (_v2('{"op": "aligned_alloc", "handle": 0, "align": 8192, "size": 8}'), 0,
     "align", "not a power of two in 1..4096"),
    (_v2('{"op": "alloc", "handle": 0, "size": 8388609}'), 0, "size",
     "8388609 is out of range 0..8388608"),
    (_v2('{"op": "calloc", "handle": 0, "count": 1, "size": 65536}'), 0, "size",
     "65536 is out of range 0..65535"),
    (_v2('{"op": "free_null", "handle": 0}'), 0, "handle", "not a field of op free_null"),
    (_v2('{"op": "usable_size", "handle": 0}'), 0, "handle", "0 is not live (never created)"),
    (_v2('{"op": "realloc_null", "handle": 0, "size": 1}, '
         '{"op": "realloc_null", "handle": 0, "size": 1}'), 1, "handle", "0 is already used"),
    (_v2(", ".join(f'{{"op": "libc_alloc", "handle": {h}, "size": 70000}}' for h in range(4))
         + ', {"op": "alloc", "handle": 9, "size": 8}, {"op": "realloc", "handle": 9, '
         '"size": 65536}'), 5, "size",
     "a 5th block above 65535 bytes would be live (handles 0, 1, 2, 3 hold big blocks"),
    (_program(f'{_ALLOC0}, {{"op": "write", "handle": 0, "seed": 256}}'), 1,
     "seed", "out of range 0..255"),
    (_program('{"op": "flush", "thread": 1}'), 0, "thread",
     "1 is out of range 0..0 (the program has 1 thread)"),
    (_program('{"op": "flush", "thread": 2}', threads="2"), 0, "thread",
     "(the program has 2 threads)"),
    (_program('{"op": "free", "handle": 12}'), 0, "handle",
     "12 is not live (never created)"),
    (_program(f'{_ALLOC0}, {{"op": "free", "handle": 0}}, {{"op": "verify", "handle": 0}}'),
     2, "handle", "0 is not live (freed by op 1)"),
    (_program(f'{_ALLOC0}, {{"op": "realloc", "handle": 0, "size": 0}}, '
              '{"op": "free", "handle": 0}'),
     2, "handle", "0 is not live (freed by op 1)"),
    (_program(f'{_ALLOC0}, {{"op": "free", "handle": 0}}, {_ALLOC0}'), 2, "handle",
     "0 is already used (created by op 0)"),
]


@pytest.mark.parametrize(("text", "op_index", "field", "words"), _ERRORS)
def test_errors_name_file_op_and_field(
    text: str, op_index: int | None, field: str | None, words: str
) -> None:
    with pytest.raises(ProgramError) as info:
        loads_program(text, "corpus/x.json")
    error = info.value
    message = str(error)
    assert message.startswith("corpus/x.json: ")
    assert words in message
    assert (error.path, error.op_index, error.field) == ("corpus/x.json", op_index, field)
    if op_index is not None:
        assert f": op {op_index}" in message
    if field is not None:
        assert f"field '{field}'" in message
    assert "\n" not in message


def test_error_message_matches_the_documented_shape() -> None:
    text = _program(f'{_ALLOC0}, {{"op": "free", "handle": 0}}, {{"op": "free", "handle": 0}}')
    with pytest.raises(ProgramError) as info:
        loads_program(text, "corpus/x.json")
    assert str(info.value) == (
        "corpus/x.json: op 2 (free): field 'handle': 0 is not live (freed by op 1)"
    )
    assert info.value.op_kind == "free"
    assert info.value.reason == "0 is not live (freed by op 1)"


def test_json_error_has_line_and_column() -> None:
    with pytest.raises(ProgramError) as info:
        loads_program('{\n  "format": ,\n}', "x.json")
    assert (info.value.line, info.value.column) == (2, 13)


def test_nan_is_rejected() -> None:
    with pytest.raises(ProgramError, match="NaN"):
        loads_program(_program('{"op": "alloc", "handle": 0, "size": NaN}'))
