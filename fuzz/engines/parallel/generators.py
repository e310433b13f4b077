"""Seeded generators of multi-threaded, mixed glibc/hakmem workloads.

Each generator is a function ``(seed, threads, ops, libc_ratio) -> Program``
that returns the same Program for the same arguments.  ``libc_ratio`` is the
share of allocations made by glibc (``libc_alloc``) that later reach
``hak_free`` — the mixed frees behind ``free(): invalid pointer``.

- ``larson``: larson-like hand-offs: each thread replaces random slots of its
  own array, then ends (``thread_exit``) and a new thread frees what the old
  one allocated; now and then a thread's whole array moves to another thread.
- ``producer_consumer``: half the threads allocate and fill, the other half
  verify and free: every free is remote.
- ``churn``: threads fill their caches and exit holding live blocks
  (orphaned slabs); survivors free those blocks (adoption).
- ``mixed``: every op kind, sizes over every class and above 1024, realloc
  across owners in both directions, frees from any thread; now and then an
  op of ``hakfuzz-program/2`` (realloc from NULL, glibc blocks past its mmap
  threshold, aligned_alloc, usable_size, the ops on NULL).
- ``pressure``: ``mixed`` under tiny SuperSlab caps and both OOM policies, so
  growth, glibc fallback and NULL happen under contention (the shape of the
  original production crash); half the programs start with a macro of
  :mod:`hakfuzz.program.macros` (a class filled to its cap, a SuperSlab exhausted and
  released, thread lifetimes) and run the rest against that heap.
- ``thread_churn`` (``generators_churn``): a churn section, thousands of
  thread lifetimes on 17..64 concurrent pthreads under a capped config.

``mixed`` and ``pressure`` are swarm-style: half the seeds turn off a random
subset of the op kinds besides alloc and free (:func:`swarm_off`), so the
rarer kinds meet without the others in between.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hakfuzz.program import (
    CREATING_KINDS,
    MAX_BIG_LIVE,
    MAX_BIG_SIZE,
    MAX_OPS,
    Op,
    Program,
    ProgramConfig,
)
from hakfuzz.program.macros import expand

Generator = Callable[[int, int, int, float], Program]

_CLASS_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)


def _size(rnd: random.Random) -> int:
    """A size over every class, its edges, and above 1024 now and then."""
    roll = rnd.random()
    if roll < 0.08:
        return rnd.randint(1025, 8192)
    if roll < 0.12:
        return rnd.choice((0, 1, 8, 9, 1023, 1024))
    top = rnd.choice(_CLASS_SIZES)
    return rnd.randint(top // 2 + 1, top) if top > 8 else rnd.randint(1, 8)


SWARM_KINDS: tuple[str, ...] = (
    "calloc", "memalign", "realloc", "write", "verify", "flush", "thread_exit", "check",
)
"""The op kinds of ``_Builder.any_op`` a swarm mask may turn off (alloc and free stay)."""


def swarm_off(seed: int) -> frozenset[str]:
    """The kinds ``mixed`` and ``pressure`` leave out for ``seed``: none for half the seeds.

    A stream of its own, so the other choices of a seed's workload stay as
    they were where no kind is off.
    """
    rnd = random.Random(f"swarm {seed}")
    if rnd.random() < 0.5:
        return frozenset()
    return frozenset(kind for kind in SWARM_KINDS if rnd.random() < 0.5)


V2_RATE = 0.02
"""Share of ``any_op`` calls that also emit one op of hakfuzz-program/2."""

_BIG_SIZES = (128 * 1024 + 1, 1 << 20, MAX_BIG_SIZE)  # past glibc's mmap threshold


class _Builder:
    """Ops over handles, with the live set per thread (program order).

    The ops of hakfuzz-program/2 are drawn from a random stream of their own
    (``v2``), the handles they make live in a list of their own, and they do
    not count against the op budget, so adding them left every other op and
    the config of a seed's workload as they were (the program is about
    ``V2_RATE`` longer).
    """

    def __init__(self, rnd: random.Random, threads: int, libc_ratio: float,
                 v2_seed: str = "", off: frozenset[str] = frozenset()) -> None:
        self.rnd = rnd
        self.off = off  # kinds any_op leaves out (swarm); a free or an alloc instead
        self.threads = threads
        self.libc_ratio = libc_ratio
        self.ops: list[Op] = []
        self.next_handle = 0
        self.live: list[list[int]] = [[] for _ in range(threads)]
        self.v2 = random.Random(f"hakfuzz-program/2 ops {v2_seed}")
        self.v2_live: list[int] = []  # handles the /2 ops made, still live
        self.big: set[int] = set()  # of those, the ones holding a size above 65535
        self.v2_ops = 0  # ops the /2 stream added

    def full(self, budget: int) -> bool:
        return len(self.ops) - self.v2_ops >= budget

    def alloc(self, thread: int, size: int | None = None) -> int:
        handle = self.next_handle
        self.next_handle += 1
        size = _size(self.rnd) if size is None else size
        if self.rnd.random() < self.libc_ratio:
            self.ops.append(Op.libc_alloc(handle, size, thread))
        else:
            self.ops.append(Op.alloc(handle, size, thread))
        return handle

    def free(self, thread: int, handle: int) -> None:
        self.ops.append(Op.free(handle, thread))

    def v2_op(self, thread: int) -> None:
        """One op of hakfuzz-program/2 (from the ``v2`` stream)."""
        v2, ops = self.v2, self.ops
        roll = v2.random()
        handle = self.next_handle
        if roll < 0.25:
            self.next_handle += 1
            size = v2.choice(_BIG_SIZES) if v2.random() < 0.2 else _size(v2)
            if size > 65535 and len(self.big) >= MAX_BIG_LIVE:
                size = 100
            ops.append(Op.realloc_null(handle, size, thread))
            self._made(handle, size)
        elif roll < 0.35:
            if len(self.big) < MAX_BIG_LIVE:
                self.next_handle += 1
                size = v2.choice(_BIG_SIZES)
                ops.append(Op.libc_alloc(handle, size, thread))
                self._made(handle, size)
        elif roll < 0.45:
            self.next_handle += 1
            size = _size(v2)
            ops.append(Op.aligned_alloc(handle, 1 << v2.randrange(13), size, thread))
            self._made(handle, size)
        elif roll < 0.65:
            pool = [h for live in self.live for h in live] + self.v2_live
            if pool:
                ops.append(Op.usable_size(v2.choice(pool), thread))
        elif roll < 0.72:
            ops.append(Op.free_null(thread))
        elif roll < 0.79:
            ops.append(Op.usable_size_null(thread))
        elif self.v2_live:
            pick = v2.randrange(len(self.v2_live))
            handle = self.v2_live[pick]
            if roll < 0.9:
                size = v2.choice((0, 24, 1000, 5000, *_BIG_SIZES))
                if size > 65535 and handle not in self.big and len(self.big) >= MAX_BIG_LIVE:
                    size = 5000
                ops.append(Op.realloc(handle, size, thread))
                if size > 65535:
                    self.big.add(handle)
                    return
                self.big.discard(handle)
                if size:
                    return
            else:
                ops.append(Op.free(handle, thread))
                self.big.discard(handle)
            self.v2_live[pick] = self.v2_live[-1]
            self.v2_live.pop()

    def _made(self, handle: int, size: int) -> None:
        self.v2_live.append(handle)
        if size > 65535:
            self.big.add(handle)

    def any_op(self, thread: int) -> None:
        """One op of any kind on thread's view of the live sets."""
        if self.v2.random() < V2_RATE:
            before = len(self.ops)
            self.v2_op(thread)
            self.v2_ops += len(self.ops) - before
        rnd = self.rnd
        roll = rnd.random()
        owners = [t for t in range(self.threads) if self.live[t]]
        off = self.off
        if roll < 0.40 or not owners:
            kind = rnd.random()
            handle = self.next_handle
            if kind < 0.08 and "calloc" not in off:
                self.next_handle += 1
                self.ops.append(Op.calloc(handle, rnd.randint(0, 16), rnd.randint(0, 96), thread))
            elif 0.08 <= kind < 0.14 and "memalign" not in off:
                self.next_handle += 1
                align = 1 << rnd.randint(3, 10)
                self.ops.append(Op.memalign(handle, align, rnd.randint(0, 1100), thread))
            else:
                handle = self.alloc(thread)
            self.live[thread].append(handle)
            return
        owner = rnd.choice(owners)
        handles = self.live[owner]
        pick = rnd.randrange(len(handles))
        handle = handles[pick]
        if off and self._off(roll):
            roll = 0.0  # a kind this program leaves out: a free instead
        if roll < 0.75:
            handles[pick] = handles[-1]
            handles.pop()
            self.free(thread, handle)
        elif roll < 0.85:
            size = _size(rnd)
            self.ops.append(Op.realloc(handle, size, thread))
            if size == 0:
                handles[pick] = handles[-1]
                handles.pop()
        elif roll < 0.92:
            self.ops.append(Op.write(handle, rnd.randrange(256), thread))
        elif roll < 0.97:
            self.ops.append(Op.verify(handle, thread))
        elif roll < 0.985:
            self.ops.append(Op.flush(thread))
        elif roll < 0.995:
            self.ops.append(Op.thread_exit(thread))
        else:
            self.ops.append(Op.check(thread))

    def _off(self, roll: float) -> bool:
        """True if the handle op that ``roll`` picks in ``any_op`` is of a kind left out."""
        for top, kind in ((0.75, ""), (0.85, "realloc"), (0.92, "write"), (0.97, "verify"),
                          (0.985, "flush"), (0.995, "thread_exit"), (2.0, "check")):
            if roll < top:
                return kind in self.off
        return False

    def macro(self, rnd: random.Random, config: ProgramConfig, room: int) -> None:
        """A macro (:mod:`hakfuzz.program.macros`) drawn from ``rnd``; its blocks join thread 0."""
        expansion = expand(rnd.randrange(4), rnd.randrange(256), config=config,
                           threads=self.threads, first_handle=self.next_handle, room=room)
        self.ops += expansion.ops
        self.next_handle += expansion.created
        self.live[0] += expansion.survivors

    def program(self, description: str, config: ProgramConfig | None = None) -> Program:
        ops = self.ops[:MAX_OPS]
        return Program(
            description=description,
            config=config or ProgramConfig(),
            threads=self.threads,
            ops=tuple(ops),
        )


