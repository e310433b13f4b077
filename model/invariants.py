"""Invariant mode: judging runs whose threads really ran at the same time.

With truly concurrent threads the placement of a block depends on the
interleaving, so the model cannot predict ``Loc`` values.  What it can
predict, and what this module checks:

Per op (``InvariantChecker.malloc`` etc., fed the observed results in program
order, which is a valid serialization for everything checked here):

- O1 a request above 1024 bytes gets a glibc pointer;
- O2 a tiny pointer has the class of its request and a possible place;
- O3 a glibc pointer for a request <= 1024 (fallback) needs policy ``libc``,
  a NULL needs policy ``null`` and errno ENOMEM, and both need a config under
  which growth can be refused (``ss_cap``, ``budget_bytes`` or
  ``fail_map_at``); each is counted in its class;
- O4 ``realloc`` to the same class returns the same block, ``realloc(p, 0)``
  returns NULL; calloc overflow is NULL/ENOMEM; bad alignments EINVAL.

At a quiescent point (``InvariantChecker.check`` or ``expect_quiescent_totals``
with the final ``hak_stats`` and the live tiny blocks per class), per class:

- Q1 ``ss_live == ss_created - ss_released``;
- Q2 ``slabs_in_use <= 32 * ss_live``, and with ``release_empty``
  ``ss_live <= slabs_in_use + threads + 1``: a live SuperSlab has a slab in
  use, except the one a class holds (its first live one, emptied) and one
  grown by a thread that then acquired a slab another thread had just
  freed in an older SuperSlab (serialized runs never leave one; with real
  threads each racing grower may);
- Q3 ``active_blocks == live + remote_pending + cached`` with
  ``0 <= cached <= threads * cache_cap`` (so equality when caches are off);
- Q4 ``slabs_in_use <= active_blocks + threads``: a slab in use holds a used
  block or is some thread's current slab (only ``cur`` survives ``used == 0``);
- Q5 ``ss_live <= ss_cap`` and ``sum(ss_live) * 2 MiB <= budget_bytes`` when set;
- Q6 ``fallback_allocs`` and ``oom_nulls`` equal the counts of O3;

and globally:

- G1 ``ss_mapped == sum(ss_live) + ss_kept``, ``ss_kept <= ss_keep``,
  ``os_maps - os_unmaps == ss_mapped``, ``sum(ss_created) >= os_maps``;
- G2 ``os_map_failures`` is 1 once ``os_maps + os_map_failures`` reached
  ``fail_map_at`` (when set), else 0 (counters and the attempt counter are
  assumed zeroed together, by ``hak_reset`` then ``hak_configure``).

When every thread identity has exited (``all_exited``; each ran
``hak_thread_exit`` after its last op), additionally:

- E1 ``remote_pending == 0`` and ``active_blocks == live``;
- E2 ``slabs_in_use <= live`` (every slab still in use is an orphan holding
  a live block).

Finally no two live tiny handles may share a place (no overlap).
"""

from __future__ import annotations

from collections.abc import Sequence
from errno import EINVAL, ENOMEM

from hakfuzz.model.config import Config, OomPolicy
from hakfuzz.model.limits import (
    CLASS_OF_SIZE,
    MAX_BLOCK,
    NUM_CLASSES,
    POINTER_SIZE,
    SIZE_MAX,
    SLABS_PER_SS,
    SS_SIZE,
    slab_capacity,
)
from hakfuzz.model.location import Loc, Owner
from hakfuzz.model.stats import ClassStats, Stats


