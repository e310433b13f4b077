"""``ModelAllocator``: the executable reference model of the hakmem API.

It mirrors ``hak_malloc``/``free``/``calloc``/``realloc``/``posix_memalign``/
``aligned_alloc``/``usable_size``/``flush``/``thread_exit``/``stats`` as
written in docs/policy.md.  Every call names the thread that makes it (a
small int); calls are applied one at a time, so the model is exact for one
thread and for any serialized interleaving of many ("exact mode").

Pointers are ``Loc`` values (location.py): the model returns one per
allocation and takes it back in ``free`` and ``realloc``.  glibc is modelled
only as far as the contract needs: it always succeeds, and each of its
allocations gets a fresh ``libc_id``.

Misuse (freeing a block that is not live, a negative size) raises
``ModelError``/``ValueError`` naming the culprit; the allocator's own
refusals (OOM, EINVAL, overflow) are results, never exceptions.

Measured cost: see ``_bench.py``.
"""

from __future__ import annotations

from array import array

from hakfuzz.model import selfcheck
from hakfuzz.model.config import Config, OomPolicy
from hakfuzz.model.core import ModelError
from hakfuzz.model.heap import TinyHeap
from hakfuzz.model.limits import (
    CLASS_OF_SIZE,
    CLASS_SIZES,
    MAX_BLOCK,
    POINTER_SIZE,
    SIZE_MAX,
)
from hakfuzz.model.location import NULL_EINVAL, NULL_ENOMEM, NULL_LOC, Loc, LocationTuple, Owner
from hakfuzz.model.stats import FALLBACK_ALLOCS, N_CLASS_FIELDS, OOM_NULLS, Stats
from hakfuzz.model.thread import ThreadState

_TINY = Owner.TINY
_LIBC = Owner.LIBC
_NULL = Owner.NULL


