"""Cross-thread frees: remote stacks, orphans and adoption, on real threads.

cffi releases the GIL around every call, so Python threads calling the
allocator really run in parallel.  A thread ends its allocator life with
``hak_thread_exit()`` itself: ``Thread.join`` can return before a pthread's
TLS destructors have run, and the counters are checked right after the join.
"""

from __future__ import annotations

import functools
import queue
import random
import threading
from collections.abc import Callable

import pytest
from native_helpers import (
    OWNER_LIBC,
    Ptr,
    assert_clean,
    assert_drained,
    assert_only_held,
    configure,
    exact,
    locate,
    malloc_ok,
    run_child,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

THREADS = 4
TIMEOUT = 60.0
Batch = list[tuple[Ptr, int]]


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Run each target on its own thread; re-raise the first exception any of them raised."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), f"a worker thread did not finish within {TIMEOUT} s"
    if errors:
        raise errors[0]


# (config overrides, batches per thread)
RING_CONFIGS = {
    "defaults": ({}, 300),
    "caches-off": ({"cache_cap": 0}, 300),
    "small-caches": ({"cache_cap": 4, "refill_batch": 3}, 300),
    # Three SuperSlabs for eight classes: most classes are served by glibc.
    "budget-libc": ({"ss_cap": 1, "budget_bytes": 3 * limits.SS_SIZE, "cache_cap": 8}, 150),
}


@pytest.mark.parametrize("name", RING_CONFIGS)
def test_ring_of_threads_frees_each_others_blocks(hak: HakmemModule, name: str) -> None:
    overrides, batches = RING_CONFIGS[name]
    configure(hak, **overrides)
    lib, ffi = hak.lib, hak.ffi
    inboxes: list[queue.Queue[Batch | None]] = [queue.Queue() for _ in range(THREADS)]
    allocated = [0] * THREADS
    freed = [0] * THREADS

    def free_batch(me: int, batch: Batch) -> None:
        for ptr, tag in batch:
            seen = ffi.cast("uint64_t *", ptr)[0]
            assert seen == tag, f"thread {me}: block tagged {tag:#x} reads {seen:#x} (overlap?)"
            lib.hak_free(ptr)
        freed[me] += len(batch)

    def worker(me: int) -> None:
        rng = random.Random(f"{name}-{me}")
        outbox, inbox = inboxes[(me + 1) % THREADS], inboxes[me]
        predecessor_done = False
        for batch_idx in range(batches):
            batch: Batch = []
            for block_idx in range(rng.randint(1, 48)):
                size = rng.choice((rng.randint(8, limits.MAX_BLOCK), rng.randint(8, 2048)))
                ptr = lib.hak_malloc(size)
                assert ptr != ffi.NULL, f"thread {me}: hak_malloc({size}) returned NULL"
                tag = (me << 48) | (batch_idx << 16) | block_idx
                ffi.cast("uint64_t *", ptr)[0] = tag
                batch.append((ptr, tag))
            allocated[me] += len(batch)
            outbox.put(batch)
            while True:  # free what has arrived, without waiting
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    predecessor_done = True
                else:
                    free_batch(me, item)
        outbox.put(None)  # everything this thread allocated has been sent
        while not predecessor_done:
            item = inbox.get(timeout=TIMEOUT)
            if item is None:
                predecessor_done = True
            else:
                free_batch(me, item)
        lib.hak_thread_exit()

    run_threads([functools.partial(worker, me) for me in range(THREADS)])
    assert sum(freed) == sum(allocated), f"allocated {allocated}, freed {freed}"
    lib.hak_flush()
    snap = assert_drained(hak, f"{name}: after every thread exited")
    assert snap.total("slabs_in_use") == 0, f"every slab retired once all blocks came back:\n{snap}"
    assert_only_held(snap, name, budget="budget_bytes" in overrides)  # a budget: none held
    if "budget_bytes" in overrides:
        assert snap.total("fallback_allocs") > 0, f"{name}: the cap should have forced fallbacks"
    assert_clean(hak, f"{name}: after {sum(allocated)} cross-thread frees")


def test_remote_frees_wait_on_the_owners_stack(hak: HakmemModule) -> None:
    exact(hak)  # caches off: the main thread's frees go straight to the remote stack
    lib = hak.lib
    handoff: queue.Queue[list[Ptr]] = queue.Queue()
    freed_remotely, drained, finish = threading.Event(), threading.Event(), threading.Event()
    count = 100

    def owner() -> None:
        handoff.put([malloc_ok(hak, 64) for _ in range(count)])
        assert freed_remotely.wait(TIMEOUT)
        lib.hak_flush()  # drains the remote stacks of the slabs it owns
        drained.set()
        assert finish.wait(TIMEOUT)
        lib.hak_thread_exit()

    thread = threading.Thread(target=owner, daemon=True)
    thread.start()
    try:
        ptrs = handoff.get(timeout=TIMEOUT)
        for ptr in ptrs:
            lib.hak_free(ptr)
        snap = stats(hak)
        assert (snap.cls[3]["remote_pending"], snap.cls[3]["active_blocks"]) == (count, count), (
            f"a free by a non-owner waits on the remote stack, still counted as used:\n{snap}"
        )
        assert_clean(hak, "with remote frees pending")
        freed_remotely.set()
        assert drained.wait(TIMEOUT)
        snap = assert_drained(hak, "after the owner's flush")
        assert (snap.cls[3]["slabs_in_use"], snap.cls[3]["ss_live"]) == (0, 1), str(snap)  # held
        assert_clean(hak, "after the owner drained its remote stacks")
    finally:
        freed_remotely.set()
        finish.set()
        thread.join(TIMEOUT)


@pytest.mark.parametrize("mode", ["caches-off", "caches-on"])
def test_blocks_of_an_exited_thread_are_adopted(hak: HakmemModule, mode: str) -> None:
    configure(hak, **({"cache_cap": 0} if mode == "caches-off" else {}))
    lib = hak.lib
    result: list[Ptr] = []

    def allocate_and_exit() -> None:
        result.extend(malloc_ok(hak, 1024) for _ in range(100))  # slab 0 and slab 1
        lib.hak_thread_exit()

    run_threads([allocate_and_exit])
    snap = stats(hak)
    assert (snap.cls[7]["slabs_in_use"], snap.cls[7]["active_blocks"]) == (2, 100), (
        f"the exited thread's slabs are orphans, still in use:\n{snap}"
    )
    assert_clean(hak, "with orphan slabs")
    # A thread that needs a slab adopts the latest orphan (slab 1, which has
    # room) before it takes a FREE one (docs/policy.md, take step 2c).
    mine = malloc_ok(hak, 1024)
    where = locate(hak, mine)
    assert where.slab_idx == 1, f"the latest orphan is adopted, not a FREE slab: {where}"
    if mode == "caches-off":
        assert where.block_idx == 40, f"it continues where the exited thread stopped: {where}"
    assert stats(hak).cls[7]["slabs_in_use"] == 2
    for ptr in [*result, mine]:
        lib.hak_free(ptr)
    lib.hak_flush()
    snap = assert_drained(hak, "after adopting and freeing the orphans")
    assert (snap.cls[7]["slabs_in_use"], snap.cls[7]["ss_live"]) == (0, 1), (
        f"adopted orphans are retired and the SuperSlab held (the class's only one):\n{snap}"
    )
    assert_clean(hak, "after adoption")


# A thread whose record cannot be mapped (testfault one-thread-record: only
# the first record maps) frees a block of the main thread's slab: while that
# slab is OWNED (a remote free the owner drains) and once it is an ORPHAN
# (the free adopts it and retires it).  Prints the class-3 counters after.
NO_RECORD_CHILD = """
import json, sys, threading
from hakfuzz.variants import load_module
hak = load_module(sys.argv[1])
lib, ffi = hak.lib, hak.ffi
ptr = lib.hak_malloc(64)                 # the main thread gets the only record
keep = ffi.NULL
if sys.argv[2] == "orphan":
    lib.hak_thread_exit()                # its slab, one block out, becomes an ORPHAN
    keep = lib.hak_malloc(8)             # and it takes its pooled record back
where = ffi.new("hak_location_t *")

def no_record():
    lib.hak_free(ptr)                    # before the fix: returned, the block leaked
    other = lib.hak_malloc(64)           # no record: the OOM policy (libc) serves it
    lib.hak_locate(other, where)
    lib.hak_free(other)

worker = threading.Thread(target=no_record)
worker.start()
worker.join()
lib.hak_free(keep)
lib.hak_flush()                          # the owner drains its remote frees
st = ffi.new("hak_stats_t *")
lib.hak_stats(st)
msg = ffi.new("char[]", 256)
bad = lib.hak_check(msg, 256)
c = st.cls[3]
print(json.dumps({"active": c.active_blocks, "slabs": c.slabs_in_use, "remote": c.remote_pending,
                  "fallback": c.fallback_allocs, "other_owner": where.owner, "ss_live": c.ss_live,
                  "check": ffi.string(msg).decode() if bad else None}))
"""


@pytest.mark.native
@pytest.mark.parametrize("build", ["", "@debug"])
@pytest.mark.parametrize("slab", ["owned", "orphan"])
def test_a_thread_without_a_record_still_frees(build: str, slab: str) -> None:
    got = run_child(NO_RECORD_CHILD, f"testfault:one-thread-record{build}", slab)
    assert got["check"] is None, got["check"]
    assert (got["active"], got["slabs"], got["remote"], got["ss_live"]) == (0, 0, 0, 1), (
        f"the block freed without a record went back, its slab retired, its SuperSlab held: {got}"
    )
    assert (got["fallback"], got["other_owner"]) == (1, OWNER_LIBC), (
        f"a malloc without a record is the OOM policy's, counted as a fallback: {got}"
    )
