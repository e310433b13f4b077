"""Extra seeded workloads (same contract as :mod:`hakfuzz.engines.parallel.generators`).

- ``remote_storm``: one owner thread allocates batches of one class with the
  thread caches off, and every other thread frees an interleaved share of
  each batch at once, so several threads push onto the *same* slab's remote
  stack at the same moment while the owner, allocating the next batch,
  drains it.  The existing workloads free cross-thread mostly through cache
  drains spread over many slabs, where two pushes to one remote stack
  rarely meet; a lost or duplicated push (a non-atomic remote push, a push
  racing the owner's drain or the orphaning exchange) shows up here as a
  leak at quiescence, an overlap, or a broken slab in ``hak_check``.
"""

from __future__ import annotations

import random

from hakfuzz.model.limits import CACHE_CAP_MAX, CLASS_SIZES
from hakfuzz.program import MAX_OPS, Op, Program, ProgramConfig
from hakfuzz.program.macros import SS_BLOCKS

_STORM_SIZES = (16, 64, 256)


def remote_storm(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """Many threads free one owner's fresh blocks at once (caches off): remote-push races."""
    rnd = random.Random(seed)
    threads = max(3, threads)
    freers = list(range(1, threads))
    budget = max(1, min(ops, MAX_OPS))
    out: list[Op] = []
    next_handle = 0
    rounds = 0
    while len(out) < budget:
        rounds += 1
        size = rnd.choice(_STORM_SIZES)
        batch = rnd.randint(64, 256)
        handles = []
        for _ in range(batch):
            if rnd.random() < libc_ratio * 0.2:
                out.append(Op.libc_alloc(next_handle, size, 0))
            else:
                out.append(Op.alloc(next_handle, size, 0))
            handles.append(next_handle)
            next_handle += 1
        start = rnd.randrange(len(freers))
        for i, handle in enumerate(handles):
            out.append(Op.free(handle, freers[(start + i) % len(freers)]))
        if rounds % 8 == 0:
            out.append(Op.check(0))
    ops_kept = _cut(out, budget)
    config = ProgramConfig(cache_cap=0, ss_keep=rnd.choice((0, 2)))
    return Program(description="remote storm: many threads push to one slab's remote stack",
                   config=config, threads=threads, ops=tuple(ops_kept))


def _cut(ops: list[Op], budget: int) -> list[Op]:
    """At most ``budget`` ops, without frees of handles the cut left uncreated."""
    kept = ops[:budget]
    created = {op.handle for op in kept if op.kind.name in ("ALLOC", "LIBC_ALLOC")}
    return [op for op in kept if op.kind.name in ("ALLOC", "LIBC_ALLOC", "CHECK")
            or op.handle in created]


def fill_to_cap(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """Fill one class past its cap (one SuperSlab), then free every block: a macro op.

    The cap binds in the middle of a refill batch that does not divide the
    SuperSlab's blocks, with the caches on or off, so the paths that run out
    part-way (a refill cut short, the fallback or NULL that follows, the
    counters they touch) run in every such program; frees come from every
    thread, and a check closes the program.
    """
    rnd = random.Random(seed)
    class_idx = rnd.choice((5, 6, 7))  # 256 B .. 1 KiB: one SuperSlab fits the op budget
    size = CLASS_SIZES[class_idx] - rnd.choice((0, 1))
    capacity = SS_BLOCKS[class_idx]
    threads = max(1, threads)
    extra = rnd.randint(threads + 1, 64)
    blocks = min(capacity + extra, (MAX_OPS - 1) // 2)
    config = ProgramConfig(
        ss_cap=1,
        oom_policy=rnd.choice(("libc", "null")),
        cache_cap=rnd.choice((0, 1, 4, 64, CACHE_CAP_MAX)),
        refill_batch=rnd.choice((1, 7, 16, 100, CACHE_CAP_MAX)),
        ss_keep=rnd.choice((0, 2)),
    )
    out = [Op.alloc(h, size, 0) for h in range(blocks)]
    # Each thread first frees one of the last blocks made: a cross-thread op waits
    # for its handle, so no block comes back before the cap has bound.
    last = list(range(blocks - threads, blocks))
    out += [Op.free(h, t) for t, h in enumerate(last)]
    out += [Op.free(h, rnd.randrange(threads)) for h in rnd.sample(range(blocks - threads),
                                                                    blocks - threads)]
    out.append(Op.check(0))
    return Program(description=f"fill class {class_idx} past one SuperSlab, then free it all",
                   config=config, threads=threads, ops=tuple(out))


EXTRA_WORKLOADS = {"remote_storm": remote_storm, "fill_to_cap": fill_to_cap}
"""Workloads to register in :data:`hakfuzz.engines.parallel.workloads.WORKLOADS`."""

__all__ = ["EXTRA_WORKLOADS", "fill_to_cap", "remote_storm"]