class ModelAllocator:
    """The reference model of one hakmem allocator instance (fresh after ``hak_reset``)."""

    __slots__ = ("_heap", "_libc_live", "_next_libc_id", "_threads")

    _heap: TinyHeap
    _threads: dict[int, ThreadState]
    _libc_live: set[int]
    _next_libc_id: int

    def __init__(self, config: Config | None = None) -> None:
        self.reset(config)

    # -- configuration -----------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._heap.config

    def reset(self, config: Config | None = None) -> None:
        """``hak_reset()`` then ``hak_configure(config)``: a fresh allocator."""
        config = Config() if config is None else config
        config.validate()
        self._heap = TinyHeap(config)
        self._threads = self._heap.threads
        self._libc_live = set()
        self._next_libc_id = 1

    def configure(self, config: Config) -> None:
        """``hak_configure``: apply at quiescence; zeroes the mapping-attempt counter.

        Nothing is released; caches keep their blocks.
        """
        config.validate()
        self._heap.config = config
        self._heap.map_attempts = 0

    # -- allocation ----------------------------------------------------------

    def malloc(self, tid: int, size: int) -> Loc:
        """``hak_malloc(size)`` by thread ``tid``."""
        if 0 <= size <= MAX_BLOCK:
            heap = self._heap
            thread = self._threads.get(tid) or heap.thread(tid)
            class_idx = CLASS_OF_SIZE[size]
            loc = heap.alloc(thread, class_idx)
            return loc if loc is not None else self._refused(class_idx)
        _check_size("size", size)
        return self._new_libc()

    def calloc(self, tid: int, count: int, size: int) -> Loc:
        """``hak_calloc(count, size)``: overflow of ``count * size`` gives NULL/ENOMEM."""
        _check_size("count", count)
        _check_size("size", size)
        total = count * size
        if total > SIZE_MAX:
            return NULL_ENOMEM
        if total <= MAX_BLOCK:
            return self._tiny(self._heap.thread(tid), CLASS_OF_SIZE[total])
        return self._new_libc()

    def posix_memalign(self, tid: int, align: int, size: int) -> Loc:
        """``hak_posix_memalign``: EINVAL unless ``align`` is a power-of-two multiple of 8."""
        _check_size("align", align)
        if not _is_power_of_two(align) or align % POINTER_SIZE:
            return NULL_EINVAL
        return self._aligned(tid, align, size)

    def aligned_alloc(self, tid: int, align: int, size: int) -> Loc:
        """``hak_aligned_alloc``: EINVAL unless ``align`` is a power of two."""
        _check_size("align", align)
        if not _is_power_of_two(align):
            return NULL_EINVAL
        return self._aligned(tid, align, size)

    def _aligned(self, tid: int, align: int, size: int) -> Loc:
        _check_size("size", size)
        need = max(size, align)
        if need <= MAX_BLOCK:
            # Every block is aligned to its class size, which is >= need >= align.
            return self._tiny(self._heap.thread(tid), CLASS_OF_SIZE[need])
        return self._new_libc()

    def libc_alloc(self, tid: int, size: int) -> Loc:
        """``hak_libc_malloc(size)``: a foreign glibc pointer, never counted as fallback."""
        _check_size("size", size)
        return self._new_libc()

    def realloc(self, tid: int, loc: Loc, size: int) -> Loc:
        """``hak_realloc(p, size)``; a NULL result with ``size > 0`` leaves ``loc`` live."""
        owner = loc.owner
        if owner is _NULL:
            return self.malloc(tid, size)
        _check_size("size", size)
        self._check_live(loc)
        if size == 0:
            self.free(tid, loc)
            return NULL_LOC
        if owner is _TINY:
            if size <= MAX_BLOCK and CLASS_OF_SIZE[size] == loc.class_idx:
                return loc
            new = self.malloc(tid, size)
            if new.owner is not _NULL:
                self.free(tid, loc)
            return new
        if size > MAX_BLOCK:
            # glibc realloc: the result is a new libc pointer for the model.
            self._libc_live.remove(loc.libc_id)
            return self._new_libc()
        new = self.malloc(tid, size)
        if new.owner is not _NULL:
            self._libc_live.remove(loc.libc_id)
        return new

    def _tiny(self, thread: ThreadState, class_idx: int) -> Loc:
        loc = self._heap.alloc(thread, class_idx)
        return loc if loc is not None else self._refused(class_idx)

    def _refused(self, class_idx: int) -> Loc:
        """The class cannot give a block: glibc fallback or NULL, as the OOM policy says."""
        if self._heap.config.oom_policy is OomPolicy.LIBC:
            self._heap.counters[class_idx * N_CLASS_FIELDS + FALLBACK_ALLOCS] += 1
            return self._new_libc()
        self._heap.counters[class_idx * N_CLASS_FIELDS + OOM_NULLS] += 1
        return NULL_ENOMEM

    def _new_libc(self) -> Loc:
        libc_id = self._next_libc_id
        self._next_libc_id = libc_id + 1
        self._libc_live.add(libc_id)
        return Loc(_LIBC, -1, 0, -1, -1, libc_id)

    # -- free and queries ------------------------------------------------------

    def free(self, tid: int, loc: Loc) -> None:
        """``hak_free(p)`` by thread ``tid``; NULL does nothing."""
        owner = loc.owner
        if owner is _TINY:
            heap = self._heap
            heap.free(self._threads.get(tid) or heap.thread(tid), loc)
        elif owner is _LIBC:
            try:
                self._libc_live.remove(loc.libc_id)
            except KeyError:
                raise ModelError(f"free of {loc}, which is not a live glibc pointer") from None

    def _check_live(self, loc: Loc) -> None:
        if not self.is_live(loc):
            raise ModelError(f"{loc} is not a live pointer")

    def is_live(self, loc: Loc) -> bool:
        """True if ``loc`` is currently held by the user (NULL is never live)."""
        if loc.owner is _TINY:
            return self._heap.is_held(loc)
        return loc.owner is _LIBC and loc.libc_id in self._libc_live

    def usable_size(self, loc: Loc) -> int | None:
        """``hak_usable_size``: class size if tiny, 0 if NULL, None (">= requested") if libc."""
        if loc.owner is _TINY:
            return CLASS_SIZES[loc.class_idx]
        if loc.owner is _LIBC:
            return None
        return 0

    def locate(self, loc: Loc) -> LocationTuple:
        """``hak_locate(p)`` as a tuple in ``hak_location_t`` order."""
        return loc.location()

    # -- threads -------------------------------------------------------------

    def flush(self, tid: int) -> None:
        """``hak_flush()`` by thread ``tid``."""
        self._heap.flush(self._heap.thread(tid))

    def thread_exit(self, tid: int) -> None:
        """``hak_thread_exit()`` by ``tid``; its next call starts a fresh identity."""
        thread = self._threads.get(tid)
        if thread is not None:
            self._heap.thread_exit(thread)

    def cached(self, tid: int) -> tuple[tuple[Loc, ...], ...]:
        """Thread ``tid``'s caches per class, bottom first (for tests and reports)."""
        thread = self._threads.get(tid)
        if thread is None:
            return tuple(() for _ in CLASS_SIZES)
        return tuple(tuple(cache) for cache in thread.cache)

    # -- introspection -------------------------------------------------------

    def stats_tuple(self) -> tuple[int, ...]:
        """Every counter, flattened in ``hak_stats_t`` order (8 x 8 per class, 5 globals)."""
        return tuple(self._heap.counters)

    def stats_array(self) -> array[int]:
        """The live counters: an ``array('q')`` in ``hak_stats_t`` order and layout.

        Updated in place by every call (read it, never write it); its
        ``tobytes()`` equals the bytes of ``hak_stats`` when model and native
        agree.  ``reset`` replaces it.
        """
        return self._heap.counters

    def stats(self) -> Stats:
        """Every counter as a ``Stats`` record."""
        return Stats.from_tuple(self._heap.counters)

    @property
    def libc_live(self) -> int:
        """Number of live glibc pointers (foreign, large and fallback)."""
        return len(self._libc_live)

    def self_check(self) -> list[str]:
        """Walk every structure; one sentence per broken invariant (empty when consistent)."""
        return selfcheck.check_heap(self._heap)


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _check_size(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= SIZE_MAX:
        raise ValueError(f"{name} must be an int in 0..2**64-1 (a size_t), got {value!r}")
