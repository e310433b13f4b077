"""``hakfuzz stress``: seeded parallel workloads, each program run K times.

The op budget is split evenly over the chosen workloads; each workload
generates programs (seed, seed+1, ...) of at most ``program_ops`` ops until
its share is spent, and each program runs ``repeat`` times in the driver
(races need repetition).  A run passes when the driver's oracles pass and the
model's invariant mode accepts its final counters.  The next program is
generated while the driver runs the current one.

With a ``target`` (any allocator but the built-in hakmem), the programs run
in the foreign driver under ``LD_PRELOAD`` of the target; every run that
reports must name the target's library as the object serving ``malloc``
(else :class:`~hakfuzz.targets.TargetError`), and a finding's program is
minimised by re-running the driver.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hakfuzz.differential.driver import RunResult, judge, run_driver
from hakfuzz.differential.wire import to_wire
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.findings import Finding
from hakfuzz.model import Config, expect_quiescent_totals
from hakfuzz.program import Program, ProgramConfig
from hakfuzz.program.churn import churn_weight
from hakfuzz.program.minimize import minimize
from hakfuzz.targets import Target, TargetError, child_env, served_by


@dataclass(frozen=True, slots=True)
class StressOptions:
    """What one stress campaign runs."""

    threads: int = 4
    ops: int = 200_000
    libc_ratio: float = 0.3
    seed: int = 0
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    repeat: int = 1
    variant: str = "release"
    program_ops: int = 20_000
    timeout: float = 300.0
    allocator: str = "hakmem"
    target: Target | None = None  # set: the foreign driver under LD_PRELOAD of this target
    foreign_frees: bool = True  # foreign driver: glibc's blocks freed by the target
    minimize_seconds: float = 30.0  # foreign driver: budget to shrink each finding's program


@dataclass(slots=True)
class WorkloadTally:
    """Per-workload figures."""

    programs: int = 0
    runs: int = 0
    ops: int = 0
    seconds: float = 0.0  # time inside the driver's threads
    lifetimes: int = 0  # thread lifetimes the churn phases ran
    peak_threads: int = 0  # most pthreads one churn phase ran at once

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "programs": self.programs,
            "runs": self.runs,
            "ops": self.ops,
            "seconds": round(self.seconds, 4),
            "ops_per_sec": round(self.ops / self.seconds, 1) if self.seconds else 0.0,
        }
        if self.lifetimes:
            out["lifetimes"] = self.lifetimes
            out["peak_threads"] = self.peak_threads
        return out

    def add_churn(self, churn: object) -> None:
        """Count a run's churn phase (the driver's ``churn`` member), when it had one."""
        if not isinstance(churn, dict):
            return
        self.lifetimes += int(churn.get("lifetimes", 0))
        self.peak_threads = max(self.peak_threads, int(churn.get("peak_threads", 0)))


@dataclass(slots=True)
class StressReport:
    """The campaign's outcome."""

    options: StressOptions
    tallies: dict[str, WorkloadTally] = field(default_factory=dict)
    findings: dict[str, Finding] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def runs(self) -> int:
        return sum(t.runs for t in self.tallies.values())

    @property
    def ops(self) -> int:
        return sum(t.ops for t in self.tallies.values())

    @property
    def driver_seconds(self) -> float:
        return sum(t.seconds for t in self.tallies.values())

    def as_json(self) -> dict[str, Any]:
        o = self.options
        foreign: dict[str, Any] = {}
        if o.target is not None:
            foreign = {
                "target": o.target.as_json(),
                "served_by": o.target.real_path,
                "foreign_frees": "on" if o.foreign_frees else "off",
            }
        return {
            "engine": "parallel",
            "variant": o.variant,
            "allocator": o.target.name if o.target is not None else o.allocator,
            **foreign,
            "threads": o.threads,
            "seed": o.seed,
            "repeat": o.repeat,
            "libc_ratio": o.libc_ratio,
            "runs": self.runs,
            "ops": self.ops,
            "ops_per_sec": round(self.ops / self.driver_seconds, 1) if self.driver_seconds else 0.0,
            "wall_seconds": round(self.wall_seconds, 3),
            "workloads": {name: t.as_json() for name, t in self.tallies.items()},
            "findings": [finding_json(f) for f in self.findings.values()],
        }


