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

The hot loop is :func:`hakfuzz.differential.lockstep.lockstep`.
``python -m hakfuzz.perf.bench.differential`` or ``hakfuzz bench --engine
differential`` measures it.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from hakfuzz.differential.lockstep import (
    LOCATION,
    LOCATION_NAMES,
    STATS,
    Divergence,
    Handle,
    Stop,
    check_both,
    lockstep,
    verify_block,
)
from hakfuzz.findings import Finding
from hakfuzz.model import Config, ModelAllocator, Owner
from hakfuzz.native import HakmemModule
from hakfuzz.program import NO_HANDLE, Op, OpKind, Program, ProgramConfig


class OpJournal(Protocol):
    """Where each op is written before it runs natively, so a crash keeps it.

    The campaign's write-ahead ``hakfuzz.engines.journal.Journal`` is one.
    """

    def begin(self, config: ProgramConfig, threads: int) -> None: ...

    def op(self, op: Op) -> None: ...


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
        self.model = ModelAllocator(Config.from_c_fields(config.as_c_fields()))
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
        self._step, self._run_range = lockstep(executor, self.model, self.handles)

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
        except Stop as stop:
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
        except Stop as stop:
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
            except Stop as stop:
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
        if self.x.on_program_end is not None:  # the counters as the program left them
            self.x.lib.hak_stats(self.x._stats)
            self.x.on_program_end(self.config, STATS.unpack(self.x._stats_buf[:]))
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

    def __init__(self, hak: HakmemModule) -> None:
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
        offsets = tuple(ffi.offsetof("hak_location_t", n) for n in LOCATION_NAMES)
        if (
            ffi.sizeof("hak_location_t") != LOCATION.size
            or offsets != (0, 4, 8, 16, 20)
            or ffi.sizeof("hak_stats_t") != STATS.size
        ):
            raise RuntimeError("hak_location_t or hak_stats_t does not have the expected layout")
        self.ops_run = 0
        self.journal: OpJournal | None = None
        """Write-ahead log of ops (crash isolation); set by campaign workers."""
        self.features: set[tuple[int, tuple[int, ...]]] | None = None
        """When a set: collects (op kind, counters it changed), a behaviour coverage."""
        self._prev_stats: bytes | None = None
        self.on_program_end: Callable[[ProgramConfig, tuple[int, ...]], None] | None = None
        """When set: called with each program's config and final counters (the engines
        count the milestones it reached)."""

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
            verify_block(self.ffi, end, Op(OpKind.VERIFY, 0, handle), h)
        check_both(self, model, end, Op.check())


def run_differential(
    hak: HakmemModule,
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
    prefix = dataclasses.replace(program, ops=program.ops[:cut])
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
