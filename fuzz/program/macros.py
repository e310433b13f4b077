"""Macro ops: one generator choice that expands to many plain ops.

The deep states of the allocator sit thousands of ops away from an empty
heap: a class at its cap (about 2,000 blocks of 1 KiB fill one SuperSlab),
a second SuperSlab, an empty one released, slabs orphaned by an exiting
thread.  A generator drawing one op at a time almost never walks that far,
so every engine also draws *macros*.  Each macro is a function returning
plain :class:`~hakfuzz.program.model.Op` records over fresh handles (it
frees only handles it made itself), so a finding holding a macro replays,
minimises and is stored like any other Program.

Every macro takes ``first_handle`` (the next handle of the program, so the
result stays canonical), ``threads`` and ``room`` (how many ops it may
emit: a caller keeps programs within MAX_OPS and its own budget) and
returns an :class:`Expansion`: the ops, and the handles still live after
them, oldest first.  :func:`expand` maps a macro number and one argument
byte to a macro and its parameters; the Hypothesis strategies, the state
machine and the binary form all go through it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hakfuzz.model.limits import CLASS_SIZES, DIRTY_MAX, SLABS_PER_SS, SS_SIZE, slab_capacity
from hakfuzz.program.model import Op, OpKind, ProgramConfig

MACRO_CLASSES: tuple[int, ...] = (7, 6, 5)
"""Classes whose one SuperSlab (about 2,000, 4,000 and 8,000 blocks) a program can fill."""

SS_BLOCKS: tuple[int, ...] = tuple(
    sum(slab_capacity(c, s) for s in range(SLABS_PER_SS)) for c in range(len(CLASS_SIZES))
)
"""Blocks of one SuperSlab, per class."""

MACRO_ROOM = 12_000
"""The most ops one macro emits (a class-5 SuperSlab and a few more blocks)."""

_ALLOC = OpKind.ALLOC
_FREE = OpKind.FREE


class Macro(enum.IntEnum):
    """The macros; values are stable (the binary form stores them)."""

    FILL_TO_CAP = 0
    FREE_EVERY_KTH = 1
    THREAD_LIFETIMES = 2
    EXHAUST_AND_RELEASE = 3


@dataclass(frozen=True, slots=True)
class Expansion:
    """A macro's plain ops, and the handles it made that are still live (oldest first)."""

    ops: tuple[Op, ...]
    survivors: tuple[int, ...]

    @property
    def created(self) -> int:
        """How many handles the ops create (numbered from the macro's ``first_handle``)."""
        return sum(op.kind is _ALLOC for op in self.ops)


