"""The Hypothesis engine: a state machine over model and native, op by op.

Any divergence shrinks to a minimal Program.

Bundles hold live handles; rules cover every op kind of
``hakfuzz-program/2``, including glibc pointers freed through ``hak_free``,
realloc across owners, the ops on NULL, usable sizes and glibc blocks past
its mmap threshold (at most MAX_BIG_LIVE live: a size that would make one
more is cut to 16 bits), on up to three program threads (real pthreads,
serialised, so the model predicts every counter).  Configs come from
:func:`hakfuzz.engines.strategies.configs` (each option at its default, a boundary
value or anywhere in its range, swarm-style), and one rule per program may
run a macro (:mod:`hakfuzz.program.macros`: a class filled to its cap, a SuperSlab
exhausted and released, thread lifetimes), so growth, fallback, NULL and
release happen within a few steps.
Every step compares every ``hak_stats`` counter; ``check`` runs ``hak_check``
and the model's self-check; teardown verifies all live blocks.

What a run drives and records lives in a :class:`MachineContext` (the
executor, the variant, where failing programs go, the counters and the
findings); :func:`bind` makes a machine class for one context, because
Hypothesis instantiates the class with no arguments.  An unbound machine
makes a context of its own per example, over the default variant.

A failure prints the reproducing Program (``note``), records a
:class:`~hakfuzz.findings.Finding` in the context and, when the context's
``save_dir`` is set, writes the program to ``<save_dir>/<signature>.json``;
Hypothesis replays the shrunk example last, so the file left behind is the
minimal one.

Runs unchanged under plain pytest (``TestAllocatorMachine``) and HypoFuzz.
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar, cast

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    multiple,
    precondition,
    rule,
)

from hakfuzz import native
from hakfuzz.differential.executor import DifferentialExecutor, DifferentialSession, Divergence
from hakfuzz.engines.strategies import ALIGNED_ALLOC_ALIGNS, ALIGNS, configs, sizes
from hakfuzz.findings import Finding
from hakfuzz.native import HakmemModule
from hakfuzz.program import MAX_BIG_LIVE, Op, ProgramConfig, dump_program, save_program
from hakfuzz.program.macros import Macro, expand
from hakfuzz.program.model import MAX_OPS, MAX_SIZE, OVERFLOW_COUNT

MAX_THREADS = 3


@dataclass(eq=False)
class MachineContext:
    """One run of the state machine: what it drives and what it records.

    ``executor`` is built on first use over ``hak`` (default: the default
    variant), so a context that never steps natively (a foreign target's)
    loads nothing.
    """

    hak: HakmemModule | None = None
    executor: DifferentialExecutor | None = None
    variant: str = "release"
    save_dir: Path | None = None
    """Where failing programs are written (None: nowhere)."""
    programs_run: int = 0
    findings: list[Finding] = field(default_factory=list)
    stop_at: float = float("inf")
    """Unix time after which the run ends (:class:`OutOfTime`, raised as the
    next example starts): shrinking has no time limit of its own, so a
    failure met near the deadline keeps the smallest program shrunk by then,
    and a worker told to stop is not kept past its deadline by a shrink."""

    def differential(self) -> DifferentialExecutor:
        """The executor of this run (built on first use)."""
        if self.executor is None:
            self.executor = DifferentialExecutor(self.hak if self.hak is not None
                                                 else native.load())
        return self.executor


class OutOfTime(BaseException):
    """Raised as an example starts past the context's ``stop_at``.

    A BaseException, so Hypothesis does not take it for a failure to shrink:
    it ends the run at once, and the findings recorded so far stand.
    """


M = TypeVar("M", bound="AllocatorMachine")


def bind_class(machine: type[M], context: MachineContext) -> type[M]:
    """A subclass of ``machine`` whose every instance records into ``context``.

    It keeps the machine's name, qualified name and module, so Hypothesis
    finds the same source for it and keys the example database as for
    ``machine`` itself: workers sharing a database replay each other's examples.
    """
    namespace = {"_bound": context, "__module__": machine.__module__,
                 "__qualname__": machine.__qualname__}
    return cast("type[M]", types.new_class(machine.__name__, (machine,),
                                           exec_body=lambda ns: ns.update(namespace)))


def bind(context: MachineContext) -> type[AllocatorMachine]:
    """The machine class of one run: model vs native on ``context``'s executor."""
    return bind_class(AllocatorMachine, context)


threads_st = st.integers(0, MAX_THREADS - 1)
big_ok_sizes = sizes(big=True)

MACRO_OPS = 4200
"""The most ops the machine's macro expands to: a class-7 or class-6 SuperSlab and a
few blocks more (a macro runs in one step; examples stay fast)."""


class AllocatorMachine(RuleBasedStateMachine):
    """Model vs native, one op per rule."""

    live = Bundle("live")

    _bound: ClassVar[MachineContext | None] = None
    """The context of a class made by :func:`bind` (set once, when the class is made)."""

    def __init__(self) -> None:
        super().__init__()
        self.context = self._context()
        self.session: DifferentialSession | None = None
        self.next_handle = 0
        self.failed = False
        self.big: set[int] = set()  # live handles holding a size above MAX_SIZE
        self.macros = 0

    def _context(self) -> MachineContext:
        return type(self)._bound or MachineContext()

    # ---- set-up and helpers ---------------------------------------------------
    @initialize(config=configs(tiny_caps=True), threads=st.integers(1, MAX_THREADS),
                macros=st.booleans())
    def start(self, config: ProgramConfig, threads: int, macros: bool) -> None:
        # One macro in half the programs: each runs thousands of ops, and a
        # shrunk program (macros False) has none.
        self.macros = 0 if macros else 1
        if time.time() > self.context.stop_at:
            raise OutOfTime
        self.session = self.context.differential().session(config, threads)
        self.context.programs_run += 1
        if self.session.divergence is not None:
            self._fail(self.session.divergence)

    def _thread(self, thread: int) -> int:
        assert self.session is not None
        return thread % self.session.threads

    def _new(self) -> int:
        handle = self.next_handle
        self.next_handle += 1
        return handle

    def _fit(self, handle: int, size: int) -> int:
        """``size`` for ``handle``, cut to 16 bits if it would be one big block too many."""
        if size > MAX_SIZE:
            if handle in self.big or len(self.big) < MAX_BIG_LIVE:
                self.big.add(handle)
                return size
            size &= 0xFFFF
        self.big.discard(handle)
        return size

    def _frame(self) -> tuple[ProgramConfig, int, int]:
        """The config, the thread count and the number of ops of the program so far."""
        assert self.session is not None
        return self.session.config, self.session.threads, len(self.session.ops)

    def _do(self, op: Op) -> None:
        assert self.session is not None
        divergence = self.session.step(op)
        if divergence is not None:
            self._fail(divergence)

    def _do_all(self, ops: tuple[Op, ...]) -> None:
        assert self.session is not None
        divergence = self.session.step_all(ops)
        if divergence is not None:
            self._fail(divergence)

    def _fail(self, divergence: Divergence) -> None:
        assert self.session is not None
        self.failed = True
        program = self.session.program(f"hypothesis: {divergence.describe()}")
        finding = Finding(
            "hypothesis",
            "divergence",
            divergence.field,
            divergence.describe(),
            program,
            divergence.op_index if divergence.op_index >= 0 else None,
            self.context.variant,
        )
        self.context.findings.append(finding)
        note(dump_program(program))
        save_dir = self.context.save_dir
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            save_program(program, save_dir / f"{finding.signature}.json")
        raise AssertionError(divergence.describe())

    # ---- allocation rules -----------------------------------------------------------
    @rule(target=live, thread=threads_st, size=big_ok_sizes)
    def alloc(self, thread: int, size: int) -> int:
        handle = self._new()
        self._do(Op.alloc(handle, self._fit(handle, size), self._thread(thread)))
        return handle

    @rule(target=live, thread=threads_st, size=big_ok_sizes)
    def libc_alloc(self, thread: int, size: int) -> int:
        handle = self._new()
        self._do(Op.libc_alloc(handle, self._fit(handle, size), self._thread(thread)))
        return handle

    @rule(target=live, thread=threads_st, size=big_ok_sizes)
    def realloc_null(self, thread: int, size: int) -> int:
        handle = self._new()
        self._do(Op.realloc_null(handle, self._fit(handle, size), self._thread(thread)))
        return handle

    @rule(
        target=live,
        thread=threads_st,
        count=st.one_of(st.integers(0, 40), st.just(OVERFLOW_COUNT)),
        size=st.integers(0, 300),
    )
    def calloc(self, thread: int, count: int, size: int) -> int:
        handle = self._new()
        if count == OVERFLOW_COUNT:
            size = max(size, 2)  # count * size overflows: NULL/ENOMEM expected
        self._do(Op.calloc(handle, count, size, self._thread(thread)))
        return handle

    @rule(target=live, thread=threads_st, align=st.sampled_from(ALIGNS), size=big_ok_sizes)
    def memalign(self, thread: int, align: int, size: int) -> int:
        handle = self._new()
        self._do(Op.memalign(handle, align, self._fit(handle, size), self._thread(thread)))
        return handle

    @rule(target=live, thread=threads_st, align=st.sampled_from(ALIGNED_ALLOC_ALIGNS),
          size=big_ok_sizes)
    def aligned_alloc(self, thread: int, align: int, size: int) -> int:
        handle = self._new()
        self._do(Op.aligned_alloc(handle, align, self._fit(handle, size), self._thread(thread)))
        return handle

    @rule(target=live, handle=consumes(live), thread=threads_st, size=big_ok_sizes)
    def realloc(self, handle: int, thread: int, size: int) -> int | MultipleResults[int]:
        size = self._fit(handle, size)
        self._do(Op.realloc(handle, size, self._thread(thread)))
        return multiple() if size == 0 else handle

    @rule(handle=consumes(live), thread=threads_st)
    def free(self, handle: int, thread: int) -> None:
        self.big.discard(handle)
        self._do(Op.free(handle, self._thread(thread)))

    @rule(thread=threads_st)
    def free_null(self, thread: int) -> None:
        self._do(Op.free_null(self._thread(thread)))

    @rule(handle=live, thread=threads_st)
    def usable_size(self, handle: int, thread: int) -> None:
        self._do(Op.usable_size(handle, self._thread(thread)))

    @rule(thread=threads_st)
    def usable_size_null(self, thread: int) -> None:
        self._do(Op.usable_size_null(self._thread(thread)))

    # ---- macros: deep states, as plain ops ----------------------------------------------
    @precondition(lambda self: self.macros < 1)
    @rule(macro=st.integers(0, len(Macro) - 1), arg=st.integers(0, 255))
    def macro(self, macro: int, arg: int) -> None:
        """A macro of hakfuzz.program.macros.

        The blocks it leaves live stay out of the bundle: they keep a class at
        its cap for the rules that follow, and a failure shrinks to the rules'
        own blocks (a bundle of thousands would also print as thousands).
        """
        self.macros += 1
        config, threads, done = self._frame()
        expansion = expand(macro, arg, config=config, threads=threads,
                           first_handle=self.next_handle, room=min(MACRO_OPS, MAX_OPS - done))
        self.next_handle += expansion.created
        self._do_all(expansion.ops)

    # ---- contents and threads ---------------------------------------------------------
    @rule(handle=live, thread=threads_st, seed=st.integers(0, 255))
    def write(self, handle: int, thread: int, seed: int) -> None:
        self._do(Op.write(handle, seed, self._thread(thread)))

    @rule(handle=live, thread=threads_st)
    def verify(self, handle: int, thread: int) -> None:
        self._do(Op.verify(handle, self._thread(thread)))

    @rule(thread=threads_st)
    def flush(self, thread: int) -> None:
        self._do(Op.flush(self._thread(thread)))

    @rule(thread=threads_st)
    def thread_exit(self, thread: int) -> None:
        self._do(Op.thread_exit(self._thread(thread)))

    @rule(thread=threads_st)
    def check(self, thread: int) -> None:
        self._do(Op.check(self._thread(thread)))

    def teardown(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        try:
            divergence = session.finish()
            if divergence is not None and not self.failed:
                self.session = session
                self._fail(divergence)
        finally:
            self.session = None
            session.close()