def _budget(ops: int) -> int:
    return max(1, min(ops, MAX_OPS))


def larson(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """Larson-like hand-offs between thread generations and threads."""
    rnd = random.Random(seed)
    b = _Builder(rnd, threads, libc_ratio)
    budget = _budget(ops)
    slots_per_thread = max(4, min(256, budget // (threads * 8)))
    slots = [
        [b.alloc(t, rnd.randint(8, 128)) for _ in range(slots_per_thread)] for t in range(threads)
    ]
    rounds = 0
    while not b.full(budget):
        rounds += 1
        for t in range(threads):
            for _ in range(slots_per_thread):
                victim = rnd.randrange(slots_per_thread)
                b.free(t, slots[t][victim])
                slots[t][victim] = b.alloc(t, rnd.randint(8, 128))
            b.ops.append(Op.thread_exit(t))  # the next generation frees these
        if threads > 1 and rounds % 3 == 0:
            slots.append(slots.pop(0))  # arrays change hands: remote frees
    b.ops = b.ops[:budget]
    return _closed(b, "larson-like hand-offs", ProgramConfig())


def producer_consumer(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """Producers allocate and fill; consumers verify and free (all remote)."""
    rnd = random.Random(seed)
    threads = max(2, threads)
    b = _Builder(rnd, threads, libc_ratio)
    producers = list(range(0, threads, 2))
    consumers = list(range(1, threads, 2))
    budget = _budget(ops)
    pending: list[int] = []
    while not b.full(budget):
        for p in producers:
            for _ in range(rnd.randint(8, 64)):
                h = b.alloc(p)
                b.ops.append(Op.write(h, rnd.randrange(256), p))
                pending.append(h)
        rnd.shuffle(pending)
        for c in consumers:
            take, pending = (
                pending[: len(pending) // len(consumers) + 1],
                pending[len(pending) // len(consumers) + 1 :],
            )
            for h in take:
                b.ops.append(Op.verify(h, c))
                b.free(c, h)
    return _closed(
        b,
        "producer/consumer: every free is remote",
        ProgramConfig(cache_cap=rnd.choice((0, 8, 64))),
    )


def churn(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """Threads exit holding live and cached blocks; survivors free them."""
    rnd = random.Random(seed)
    b = _Builder(rnd, threads, libc_ratio)
    budget = _budget(ops)
    held: list[int] = []
    while not b.full(budget):
        for t in range(threads):
            mine = [b.alloc(t) for _ in range(rnd.randint(4, 48))]
            for h in mine[: len(mine) // 2]:
                b.free(t, h)  # into t's cache
            held.extend(mine[len(mine) // 2 :])
            b.ops.append(Op.thread_exit(t))
        rnd.shuffle(held)
        keep = len(held) // 3
        for h in held[keep:]:
            b.free(rnd.randrange(threads), h)
        held = held[:keep]
    return _closed(
        b,
        "thread churn: orphans freed by survivors",
        ProgramConfig(cache_cap=rnd.choice((4, 16, 64)), refill_batch=4),
    )


def mixed(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """Every op kind, every class, frees and reallocs from any thread."""
    rnd = random.Random(seed)
    b = _Builder(rnd, threads, libc_ratio, f"mixed {seed}", swarm_off(seed))
    budget = _budget(ops)
    while not b.full(budget):
        b.any_op(rnd.randrange(threads))
    config = ProgramConfig(cache_cap=rnd.choice((0, 4, 64)), refill_batch=rnd.choice((1, 4, 16)))
    if config.refill_batch > config.cache_cap and config.cache_cap:
        config = ProgramConfig(cache_cap=config.cache_cap, refill_batch=config.cache_cap)
    return _closed(b, "mixed ownership across threads", config)


def pressure(seed: int, threads: int, ops: int, libc_ratio: float) -> Program:
    """``mixed`` at tiny caps: growth, fallback and NULL under contention, after a macro."""
    rnd = random.Random(seed)
    b = _Builder(rnd, threads, libc_ratio, f"pressure {seed}", swarm_off(seed))
    budget = _budget(ops)
    config = ProgramConfig(
        ss_cap=rnd.choice((1, 1, 2)),
        oom_policy=rnd.choice(("libc", "null")),
        cache_cap=rnd.choice((0, 4, 16)),
        refill_batch=rnd.choice((1, 4)),
        ss_keep=rnd.choice((0, 1)),
        fail_map_at=rnd.choice((0, 0, 0, 3)),
    )
    macros = random.Random(f"pressure macros {seed}")
    if macros.random() < 0.5:
        b.macro(macros, config, budget // 2)
    while not b.full(budget):
        b.any_op(rnd.randrange(threads))
    return _closed(b, "pressure: a class exhausts its SuperSlabs under contention", config)


def _closed(b: _Builder, description: str, config: ProgramConfig) -> Program:
    b.ops = b.ops[:MAX_OPS]
    _drop_dangling(b)
    return b.program(description, config)


def _drop_dangling(b: _Builder) -> None:
    """Cutting at the budget can leave ops on handles never created: drop them."""
    created: set[int] = set()
    dead: set[int] = set()
    kept: list[Op] = []
    for op in b.ops:
        if op.kind in CREATING_KINDS:
            created.add(op.handle)
        elif op.handle >= 0 and (op.handle not in created or op.handle in dead):
            continue
        if op.kills_handle():
            dead.add(op.handle)
        kept.append(op)
    b.ops = kept
