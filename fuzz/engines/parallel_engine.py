"""Campaign engine ``parallel``: seeded workloads on real pthreads.

Each exec generates one program (a workload chosen round-robin, seed from
the job), journals it, runs it in the C driver and judges it (driver oracles,
then the model's invariant mode on the final counters).  Coverage counts
distinct behaviours: (workload, which counters ended non-zero, which oracle
or signal).  A workload with a churn section (``thread_churn``) counts its
block allocations as ops, and its lifetimes and peak threads as milestones.

With a foreign ``target`` the programs run in the foreign driver under the
target's ``LD_PRELOAD`` (as ``hakfuzz stress --allocator`` does), glibc's
blocks freed by the target when ``foreign_frees``; the oracles are the
allocator-neutral ones, no model, and every run must be served by the target.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from hakfuzz.differential.driver import run_driver
from hakfuzz.differential.wire import to_wire
from hakfuzz.engines.configs import swarm_config
from hakfuzz.engines.events import Emitter
from hakfuzz.engines.foreign_run import judge_foreign_run, run_foreign
from hakfuzz.engines.journal import Journal
from hakfuzz.engines.parallel.stress import judge_run
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.engines.reached import Counter, driver_churn, driver_stats
from hakfuzz.program import Program
from hakfuzz.program.churn import churn_weight
from hakfuzz.targets import Target
from hakfuzz.variants import tool

_COUNTERS = ("ss_released", "fallback_allocs", "oom_nulls")


def make_program(
    name: str, program_seed: int, n: int, threads: int, program_ops: int, *, foreign: bool
) -> Program:
    """The ``n``-th program (from 1) of workload ``name``; every third at a config boundary."""
    program = WORKLOADS[name](program_seed, threads, program_ops, 0.3)
    if n % 3 == 0:  # swarm: a third of the programs run at a config boundary
        config = swarm_config(random.Random(program_seed))
        if foreign:
            # A preloaded target serves the C library too (pthread_create's own
            # allocations): with the null policy they fail by design, not by a bug.
            config = replace(config, oom_policy="libc")
        program = replace(program, config=config)
    return program


def run(  # noqa: D103 - see the module docstring
    emit: Emitter,
    journal: Journal,
    *,
    seed: int,
    deadline: float,
    variant: str,
    threads: int = 4,
    program_ops: int = 4000,
    tree: object | None = None,
    target: Target | None = None,
    foreign_frees: bool = True,
    target_config: Mapping[str, str] | None = None,
) -> None:
    pairs = tuple((target_config or {}).items()) if target is not None else ()
    if target is not None:

        tool("hakdriver-foreign", variant)
    else:
        driver = tool("hakdriver", variant)
    names = list(WORKLOADS)
    features: set[tuple[str, ...]] = set()
    reached = Counter()
    execs = ops = 0
    n = 0
    while time.time() < deadline:
        name = names[n % len(names)]
        program_seed = seed * 1_000_003 + n
        n += 1
        program = make_program(name, program_seed, n, threads, program_ops,
                               foreign=target is not None)
        if pairs:  # the target's options ride in the program: a finding replays with them
            program = replace(program, target_config=pairs)
        wire = to_wire(program)
        journal.begin(program.config, program.threads, program.churn)
        for op in program.ops:
            journal.op(op)
        timeout = max(10.0, deadline - time.time() + 10)
        if target is None:
            result = run_driver(driver, program, timeout=timeout, wire=wire)
            finding = judge_run(result, program, variant=variant, seed=program_seed)
        else:
            result = run_foreign(program, target, foreign_frees, variant, timeout=timeout)
            finding = judge_foreign_run(result, program, target, foreign_frees, variant,
                                        seed=program_seed)
        journal.clear()
        execs += 1
        ops += len(program.ops) + churn_weight(program.churn)
        reached.program(program.config, driver_stats(result.result), driver_churn(result.result))
        stats = (result.result or {}).get("stats") or {}
        nonzero = tuple(
            sorted(
                {
                    f"{c}:{i}"
                    for c, cls in enumerate(stats.get("classes", []))
                    for i, v in enumerate(cls)
                    if v and i in (2, 6, 7)
                }
            )
        )
        features.add((name, *nonzero, finding.signature if finding else "pass"))
        if finding is not None:
            emit.finding(finding)
        emit.stats(execs, ops, len(features), reached=reached.counts)
    emit.stats(execs, ops, len(features), force=True, reached=reached.counts)


__all__ = ["Path", "make_program", "run"]