def expect_quiescent_totals(
    stats: Stats | Sequence[int],
    config: Config,
    live_tiny: Sequence[int],
    *,
    threads: int,
    fallback_allocs: Sequence[int] | None = None,
    oom_nulls: Sequence[int] | None = None,
    all_exited: bool = False,
) -> list[str]:
    """Check Q1-Q6, G1-G2 (and E1-E2 if ``all_exited``); one sentence per violation.

    ``live_tiny[c]``: tiny blocks of class ``c`` held by the user; ``threads``:
    how many threads may hold a cache (identities alive at once).  Pass the
    expected ``fallback_allocs``/``oom_nulls`` per class to check them too.
    """
    if not isinstance(stats, Stats):
        stats = Stats.from_tuple(stats)
    problems: list[str] = []
    for class_idx, cls in enumerate(stats.cls):
        found = _class_problems(cls, config, live_tiny[class_idx], threads, all_exited)
        if fallback_allocs is not None and cls.fallback_allocs != fallback_allocs[class_idx]:
            found.append(
                f"fallback_allocs {cls.fallback_allocs}, expected {fallback_allocs[class_idx]}"
            )
        if oom_nulls is not None and cls.oom_nulls != oom_nulls[class_idx]:
            found.append(f"oom_nulls {cls.oom_nulls}, expected {oom_nulls[class_idx]}")
        problems.extend(f"C{class_idx}: {message}" for message in found)
    problems.extend(_global_problems(stats, config))
    return problems


def _class_problems(
    cls: ClassStats, config: Config, live: int, threads: int, all_exited: bool
) -> list[str]:
    """Q1-Q5 and E1-E2 for one class."""
    found: list[str] = []
    if cls.ss_live != cls.ss_created - cls.ss_released:
        found.append(
            f"ss_live {cls.ss_live} != created {cls.ss_created} - released {cls.ss_released}"
        )
    if cls.slabs_in_use > SLABS_PER_SS * cls.ss_live:
        found.append(f"slabs_in_use {cls.slabs_in_use} > {SLABS_PER_SS} x ss_live {cls.ss_live}")
    if config.release_empty and cls.ss_live > cls.slabs_in_use + threads + 1:
        found.append(
            f"ss_live {cls.ss_live} > slabs_in_use {cls.slabs_in_use} + {threads} + 1 held:"
            " empty SuperSlabs"
        )
    if cls.remote_pending < 0:
        found.append(f"remote_pending is negative: {cls.remote_pending}")
    cached = cls.active_blocks - cls.remote_pending - live
    if not 0 <= cached <= threads * config.cache_cap:
        found.append(
            f"active_blocks {cls.active_blocks} - remote_pending {cls.remote_pending}"
            f" - live {live} = {cached} cached blocks, outside 0..{threads * config.cache_cap}"
        )
    if cls.slabs_in_use > cls.active_blocks + threads:
        found.append(f"slabs_in_use {cls.slabs_in_use} > active_blocks + {threads} current slabs")
    if config.ss_cap and cls.ss_live > config.ss_cap:
        found.append(f"ss_live {cls.ss_live} > ss_cap {config.ss_cap}")
    if all_exited:
        if cls.remote_pending != 0 or cls.active_blocks != live:
            found.append(
                f"after every thread exited: remote_pending {cls.remote_pending},"
                f" active_blocks {cls.active_blocks}, live {live}"
            )
        if cls.slabs_in_use > live:
            found.append(
                f"after every thread exited: slabs_in_use {cls.slabs_in_use} > live {live}"
            )
    return found


def _global_problems(stats: Stats, config: Config) -> list[str]:
    problems: list[str] = []
    live_total = sum(cls.ss_live for cls in stats.cls)
    if config.budget_bytes and live_total * SS_SIZE > config.budget_bytes:
        problems.append(f"{live_total} live SuperSlabs exceed budget_bytes {config.budget_bytes}")
    if stats.ss_mapped != live_total + stats.ss_kept:
        problems.append(f"ss_mapped {stats.ss_mapped} != live {live_total} + kept {stats.ss_kept}")
    if stats.ss_kept > config.ss_keep:
        problems.append(f"ss_kept {stats.ss_kept} > ss_keep {config.ss_keep}")
    if stats.os_maps - stats.os_unmaps != stats.ss_mapped:
        problems.append(
            f"os_maps {stats.os_maps} - os_unmaps {stats.os_unmaps} != ss_mapped {stats.ss_mapped}"
        )
    created = sum(cls.ss_created for cls in stats.cls)
    if created < stats.os_maps:
        problems.append(f"{stats.os_maps} OS mappings but only {created} SuperSlabs created")
    attempts = stats.os_maps + stats.os_map_failures
    expected_failures = int(bool(config.fail_map_at) and attempts >= config.fail_map_at)
    if stats.os_map_failures != expected_failures:
        problems.append(
            f"os_map_failures {stats.os_map_failures} after {attempts} attempts,"
            f" expected {expected_failures} (fail_map_at {config.fail_map_at})"
        )
    return problems


