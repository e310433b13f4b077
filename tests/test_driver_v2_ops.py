"""The ops of hakfuzz-program/2 in the multi-threaded C driver, and its oracles for them.

The driver runs every new op under both allocators, on one thread and on
several; then a copy of the allocator with switchable faults (built in a
temporary tree, never in ``native/src``) shows that each new oracle fires:
usable size (wrong for a tiny block, changing for a glibc one, non-zero for
NULL), free(NULL) that changes state, realloc(p, 0) that returns a block, and
realloc that loses a byte.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hakfuzz.differential.driver import RunResult, judge, run_driver
from hakfuzz.differential.wire import to_wire
from hakfuzz.native import NativeTree, default_tree
from hakfuzz.native._tools import build_tool
from hakfuzz.program import MAX_BIG_SIZE, Op, OpKind, Program, ProgramConfig, validate

MIB = 1 << 20


def _v2_program(threads: int) -> Program:
    """Every /2 op, on every thread, over blocks of every owner and size range."""
    ops: list[Op] = []
    handle = 0
    for t in range(threads):
        first = handle
        ops += [
            Op.realloc_null(handle, 40, t), Op.realloc_null(handle + 1, 0, t),
            Op.aligned_alloc(handle + 2, 64, 100, t), Op.aligned_alloc(handle + 3, 4096, 5000, t),
            Op.aligned_alloc(handle + 4, 1, 3, t), Op.memalign(handle + 5, 256, 700, t),
        ]
        handle += 6
        ops += [Op.free_null(t), Op.usable_size_null(t)]
        ops += [Op.usable_size(h, t) for h in range(first, handle)]
    # big glibc blocks (four at most), measured twice, grown, shrunk to tiny, freed
    ops += [Op.libc_alloc(handle, 200_000, 0), Op.libc_alloc(handle + 1, MAX_BIG_SIZE, 0)]
    ops += [Op.usable_size(handle, threads - 1), Op.usable_size(handle, 0)]
    ops += [Op.realloc(handle, 3 * MIB, threads - 1), Op.usable_size(handle, 0),
            Op.realloc(handle + 1, 50, 0), Op.free(handle, threads - 1)]
    handle += 2
    # realloc of the aligned blocks from another thread: contents kept
    for h in range(handle - 2):
        if h % 6 in (2, 3, 4, 5):
            ops += [Op.realloc(h, 2000 if h % 2 else 24, (h + 1) % threads),
                    Op.usable_size(h, h % threads)]
    ops += [Op.realloc(h, 0, (h + 1) % threads) for h in range(0, handle - 2, 6)]
    ops += [Op.check(0), Op.free_null(0)]
    return Program(config=ProgramConfig(cache_cap=4, refill_batch=2), threads=threads,
                   ops=tuple(ops))


@pytest.mark.parametrize("allocator", ["hakmem", "glibc"])
@pytest.mark.parametrize("threads", [1, 3])
def test_driver_runs_every_v2_op(allocator: str, threads: int) -> None:
    program = _v2_program(threads)
    validate(program)
    assert {op.kind for op in program.ops} >= {
        OpKind.ALIGNED_ALLOC, OpKind.REALLOC_NULL, OpKind.FREE_NULL, OpKind.USABLE_SIZE,
        OpKind.USABLE_SIZE_NULL,
    }
    run = run_driver(build_tool("hakdriver"), program, allocator=allocator, timeout=120)
    assert judge(run, program, variant="release", seed=None) is None, (run.result, run.stderr)
    assert run.result is not None
    assert run.result["ops"] == len(program.ops)


def test_wire_carries_the_aligned_alloc_alignment() -> None:
    data = to_wire(Program(ops=(Op.aligned_alloc(0, 512, 9), Op.free_null(), Op.usable_size(0))))
    records = [data[96 + 16 * k: 96 + 16 * (k + 1)] for k in range(3)]
    assert records[0][0] == OpKind.ALIGNED_ALLOC
    assert int.from_bytes(records[0][12:16], "little") == 512
    assert records[1][0] == OpKind.FREE_NULL
    assert records[1][4:8] == b"\xff\xff\xff\xff"  # no handle
    assert (records[2][0], int.from_bytes(records[2][4:8], "little")) == (OpKind.USABLE_SIZE, 0)


# ---- the oracles fire ----------------------------------------------------------------------
_FAULTS = (
    # (file, anchor, replacement): each fault is off unless its HAKFAULT_* variable is set.
    ("src/api.c", "void hak_free(void *ptr) {\n  if (ptr == NULL) return;",
     "void hak_free(void *ptr) {\n"
     "  if (ptr == NULL) { if (getenv(\"HAKFAULT_FREE_NULL\")) hak_flush(); return; }"),
    ("src/api.c", "size_t hak_usable_size(const void *ptr) {\n  if (ptr == NULL) return 0;",
     "size_t hak_usable_size(const void *ptr) {\n"
     "  if (ptr == NULL) return getenv(\"HAKFAULT_USABLE_NULL\") ? 8 : 0;"),
    ("src/api.c", "  if (ss == NULL) return _hak_libc_usable_size(ptr);\n  return ss->block_size;",
     "  static _Atomic size_t drift;\n"
     "  if (ss == NULL) return _hak_libc_usable_size(ptr) +\n"
     "      (getenv(\"HAKFAULT_USABLE_DRIFT\") ? drift++ : 0);\n"
     "  return ss->block_size + (getenv(\"HAKFAULT_USABLE_TINY\") ? 8 : 0);"),
    ("src/api.c", "    hak_free(ptr);\n    return NULL;\n  }\n  hak_ss_t *ss",
     "    hak_free(ptr);\n    return getenv(\"HAKFAULT_REALLOC_ZERO\") ? hak_malloc(0) : NULL;\n"
     "  }\n  hak_ss_t *ss"),
    ("src/api.c", "    memcpy(q, ptr, size < old ? size : old);\n    hak_free(ptr);",
     "    memcpy(q, ptr, size < old ? size : old);\n"
     "    if (getenv(\"HAKFAULT_REALLOC_COPY\")) ((unsigned char *)q)[0] ^= 1;\n"
     "    hak_free(ptr);"),
)


@pytest.fixture(scope="module")
def faulty_driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faulty")
    source = default_tree().root
    for part in ("src", "include", "driver"):
        shutil.copytree(source / part, root / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.so"))
    for name, anchor, replacement in _FAULTS:
        path = root / name
        text = path.read_text()
        assert text.count(anchor) == 1, f"{name} changed: cannot place a fault at {anchor!r}"
        path.write_text(text.replace(anchor, replacement))
    return build_tool("hakdriver", tree=NativeTree(root, name="faulty"),
                      cache_dir=root / "cache")


def _failure(driver: Path, program: Program, fault: str) -> RunResult:
    validate(program)
    run = run_driver(driver, program, env={fault: "1"}, timeout=60)
    assert run.returncode == 3, (run.returncode, run.stderr)
    assert run.result is not None
    return run


_ORACLE_CASES = {
    "HAKFAULT_USABLE_TINY": ((Op.alloc(0, 24), Op.usable_size(0)), "usable_size", 1,
                             "of a class-2 block"),
    "HAKFAULT_USABLE_DRIFT": ((Op.libc_alloc(0, 200_000), Op.usable_size(0), Op.usable_size(0)),
                              "usable_size", 2, "changed from"),
    "HAKFAULT_USABLE_NULL": ((Op.usable_size_null(),), "usable_size", 0, "NULL is 8"),
    "HAKFAULT_FREE_NULL": ((Op.alloc(0, 8), Op.alloc(1, 8), Op.free(0), Op.free_null()),
                           "free_null", 3, "changed the allocator's counters"),
    "HAKFAULT_REALLOC_ZERO": ((Op.alloc(0, 8), Op.realloc(0, 0)), "realloc_zero", 1, "not NULL"),
    "HAKFAULT_REALLOC_COPY": ((Op.aligned_alloc(0, 128, 100), Op.realloc(0, 300)), "pattern", 1,
                              "changed across realloc"),
}


@pytest.mark.parametrize("fault", list(_ORACLE_CASES))
def test_each_v2_oracle_fires(faulty_driver: Path, fault: str) -> None:
    ops, oracle, op_index, words = _ORACLE_CASES[fault]
    program = Program(ops=ops)
    # Without the fault the same build passes: the oracle fires on the fault, not the op.
    clean = run_driver(faulty_driver, program, timeout=60)
    assert clean.ok, (clean.result, clean.stderr)
    failure = _failure(faulty_driver, program, fault).result
    assert failure is not None
    assert failure["failure"]["oracle"] == oracle
    assert failure["failure"]["op_index"] == op_index
    assert words in failure["failure"]["message"]
