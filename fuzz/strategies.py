"""Hypothesis strategies for allocator configs and valid Programs.

``programs()`` draws a list of op *choices* and interprets it against the
live handles, so every list is a valid canonical program and deleting any
choice while shrinking keeps it valid (an op that needs a live handle when
none is live is dropped).  With ``tiny_caps`` the configs make growth,
fallback, fault injection and release happen within a few dozen ops
(a 2 MiB budget is one SuperSlab over all classes; ``fail_map_at`` fails an
early mapping; ``cache_cap`` 0 releases a SuperSlab as soon as its blocks
are freed), so the short programs Hypothesis favours (lists average about
seven choices) already reach them.

Every op kind of ``hakfuzz-program/2`` is drawn, the ops on NULL included;
one size in sixteen of the kinds that allow it is big (past glibc's mmap
threshold, up to 8 MiB), and a big size that would make more than
MAX_BIG_LIVE big blocks live is cut to its low 16 bits, as the binary form
does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hypothesis import strategies as st

from hakfuzz.program.binary import decode
from hakfuzz.program.model import (
    BIG_KINDS,
    CACHE_CAP_MAX,
    CREATING_KINDS,
    DEFAULT_CONFIG,
    HANDLE_KINDS,
    MAX_ALIGN,
    MAX_BIG_LIVE,
    MAX_BIG_SIZE,
    MAX_CALLOC_BYTES,
    MAX_COUNT,
    MAX_SEED,
    MAX_SIZE,
    MAX_THREADS,
    MIN_ALIGN,
    OVERFLOW_COUNT,
    REFILL_BATCH_MAX,
    U32_MAX,
    U64_MAX,
    Op,
    OpKind,
    Program,
    ProgramConfig,
)

SS_BYTES = 2 << 20  # HAK_SS_SIZE

BOUNDARY_SIZES: tuple[int, ...] = (
    0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129,
    255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 2048, 4096, 65535,
)
"""Sizes at every class boundary, and just above the tiny range."""

ALIGNS: tuple[int, ...] = tuple(MIN_ALIGN << shift for shift in range(10))
assert ALIGNS[-1] == MAX_ALIGN
ALIGNED_ALLOC_ALIGNS: tuple[int, ...] = tuple(1 << shift for shift in range(13))
"""aligned_alloc takes any power of two: below 8 the allocator raises it to 8."""

MMAP_THRESHOLD = 128 << 10  # glibc's initial M_MMAP_THRESHOLD
BIG_SIZES: tuple[int, ...] = (
    MMAP_THRESHOLD - 1, MMAP_THRESHOLD, MMAP_THRESHOLD + 1, 1 << 20, MAX_BIG_SIZE,
)
"""Sizes around glibc's mmap threshold, and the largest a program may ask."""


def sizes(*, big: bool = False) -> st.SearchStrategy[int]:
    """Request sizes: class boundaries, any tiny size, any large size.

    ``big=True`` makes one size in sixteen big (above 65535, up to 8 MiB),
    and shrinking moves away from those.
    """
    small = st.one_of(
        st.sampled_from(BOUNDARY_SIZES),
        st.integers(0, 1024),
        st.integers(1025, MAX_SIZE),
    )
    if not big:
        return small
    return _with_big(small)


_BIG = st.one_of(st.sampled_from(BIG_SIZES), st.integers(MAX_SIZE + 1, MAX_BIG_SIZE))


@st.composite
def _with_big(draw: st.DrawFn, small: st.SearchStrategy[int]) -> int:
    # The roll shrinks to 0: small.  A flat one_of would make big sizes a quarter.
    if draw(st.integers(0, 15)) == 15:
        return draw(_BIG)
    return draw(small)


def _int_field(default: int, low: int, high: int,
               tiny: tuple[int, ...], tiny_caps: bool) -> st.SearchStrategy[int]:
    # Default first so that shrinking returns to the default configuration.
    if tiny_caps:
        return st.sampled_from((default, *(v for v in tiny if v != default)))
    return st.one_of(st.just(default), st.integers(low, high))


def configs(*, tiny_caps: bool = True) -> st.SearchStrategy[ProgramConfig]:
    """Valid configs; shrink towards the defaults of docs/policy.md.

    ``tiny_caps=True`` draws from small values that reach the caps, the
    budget, fault injection and release quickly; ``False`` draws any valid
    value.
    """
    base = DEFAULT_CONFIG
    return st.builds(
        ProgramConfig,
        ss_cap=_int_field(base.ss_cap, 0, U32_MAX, (1, 2), tiny_caps),
        budget_bytes=_int_field(
            base.budget_bytes, 0, U64_MAX, (SS_BYTES, 2 * SS_BYTES), tiny_caps
        ),
        oom_policy=st.sampled_from(("libc", "null")),
        cache_cap=_int_field(base.cache_cap, 0, CACHE_CAP_MAX, (0, 4), tiny_caps),
        refill_batch=_int_field(
            base.refill_batch, 1, REFILL_BATCH_MAX, (1, 2, 4), tiny_caps
        ),
        release_empty=st.sampled_from((True, False)),
        ss_keep=_int_field(base.ss_keep, 0, U32_MAX, (0, 1), tiny_caps),
        checked=st.sampled_from((False, True)),
        fail_map_at=_int_field(base.fail_map_at, 0, U32_MAX, (1, 2, 3), tiny_caps),
    )


@dataclass(frozen=True, slots=True)
class _Choice:
    """One op before it is bound to a handle.

    ``ref`` picks a live handle (0 = the newest) modulo their number, so
    deleting an earlier choice rarely changes which handle a later one names.
    """

    kind: OpKind
    thread: int
    ref: int = 0
    size: int = 0
    count: int = 0
    align: int = 0
    seed: int = 0