class InvariantChecker:
    """Tracks live handles of a concurrent run and judges results and totals.

    Feed every op's observed result, in program order, to the method of the
    same name; each returns the per-op violations (O1-O4).  ``check`` judges
    the stats at a quiescent point.  A handle names one live pointer; misuse
    (an unknown handle, a handle created twice) raises ValueError.
    """

    __slots__ = ("_config", "_fallback", "_handles", "_limited", "_live_tiny", "_oom", "_threads")

    def __init__(self, config: Config, threads: int) -> None:
        config.validate()
        self._config = config
        self._threads = threads
        self._handles: dict[int, Loc] = {}
        self._live_tiny = [0] * NUM_CLASSES
        self._fallback = [0] * NUM_CLASSES
        self._oom = [0] * NUM_CLASSES
        self._limited = bool(config.ss_cap or config.budget_bytes or config.fail_map_at)

    @property
    def live_tiny(self) -> tuple[int, ...]:
        """Live tiny handles per class."""
        return tuple(self._live_tiny)

    @property
    def expected_fallback_allocs(self) -> tuple[int, ...]:
        """Fallbacks observed per class so far."""
        return tuple(self._fallback)

    @property
    def expected_oom_nulls(self) -> tuple[int, ...]:
        """NULL results at the cap observed per class so far."""
        return tuple(self._oom)

    def live(self, handle: int) -> Loc | None:
        """The live result named by ``handle``, or None."""
        return self._handles.get(handle)

    # -- ops -------------------------------------------------------------------

    def malloc(self, handle: int, size: int, got: Loc) -> list[str]:
        """Judge ``hak_malloc(size)`` returning ``got``."""
        return self._created(handle, got, self._judge(f"malloc({size})", _class(size), got))

    def calloc(self, handle: int, count: int, size: int, got: Loc) -> list[str]:
        """Judge ``hak_calloc(count, size)`` returning ``got``."""
        what = f"calloc({count}, {size})"
        total = count * size
        if total > SIZE_MAX:
            return self._created(handle, got, _expect_null(what, got, ENOMEM))
        return self._created(handle, got, self._judge(what, _class(total), got))

    def posix_memalign(self, handle: int, align: int, size: int, got: Loc) -> list[str]:
        """Judge ``hak_posix_memalign(align, size)`` returning ``got``."""
        what = f"posix_memalign({align}, {size})"
        if align <= 0 or align & (align - 1) or align % POINTER_SIZE:
            return self._created(handle, got, _expect_null(what, got, EINVAL))
        return self._created(handle, got, self._judge(what, _class(max(size, align)), got))

    def libc_alloc(self, handle: int, size: int, got: Loc) -> list[str]:
        """Judge glibc's malloc returning ``got``."""
        problems = [] if got.owner is Owner.LIBC else [f"libc_alloc({size}): got {got}"]
        return self._created(handle, got, problems)

    def realloc(self, handle: int, size: int, got: Loc) -> list[str]:
        """Judge ``hak_realloc(handle's pointer, size)`` returning ``got``."""
        old = self._take(handle)
        what = f"realloc({old}, {size})"
        if size == 0:
            return [] if got.owner is Owner.NULL else [f"{what}: expected NULL, got {got}"]
        if old.owner is Owner.TINY and size <= MAX_BLOCK and CLASS_OF_SIZE[size] == old.class_idx:
            problems = [] if got == old else [f"{what}: same class, expected {old}, got {got}"]
        elif old.owner is Owner.LIBC and size > MAX_BLOCK:
            problems = [] if got.owner is Owner.LIBC else [f"{what}: expected glibc, got {got}"]
        else:
            problems = self._judge(what, _class(size), got)
        if got.owner is Owner.NULL:
            self._put(handle, old)  # a failed realloc leaves the old block live
            return problems
        return self._created(handle, got, problems)

    def free(self, handle: int) -> list[str]:
        """Record ``hak_free`` of the handle's pointer."""
        self._take(handle)
        return []

    # -- quiescent points ----------------------------------------------------

    def check(self, stats: Stats | Sequence[int], *, all_exited: bool = False) -> list[str]:
        """Judge ``hak_stats`` at a quiescent point, and that no two live blocks overlap."""
        problems = expect_quiescent_totals(
            stats,
            self._config,
            self._live_tiny,
            threads=self._threads,
            fallback_allocs=self._fallback,
            oom_nulls=self._oom,
            all_exited=all_exited,
        )
        places: dict[tuple[int, int, int], int] = {}
        for handle, loc in self._handles.items():
            if loc.owner is Owner.TINY:
                key = (loc.ss_seq, loc.slab_idx, loc.block_idx)
                other = places.setdefault(key, handle)
                if other != handle:
                    problems.append(f"handles {other} and {handle} both hold {loc}")
        return problems

    # -- helpers -------------------------------------------------------------

    def _judge(self, what: str, class_idx: int | None, got: Loc) -> list[str]:
        """O1-O3 for an allocation request of class ``class_idx`` (None: above 1024)."""
        if class_idx is None:
            return [] if got.owner is Owner.LIBC else [f"{what}: expected glibc, got {got}"]
        if got.owner is Owner.TINY:
            if got.class_idx != class_idx:
                return [f"{what}: expected class {class_idx}, got {got}"]
            ok_place = got.ss_seq >= 1 and 0 <= got.slab_idx < SLABS_PER_SS
            if not ok_place or not 0 <= got.block_idx < slab_capacity(class_idx, got.slab_idx):
                return [f"{what}: impossible place {got}"]
            return []
        policy = self._config.oom_policy
        if got.owner is Owner.LIBC:
            self._fallback[class_idx] += 1
            if policy is not OomPolicy.LIBC or not self._limited:
                return [
                    f"{what}: fell back to glibc, but policy is {policy.name} and growth"
                    f" {'can' if self._limited else 'cannot'} be refused"
                ]
            return []
        self._oom[class_idx] += 1
        if policy is not OomPolicy.NULL or not self._limited or got.errno != ENOMEM:
            return [
                f"{what}: got {got} with policy {policy.name}"
                f" ({'limited' if self._limited else 'unlimited'} growth)"
            ]
        return []

    def _created(self, handle: int, got: Loc, problems: list[str]) -> list[str]:
        if handle in self._handles:
            raise ValueError(f"handle {handle} is already live")
        if got.owner is not Owner.NULL:
            self._put(handle, got)
        return problems

    def _put(self, handle: int, loc: Loc) -> None:
        self._handles[handle] = loc
        if loc.owner is Owner.TINY:
            self._live_tiny[loc.class_idx] += 1

    def _take(self, handle: int) -> Loc:
        loc = self._handles.pop(handle, None)
        if loc is None:
            raise ValueError(f"handle {handle} is not live")
        if loc.owner is Owner.TINY:
            self._live_tiny[loc.class_idx] -= 1
        return loc


def _class(size: int) -> int | None:
    return CLASS_OF_SIZE[size] if 0 <= size <= MAX_BLOCK else None


def _expect_null(what: str, got: Loc, errno: int) -> list[str]:
    if got.owner is Owner.NULL and got.errno == errno:
        return []
    return [f"{what}: expected NULL with errno {errno}, got {got}"]