def blocks_to_cap(config: ProgramConfig, class_idx: int) -> int:
    """Blocks of ``class_idx`` that a fresh heap serves before a cap binds (one past them).

    With no cap (ss_cap and budget 0) this is one past one SuperSlab: the
    block that makes the class grow.  The budget counts SuperSlabs of every
    class; a fill starts on a heap that may hold others, so this is where the
    cap binds at the latest.
    """
    superslabs: list[int] = []
    if config.ss_cap:
        superslabs.append(config.ss_cap)
    if config.budget_bytes:
        superslabs.append(config.budget_bytes // SS_SIZE)
    count = min(superslabs) if superslabs else 1
    return min(count, 64) * SS_BLOCKS[class_idx] + 1


def fill_to_cap(config: ProgramConfig, class_idx: int, thread: int, first_handle: int,
                room: int, extra: int = 0) -> Expansion:
    """Allocate one class on ``thread`` until its cap binds, and ``extra`` blocks more.

    With the caches on, the cap binds inside a refill; past it every request
    is served by glibc (policy libc) or answered NULL (policy null).  The
    blocks stay live: what follows runs against a full class.
    """
    blocks = max(0, min(blocks_to_cap(config, class_idx) + extra, room))
    size = CLASS_SIZES[class_idx]
    handles = range(first_handle, first_handle + blocks)
    return Expansion(tuple(Op(_ALLOC, thread, h, size) for h in handles), tuple(handles))


def free_every_kth(class_idx: int, blocks: int, k: int, thread: int, freer: int,
                   first_handle: int, room: int) -> Expansion:
    """Allocate ``blocks`` of one class on ``thread``, then free every ``k``-th from ``freer``.

    Leaves every slab partly used (holes before carving, partial stacks);
    from another thread the frees are remote.
    """
    k = max(1, k)
    blocks = max(0, min(blocks, room))
    while blocks + -(-blocks // k) > room:
        blocks -= 1
    size = CLASS_SIZES[class_idx]
    ops = [Op(_ALLOC, thread, h, size) for h in range(first_handle, first_handle + blocks)]
    freed = range(first_handle, first_handle + blocks, k)
    ops += [Op(_FREE, freer, h) for h in freed]
    survivors = tuple(h for h in range(first_handle, first_handle + blocks)
                      if (h - first_handle) % k)
    return Expansion(tuple(ops), survivors)


def thread_lifetimes(lifetimes: int, per_life: int, class_idx: int, threads: int,
                     first_handle: int, room: int) -> Expansion:
    """``lifetimes`` times: a thread allocates, exits, and the next thread frees its blocks.

    The exiting thread leaves its cache drained and its slabs orphaned; the
    frees from the next thread are remote until a thread adopts the slabs.
    """
    size = CLASS_SIZES[class_idx]
    per_life = max(1, min(per_life, (room - 1) // 2)) if room >= 3 else 0
    ops: list[Op] = []
    handle = first_handle
    for life in range(lifetimes):
        if per_life == 0 or len(ops) + 2 * per_life + 1 > room:
            break
        owner = life % threads
        freer = (owner + 1) % threads
        made = range(handle, handle + per_life)
        ops += [Op(_ALLOC, owner, h, size) for h in made]
        ops.append(Op.thread_exit(owner))
        ops += [Op(_FREE, freer, h) for h in made]
        handle += per_life
    return Expansion(tuple(ops), ())


def exhaust_and_release(class_idx: int, thread: int, first_handle: int,
                        room: int) -> Expansion:
    """Allocate one class until it needs a new SuperSlab, then free it all and flush.

    The block past one SuperSlab makes the class grow (or hits the cap of
    one); freeing everything on the owner and flushing its cache empties
    both SuperSlabs: the second is released (or kept, up to ``ss_keep``),
    the first held (released too under a budget).
    On the way, some slabs keep one written block (their first) while the
    slabs before them are emptied and retired; those blocks are verified
    once the neighbours are gone, so a retirement that damages the slab
    next to it (pages given back one page too far, memory handed out again
    early) shows as a changed pattern.  Slab 3 keeps one among the slabs a
    class keeps dirty (``DIRTY_MAX`` of them: their pages stay), and every
    other slab from the first retirement past those on does: the first
    slab that gives its pages back has a sentinel right after it, so a
    program cut short by its room still reaches it (class 7: about 2,300
    ops; every fourth slab, as before, needed about 2,900).
    """
    sentinels = set(_sentinel_heads(class_idx))
    blocks = max(0, min(SS_BLOCKS[class_idx] + 1, (room - 3 - 3 * len(sentinels)) // 2))
    size = CLASS_SIZES[class_idx]
    made = range(first_handle, first_handle + blocks)
    kept = [h for h in made if h - first_handle in sentinels]
    ops: list[Op] = []
    for h in made:
        ops.append(Op(_ALLOC, thread, h, size))
        if h - first_handle in sentinels:
            ops.append(Op.write(h, 1 + (h - first_handle) % 255, thread))
    ops += [Op(_FREE, thread, h) for h in made if h - first_handle not in sentinels]
    if blocks:
        ops.append(Op.flush(thread))
    ops += [Op.verify(h, thread) for h in kept]
    ops += [Op(_FREE, thread, h) for h in kept]
    if kept:
        ops.append(Op.flush(thread))
    return Expansion(tuple(ops), ())


def _sentinel_heads(class_idx: int) -> tuple[int, ...]:
    """Blocks (by index in carve order) that ``exhaust_and_release`` keeps and writes."""
    heads = _slab_heads(class_idx)
    # Slab 3 is not retired, so slabs 0-2 and 4-DIRTY_MAX fill the dirty room
    # and slab DIRTY_MAX + 1 is the first retirement past it.
    first_discard = DIRTY_MAX + 1
    return (heads[3], *heads[first_discard + 1::2])


def _slab_heads(class_idx: int) -> tuple[int, ...]:
    """The index of each slab's first block among one SuperSlab's blocks, in carve order."""
    heads: list[int] = []
    start = 0
    for slab in range(SLABS_PER_SS):
        heads.append(start)
        start += slab_capacity(class_idx, slab)
    return tuple(heads)


def expand(macro: int, arg: int, *, config: ProgramConfig, threads: int,
           first_handle: int, room: int) -> Expansion:
    """Macro ``macro % 4`` with its parameters picked by the bits of ``arg`` (0..255).

    ``arg`` 0 is each macro's simplest form (class 7 on thread 0), which is
    what a shrinker moves towards.
    """
    room = max(0, min(room, MACRO_ROOM))
    arg &= 0xFF
    class_idx = MACRO_CLASSES[arg % 3]
    thread = (arg >> 2) % threads
    kind = Macro(macro % 4)
    if kind is Macro.FILL_TO_CAP:
        return fill_to_cap(config, class_idx, thread, first_handle, room, extra=arg >> 4)
    if kind is Macro.FREE_EVERY_KTH:
        slabs = 1 + (arg >> 6)
        blocks = slabs * slab_capacity(class_idx, 1)
        freer = (thread + (arg >> 5 & 1)) % threads
        return free_every_kth(class_idx, blocks, 2 + (arg >> 4 & 3), thread, freer,
                              first_handle, room)
    if kind is Macro.THREAD_LIFETIMES:
        return thread_lifetimes(1 + (arg >> 5), 8 << (arg >> 2 & 3), class_idx, threads,
                                first_handle, room)
    # Class 5 would take two SuperSlabs' worth of ops: class 6 is the smallest it walks.
    return exhaust_and_release(max(class_idx, 6), thread, first_handle, room)


__all__ = [
    "MACRO_CLASSES",
    "MACRO_ROOM",
    "SS_BLOCKS",
    "Expansion",
    "Macro",
    "blocks_to_cap",
    "exhaust_and_release",
    "expand",
    "fill_to_cap",
    "free_every_kth",
    "thread_lifetimes",
]
