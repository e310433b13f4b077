"""Minimise a failing program: its churn section, then delta debugging over ops, then threads.

A churn section (many thread lifetimes after the ops) is dropped when the
failure shows without it, else its lifetimes, threads and blocks per
lifetime are halved while it still fails.

``ddmin`` removes chunks of ops (halves, quarters, ... down to single ops);
removing an op that creates a handle removes every later op on that handle,
so each candidate is a valid program.  Then it tries to fold each thread's
ops into thread 0 and to drop unused threads.  A candidate counts as failing
when it reproduces the *same signature* in at least one of ``runs`` runs
(races are flaky); the final program's reproduction rate is measured over
``runs`` runs and reported.

A race can shrink to a program that fails once in ten runs: useless as a
regression.  So the result must reproduce in at least :data:`MIN_RATE` of its
runs: if the smallest candidate does not, the accepted candidates are tried
again from the smallest back to the original, and the smallest that does is
kept; if none does, the original is kept.  The note says which happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from hakfuzz.program import CREATING_KINDS, NO_HANDLE, ChurnSpec, Op, Program, canonicalize

Oracle = Callable[[Program], str | None]
"""Runs a program once; returns the signature it fails with, or None."""

MIN_RATE = 0.5
"""The least reproduction rate a minimised program must keep."""


@dataclass(frozen=True, slots=True)
class Minimized:
    """The outcome of a minimisation."""

    program: Program
    original_ops: int
    reproduction_rate: float
    candidates_tried: int
    seconds: float
    note: str = ""  # how the rate constrained the result, when it did


def _without(program: Program, drop: set[int]) -> Program:
    """The program minus ops ``drop`` and every op on a handle they created."""
    dead: set[int] = set()
    ops: list[Op] = []
    for index, op in enumerate(program.ops):
        if index in drop:
            if op.kind in CREATING_KINDS:
                dead.add(op.handle)
            continue
        if op.handle != NO_HANDLE and op.handle in dead:
            continue
        ops.append(op)
    return canonicalize(replace(program, ops=tuple(ops)))


def _with_threads(program: Program, mapping: dict[int, int], threads: int) -> Program:
    ops = tuple(
        Op(op.kind, mapping[op.thread], op.handle, op.size, op.count, op.align, op.seed)
        for op in program.ops
    )
    return replace(program, threads=threads, ops=ops)


def minimize(
    program: Program,
    signature: str,
    run_once: Oracle,
    *,
    runs: int = 3,
    budget_seconds: float = 60.0,
) -> Minimized:
    """Shrink ``program`` while it still fails with ``signature``."""
    started = time.perf_counter()
    tried = 0

    def fails(candidate: Program) -> bool:
        nonlocal tried
        for _ in range(runs):
            tried += 1
            if run_once(candidate) == signature:
                return True
        return False

    def out_of_time() -> bool:
        return time.perf_counter() - started > budget_seconds

    best = program
    accepted = [program]  # every candidate taken, the original first
    # The churn section first: its runs cost the most, so every later
    # candidate is cheaper once it is smaller (or gone).
    for candidate in _shrink_churn(best, fails, out_of_time):
        best = candidate
        accepted.append(best)
    chunks = 2
    while len(best.ops) >= 2 and not out_of_time():
        size = max(1, len(best.ops) // chunks)
        reduced = False
        for start in range(0, len(best.ops), size):
            if out_of_time():
                break
            candidate = _without(best, set(range(start, min(start + size, len(best.ops)))))
            if ((candidate.ops or candidate.churn is not None)
                    and len(candidate.ops) < len(best.ops) and fails(candidate)):
                best = candidate
                accepted.append(best)
                chunks = max(chunks - 1, 2)
                reduced = True
                break
        if not reduced:
            if size == 1:
                break
            chunks = min(chunks * 2, len(best.ops))
    folded = _fewer_threads(best, fails, out_of_time)
    if folded is not best:
        accepted.append(folded)

    def rate(candidate: Program) -> float:
        nonlocal tried
        tried += runs
        return sum(1 for _ in range(runs) if run_once(candidate) == signature) / runs

    best, reproduced, note = _reproducible(accepted, rate)
    return Minimized(
        best, len(program.ops), reproduced, tried, time.perf_counter() - started, note
    )


def _halved(churn: ChurnSpec, field: str) -> ChurnSpec | None:
    """``churn`` with ``field`` (lifetimes, threads or blocks) halved; None at 1."""
    if field == "lifetimes":
        return replace(churn, lifetimes=churn.lifetimes // 2) if churn.lifetimes > 1 else None
    if field == "threads":
        return replace(churn, threads=churn.threads // 2) if churn.threads > 1 else None
    return replace(churn, blocks=churn.blocks // 2) if churn.blocks > 1 else None


def _shrink_churn(
    best: Program, fails: Callable[[Program], bool], out_of_time: Callable[[], bool]
) -> list[Program]:
    """The failing candidates taken, in order.

    No churn at all, else fewer lifetimes, threads, blocks per lifetime
    (halving each while it still fails; races need enough churn to show).
    """
    if best.churn is None or out_of_time():
        return []
    without = replace(best, churn=None)
    if fails(without):
        return [without]
    taken: list[Program] = []
    for field in ("lifetimes", "threads", "blocks"):
        while not out_of_time() and best.churn is not None:
            smaller = _halved(best.churn, field)
            if smaller is None:
                break
            candidate = replace(best, churn=smaller)
            if not fails(candidate):
                break
            best = candidate
            taken.append(best)
    return taken


def _reproducible(
    accepted: list[Program], rate: Callable[[Program], float]
) -> tuple[Program, float, str]:
    """The smallest accepted candidate reproducing at least :data:`MIN_RATE`, its rate, a note."""
    smallest_rate = 0.0
    for candidate in reversed(accepted):
        measured = rate(candidate)
        if candidate is accepted[-1]:
            smallest_rate = measured
        if measured >= MIN_RATE:
            note = (
                ""
                if candidate is accepted[-1]
                else f"the smallest program ({len(accepted[-1].ops)} ops) reproduced "
                f"{smallest_rate:.0%}; kept the smallest that reproduces at least {MIN_RATE:.0%}"
            )
            return candidate, measured, note
    return accepted[0], measured, (
        f"no candidate reproduced in at least {MIN_RATE:.0%} of runs: the program as found "
        "is kept"
    )


def _fewer_threads(
    best: Program, fails: Callable[[Program], bool], out_of_time: Callable[[], bool]
) -> Program:
    used = sorted({op.thread for op in best.ops})
    compact = {t: i for i, t in enumerate(used)}
    if used and len(used) < best.threads:
        candidate = _with_threads(best, compact, len(used))
        if fails(candidate):
            best = candidate
    for victim in range(best.threads - 1, 0, -1):
        if out_of_time() or best.threads == 1:
            break
        mapping = {
            t: (0 if t == victim else (t if t < victim else t - 1)) for t in range(best.threads)
        }
        candidate = _with_threads(best, mapping, best.threads - 1)
        if fails(candidate):
            best = candidate
    return best
