"""Campaign engine ``hypothesis``: the state machine, in batches, until a deadline.

Every op is journalled before it runs natively.  Workers share one
example database, so a failure one worker found is replayed first by all;
coverage counts distinct (op kind, counters it changed) behaviours.

With a ``target`` (a foreign allocator), the same rules build whole
Programs that run on the target in a serving child
(:mod:`hakfuzz.engines.foreign_machine`): invariant mode, the foreign driver's
allocator-neutral oracles, no model; coverage counts distinct outcomes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    MultiplexedDatabase,
)
from hypothesis.stateful import run_state_machine_as_test

from hakfuzz.differential.executor import DifferentialExecutor
from hakfuzz.differential.foreign_server import ForeignServer
from hakfuzz.engines import foreign_machine, statemachine
from hakfuzz.engines.events import Emitter
from hakfuzz.engines.foreign_machine import ForeignContext
from hakfuzz.engines.journal import Journal
from hakfuzz.engines.reached import Counter
from hakfuzz.native import HakmemModule
from hakfuzz.program import ProgramConfig
from hakfuzz.targets import Target
from hakfuzz.variants import load_module

_SHRINK_GRACE_S = 5.0
"""How long past the deadline a failure may still shrink (the supervisor waits 30 s)."""

FOREIGN_CAPABLE = True
"""This engine runs against a foreign target (``run(..., target=...)``)."""


def example_database(spec: str | None, local: Path | None = None) -> ExampleDatabase | None:
    """The example database ``spec`` names.

    A directory, or ``redis://host:port/db`` (Hypothesis's Redis database, for
    workers on several machines; needs the ``redis`` package).  A Redis
    database is paired with the ``local`` directory, and its errors are
    swallowed: a Redis outage must not stop a worker, and examples saved
    meanwhile stay on this machine.
    """
    if not spec:
        return None
    if spec.startswith("redis://"):
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase

        shared = _Tolerant(RedisExampleDatabase(redis.Redis.from_url(spec, socket_timeout=2.0)))
        if local is None:
            return shared
        return MultiplexedDatabase(DirectoryBasedExampleDatabase(str(local)), shared)
    return DirectoryBasedExampleDatabase(str(Path(spec)))


class _Tolerant(ExampleDatabase):
    """A database whose failures (a server gone away) read as empty and write as nothing."""

    def __init__(self, inner: ExampleDatabase) -> None:
        super().__init__()
        self.inner = inner

    def save(self, key: bytes, value: bytes) -> None:
        with contextlib.suppress(Exception):
            self.inner.save(key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        try:
            return list(self.inner.fetch(key))
        except Exception:
            return []

    def delete(self, key: bytes, value: bytes) -> None:
        with contextlib.suppress(Exception):
            self.inner.delete(key, value)


def _settings(db: ExampleDatabase | None, steps: int) -> settings:
    return settings(
        max_examples=20,
        stateful_step_count=steps,
        deadline=None,
        database=db,
        derandomize=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


def _run_foreign(
    emit: Emitter,
    journal: Journal,
    *,
    deadline: float,
    variant: str,
    db: ExampleDatabase | None,
    steps: int,
    target: Target,
    foreign_frees: bool,
    target_config: Mapping[str, str] | None,
) -> None:
    """The state machine's programs on ``target``, through a serving child."""
    with ForeignServer(target, foreign_frees=foreign_frees, configure=target_config,
                       variant=variant) as server:
        if server.configure_ignored:
            emit.notice(f"{target.name} has no hakfuzz_configure: the configure options "
                        "are not applied")
        ctx = ForeignContext(variant=variant, server=server, journal=journal,
                             stop_at=deadline + _SHRINK_GRACE_S)

        def progress(force: bool = False) -> None:
            emit.stats(ctx.programs_run, ctx.ops_run, len(ctx.outcomes), force=force)

        ctx.on_program = progress
        _batches(emit, journal, foreign_machine.bind(ctx), ctx, deadline=deadline,
                 run_settings=_settings(db, steps), progress=progress)


def _batches(
    emit: Emitter,
    journal: Journal,
    machine: type[statemachine.AllocatorMachine],
    ctx: statemachine.MachineContext,
    *,
    deadline: float,
    run_settings: settings,
    progress: Callable[[bool], None],
) -> None:
    """Batches of ``machine`` until the deadline, each batch's findings sent as it ends.

    Progress also goes out per program (the callers' hooks call ``progress``):
    a batch of long programs, or a shrink, can outlast a short campaign.
    """
    reported = 0
    while time.time() < deadline:
        try:
            run_state_machine_as_test(  # type: ignore[no-untyped-call,unused-ignore]
                machine, settings=run_settings
            )
        except (AssertionError, statemachine.OutOfTime):
            pass  # the machine recorded the finding (shrunk) before raising
        except Exception as exc:  # a bug of ours, not the allocator's: say it, keep going
            emit.notice(f"hypothesis engine: {type(exc).__name__}: {exc}")
        journal.clear()
        # During shrinking the machine records every failing example; the
        # last one of each signature is the shrunk one.
        last = {f.signature: f for f in ctx.findings[reported:]}
        for finding in last.values():
            emit.finding(finding)
        reported = len(ctx.findings)
        progress(False)
    progress(True)


def run(  # noqa: D103 - see the module docstring
    emit: Emitter,
    journal: Journal,
    *,
    seed: int,
    deadline: float,
    variant: str,
    database: str | None = None,
    local_database: Path | None = None,
    steps: int = 80,
    target: Target | None = None,
    foreign_frees: bool = True,
    target_config: Mapping[str, str] | None = None,
    hak: HakmemModule | None = None,
) -> None:
    if target is not None:
        _run_foreign(emit, journal, deadline=deadline, variant=variant, db=example_database(
            database, local_database), steps=steps, target=target, foreign_frees=foreign_frees,
            target_config=target_config)
        return
    ex = DifferentialExecutor(hak if hak is not None else load_module(variant))
    ex.journal = journal
    features: set[tuple[int, tuple[int, ...]]] = set()
    ex.features = features
    ctx = statemachine.MachineContext(executor=ex, variant=variant,
                                      stop_at=deadline + _SHRINK_GRACE_S)
    reached = Counter()

    def progress(force: bool = False) -> None:
        emit.stats(ctx.programs_run, ex.ops_run, len(features), force=force,
                   reached=reached.counts)

    def program_end(config: ProgramConfig, stats: tuple[int, ...]) -> None:
        reached.program(config, stats)
        progress()

    ex.on_program_end = program_end
    _batches(emit, journal, statemachine.bind(ctx), ctx, deadline=deadline,
             run_settings=_settings(example_database(database, local_database), steps),
             progress=progress)
