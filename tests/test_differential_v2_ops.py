"""The ops of hakfuzz-program/2 in the differential executor: model and native agree.

Each op runs in lockstep under the configs that matter for it (caches on and
off, the caps with both OOM policies, a second thread), and each new check is
shown to fire: an allocator (a proxy over the real one) or a model that gets
one answer wrong makes the run diverge on exactly that check.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from hakfuzz.differential import DifferentialExecutor, Divergence
from hakfuzz.model import ModelAllocator
from hakfuzz.native import HakmemModule
from hakfuzz.program import MAX_BIG_SIZE, Op, Program, ProgramConfig, validate

MIB = 1 << 20
CONFIGS = {
    "default": ProgramConfig(),
    "caches-off": ProgramConfig(cache_cap=0),
    "cap-libc": ProgramConfig(ss_cap=1, cache_cap=0, oom_policy="libc"),
    "cap-null": ProgramConfig(ss_cap=1, cache_cap=4, refill_batch=2, oom_policy="null"),
}


def _run(hak: Any, program: Program) -> Divergence | None:
    validate(program)
    return DifferentialExecutor(hak).run(program)


def _aligned_then_realloc() -> tuple[Op, ...]:
    """aligned_alloc and memalign blocks of every owner, reallocated every way."""
    ops: list[Op] = []
    handle = 0
    for align in (1, 2, 8, 64, 512, 4096):
        for size in (0, 5, 40, 700, 1024, 3000):
            ops.append(Op.aligned_alloc(handle, align, size))
            ops.append(Op.usable_size(handle))
            ops.append(Op.write(handle, handle % 256))
            # grow within and across classes, to glibc, past the mmap threshold, and back
            for new in (size + 1, 16, 2000, 200_000, 24):
                ops.append(Op.realloc(handle, new))
                ops.append(Op.usable_size(handle))
                ops.append(Op.verify(handle))
            handle += 1
    for align in (8, 256, 4096):
        ops.append(Op.memalign(handle, align, 100))
        ops.append(Op.realloc(handle, 3000))
        ops.append(Op.realloc(handle, 8))
        ops.append(Op.free(handle))
        handle += 1
    for h in range(0, handle - 3, 2):
        ops.append(Op.free(h))
    return tuple(ops)


def _realloc_null_and_zero() -> tuple[Op, ...]:
    ops: list[Op] = []
    for handle, size in enumerate((0, 1, 8, 9, 1024, 1025, 70_000, MAX_BIG_SIZE)):
        ops.append(Op.realloc_null(handle, size))
        ops.append(Op.usable_size(handle))
        ops.append(Op.verify(handle))
    ops += [Op.realloc(h, 0) for h in range(0, 8, 2)]  # realloc(p, 0) frees, returns NULL
    ops += [Op.free(h) for h in range(1, 8, 2)]
    return tuple(ops)


def _null_ops() -> tuple[Op, ...]:
    ops = [Op.free_null(), Op.usable_size_null()]
    ops += [Op.alloc(h, 8 * (h + 1)) for h in range(40)]
    ops += [Op.free(h) for h in range(0, 40, 2)]  # the caches hold blocks now
    ops += [Op.free_null(), Op.usable_size_null(), Op.flush(), Op.free_null()]
    ops += [Op.free(h) for h in range(1, 40, 2)]
    ops += [Op.free_null(), Op.check()]
    return tuple(ops)


def _big_glibc_blocks() -> tuple[Op, ...]:
    """Blocks past glibc's mmap threshold: made, measured, grown, shrunk, freed; 4 live at most."""
    ops: list[Op] = []
    sizes = (128 * 1024 - 1, 128 * 1024, 128 * 1024 + 1, MIB, MAX_BIG_SIZE)
    handle = 0
    for round_ in range(3):
        first = handle
        for size in sizes[:4]:
            ops.append(Op.libc_alloc(handle, size - round_))
            ops.append(Op.usable_size(handle))
            handle += 1
        ops.append(Op.usable_size(first))  # again: stable for the block's life
        ops.append(Op.realloc(first, sizes[4]))  # mremap territory
        ops.append(Op.usable_size(first))
        ops.append(Op.realloc(first + 1, 100))  # glibc -> tiny, contents kept
        ops.append(Op.realloc(first + 2, 2000))  # stays glibc, shrinks below the threshold
        ops.append(Op.write(first + 3, 7))
        ops.append(Op.free(first + 3))
        ops.append(Op.free(first))
        ops.append(Op.free(first + 2))
    ops.append(Op.alloc(handle, MAX_BIG_SIZE))  # hak_malloc of 8 MiB: glibc's
    ops.append(Op.aligned_alloc(handle + 1, 4096, MIB))
    ops.append(Op.memalign(handle + 2, 64, 300_000))
    ops.append(Op.realloc_null(handle + 3, 2 * MIB))
    return tuple(ops)


