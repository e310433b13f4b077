"""The ``thread_churn`` workload: thread lifetimes at the scale of the larson crash.

The crash this stands for came from a 4-thread larson run: a size class ran
out of SuperSlabs, the allocator fell back to glibc, and glibc's pointers
later reached the allocator's free from other threads, with threads starting
and exiting all the while.  The other workloads stay within the ops of a
Program (at most 16 threads, in program order); this one adds a churn
section (``hakfuzz.program.churn``): thousands of lifetimes on 17 to 64
concurrent pthreads (far more than the cores), under a config that caps
growth so the glibc fallback happens mid-churn.  A short prelude of ops
leaves orphaned slabs and live glibc blocks behind for the churn to meet.

Same contract as :mod:`hakfuzz.engines.parallel.generators`: ``(seed, threads, ops,
libc_ratio) -> Program``, the same Program for the same arguments.  ``ops``
sets the number of lifetimes (a quarter of it, at least 64), so a larger op
budget means more churn; ``threads`` sets the prelude's program threads.
"""

from __future__ import annotations

import random

from hakfuzz.model.limits import SS_SIZE
from hakfuzz.program import MAX_THREADS, ChurnSpec, Op, Program, ProgramConfig
from hakfuzz.program.churn import MAX_CHURN_LIFETIMES

CHURN_SECONDS = 5.0
"""The wall-time bound of one program's churn: the lifetimes bound comes
first on a release build, the time bound keeps sanitizer builds short."""
_CHURN_THREADS = (17, 24, 32, 48, 64, 64)
_BLOCKS = (4, 8, 16, 32)


def _config(rnd: random.Random) -> ProgramConfig:
    """Mostly a capped config (the fallback to glibc under churn), sometimes none."""
    roll = rnd.random()
    cache_cap = rnd.choice((0, 4, 16, 64))
    refill = min(rnd.choice((1, 4, 16)), cache_cap) if cache_cap else 1
    if roll < 0.25:
        return ProgramConfig(cache_cap=cache_cap, refill_batch=refill)
    if roll < 0.6:
        return ProgramConfig(ss_cap=rnd.choice((1, 1, 2)), cache_cap=cache_cap,
                             refill_batch=refill, ss_keep=rnd.choice((0, 1, 2)))
    if roll < 0.9:
        return ProgramConfig(budget_bytes=SS_SIZE * rnd.choice((1, 2, 3)), cache_cap=cache_cap,
                             refill_batch=refill, ss_keep=rnd.choice((0, 1)))
    return ProgramConfig(ss_cap=1, oom_policy="null", cache_cap=cache_cap, refill_batch=refill)


def _prelude(rnd: random.Random, threads: int, libc_ratio: float) -> list[Op]:
    """Ops that leave orphaned slabs and live glibc blocks for the churn to meet.

    Each program thread allocates, frees some of another's blocks, and exits
    holding the rest.
    """
    ops: list[Op] = []
    mine: list[list[int]] = [[] for _ in range(threads)]
    handle = 0
    for t in range(threads):
        for _ in range(rnd.randint(4, 12)):
            size = rnd.choice((8, 24, 64, 200, 512, 1024, 3000))
            if rnd.random() < libc_ratio:
                ops.append(Op.libc_alloc(handle, size, t))
            else:
                ops.append(Op.alloc(handle, size, t))
            mine[t].append(handle)
            handle += 1
    for t in range(threads):
        other = mine[(t + 1) % threads]
        for h in other[: len(other) // 2]:
            ops.append(Op.free(h, t))
        del other[: len(other) // 2]
        ops.append(Op.thread_exit(t))
    return ops


def thread_churn(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """A short prelude, then thousands of lifetimes on more than 16 pthreads."""
    rnd = random.Random(f"thread_churn {seed}")
    program_threads = max(1, min(threads, MAX_THREADS))
    spec = ChurnSpec(
        threads=rnd.choice(_CHURN_THREADS),
        lifetimes=max(64, min(ops // 4, MAX_CHURN_LIFETIMES)),
        seconds=CHURN_SECONDS,
        seed=rnd.getrandbits(32),
        blocks=rnd.choice(_BLOCKS),
        libc_ratio=round(min(1.0, max(0.0, libc_ratio)), 3),
    )
    return Program(
        description=f"thread churn: {spec.lifetimes} lifetimes on {spec.threads} pthreads",
        config=_config(rnd),
        threads=program_threads,
        ops=tuple(_prelude(rnd, program_threads, libc_ratio)),
        churn=spec,
    )


CHURN_WORKLOADS = {"thread_churn": thread_churn}
"""Workloads to register in :data:`hakfuzz.engines.parallel.workloads.WORKLOADS`."""

__all__ = ["CHURN_SECONDS", "CHURN_WORKLOADS", "thread_churn"]
