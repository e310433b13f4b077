"""The preload engine: the allocator as real programs' malloc, compared with glibc."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hakfuzz.campaign.store import FindingStore, read_meta
from hakfuzz.engines.preload_engine import (
    JOBS,
    REAL_PROGRAMS,
    can_preload,
    config_env,
    rerun,
    run_job,
)
from hakfuzz.program import Program, ProgramConfig


def test_only_builds_a_real_program_can_preload() -> None:
    assert can_preload("release")
    assert can_preload("debug")
    assert can_preload("mutant:user-base-offset")
    assert not can_preload("asan")
    assert not can_preload("mutant:user-base-offset@tsan")


def test_the_null_policy_never_reaches_a_preloaded_process() -> None:
    env = config_env(ProgramConfig(ss_cap=1, oom_policy="null", cache_cap=0))
    assert env["HAKMEM_SS_CAP"] == "1"
    assert env["HAKMEM_CACHE_CAP"] == "0"
    assert env["HAKMEM_OOM_POLICY"] == "0"  # libc: the C library allocates through us too


@pytest.mark.parametrize("job", JOBS)
def test_every_job_agrees_with_glibc_on_the_shipped_allocator(job: str) -> None:
    if job in REAL_PROGRAMS and job != "python3" and shutil.which(job) is None:
        pytest.skip(f"{job} is not installed")
    for seed in (1, 2):
        assert rerun(job, seed, "release") is None


@pytest.mark.parametrize(
    ("mutant", "kind"),
    [
        ("calloc-no-overflow-check", "exit"),  # preloadcalls says so and exits 1
        ("realloc-libc-as-tiny", "signal"),  # realloc of a glibc block crashes
    ],
)
def test_the_calls_only_a_preload_sees_kill_mutants(mutant: str, kind: str) -> None:
    found = rerun("calls", 3, f"mutant:{mutant}")
    assert found is not None
    assert found.kind == kind
    assert found.engine == "preload"
    assert found.extra["job"] == {"name": "calls", "seed": 3}


def test_a_preload_finding_replays_on_its_build(tmp_path: Path) -> None:
    variant = "mutant:calloc-no-overflow-check"
    found = run_job({"name": "calls", "seed": 3}, Program(), variant)
    assert found is not None
    path = FindingStore(tmp_path).save(found, found.program, minimised=False).path
    assert read_meta(path)["job"] == {"name": "calls", "seed": 3}

    def replay(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hakfuzz.cli", "replay", str(path), "--json", *extra],
            capture_output=True, text=True, check=False, timeout=300,
        )

    failing = replay()
    assert failing.returncode == 1, failing.stderr
    row = json.loads(failing.stdout)["results"][0]
    assert "under the preload" in row["differential"]
    assert replay("--variant", "release").returncode == 0
