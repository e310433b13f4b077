"""Lockstep differential execution of a Program: model vs native.

For every op the executor calls the model (``hakfuzz.model``) and the native
allocator (cffi, in this process, after ``hak_reset`` + ``hak_configure``) and
compares: the place ``hak_locate`` reports with the model's ``Loc`` (owner,
class, ``ss_seq``, slab, block), NULL and errno, usable sizes, alignment,
zeroed calloc memory, fill patterns, and every ``hak_stats`` counter (as one
packed byte string, so the common case is one bytes comparison).  ``check``
runs ``hak_check`` and the model's self-check.  The first difference ends the
run with a :class:`Divergence`.

Program threads are real: thread 0 runs on the calling thread and thread
``t > 0`` on a worker pthread; ops are handed over one at a time, so the run
is serial and deterministic and the model (exact mode, with a thread id per
call) predicts everything, thread caches included.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hakfuzz.campaign.journal import Journal
from hakfuzz.differential.patterns import pattern
from hakfuzz.findings import Finding
from hakfuzz.model import Loc, ModelAllocator, Owner
from hakfuzz.model.stats import field_name
from hakfuzz.parallel.stress import model_config
from hakfuzz.program import NO_HANDLE, Op, OpKind, Program, ProgramConfig

_STATS = struct.Struct("<69q")
_CLASS_SIZES = tuple(8 << c for c in range(8))


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


class _Handle:
    __slots__ = ("loc", "ptr", "seed", "size", "zeroed")

    def __init__(self, ptr: Any, loc: Loc, size: int, zeroed: bool) -> None:
        self.ptr = ptr
        self.loc = loc
        self.size = size
        self.seed = 0
        self.zeroed = zeroed


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
        self.handles: dict[int, _Handle] = {}
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

    def step(self, op: Op) -> Divergence | None:
        """Run one op on both sides; the first divergence sticks."""
        if self.divergence is not None:
            return self.divergence
        index = len(self.ops)
        self.ops.append(op)
        x, model, handles = self.x, self.model, self.handles
        if x.journal is not None:
            x.journal.op(op)  # on disk before the native call: a crash keeps it
        try:
            if op.thread == 0:
                x._step(model, handles, index, op)
            else:
                self.workers[op.thread - 1].call(lambda: x._step(model, handles, index, op))
            x.ops_run += 1
        except _Stop as stop:
            self.divergence = stop.divergence
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
        self.x.lib.hak_reset()  # worker threads are gone; nothing may outlive the run


class DifferentialExecutor:
    """Runs programs on ``hak`` (a loaded allocator module) and the model."""

    def __init__(self, hak: Any) -> None:
        self.ffi = hak.ffi
        self.lib = hak.lib
        self._loc = self.ffi.new("hak_location_t *")
        self._stats = self.ffi.new("hak_stats_t *")
        self._stats_buf = self.ffi.buffer(self._stats)
        self._msg = self.ffi.new("char[]", 256)
        self._cfg = self.ffi.new("hak_config_t *")
        self._out = self.ffi.new("void **")
        self.ops_run = 0
        self.journal: Journal | None = None
        """Write-ahead log of ops (crash isolation); set by campaign workers."""
        self.features: set[tuple[int, tuple[int, ...]]] | None = None
        """When a set: collects (op kind, counters it changed), a behaviour coverage."""
        self._prev_stats: tuple[int, ...] | None = None

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
            for op in program.ops:
                if session.step(op) is not None:
                    return session.divergence
            return session.finish()
        finally:
            session.close()

    # ---- one op --------------------------------------------------------------
    def _step(self, model: ModelAllocator, handles: dict[int, _Handle], i: int, op: Op) -> None:
        kind = op.kind
        lib, ffi = self.lib, self.ffi
        tid = op.thread
        if kind is OpKind.ALLOC:
            self._created(
                handles, i, op, lib.hak_malloc(op.size), model.malloc(tid, op.size), op.size, 1
            )
        elif kind is OpKind.LIBC_ALLOC:
            self._created(
                handles,
                i,
                op,
                lib.hak_libc_malloc(op.size),
                model.libc_alloc(tid, op.size),
                op.size,
                1,
            )
        elif kind is OpKind.CALLOC:
            ptr = lib.hak_calloc(op.count, op.size)
            self._created(
                handles,
                i,
                op,
                ptr,
                model.calloc(tid, op.count, op.size),
                op.count * op.size,
                1,
                zeroed=True,
            )
        elif kind is OpKind.MEMALIGN:
            rc = lib.hak_posix_memalign(self._out, op.align, op.size)
            ptr = self._out[0] if rc == 0 else ffi.NULL
            if rc != 0:
                ffi.errno = rc
            self._created(
                handles, i, op, ptr, model.posix_memalign(tid, op.align, op.size), op.size, op.align
            )
        elif kind is OpKind.REALLOC:
            self._realloc(model, handles, i, op)
        elif kind is OpKind.FREE:
            h = handles.pop(op.handle, None)
            if h is not None:
                self._verify(h, i, op)
                lib.hak_free(h.ptr)
                model.free(tid, h.loc)
        elif kind is OpKind.WRITE:
            h = handles.get(op.handle)
            if h is not None:
                h.seed = op.seed
                h.zeroed = False
                ffi.memmove(h.ptr, pattern(op.handle, op.seed, h.size), h.size)
        elif kind is OpKind.VERIFY:
            h = handles.get(op.handle)
            if h is not None:
                self._verify(h, i, op)
        elif kind is OpKind.FLUSH:
            lib.hak_flush()
            model.flush(tid)
        elif kind is OpKind.THREAD_EXIT:
            lib.hak_thread_exit()
            model.thread_exit(tid)
        elif kind is OpKind.CHECK:
            self._check(model, i, op)
        self._compare_stats(model, i, op)

    def _created(
        self,
        handles: dict[int, _Handle],
        i: int,
        op: Op,
        ptr: Any,
        loc: Loc,
        size: int,
        align: int,
        *,
        zeroed: bool = False,
    ) -> None:
        ffi = self.ffi
        if loc.owner is Owner.NULL:
            if ptr != ffi.NULL:
                self._locate(ptr)
                self._stop(i, op, "result", "NULL", f"a block ({self._place()})")
            if loc.errno and ffi.errno != loc.errno:
                self._stop(i, op, "errno", str(loc.errno), str(ffi.errno))
            return
        if ptr == ffi.NULL:
            self._stop(i, op, "result", str(loc), f"NULL (errno {ffi.errno})")
        self._compare_place(i, op, ptr, loc)
        if align > 1 and int(ffi.cast("uintptr_t", ptr)) % align:
            self._stop(
                i, op, "alignment", f"a multiple of {align}", hex(int(ffi.cast("uintptr_t", ptr)))
            )
        h = _Handle(ptr, loc, size, zeroed)
        handles[op.handle] = h
        if zeroed:
            self._verify(h, i, op)
        else:  # every block holds its handle's pattern from birth
            ffi.memmove(ptr, pattern(op.handle, 0, size), size)

    def _realloc(self, model: ModelAllocator, handles: dict[int, _Handle], i: int, op: Op) -> None:
        h = handles.get(op.handle)
        if h is None:
            return
        self._verify(h, i, op)
        ptr = self.lib.hak_realloc(h.ptr, op.size)
        loc = model.realloc(op.thread, h.loc, op.size)
        if op.size == 0:
            del handles[op.handle]
            if ptr != self.ffi.NULL:
                self._stop(i, op, "result", "NULL after realloc(p, 0)", "a block")
            return
        if loc.owner is Owner.NULL:
            if ptr != self.ffi.NULL:
                self._stop(i, op, "result", "NULL (old block kept)", "a block")
            return
        if ptr == self.ffi.NULL:
            self._stop(i, op, "result", str(loc), "NULL")
        self._compare_place(i, op, ptr, loc)
        kept = min(h.size, op.size)
        h.ptr, h.loc = ptr, loc
        if not h.zeroed:
            got = self.ffi.buffer(ptr, kept)[:]
            if got != pattern(op.handle, h.seed, h.size)[:kept]:
                self._stop(i, op, "contents", "the old bytes kept across realloc", "changed bytes")
        else:
            if self.ffi.buffer(ptr, kept)[:] != bytes(kept):
                self._stop(i, op, "contents", "zeros kept across realloc", "changed bytes")
            h.zeroed = False
        h.size = op.size
        self.ffi.memmove(ptr, pattern(op.handle, h.seed, op.size), op.size)

    # ---- comparisons ---------------------------------------------------------
    def _locate(self, ptr: Any) -> tuple[int, int, int, int, int]:
        loc = self._loc
        self.lib.hak_locate(ptr, loc)
        return (loc.owner, loc.class_idx, loc.ss_seq, loc.slab_idx, loc.block_idx)

    def _place(self) -> str:
        loc = self._loc
        return (
            f"owner {loc.owner} class {loc.class_idx} ss {loc.ss_seq} "
            f"slab {loc.slab_idx} block {loc.block_idx}"
        )

    def _compare_place(self, i: int, op: Op, ptr: Any, loc: Loc) -> None:
        got = self._locate(ptr)
        if loc.owner is Owner.LIBC:
            if got[0] != Owner.LIBC:
                self._stop(i, op, "owner", "libc", self._place())
            return
        want = loc.location()
        if got != want:
            names = ("owner", "class_idx", "ss_seq", "slab_idx", "block_idx")
            field = next(n for n, a, b in zip(names, want, got, strict=True) if a != b)
            self._stop(i, op, field, str(loc), self._place())
        usable = self.lib.hak_usable_size(ptr)
        if usable != _CLASS_SIZES[loc.class_idx]:
            self._stop(i, op, "usable_size", str(_CLASS_SIZES[loc.class_idx]), str(usable))

    def _verify(self, h: _Handle, i: int, op: Op) -> None:
        got = self.ffi.buffer(h.ptr, h.size)[:]
        want = bytes(h.size) if h.zeroed else pattern(op.handle, h.seed, h.size)
        if got != want:
            at = next(k for k in range(h.size) if got[k] != want[k])
            self._stop(i, op, "contents", f"byte {at} = {want[at]}", f"{got[at]}")

    def _compare_stats(self, model: ModelAllocator, i: int, op: Op) -> None:
        self.lib.hak_stats(self._stats)
        want = model.stats_tuple()
        if self.features is not None:
            prev = self._prev_stats or want
            self.features.add(
                (int(op.kind), tuple(k for k in range(len(want)) if want[k] != prev[k]))
            )
            self._prev_stats = want
        if self._stats_buf[:] == _STATS.pack(*want):
            return
        got = _STATS.unpack(self._stats_buf[:])
        for k, (a, b) in enumerate(zip(want, got, strict=True)):
            if a != b:
                self._stop(i, op, f"stats.{field_name(k)}", str(a), str(b))

    def _check(self, model: ModelAllocator, i: int, op: Op) -> None:
        if self.lib.hak_check(self._msg, 256) != 0:
            self._stop(i, op, "hak_check", "clean", self.ffi.string(self._msg).decode())
        problems = model.self_check()
        if problems:
            self._stop(i, op, "model.self_check", "clean", problems[0])

    def _finish(self, model: ModelAllocator, handles: dict[int, _Handle], end: int) -> None:
        end_op = Op.check()
        for handle, h in handles.items():
            self._verify(h, end, Op(OpKind.VERIFY, 0, handle))
        self._check(model, end, end_op)

    def _stop(self, i: int, op: Op, field: str, expected: str, actual: str) -> None:
        raise _Stop(Divergence(i, op, field, expected, actual))


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
