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

Why whole programs and not op-by-op lockstep as for hakmem: the target lives
in another process, and a program runs there in one forked child; replaying
each growing prefix would cost one fork per op.  Hypothesis still shrinks
rule by rule, because the failure is raised from teardown.
"""

from __future__ import annotations

import time
from typing import ClassVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from hakfuzz.differential.driver import judge
from hakfuzz.differential.foreign_server import ForeignServer
from hakfuzz.engines.journal import Journal
from hakfuzz.engines.statemachine import MAX_THREADS, AllocatorMachine
from hakfuzz.engines.strategies import configs
from hakfuzz.findings import Finding
from hakfuzz.program import Op, Program, ProgramConfig, dump_program, save_program


class OutOfTime(BaseException):
    """Raised from teardown past :attr:`ForeignMachine.stop_at`.

    A BaseException, so Hypothesis does not take it for a failure to shrink:
    it ends the run at once, and the findings recorded so far stand.
    """


class ForeignMachine(AllocatorMachine):
    """AllocatorMachine's rules, run as one Program on :attr:`server` at teardown."""

    server: ClassVar[ForeignServer | None] = None
    """Where programs run; set before the machine runs."""
    journal: ClassVar[Journal | None] = None
    findings: ClassVar[list[Finding]] = []
    programs_run: ClassVar[int] = 0
    ops_run: ClassVar[int] = 0
    outcomes: ClassVar[set[str]] = set()
    """Distinct results seen: ``ok`` and each finding's signature."""
    stop_at: ClassVar[float] = float("inf")
    """Unix time after which the run ends (:class:`OutOfTime`): shrinking has no
    time limit of its own, so a failure found near the deadline keeps the
    smallest program shrunk by then."""

    def __init__(self) -> None:
        super().__init__()
        self.config: ProgramConfig | None = None
        self.threads = 1
        self.ops: list[Op] = []

    @initialize(config=configs(tiny_caps=True), threads=st.integers(1, MAX_THREADS))
    def start(self, config: ProgramConfig, threads: int) -> None:
        self.config, self.threads = config, threads
        if type(self).journal is not None:
            type(self).journal.begin(config, threads)  # type: ignore[union-attr]

    def _thread(self, thread: int) -> int:
        return thread % self.threads

    def _do(self, op: Op) -> None:
        self.ops.append(op)
        if type(self).journal is not None:
            type(self).journal.op(op)  # type: ignore[union-attr]

    def program(self) -> Program:
        """The Program the rules built so far."""
        assert self.config is not None
        program = Program(
            description="hypothesis (foreign target)",
            config=self.config,
            threads=self.threads,
            ops=tuple(self.ops),
        )
        server = type(self).server
        return program if server is None else server.stamp(program)

    def teardown(self) -> None:
        cls = type(self)
        server = cls.server
        if server is None or self.config is None:
            return
        if time.time() > cls.stop_at:
            raise OutOfTime
        program = self.program()
        run = server.run(program)
        cls.programs_run += 1
        cls.ops_run += len(program.ops)
        finding = judge(run, program, variant=cls.variant, seed=None, engine="hypothesis")
        if cls.journal is not None:
            cls.journal.clear()
        if finding is None:
            cls.outcomes.add("ok")
            return
        finding.extra["target"] = server.target.as_json()
        cls.outcomes.add(finding.signature)
        cls.findings.append(finding)
        note(dump_program(program))
        if cls.save_dir is not None:
            cls.save_dir.mkdir(parents=True, exist_ok=True)
            save_program(program, cls.save_dir / f"{finding.signature}.json")
        raise AssertionError(finding.summary())