PROGRAMS: dict[str, Callable[[], tuple[Op, ...]]] = {
    "aligned-then-realloc": _aligned_then_realloc,
    "realloc-null-and-zero": _realloc_null_and_zero,
    "null-ops": _null_ops,
    "big-glibc-blocks": _big_glibc_blocks,
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_v2_ops_agree_in_lockstep(hak: HakmemModule, name: str, config: str) -> None:
    program = Program(config=CONFIGS[config], ops=PROGRAMS[name]())
    assert _run(hak, program) is None


def test_v2_ops_from_another_thread(hak: HakmemModule) -> None:
    ops = (
        Op.realloc_null(0, 40), Op.aligned_alloc(1, 64, 48, thread=1),
        Op.usable_size(0, thread=1), Op.usable_size(1), Op.free_null(thread=1),
        Op.usable_size_null(thread=1), Op.realloc(0, 3000, thread=1),
        Op.realloc(1, 8, thread=1), Op.libc_alloc(2, 200_000, thread=1),
        Op.usable_size(2), Op.realloc(2, 0), Op.thread_exit(1), Op.usable_size(1),
        Op.free(1), Op.free(0, thread=1), Op.check(),
    )
    for config in CONFIGS.values():
        assert _run(hak, Program(config=config, threads=2, ops=ops)) is None


# ---- every new check fires ---------------------------------------------------------------
class _Lib:
    """The real ``lib`` with some entry points replaced."""

    def __init__(self, lib: Any, **overrides: Callable[..., Any]) -> None:
        self._lib = lib
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._lib, name)


def _broken(hak: HakmemModule, **overrides: Callable[..., Any]) -> Any:
    return SimpleNamespace(ffi=hak.ffi, lib=_Lib(hak.lib, **overrides))


def _diverges(hak: Any, ops: tuple[Op, ...], config: ProgramConfig = CONFIGS["caches-off"]
              ) -> Divergence:
    divergence = DifferentialExecutor(hak).run(Program(config=config, ops=ops))
    assert divergence is not None
    return divergence


def test_a_wrong_tiny_usable_size_is_caught(hak: HakmemModule) -> None:
    lib = hak.lib
    calls = {"n": 0}

    def usable(ptr: Any) -> int:
        calls["n"] += 1  # right while the block is made, wrong when the op asks
        return int(lib.hak_usable_size(ptr)) + (8 if calls["n"] > 1 else 0)

    d = _diverges(_broken(hak, hak_usable_size=usable), (Op.alloc(0, 24), Op.usable_size(0)))
    assert (d.op_index, d.field, d.expected, d.actual) == (1, "usable_size", "32", "40")