def finding_json(f: Finding) -> dict[str, Any]:
    """A finding's JSON summary (the program is saved separately)."""
    return {
        "signature": f.signature,
        "engine": f.engine,
        "kind": f.kind,
        "message": f.message,
        "op_index": f.op_index,
        "variant": f.variant,
        "seed": f.seed,
        "ops": len(f.program.ops),
        "threads": f.program.threads,
        **{k: f.extra[k] for k in ("foreign_free", "original_ops", "reproduction_rate")
           if k in f.extra},
    }


def model_config(config: ProgramConfig) -> Config:
    """The model's view of a program's allocator config."""
    return Config.from_c_fields(config.as_c_fields())


def final_stats_problems(run: RunResult, program: Program) -> list[str]:
    """Invariant mode on the driver's final counters (everything freed, every thread gone)."""
    stats = (run.result or {}).get("stats")
    if not isinstance(stats, dict):
        return []
    flat = [v for cls in stats["classes"] for v in cls]
    flat += [stats[k] for k in ("ss_mapped", "ss_kept", "os_maps", "os_map_failures", "os_unmaps")]
    return expect_quiescent_totals(
        flat, model_config(program.config), [0] * 8, threads=0, all_exited=True
    )


def judge_run(
    run: RunResult,
    program: Program,
    *,
    variant: str,
    seed: int | None,
    model: bool = True,
    engine: str = "parallel",
) -> Finding | None:
    """The verdict on a run of the C driver: every engine, re-run and replay judges by this.

    The driver's own verdict first, then (``model``: hakmem served the run)
    the model's invariant mode on its final counters.
    """
    finding = judge(run, program, variant=variant, seed=seed, engine=engine)
    if finding is None and model:
        problems = final_stats_problems(run, program)
        if problems:
            finding = Finding(
                engine,
                "oracle",
                "model-invariant " + problems[0],
                "; ".join(problems),
                program,
                None,
                variant,
                seed,
            )
    return finding


