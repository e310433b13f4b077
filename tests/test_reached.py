"""What the engines reach: milestones from the counters, boundaries from the config."""

from __future__ import annotations

from hakfuzz.differential.driver import run_driver
from hakfuzz.engines.reached import (
    BOUNDARIES,
    MILESTONES,
    Counter,
    boundaries,
    driver_stats,
    milestones,
    table,
)
from hakfuzz.model.limits import SS_SIZE
from hakfuzz.model.stats import STATS_LEN
from hakfuzz.program import Op, Program, ProgramConfig
from hakfuzz.variants import tool


def test_boundaries_of_a_config() -> None:
    assert boundaries(ProgramConfig()) == set()
    edge = ProgramConfig(cache_cap=1, refill_batch=16, ss_cap=1, budget_bytes=SS_SIZE + 1,
                         oom_policy="null", ss_keep=0)
    assert boundaries(edge) == {"cache_cap=1", "refill_batch>cache_cap", "ss_cap=1",
                                "budget>1ss", "oom_policy=null", "ss_keep=0"}
    assert boundaries(ProgramConfig(budget_bytes=SS_SIZE)) == {"budget=1ss"}
    assert set(boundaries(edge)) <= set(BOUNDARIES)


def test_a_real_driver_run_at_a_tiny_cap_reaches_the_fallback() -> None:
    """2,100 blocks of 1 KiB do not fit one SuperSlab (about 2,000): with caches on, the cap."""
    config = ProgramConfig(ss_cap=1, cache_cap=64)
    program = Program(config=config, ops=tuple(Op.alloc(h, 1024) for h in range(2100)))
    run = run_driver(tool("hakdriver", "release"), program)
    assert run.ok, run.stderr
    flat = driver_stats(run.result)
    assert len(flat) == STATS_LEN
    reached = milestones(config, flat)
    assert {"fallback", "cap-with-caches"} <= reached
    assert "oom-null" not in reached
    assert reached <= set(MILESTONES)


def test_counts_per_engine_make_the_report_rows() -> None:
    counter = Counter()
    counter.program(ProgramConfig(cache_cap=0), None)
    counter.program(ProgramConfig(cache_cap=0), None)
    rows = table({"parallel": counter.counts, "atheris": {}})
    by_name = {r["name"]: r for r in rows}
    assert by_name["cache_cap=0"]["programs"] == {"parallel": 2, "atheris": 0}
    assert by_name["growth"]["programs"] == {"parallel": 0, "atheris": 0}
    assert len(rows) == len(MILESTONES) + len(BOUNDARIES)


def test_the_fill_to_cap_workload_hits_the_cap_and_passes() -> None:
    from hakfuzz.engines.parallel.storms import fill_to_cap
    from hakfuzz.engines.parallel.stress import judge_run
    from hakfuzz.program import validate

    program = fill_to_cap(1, 4, 4000, 0.3)
    assert program == fill_to_cap(1, 4, 4000, 0.3)
    validate(program)
    run = run_driver(tool("hakdriver", "release"), program)
    assert judge_run(run, program, variant="release", seed=1) is None
    reached = milestones(program.config, driver_stats(run.result))
    assert reached & {"fallback", "oom-null"}
