"""Hypothesis strategies for allocator configs and valid Programs.

``programs()`` draws a list of op *choices* and interprets it against the
live handles, so every list is a valid canonical program and deleting any
choice while shrinking keeps it valid (an op that needs a live handle when
none is live is dropped).

Swarm testing, twice.  Each config moves a random subset of its options
off their defaults, each to a boundary value (:mod:`hakfuzz.engines.configs`) or
any value of its range; each program turns off a random subset of op kinds
(half the programs keep them all).  Both shrink to "nothing moved, nothing
off", so a shrunk program has the default config and plain choices.

Deep states (a class at its cap, a second SuperSlab, a released one,
orphaned slabs) are thousands of ops away; a macro choice expands to the
plain ops that walk there (:mod:`hakfuzz.program.macros`), so the short programs
Hypothesis favours (lists average about seven choices) reach them.

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

from hakfuzz.engines.configs import BOUNDARY_VALUES, VALID_RANGES
from hakfuzz.program.binary import decode
from hakfuzz.program.macros import MACRO_ROOM, Macro, expand
from hakfuzz.program.model import (
    BIG_KINDS,
    CONFIG_FIELDS,
    CREATING_KINDS,
    DEFAULT_CONFIG,
    HANDLE_KINDS,
    MAX_ALIGN,
    MAX_BIG_LIVE,
    MAX_BIG_SIZE,
    MAX_CALLOC_BYTES,
    MAX_COUNT,
    MAX_OPS,
    MAX_SEED,
    MAX_SIZE,
    MAX_THREADS,
    MIN_ALIGN,
    OVERFLOW_COUNT,
    Op,
    OpKind,
    Program,
    ProgramConfig,
)

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


_LEAVES_DEFAULT = st.booleans()
"""Swarm: per option, whether it leaves its default (False, the shrink target: it keeps it)."""


@functools.cache
def _moved(name: str, tiny_caps: bool) -> st.SearchStrategy[object]:
    """A non-default value of option ``name``: a boundary value first, else any valid one."""
    boundary = st.sampled_from(BOUNDARY_VALUES[name])
    if name not in VALID_RANGES:
        return boundary
    whole = st.integers(*VALID_RANGES[name])
    # one_of shrinks to its first branch: a boundary value.  tiny_caps weighs the
    # boundary values three to one, so caps and budgets mostly bind early.
    if tiny_caps:
        return st.one_of(boundary, boundary, boundary, whole)
    return st.one_of(boundary, whole)


@st.composite
def _configs(draw: st.DrawFn, tiny_caps: bool) -> ProgramConfig:
    values: dict[str, object] = {}
    for name in CONFIG_FIELDS:
        if draw(_LEAVES_DEFAULT):
            values[name] = draw(_moved(name, tiny_caps))
    return ProgramConfig(**values)  # type: ignore[arg-type]


def configs(*, tiny_caps: bool = True) -> st.SearchStrategy[ProgramConfig]:
    """Valid configs, swarm-style; shrink towards the defaults of docs/policy.md.

    Each option independently keeps its default or leaves it (so each config
    moves a random subset of options, and a shrunk one moves none); a moved
    option takes a boundary value of :data:`hakfuzz.engines.configs.BOUNDARY_VALUES`
    or any value of its whole valid range.  ``tiny_caps=True`` takes the
    boundary values three times as often as the whole range, so the caps,
    the budget, fault injection and release bind within short programs;
    ``False`` takes both equally often.
    """
    return _configs(tiny_caps)


@dataclass(frozen=True, slots=True)
class _Choice:
    """One op before it is bound to a handle, or a macro (``kind`` None).

    ``ref`` picks a live handle (0 = the newest) modulo their number, so
    deleting an earlier choice rarely changes which handle a later one names.
    A macro's number is in ``ref`` and its argument byte in ``size``.
    """

    kind: OpKind | None
    thread: int
    ref: int = 0
    size: int = 0
    count: int = 0
    align: int = 0
    seed: int = 0


MACRO = None
"""The entry of the kind table that is a macro (:mod:`hakfuzz.program.macros`)."""

# Weighted: alloc and free make most of a real workload, and glibc pointers
# reaching free are the bug this project hunts; a pattern is only checked when
# a verify meets a write of the same block, hence two of each.  The first entry is what a
# shrunk choice becomes; the macro is last, so nothing shrinks into one.
_KIND_TABLE: tuple[OpKind | None, ...] = (
    OpKind.ALLOC, OpKind.FREE, OpKind.ALLOC, OpKind.FREE, OpKind.LIBC_ALLOC,
    OpKind.REALLOC, OpKind.WRITE, OpKind.VERIFY, OpKind.CALLOC,
    OpKind.MEMALIGN, OpKind.FLUSH, OpKind.THREAD_EXIT, OpKind.CHECK,
    OpKind.ALIGNED_ALLOC, OpKind.REALLOC_NULL, OpKind.USABLE_SIZE,
    OpKind.FREE_NULL, OpKind.USABLE_SIZE_NULL, OpKind.LIBC_ALLOC, OpKind.FREE,
    OpKind.WRITE, OpKind.VERIFY, MACRO,
)
SWARM_KINDS: tuple[OpKind | None, ...] = tuple(dict.fromkeys(_KIND_TABLE))
"""The kinds a program's swarm mask turns off, one bit each (None: the macros)."""
_KINDS = st.sampled_from(_KIND_TABLE)
_SWARM = st.booleans()  # False (the shrink target): every kind is on
_KIND_OFF = st.booleans()  # False (the shrink target): the kind is on
_MACROS = st.integers(0, len(Macro) - 1)
_MACRO_ARGS = st.integers(0, 255)
_PROGRAM_MACRO_OPS = MACRO_ROOM
"""The most ops the macros of one drawn program expand to (generation and run speed)."""

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
    if kind is None:
        return _Choice(None, thread, draw(_MACROS), draw(_MACRO_ARGS))
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


