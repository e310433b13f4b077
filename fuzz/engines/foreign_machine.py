"""The Hypothesis state machine against a foreign allocator: invariant mode, no model.

:class:`ForeignMachine` keeps every rule of
:class:`~hakfuzz.engines.statemachine.AllocatorMachine` (so the same op mix, the
same tiny-cap configs, the same shrinking) but executes nothing in this
process: each rule appends its op to the Program being built (and to the
journal), and teardown runs the whole Program once on the target through
a :class:`~hakfuzz.differential.foreign_server.ForeignServer`.  The checks are
the foreign driver's allocator-neutral oracles (fill patterns, usable size,
alignment, overlap, calloc, realloc, NULL ops, the target's ``hakfuzz_*``
hooks) and any crash, judged by :func:`hakfuzz.differential.driver.judge`.

A run's server, journal, counters and findings live in a
:class:`ForeignContext`; :func:`bind` makes the machine class of one run.

Why whole programs and not op-by-op lockstep as for hakmem: the target lives
in another process, and a program runs there in one forked child; replaying
each growing prefix would cost one fork per op.  Hypothesis still shrinks
rule by rule, because the failure is raised from teardown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from hakfuzz.differential.driver import judge
from hakfuzz.differential.foreign_server import ForeignServer
from hakfuzz.engines.journal import Journal
from hakfuzz.engines.statemachine import (
    MAX_THREADS,
    AllocatorMachine,
    MachineContext,
    OutOfTime,
    bind_class,
)
from hakfuzz.engines.strategies import configs
from hakfuzz.program import Op, Program, ProgramConfig, dump_program, save_program


@dataclass(eq=False)
class ForeignContext(MachineContext):
    """One run of :class:`ForeignMachine`: where programs run, and what they gave."""

    server: ForeignServer | None = None
    """Where programs run (None: nowhere, the machine only builds them)."""
    journal: Journal | None = None
    ops_run: int = 0
    outcomes: set[str] = field(default_factory=set)
    """Distinct results seen: ``ok`` and each finding's signature."""
    on_program: Callable[[], None] | None = None
    """Called after each program has run and been judged (the engine's progress)."""


def bind(context: ForeignContext) -> type[ForeignMachine]:
    """The machine class of one run on ``context``'s server."""
    return bind_class(ForeignMachine, context)


class ForeignMachine(AllocatorMachine):
    """AllocatorMachine's rules, run as one Program on the context's server at teardown."""

    _bound: ClassVar[ForeignContext | None] = None
    context: ForeignContext

    def __init__(self) -> None:
        super().__init__()
        self.config: ProgramConfig | None = None
        self.threads = 1
        self.ops: list[Op] = []

    def _context(self) -> ForeignContext:
        return type(self)._bound or ForeignContext()

    @initialize(config=configs(tiny_caps=True), threads=st.integers(1, MAX_THREADS))
    def start(self, config: ProgramConfig, threads: int) -> None:
        self.config, self.threads = config, threads
        if self.context.journal is not None:
            self.context.journal.begin(config, threads)

    def _thread(self, thread: int) -> int:
        return thread % self.threads

    def _do(self, op: Op) -> None:
        self.ops.append(op)
        if self.context.journal is not None:
            self.context.journal.op(op)

    def _do_all(self, ops: tuple[Op, ...]) -> None:
        for op in ops:
            self._do(op)

    def _frame(self) -> tuple[ProgramConfig, int, int]:
        assert self.config is not None
        return self.config, self.threads, len(self.ops)

    def program(self) -> Program:
        """The Program the rules built so far."""
        assert self.config is not None
        program = Program(
            description="hypothesis (foreign target)",
            config=self.config,
            threads=self.threads,
            ops=tuple(self.ops),
        )
        server = self.context.server
        return program if server is None else server.stamp(program)

    def teardown(self) -> None:
        ctx = self.context
        server = ctx.server
        if server is None or self.config is None:
            return
        if time.time() > ctx.stop_at:
            raise OutOfTime
        program = self.program()
        run = server.run(program)
        ctx.programs_run += 1
        ctx.ops_run += len(program.ops)
        finding = judge(run, program, variant=ctx.variant, seed=None, engine="hypothesis")
        if ctx.journal is not None:
            ctx.journal.clear()
        ctx.outcomes.add("ok" if finding is None else finding.signature)
        if ctx.on_program is not None:
            ctx.on_program()
        if finding is None:
            return
        finding.extra["target"] = server.target.as_json()
        ctx.findings.append(finding)
        note(dump_program(program))
        if ctx.save_dir is not None:
            ctx.save_dir.mkdir(parents=True, exist_ok=True)
            save_program(program, ctx.save_dir / f"{finding.signature}.json")
        raise AssertionError(finding.summary())
