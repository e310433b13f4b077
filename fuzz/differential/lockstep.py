"""The hot loop of the differential executor: one op on model and native, compared.

:func:`lockstep` builds, for one session, the functions that run one op (and
a range of ops) on both sides and compare everything the model predicts;
:class:`Divergence` is what the first difference becomes.  See
``executor.py`` for the sessions and threads around it.

Speed: each session builds one closure per op kind over prebound ``lib``
functions, model methods and buffers, and a tuple indexed by the op kind
dispatches to them; ``hak_location_t`` and ``hak_stats_t`` are read as bytes
(``struct``), never field by field; a live handle is a small list.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from _cffi_backend import FFI

from hakfuzz.differential.patterns import BASE, PERIOD, pattern_start
from hakfuzz.model import NULL_LOC, Loc, ModelAllocator, Owner
from hakfuzz.model.limits import CLASS_SIZES
from hakfuzz.model.stats import STATS_LEN, field_name
from hakfuzz.program import Op, OpKind

if TYPE_CHECKING:
    from hakfuzz.differential.executor import DifferentialExecutor

STATS = struct.Struct(f"={STATS_LEN}q")
LOCATION = struct.Struct("=IiQii")
"""``hak_location_t``: owner, class_idx, ss_seq, slab_idx, block_idx (checked at load)."""
LOCATION_NAMES = ("owner", "class_idx", "ss_seq", "slab_idx", "block_idx")

_NULL_OWNER = Owner.NULL
_LIBC_OWNER = Owner.LIBC

# A live handle is a list [ptr, loc, size, start, zeroed, usable]: the native
# pointer, the model's Loc, the size asked for, where in patterns.BASE its
# pattern starts (pattern_start(handle, seed) of its last write, seed 0 at
# birth), whether it still holds calloc's zeros, and the usable size glibc
# first reported for it (-1: not asked yet; glibc's blocks only, whose usable
# size the model cannot predict but which must not change while the block
# lives).  A list is the cheapest mutable record to make once per allocation.
_PTR, _LOC, _SIZE, _START, _ZEROED, _USABLE = range(6)
_NOT_ASKED = -1

Pointer = FFI.CData
"""A native pointer (cffi ``void *``)."""
Handle = list[Any]
Step = Callable[[int, Op], None]
RunRange = Callable[[Sequence[Op], int, int, int], None]


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first difference between model and native."""

    op_index: int
    op: Op | None
    field: str
    expected: str
    actual: str

    def describe(self) -> str:
        what = f"op {self.op_index} ({self.op.kind.json_name})" if self.op else "at the end"
        return f"{what}: {self.field}: expected {self.expected}, got {self.actual}"