def test_the_model_usable_size_is_the_spec(hak: HakmemModule,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = ModelAllocator.usable_size
    monkeypatch.setattr(ModelAllocator, "usable_size",
                        lambda self, loc: None if (v := real(self, loc)) is None else v * 2)
    d = _diverges(hak, (Op.alloc(0, 24), Op.usable_size(0)))
    assert (d.op_index, d.field, d.expected, d.actual) == (1, "usable_size", "64", "32")


def test_a_glibc_usable_size_below_the_request_is_caught(hak: HakmemModule) -> None:
    d = _diverges(_broken(hak, hak_usable_size=lambda ptr: 10),
                  (Op.libc_alloc(0, 5000), Op.usable_size(0)))
    assert (d.field, d.expected, d.actual) == ("usable_size", "at least 5000 (the size asked)",
                                               "10")


def test_a_glibc_usable_size_that_moves_is_caught(hak: HakmemModule) -> None:
    lib, seen = hak.lib, []

    def usable(ptr: Any) -> int:
        seen.append(ptr)
        return int(lib.hak_usable_size(ptr)) + len(seen)

    ops = (Op.libc_alloc(0, 200_000), Op.usable_size(0), Op.usable_size(0))
    d = _diverges(_broken(hak, hak_usable_size=usable), ops)
    assert (d.op_index, d.field) == (2, "usable_size")
    assert "as before" in d.expected
    # a realloc makes another block: its usable size may differ from the old one's
    ok = (Op.libc_alloc(0, 200_000), Op.usable_size(0), Op.realloc(0, 300_000),
          Op.usable_size(0), Op.free(0))
    assert DifferentialExecutor(_broken(hak, hak_usable_size=usable)).run(Program(ops=ok)) is None


def test_usable_size_of_null_must_be_zero(hak: HakmemModule) -> None:
    lib = hak.lib
    d = _diverges(_broken(hak, hak_usable_size=lambda ptr: 8 if ptr == hak.ffi.NULL
                          else lib.hak_usable_size(ptr)), (Op.usable_size_null(),))
    assert (d.field, d.expected, d.actual) == ("usable_size", "0 for NULL", "8")


def test_free_of_null_that_does_anything_is_caught(hak: HakmemModule) -> None:
    lib = hak.lib

    def free(ptr: Any) -> None:
        if ptr == hak.ffi.NULL:
            lib.hak_flush()  # a free(NULL) that touches the caches
        else:
            lib.hak_free(ptr)

    ops = (Op.alloc(0, 8), Op.alloc(1, 8), Op.free(0), Op.free_null())
    d = _diverges(_broken(hak, hak_free=free), ops, ProgramConfig())
    assert d.op_index == 3
    assert d.field.startswith("stats.")


def test_realloc_of_null_must_be_malloc(hak: HakmemModule) -> None:
    lib = hak.lib

    def realloc(ptr: Any, size: int) -> Any:
        if ptr == hak.ffi.NULL:
            return lib.hak_libc_malloc(size)  # a glibc block where a tiny one is due
        return lib.hak_realloc(ptr, size)

    d = _diverges(_broken(hak, hak_realloc=realloc), (Op.realloc_null(0, 40),))
    assert (d.op_index, d.field) == (0, "owner")


def test_realloc_to_zero_must_return_null(hak: HakmemModule) -> None:
    lib = hak.lib

    def realloc(ptr: Any, size: int) -> Any:
        q = lib.hak_realloc(ptr, size)
        return lib.hak_malloc(0) if size == 0 else q  # frees, then returns a block

    d = _diverges(_broken(hak, hak_realloc=realloc), (Op.alloc(0, 8), Op.realloc(0, 0)))
    assert (d.op_index, d.field, d.expected) == (1, "result", "NULL after realloc(p, 0)")


@pytest.mark.parametrize("kind", ["aligned_alloc", "memalign"])
def test_realloc_of_an_aligned_block_must_keep_its_bytes(hak: HakmemModule, kind: str) -> None:
    lib, ffi = hak.lib, hak.ffi

    def realloc(ptr: Any, size: int) -> Any:
        q = lib.hak_realloc(ptr, size)
        if q != ffi.NULL and size:
            ffi.cast("unsigned char *", q)[size - 1] ^= 0xFF  # loses the last kept byte
        return q

    make = Op.aligned_alloc(0, 256, 100) if kind == "aligned_alloc" else Op.memalign(0, 256, 100)
    d = _diverges(_broken(hak, hak_realloc=realloc), (make, Op.realloc(0, 50)))
    assert (d.op_index, d.field) == (1, "contents")


def test_aligned_alloc_must_align(hak: HakmemModule) -> None:
    lib = hak.lib

    def aligned_alloc(align: int, size: int) -> Any:
        return lib.hak_libc_malloc(size + 8) + 8  # off by 8 from glibc's 16-byte alignment

    d = _diverges(_broken(hak, hak_aligned_alloc=aligned_alloc),
                  (Op.aligned_alloc(0, 4096, 5000),))
    assert (d.op_index, d.field, d.expected) == (0, "alignment", "a multiple of 4096")