def _programs(opts: StressOptions, name: str) -> Iterator[tuple[int, Program]]:
    share = max(1, opts.ops // len(opts.workloads))
    spent, seed = 0, opts.seed
    generator = WORKLOADS[name]
    while spent < share:
        program = generator(
            seed, opts.threads, min(opts.program_ops, share - spent), opts.libc_ratio
        )
        spent += max(1, len(program.ops) + churn_weight(program.churn))
        yield seed, program
        seed += 1


Progress = Callable[[str, int, int], None]
"""Called as (workload, ops done in it, its op share) after each run."""


def run_stress(
    opts: StressOptions,
    driver: Path,
    *,
    progress: Progress | None = None,
    on_finding: Callable[[Finding], None] | None = None,
) -> StressReport:
    """Run the campaign; findings are deduplicated by signature."""
    report = StressReport(opts)
    started = time.perf_counter()
    share = max(1, opts.ops // len(opts.workloads))
    with ThreadPoolExecutor(max_workers=1) as pool:
        for name in opts.workloads:
            tally = report.tallies.setdefault(name, WorkloadTally())
            programs = _programs(opts, name)
            pending: Future[tuple[int, Program, bytes]] | None = pool.submit(_next, programs)
            done_ops = 0
            while pending is not None:
                item = pending.result()
                if item[1] is _END:
                    break
                seed, program, wire = item
                pending = pool.submit(_next, programs)
                tally.programs += 1
                for _ in range(opts.repeat):
                    run = _run(opts, driver, program, wire)
                    tally.runs += 1
                    if run.result is not None:
                        tally.ops += int(run.result.get("ops", 0))
                        tally.seconds += float(run.result.get("seconds", 0.0))
                        tally.add_churn(run.result.get("churn"))
                    if opts.target is None:
                        finding = judge_run(
                            run, program, variant=opts.variant, seed=seed,
                            model=opts.allocator == "hakmem",
                        )
                    else:
                        finding = judge_foreign(opts, driver, run, program, seed)
                    if finding is not None:
                        if finding.signature not in report.findings:
                            if opts.target is not None:
                                finding = minimize_foreign(opts, driver, finding)
                            report.findings[finding.signature] = finding
                            if on_finding is not None:
                                on_finding(finding)
                        break  # this program has shown its bug; move on
                done_ops += len(program.ops) + churn_weight(program.churn)
                if progress is not None:
                    progress(name, min(done_ops, share), share)
    report.wall_seconds = time.perf_counter() - started
    return report


def _run(opts: StressOptions, driver: Path, program: Program, wire: bytes | None) -> RunResult:
    """One driver run; a foreign one must have been served by its target."""
    if opts.target is None:
        return run_driver(
            driver, program, allocator=opts.allocator, timeout=opts.timeout, wire=wire
        )
    run = run_driver(
        driver,
        program,
        timeout=opts.timeout,
        wire=wire,
        env=child_env(opts.target),
        foreign_frees=opts.foreign_frees,
    )
    if run.result is not None:
        seen = served_by(opts.target, run.result.get("malloc_from"))
        if not seen.ok:
            raise TargetError(f"{opts.target.name}: a stress run was not served by it: "
                              f"{seen.problem}")
    return run


def judge_foreign(
    opts: StressOptions, driver: Path, run: RunResult, program: Program, seed: int | None
) -> Finding | None:
    """The driver's verdict on a foreign run, a delayed foreign-free crash named as one.

    A target may survive the free of a glibc block and die later, in another
    call or thread, of what that free did to its heap: the driver's note is
    then missing.  With foreign frees on, a crash that the same program does
    not repeat with them off (two tries) is put down to the foreign frees.
    """
    finding = judge(run, program, variant=opts.variant, seed=seed)
    if (
        finding is None
        or not opts.foreign_frees
        or finding.kind not in ("signal", "exit")
        or finding.extra.get("foreign_free")
    ):
        return finding
    off = dataclasses.replace(opts, foreign_frees=False)
    for _ in range(2):
        if judge(_run(off, driver, program, None), program, variant=opts.variant,
                 seed=seed) is not None:
            return finding
    how = finding.message.removeprefix("killed by ")
    return dataclasses.replace(
        finding,
        detail=f"foreign-free after {finding.detail}",
        message=f"foreign free: the allocator crashed after freeing pointers it did not "
        f"allocate ({how}, outside the free itself; the same program runs clean with "
        f"--foreign-frees off)",
        extra={**finding.extra, "foreign_free": True},
    )


def minimize_foreign(opts: StressOptions, driver: Path, finding: Finding) -> Finding:
    """``finding`` with its program shrunk by re-running the foreign driver (same signature)."""

    def once(candidate: Program) -> str | None:
        run = _run(opts, driver, candidate, None)
        again = judge_foreign(opts, driver, run, candidate, finding.seed)
        return None if again is None else again.signature

    if opts.minimize_seconds <= 0:
        return finding
    result = minimize(finding.program, finding.signature, once, runs=2,
                      budget_seconds=opts.minimize_seconds)
    extra = {**finding.extra, "original_ops": result.original_ops,
             "reproduction_rate": result.reproduction_rate}
    if result.program is finding.program:
        # Nothing smaller failed as often (a crash whose place depends on the
        # address layout or timing): the program as found, with the rate measured.
        return dataclasses.replace(finding, extra=extra)
    # The op index of the original run does not name an op of the smaller program.
    return dataclasses.replace(finding, program=result.program, op_index=None, extra=extra)


_END = Program()


def _next(programs: Iterator[tuple[int, Program]]) -> tuple[int, Program, bytes]:
    for seed, program in programs:
        return seed, program, to_wire(program)
    return -1, _END, b""