def _interpret(choices: list[_Choice], config: ProgramConfig = DEFAULT_CONFIG,
               threads: int = 1, off: frozenset[OpKind | None] = frozenset()) -> tuple[Op, ...]:
    """Bind choices to live handles, expand macros: a valid, canonical op sequence.

    A choice of a kind in ``off`` (the program's swarm mask) is dropped.
    """
    ops: list[Op] = []
    live: list[int] = []  # oldest first
    big: set[int] = set()  # live handles holding a size above MAX_SIZE
    next_handle = 0
    macro_room = _PROGRAM_MACRO_OPS
    for position, choice in enumerate(choices):
        kind = choice.kind
        if kind in off:
            continue
        if kind is None:
            # Room for the macro and one op per choice after it: at most MAX_OPS.
            room = min(macro_room, MAX_OPS - len(ops) - (len(choices) - position - 1))
            expansion = expand(choice.ref, choice.size, config=config, threads=threads,
                               first_handle=next_handle, room=room)
            ops += expansion.ops
            live += expansion.survivors
            macro_room -= len(expansion.ops)
            next_handle += expansion.created
        elif kind in CREATING_KINDS:
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


@st.composite
def _kind_mask(draw: st.DrawFn, macros: bool) -> frozenset[OpKind | None]:
    """Swarm over op kinds: the kinds (of :data:`SWARM_KINDS`) this program turns off.

    Half the programs keep every kind; the others turn each off with odds of
    one half, so kinds that are rare in a mixed stream meet without the
    common ones in between.  The mask drops the choices of the kinds it turns
    off (it does not redirect them to other kinds), so a shrinker can delete
    those choices without changing the program, and then turn the mask off:
    a shrunk program has every kind on and its choices mean what they say.
    """
    off: set[OpKind | None] = set() if macros else {MACRO}
    if draw(_SWARM):
        off.update(kind for kind in SWARM_KINDS if draw(_KIND_OFF))
    return frozenset(off)


def programs(
    *,
    threads: int | None = 1,
    max_ops: int = 40,
    tiny_caps: bool = True,
    config: ProgramConfig | None = None,
    macros: bool = True,
) -> st.SearchStrategy[Program]:
    """Valid canonical programs (empty description).

    ``threads=None`` draws 1..4 threads; ``config`` fixes the config instead
    of drawing it from ``configs(tiny_caps=...)``.  ``max_ops`` bounds the
    choices; a macro choice (``macros=True``) expands to up to MACRO_ROOM
    plain ops, so a program may be longer (never past MAX_OPS).  Each program
    also draws which op kinds it uses (:func:`_kind_mask`).
    """
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads={threads} is out of range 1..{MAX_THREADS}")
    thread_counts = st.just(threads) if threads is not None else st.integers(1, 4)
    config_strategy = (
        st.just(config) if config is not None else configs(tiny_caps=tiny_caps)
    )
    masks = _kind_mask(macros)

    @st.composite
    def build(draw: st.DrawFn) -> Program:
        drawn_config = draw(config_strategy)
        count = draw(thread_counts)
        off = draw(masks)
        choices = draw(_choice_lists(count, max_ops))
        return Program(config=drawn_config, threads=count,
                       ops=_interpret(choices, drawn_config, count, off))

    return build()


def programs_from_bytes(max_size: int = 256) -> st.SearchStrategy[Program]:
    """Programs decoded from arbitrary bytes (the atheris view)."""
    return st.binary(max_size=max_size).map(decode)
