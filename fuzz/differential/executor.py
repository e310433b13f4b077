"""Lockstep differential execution of a Program: model vs native.

For every op the executor calls the model (``hakfuzz.model``) and the native
allocator (cffi, in this process, after ``hak_reset`` + ``hak_configure``) and
compares: the place ``hak_locate`` reports with the model's ``Loc`` (owner,
class, ``ss_seq``, slab, block), NULL and errno, usable sizes, alignment,
zeroed calloc memory, fill patterns, and every ``hak_stats`` counter (the
native struct's bytes against the model's counter array, so the common case
is one ``memcmp``).  ``check`` runs ``hak_check`` and the model's self-check.
The first difference ends the run with a :class:`Divergence`.

Program threads are real: thread 0 runs on the calling thread and thread
``t > 0`` on a worker pthread; ops are handed over in runs (every op up to
the next one of another thread), so the run is serial and deterministic and
the model (exact mode, with a thread id per call) predicts everything,
thread caches included.

Speed (the hot loop is :func:`_lockstep`): each session builds one closure
per op kind over prebound ``lib`` functions, model methods and buffers, and
a tuple indexed by the op kind dispatches to them; ``hak_location_t`` and
``hak_stats_t`` are read as bytes (``struct``), never field by field; a live
handle is a small list.  ``python -m hakfuzz.bench.differential`` or
``hakfuzz bench --engine differential`` measures it.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from hakfuzz.campaign.journal import Journal
from hakfuzz.differential.patterns import BASE, PERIOD, pattern_start
from hakfuzz.findings import Finding
from hakfuzz.model import Loc, ModelAllocator, Owner
from hakfuzz.model.stats import STATS_LEN, field_name
from hakfuzz.parallel.stress import model_config
from hakfuzz.program import NO_HANDLE, Op, OpKind, Program, ProgramConfig

_STATS = struct.Struct(f"={STATS_LEN}q")
_LOCATION = struct.Struct("=IiQii")
"""``hak_location_t``: owner, class_idx, ss_seq, slab_idx, block_idx (checked at load)."""
_CLASS_SIZES = tuple(8 << c for c in range(8))
_LOCATION_NAMES = ("owner", "class_idx", "ss_seq", "slab_idx", "block_idx")

_NULL_OWNER = Owner.NULL
_LIBC_OWNER = Owner.LIBC

# A live handle is a list [ptr, loc, size, start, zeroed]: the native pointer,
# the model's Loc, the size asked for, where in patterns.BASE its pattern
# starts (pattern_start(handle, seed) of its last write, seed 0 at birth) and
# whether it still holds calloc's zeros.  A list is the cheapest mutable
# record to make once per allocation.
_PTR, _LOC, _SIZE, _START, _ZEROED = range(5)

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


class _Stop(Exception):
    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.describe())
        self.divergence = divergence


def _stop(i: int, op: Op, field: str, expected: str, actual: str) -> NoReturn:
    raise _Stop(Divergence(i, op, field, expected, actual))


class _Worker:
    """A pthread that runs callables handed to it, one at a time."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
                self._done.put(None)
            except BaseException as exc:  # handed back to the caller
                self._done.put(exc)

    def call(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        exc = self._done.get()
        if exc is not None:
            raise exc

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


class DifferentialSession:
    """One program in progress, stepped one op at a time.

    The Hypothesis state machine drives this directly; :meth:`close` must be called.
    """

    def __init__(self, executor: DifferentialExecutor, config: ProgramConfig, threads: int) -> None:
        self.x = executor
        self.ops: list[Op] = []
        self.config = config
        self.threads = threads
        self.model = ModelAllocator(model_config(config))
        self.handles: dict[int, Handle] = {}
        self.workers = [_Worker() for _ in range(threads - 1)]
        self.divergence: Divergence | None = None
        if executor.journal is not None:
            executor.journal.begin(config, threads)
        executor._prev_stats = None
        lib = executor.lib
        lib.hak_reset()
        for name, value in config.as_c_fields().items():
            setattr(executor._cfg, name, value)
        if lib.hak_configure(executor._cfg) != 0:
            self.divergence = Divergence(-1, None, "config", "accepted", "EINVAL")
        self._step, self._run_range = _lockstep(executor, self.model, self.handles)

    def step(self, op: Op) -> Divergence | None:
        """Run one op on both sides; the first divergence sticks."""
        if self.divergence is not None:
            return self.divergence
        index = len(self.ops)
        self.ops.append(op)
        x, step = self.x, self._step
        if x.journal is not None:
            x.journal.op(op)  # on disk before the native call: a crash keeps it
        try:
            if op.thread == 0:
                step(index, op)
            else:
                self.workers[op.thread - 1].call(lambda: step(index, op))
            x.ops_run += 1
        except _Stop as stop:
            self.divergence = stop.divergence
        return self.divergence

    def step_all(self, ops: Sequence[Op]) -> Divergence | None:
        """Run ``ops`` in order, as :meth:`step` would, stopping at the first divergence.

        Consecutive ops of one thread go to its worker in one hand-over.
        """
        if self.divergence is not None:
            return self.divergence
        x, run_range, workers = self.x, self._run_range, self.workers
        first = len(self.ops)
        count = len(ops)
        done = count
        try:
            lo = 0
            while lo < count:
                thread = ops[lo].thread
                hi = lo + 1
                while hi < count and ops[hi].thread == thread:
                    hi += 1
                if thread == 0:
                    run_range(ops, first, lo, hi)
                else:
                    workers[thread - 1].call(partial(run_range, ops, first, lo, hi))
                lo = hi
        except _Stop as stop:
            self.divergence = stop.divergence
            done = stop.divergence.op_index - first
        self.ops.extend(ops[: done + 1] if self.divergence is not None else ops)
        x.ops_run += done
        return self.divergence

    def finish(self) -> Divergence | None:
        """Verify every live block and run both checks."""
        if self.divergence is None:
            try:
                self.x._finish(self.model, self.handles, len(self.ops))
            except _Stop as stop:
                self.divergence = stop.divergence
        return self.divergence

    def program(self, description: str = "") -> Program:
        """The ops stepped so far, as a Program."""
        return Program(
            description=description, config=self.config, threads=self.threads, ops=tuple(self.ops)
        )

    def close(self) -> None:
        """Stop the worker threads and reset the allocator."""
        for w in self.workers:
            # Thread.join() returns before the pthread's TLS destructors run;
            # detach from the allocator now so none can race hak_reset below.
            w.call(self.x.lib.hak_thread_exit)
            w.close()
        self.workers = []
        # hak_reset unmaps every tiny block, but glibc's blocks (libc_alloc,
        # requests over 1024, fallbacks at the cap) are only freed by a free:
        # without this a long campaign leaks them by the gigabyte.
        lib = self.x.lib
        for handle in self.handles.values():
            if handle[1].owner is Owner.LIBC:
                lib.hak_libc_free(handle[0])
        self.handles.clear()
        lib.hak_reset()  # worker threads are gone; nothing may outlive the run


class DifferentialExecutor:
    """Runs programs on ``hak`` (a loaded allocator module) and the model."""

    def __init__(self, hak: Any) -> None:
        self.ffi = hak.ffi
        self.lib = hak.lib
        ffi = self.ffi
        self._loc = ffi.new("hak_location_t *")
        self._loc_buf = ffi.buffer(self._loc)
        self._stats = ffi.new("hak_stats_t *")
        self._stats_buf = ffi.buffer(self._stats)
        self._msg = ffi.new("char[]", 256)
        self._cfg = ffi.new("hak_config_t *")
        self._out = ffi.new("void **")
        offsets = tuple(ffi.offsetof("hak_location_t", n) for n in _LOCATION_NAMES)
        if (
            ffi.sizeof("hak_location_t") != _LOCATION.size
            or offsets != (0, 4, 8, 16, 20)
            or ffi.sizeof("hak_stats_t") != _STATS.size
        ):
            raise RuntimeError("hak_location_t or hak_stats_t does not have the expected layout")
        self.ops_run = 0
        self.journal: Journal | None = None
        """Write-ahead log of ops (crash isolation); set by campaign workers."""
        self.features: set[tuple[int, tuple[int, ...]]] | None = None
        """When a set: collects (op kind, counters it changed), a behaviour coverage."""
        self._prev_stats: bytes | None = None

    # ---- public -------------------------------------------------------------
    def session(self, config: ProgramConfig, threads: int = 1) -> DifferentialSession:
        """Start a program to be stepped op by op."""
        return DifferentialSession(self, config, threads)

    def run(self, program: Program) -> Divergence | None:
        """Run ``program``; None when model and native agreed throughout."""
        session = self.session(program.config, program.threads)
        try:
            if session.divergence is not None:
                return session.divergence
            if session.step_all(program.ops) is not None:
                return session.divergence
            return session.finish()
        finally:
            session.close()

    # ---- the end of a program ------------------------------------------------
    def _finish(self, model: ModelAllocator, handles: dict[int, Handle], end: int) -> None:
        for handle, h in handles.items():
            _verify(self.ffi, end, Op(OpKind.VERIFY, 0, handle), h)
        _check(self, model, end, Op.check())


# ---- the hot loop -------------------------------------------------------------------
def _verify(ffi: Any, i: int, op: Op, h: Handle) -> None:
    """The block of ``h`` holds its pattern (or calloc's zeros)."""
    ptr, _, size, start, zeroed = h
    got = ffi.buffer(ptr, size)[:]
    want = bytes(size) if zeroed else BASE[start : start + size]
    if got != want:
        _contents(i, op, got, want)


def _contents(i: int, op: Op, got: bytes, want: bytes) -> NoReturn:
    at = next(k for k in range(len(want)) if got[k] != want[k])
    _stop(i, op, "contents", f"byte {at} = {want[at]}", f"{got[at]}")


def _check(x: DifferentialExecutor, model: ModelAllocator, i: int, op: Op) -> None:
    if x.lib.hak_check(x._msg, 256) != 0:
        _stop(i, op, "hak_check", "clean", x.ffi.string(x._msg).decode())
    problems = model.self_check()
    if problems:
        _stop(i, op, "model.self_check", "clean", problems[0])


def _lockstep(
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
    hak_posix_memalign, hak_realloc, hak_free = (
        lib.hak_posix_memalign,
        lib.hak_realloc,
        lib.hak_free,
    )
    hak_locate, hak_usable_size, hak_stats = lib.hak_locate, lib.hak_usable_size, lib.hak_stats
    hak_flush, hak_thread_exit = lib.hak_flush, lib.hak_thread_exit
    loc_ptr, stats_ptr, out = x._loc, x._stats, x._out
    loc_bytes = x._loc_buf
    stats_bytes = x._stats_buf
    read_location = _LOCATION.unpack_from
    model_stats = model.stats_array().tobytes
    m_malloc, m_libc_alloc, m_calloc = model.malloc, model.libc_alloc, model.calloc
    m_posix_memalign, m_realloc, m_free = model.posix_memalign, model.realloc, model.free
    m_flush, m_thread_exit = model.flush, model.thread_exit
    handles_get, handles_pop = handles.get, handles.pop
    base, period = BASE, PERIOD
    fill = memoryview(BASE)  # fills slice this (no copy); comparisons slice the bytes
    class_sizes = _CLASS_SIZES
    null_owner, libc_owner = _NULL_OWNER, _LIBC_OWNER

    def place() -> str:
        owner, class_idx, ss_seq, slab_idx, block_idx = read_location(loc_bytes)
        return f"owner {owner} class {class_idx} ss {ss_seq} slab {slab_idx} block {block_idx}"

    def compare_place(i: int, op: Op, ptr: Any, loc: Loc) -> None:
        hak_locate(ptr, loc_ptr)
        got = read_location(loc_bytes)
        if loc.owner is libc_owner:
            if got[0] != libc_owner:
                _stop(i, op, "owner", "libc", place())
            return
        class_idx = loc.class_idx
        want = (1, class_idx, loc.ss_seq, loc.slab_idx, loc.block_idx)
        if got != want:
            field = next(n for n, a, b in zip(_LOCATION_NAMES, want, got, strict=True) if a != b)
            _stop(i, op, field, str(loc), place())
        usable = hak_usable_size(ptr)
        if usable != class_sizes[class_idx]:
            _stop(i, op, "usable_size", str(class_sizes[class_idx]), str(usable))

    def created(
        i: int, op: Op, ptr: Any, err: int, loc: Loc, size: int, align: int, zeroed: bool
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
        h = handles[handle] = [ptr, loc, size, start, zeroed]
        if zeroed:
            _verify(ffi, i, op, h)
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

    def realloc(i: int, op: Op) -> None:
        handle = op.handle
        h = handles_get(handle)
        if h is None:
            return
        old_ptr, old_loc, old_size, start, zeroed = h
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
            ptr, loc, size, start, zeroed = h
            got = buffer(ptr, size)[:]
            want = bytes(size) if zeroed else base[start : start + size]
            if got != want:
                _contents(i, op, got, want)
            hak_free(ptr)
            m_free(op.thread, loc)

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
            _verify(ffi, i, op, h)

    def flush(i: int, op: Op) -> None:
        hak_flush()
        m_flush(op.thread)

    def thread_exit(i: int, op: Op) -> None:
        hak_thread_exit()
        m_thread_exit(op.thread)

    def check(i: int, op: Op) -> None:
        _check(x, model, i, op)

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
        a, b = _STATS.unpack(want), _STATS.unpack(prev)
        changed = tuple(k for k in range(STATS_LEN) if a[k] != b[k])
    x.features.add((int(op.kind), changed))
    x._prev_stats = want


def _stats_differ(i: int, op: Op, want: bytes, got: bytes) -> NoReturn:
    expected, actual = _STATS.unpack(want), _STATS.unpack(got)
    k = next(k for k in range(STATS_LEN) if expected[k] != actual[k])
    _stop(i, op, f"stats.{field_name(k)}", str(expected[k]), str(actual[k]))


def run_differential(
    hak: Any,
    program: Program,
    *,
    variant: str = "release",
    engine: str = "differential",
    seed: int | None = None,
) -> Finding | None:
    """Run once; a :class:`Finding` whose program is the reproducing prefix, or None."""
    divergence = DifferentialExecutor(hak).run(program)
    if divergence is None:
        return None
    cut = len(program.ops) if divergence.op_index < 0 else divergence.op_index + 1
    prefix = Program(
        program.format, program.description, program.config, program.threads, program.ops[:cut]
    )
    return Finding(
        engine,
        "divergence",
        divergence.field,
        divergence.describe(),
        prefix,
        divergence.op_index if divergence.op_index >= 0 else None,
        variant,
        seed,
        {"expected": divergence.expected, "actual": divergence.actual},
    )


__all__ = [
    "NO_HANDLE",
    "DifferentialExecutor",
    "DifferentialSession",
    "Divergence",
    "run_differential",
]