# Weighted: alloc and free make most of a real workload, and glibc pointers
# reaching free are the bug this project hunts.  The first entry is what a
# shrunk choice becomes.
_KINDS = st.sampled_from((
    OpKind.ALLOC, OpKind.FREE, OpKind.ALLOC, OpKind.FREE, OpKind.LIBC_ALLOC,
    OpKind.REALLOC, OpKind.WRITE, OpKind.VERIFY, OpKind.CALLOC,
    OpKind.MEMALIGN, OpKind.FLUSH, OpKind.THREAD_EXIT, OpKind.CHECK,
    OpKind.ALIGNED_ALLOC, OpKind.REALLOC_NULL, OpKind.USABLE_SIZE,
    OpKind.FREE_NULL, OpKind.USABLE_SIZE_NULL, OpKind.LIBC_ALLOC, OpKind.FREE,
))
_SIZES = sizes()
_BIG_OK_SIZES = sizes(big=True)
_ALIGNED_ALLOC_ALIGNS = st.sampled_from(ALIGNED_ALLOC_ALIGNS)
_COUNTS = st.one_of(st.integers(0, 64), st.integers(0, MAX_COUNT), st.just(OVERFLOW_COUNT))
_ALIGNS = st.sampled_from(ALIGNS)
_REFS = st.integers(0, 15)
_SEEDS = st.integers(0, MAX_SEED)


@functools.cache
def _threads(threads: int) -> st.SearchStrategy[int]:
    return st.integers(0, threads - 1)


@st.composite
def _choice(draw: st.DrawFn, threads: int) -> _Choice:
    # Few draws per op: generation speed is dominated by their number.
    kind = draw(_KINDS)
    thread = draw(_threads(threads)) if threads > 1 else 0
    if kind in CREATING_KINDS:
        count = draw(_COUNTS) if kind is OpKind.CALLOC else 0
        align = (draw(_ALIGNS) if kind is OpKind.MEMALIGN
                 else draw(_ALIGNED_ALLOC_ALIGNS) if kind is OpKind.ALIGNED_ALLOC else 0)
        size = draw(_BIG_OK_SIZES if kind in BIG_KINDS else _SIZES)
        return _Choice(kind, thread, 0, size, count, align)
    if kind in HANDLE_KINDS:
        ref = draw(_REFS)
        size = draw(_BIG_OK_SIZES) if kind is OpKind.REALLOC else 0
        seed = draw(_SEEDS) if kind is OpKind.WRITE else 0
        return _Choice(kind, thread, ref, size, 0, 0, seed)
    return _Choice(kind, thread)


@functools.cache
def _choice_lists(threads: int, max_ops: int) -> st.SearchStrategy[list[_Choice]]:
    # Flat on purpose: nested lists (runs of ops) made longer programs but
    # shrank to non-minimal ones, and slowly.
    return st.lists(_choice(threads), max_size=max_ops)


def _interpret(choices: list[_Choice]) -> tuple[Op, ...]:
    """Bind choices to live handles: a valid, canonical op sequence."""
    ops: list[Op] = []
    live: list[int] = []  # oldest first
    big: set[int] = set()  # live handles holding a size above MAX_SIZE
    next_handle = 0
    for choice in choices:
        kind = choice.kind
        if kind in CREATING_KINDS:
            count = choice.count
            if count == OVERFLOW_COUNT:
                ops.append(Op(kind, choice.thread, next_handle, max(choice.size, 2), count))
                live.append(next_handle)
                next_handle += 1
                continue
            size = _fit_big(choice.size, next_handle, big)
            if size and count * size > MAX_CALLOC_BYTES:
                count = MAX_CALLOC_BYTES // size
            ops.append(Op(kind, choice.thread, next_handle, size, count, choice.align))
            live.append(next_handle)
            next_handle += 1
        elif kind not in HANDLE_KINDS:
            ops.append(Op(kind, choice.thread))
        elif live:
            index = len(live) - 1 - choice.ref % len(live)
            handle = live[index]
            size = choice.size
            if kind is OpKind.REALLOC:
                size = _fit_big(size, handle, big)
            op = Op(kind, choice.thread, handle, size, 0, 0, choice.seed)
            if op.kills_handle():
                del live[index]
                big.discard(handle)
            ops.append(op)
    return tuple(ops)


def _fit_big(size: int, handle: int, big: set[int]) -> int:
    """``size`` for ``handle``, cut to 16 bits if it would be one big block too many."""
    if size > MAX_SIZE:
        if handle in big or len(big) < MAX_BIG_LIVE:
            big.add(handle)
            return size
        size &= 0xFFFF
    big.discard(handle)
    return size


def programs(
    *,
    threads: int | None = 1,
    max_ops: int = 40,
    tiny_caps: bool = True,
    config: ProgramConfig | None = None,
) -> st.SearchStrategy[Program]:
    """Valid canonical programs (empty description).

    ``threads=None`` draws 1..4 threads; ``config`` fixes the config instead
    of drawing it from ``configs(tiny_caps=...)``.
    """
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads={threads} is out of range 1..{MAX_THREADS}")
    thread_counts = st.just(threads) if threads is not None else st.integers(1, 4)
    config_strategy = (
        st.just(config) if config is not None else configs(tiny_caps=tiny_caps)
    )

    @st.composite
    def build(draw: st.DrawFn) -> Program:
        drawn_config = draw(config_strategy)
        count = draw(thread_counts)
        choices = draw(_choice_lists(count, max_ops))
        return Program(config=drawn_config, threads=count,
                       ops=_interpret(choices))

    return build()


def programs_from_bytes(max_size: int = 256) -> st.SearchStrategy[Program]:
    """Programs decoded from arbitrary bytes (the atheris view)."""
    return st.binary(max_size=max_size).map(decode)