class Stop(Exception):
    """Raised inside the hot loop to end the run with its divergence."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.describe())
        self.divergence = divergence


def _stop(i: int, op: Op, field: str, expected: str, actual: str) -> NoReturn:
    raise Stop(Divergence(i, op, field, expected, actual))


def verify_block(ffi: FFI, i: int, op: Op, h: Handle) -> None:
    """The block of ``h`` holds its pattern (or calloc's zeros)."""
    ptr, _, size, start, zeroed, _ = h
    got = ffi.buffer(ptr, size)[:]
    want = bytes(size) if zeroed else BASE[start : start + size]
    if got != want:
        _contents(i, op, got, want)


def _contents(i: int, op: Op, got: bytes, want: bytes) -> NoReturn:
    at = next(k for k in range(len(want)) if got[k] != want[k])
    _stop(i, op, "contents", f"byte {at} = {want[at]}", f"{got[at]}")


def check_both(x: DifferentialExecutor, model: ModelAllocator, i: int, op: Op) -> None:
    """``hak_check`` and the model's self-check are both clean."""
    if x.lib.hak_check(x._msg, 256) != 0:
        _stop(i, op, "hak_check", "clean", x.ffi.string(x._msg).decode())
    problems = model.self_check()
    if problems:
        _stop(i, op, "model.self_check", "clean", problems[0])


def lockstep(
    x: DifferentialExecutor, model: ModelAllocator, handles: dict[int, Handle]
) -> tuple[Step, RunRange]:
    """The functions that run one op (and a range of ops) on both sides, comparing everything.

    Every name the hot path uses is a local of this factory (a closure cell),
    so an op costs no attribute lookups on the executor, ``lib`` or the model.
    """
    ffi, lib = x.ffi, x.lib
    null = ffi.NULL
    buffer, memmove, cast = ffi.buffer, ffi.memmove, ffi.cast
    hak_malloc, hak_libc_malloc, hak_calloc = lib.hak_malloc, lib.hak_libc_malloc, lib.hak_calloc
    hak_posix_memalign, hak_aligned_alloc = lib.hak_posix_memalign, lib.hak_aligned_alloc
    hak_realloc, hak_free = lib.hak_realloc, lib.hak_free
    hak_locate, hak_usable_size, hak_stats = lib.hak_locate, lib.hak_usable_size, lib.hak_stats
    hak_flush, hak_thread_exit = lib.hak_flush, lib.hak_thread_exit
    loc_ptr, stats_ptr, out = x._loc, x._stats, x._out
    loc_bytes = x._loc_buf
    stats_bytes = x._stats_buf
    read_location = LOCATION.unpack_from
    model_stats = model.stats_array().tobytes
    m_malloc, m_libc_alloc, m_calloc = model.malloc, model.libc_alloc, model.calloc
    m_posix_memalign, m_realloc, m_free = model.posix_memalign, model.realloc, model.free
    m_aligned_alloc, m_usable_size = model.aligned_alloc, model.usable_size
    m_flush, m_thread_exit = model.flush, model.thread_exit
    handles_get, handles_pop = handles.get, handles.pop
    base, period = BASE, PERIOD
    fill = memoryview(BASE)  # fills slice this (no copy); comparisons slice the bytes
    class_sizes = CLASS_SIZES
    null_owner, libc_owner = _NULL_OWNER, _LIBC_OWNER
    null_loc, not_asked = NULL_LOC, _NOT_ASKED

    def place() -> str:
        owner, class_idx, ss_seq, slab_idx, block_idx = read_location(loc_bytes)
        return f"owner {owner} class {class_idx} ss {ss_seq} slab {slab_idx} block {block_idx}"

    def compare_place(i: int, op: Op, ptr: Pointer, loc: Loc) -> None:
        hak_locate(ptr, loc_ptr)
        got = read_location(loc_bytes)
        if loc.owner is libc_owner:
            if got[0] != libc_owner:
                _stop(i, op, "owner", "libc", place())
            return
        class_idx = loc.class_idx
        want = (1, class_idx, loc.ss_seq, loc.slab_idx, loc.block_idx)
        if got != want:
            field = next(n for n, a, b in zip(LOCATION_NAMES, want, got, strict=True) if a != b)
            _stop(i, op, field, str(loc), place())
        usable = hak_usable_size(ptr)
        if usable != class_sizes[class_idx]:
            _stop(i, op, "usable_size", str(class_sizes[class_idx]), str(usable))

    def created(
        i: int, op: Op, ptr: Pointer, err: int, loc: Loc, size: int, align: int, zeroed: bool
    ) -> None:
        if loc.owner is null_owner:
            if ptr != null:
                hak_locate(ptr, loc_ptr)
                _stop(i, op, "result", "NULL", f"a block ({place()})")
            if loc.errno and err != loc.errno:
                _stop(i, op, "errno", str(loc.errno), str(err))
            return
        if ptr == null:
            _stop(i, op, "result", str(loc), f"NULL (errno {err})")
        # compare_place(i, op, ptr, loc), inlined: a call less on every allocation.
        hak_locate(ptr, loc_ptr)
        if loc.owner is libc_owner:
            if read_location(loc_bytes)[0] != libc_owner:
                _stop(i, op, "owner", "libc", place())
        else:
            class_idx = loc.class_idx
            want = (1, class_idx, loc.ss_seq, loc.slab_idx, loc.block_idx)
            if read_location(loc_bytes) != want or hak_usable_size(ptr) != class_sizes[class_idx]:
                compare_place(i, op, ptr, loc)  # names the first difference
        if align > 1 and int(cast("uintptr_t", ptr)) % align:
            _stop(i, op, "alignment", f"a multiple of {align}", hex(int(cast("uintptr_t", ptr))))
        handle = op.handle
        start = handle * 31 % period  # pattern_start(handle, 0)
        h = handles[handle] = [ptr, loc, size, start, zeroed, not_asked]
        if zeroed:
            verify_block(ffi, i, op, h)
        else:  # every block holds its handle's pattern from birth
            memmove(ptr, fill[start : start + size], size)

    def alloc(i: int, op: Op) -> None:
        size = op.size
        ptr = hak_malloc(size)
        err = ffi.errno if ptr == null else 0
        created(i, op, ptr, err, m_malloc(op.thread, size), size, 1, False)

    def libc_alloc(i: int, op: Op) -> None:
        size = op.size
        ptr = hak_libc_malloc(size)
        err = ffi.errno if ptr == null else 0
        created(i, op, ptr, err, m_libc_alloc(op.thread, size), size, 1, False)

    def calloc(i: int, op: Op) -> None:
        count, size = op.count, op.size
        ptr = hak_calloc(count, size)
        err = ffi.errno if ptr == null else 0
        created(i, op, ptr, err, m_calloc(op.thread, count, size), count * size, 1, True)

    def memalign(i: int, op: Op) -> None:
        align, size = op.align, op.size
        rc = hak_posix_memalign(out, align, size)
        if rc == 0:
            ptr = out[0]
            err = ffi.errno if ptr == null else 0
        else:
            ptr, err = null, rc
        created(i, op, ptr, err, m_posix_memalign(op.thread, align, size), size, align, False)

    def aligned_alloc(i: int, op: Op) -> None:
        align, size = op.align, op.size
        ptr = hak_aligned_alloc(align, size)
        err = ffi.errno if ptr == null else 0
        created(i, op, ptr, err, m_aligned_alloc(op.thread, align, size), size, align, False)

    def realloc_null(i: int, op: Op) -> None:
        size = op.size
        ptr = hak_realloc(null, size)
        err = ffi.errno if ptr == null else 0
        created(i, op, ptr, err, m_realloc(op.thread, null_loc, size), size, 1, False)

    def realloc(i: int, op: Op) -> None:
        handle = op.handle
        h = handles_get(handle)
        if h is None:
            return
        old_ptr, old_loc, old_size, start, zeroed, _ = h
        got = buffer(old_ptr, old_size)[:]
        want = bytes(old_size) if zeroed else base[start : start + old_size]
        if got != want:
            _contents(i, op, got, want)
        size = op.size
        ptr = hak_realloc(old_ptr, size)
        loc = m_realloc(op.thread, old_loc, size)
        if size == 0:
            del handles[handle]
            if ptr != null:
                _stop(i, op, "result", "NULL after realloc(p, 0)", "a block")
            return
        if loc.owner is null_owner:
            if ptr != null:
                _stop(i, op, "result", "NULL (old block kept)", "a block")
            return
        if ptr == null:
            _stop(i, op, "result", str(loc), "NULL")
        compare_place(i, op, ptr, loc)
        kept = min(old_size, size)
        h[_PTR] = ptr
        h[_LOC] = loc
        h[_USABLE] = not_asked  # a new block, or the old one grown or shrunk in place
        if not zeroed:
            if buffer(ptr, kept)[:] != base[start : start + kept]:
                _stop(i, op, "contents", "the old bytes kept across realloc", "changed bytes")
        else:
            if buffer(ptr, kept)[:] != bytes(kept):
                _stop(i, op, "contents", "zeros kept across realloc", "changed bytes")
            h[_ZEROED] = False
        h[_SIZE] = size
        memmove(ptr, fill[start : start + size], size)

    def free(i: int, op: Op) -> None:
        h = handles_pop(op.handle, None)
        if h is not None:
            ptr, loc, size, start, zeroed, _ = h
            got = buffer(ptr, size)[:]
            want = bytes(size) if zeroed else base[start : start + size]
            if got != want:
                _contents(i, op, got, want)
            hak_free(ptr)
            m_free(op.thread, loc)

    def free_null(i: int, op: Op) -> None:
        hak_free(null)  # the stats compared after every op must not move
        m_free(op.thread, null_loc)

    def usable_size(i: int, op: Op) -> None:
        h = handles_get(op.handle)
        if h is None:
            return
        got = hak_usable_size(h[_PTR])
        want = m_usable_size(h[_LOC])
        if want is not None:  # tiny: the model knows the class size
            if got != want:
                _stop(i, op, "usable_size", str(want), str(got))
            return
        size, seen = h[_SIZE], h[_USABLE]
        if got < size:
            _stop(i, op, "usable_size", f"at least {size} (the size asked)", str(got))
        if seen == not_asked:
            h[_USABLE] = got
        elif got != seen:
            _stop(i, op, "usable_size", f"{seen}, as before (the same block)", str(got))

    def usable_size_null(i: int, op: Op) -> None:
        got = hak_usable_size(null)
        want = m_usable_size(null_loc)
        if got != want:
            _stop(i, op, "usable_size", f"{want} for NULL", str(got))

    def write(i: int, op: Op) -> None:
        h = handles_get(op.handle)
        if h is not None:
            start = h[_START] = pattern_start(op.handle, op.seed)
            h[_ZEROED] = False
            size = h[_SIZE]
            memmove(h[_PTR], fill[start : start + size], size)

    def verify(i: int, op: Op) -> None:
        h = handles_get(op.handle)
        if h is not None:
            verify_block(ffi, i, op, h)

    def flush(i: int, op: Op) -> None:
        hak_flush()
        m_flush(op.thread)

    def thread_exit(i: int, op: Op) -> None:
        hak_thread_exit()
        m_thread_exit(op.thread)

    def check(i: int, op: Op) -> None:
        check_both(x, model, i, op)

    table: dict[OpKind, Step] = {
        OpKind.ALLOC: alloc,
        OpKind.LIBC_ALLOC: libc_alloc,
        OpKind.CALLOC: calloc,
        OpKind.MEMALIGN: memalign,
        OpKind.REALLOC: realloc,
        OpKind.FREE: free,
        OpKind.WRITE: write,
        OpKind.VERIFY: verify,
        OpKind.FLUSH: flush,
        OpKind.THREAD_EXIT: thread_exit,
        OpKind.CHECK: check,
        OpKind.ALIGNED_ALLOC: aligned_alloc,
        OpKind.REALLOC_NULL: realloc_null,
        OpKind.FREE_NULL: free_null,
        OpKind.USABLE_SIZE: usable_size,
        OpKind.USABLE_SIZE_NULL: usable_size_null,
    }
    dispatch = tuple(table[OpKind(value)] for value in range(len(OpKind)))  # by kind value

    def step(i: int, op: Op) -> None:
        dispatch[op.kind](i, op)
        hak_stats(stats_ptr)
        want = model_stats()
        if x.features is not None:
            _feature(x, op, want)
        if stats_bytes[:] != want:
            _stats_differ(i, op, want, stats_bytes[:])

    def run_range(ops: Sequence[Op], first: int, lo: int, hi: int) -> None:
        """``step(first + k, ops[k])`` for k in lo..hi-1, journaled; the loop of ``run``."""
        journal, features = x.journal, x.features
        for k in range(lo, hi):
            op = ops[k]
            if journal is not None:
                journal.op(op)  # on disk before the native call: a crash keeps it
            i = first + k
            dispatch[op.kind](i, op)
            # step()'s comparison, inlined: a call less per op.
            hak_stats(stats_ptr)
            want = model_stats()
            if features is not None:
                _feature(x, op, want)
            if stats_bytes[:] != want:
                _stats_differ(i, op, want, stats_bytes[:])

    return step, run_range


def _feature(x: DifferentialExecutor, op: Op, want: bytes) -> None:
    """Record (op kind, indices of the model counters this op changed)."""
    assert x.features is not None
    prev = x._prev_stats
    if prev is None or prev == want:
        changed: tuple[int, ...] = ()
    else:
        a, b = STATS.unpack(want), STATS.unpack(prev)
        changed = tuple(k for k in range(STATS_LEN) if a[k] != b[k])
    x.features.add((int(op.kind), changed))
    x._prev_stats = want


def _stats_differ(i: int, op: Op, want: bytes, got: bytes) -> NoReturn:
    expected, actual = STATS.unpack(want), STATS.unpack(got)
    k = next(k for k in range(STATS_LEN) if expected[k] != actual[k])
    _stop(i, op, f"stats.{field_name(k)}", str(expected[k]), str(actual[k]))


