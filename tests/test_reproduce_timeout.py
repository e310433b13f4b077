"""Each re-run in triage is bounded by the minimisation's time budget, not a fixed 120 s.

A livelock finding (signature ``timeout-...``) hangs on every candidate that
still fails, so with the driver's default timeout one candidate of three
runs cost six minutes and a 30 s minimisation budget ran for many minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hakfuzz.campaign import reproduce, triage
from hakfuzz.campaign.ledger import Ledger
from hakfuzz.campaign.store import FindingStore
from hakfuzz.differential.driver import RunResult
from hakfuzz.findings import Finding
from hakfuzz.program import Op, Program


def test_the_driver_oracle_runs_with_the_timeout_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[float] = []

    def fake_run_driver(driver: Path, program: Program, **kw: Any) -> RunResult:
        seen.append(kw["timeout"])
        raise RuntimeError("stop here")

    monkeypatch.setattr(reproduce, "run_driver", fake_run_driver)
    monkeypatch.setattr(reproduce, "tool", lambda name, variant: Path("/nonexistent"))
    finding = Finding("parallel", "timeout", "driver timed out", "", Program())
    oracle = reproduce.oracle_for(finding, "release", timeout=12.5)
    with pytest.raises(RuntimeError):
        oracle(Program(ops=(Op.alloc(0, 8),)))
    assert seen == [12.5]


def test_triage_bounds_each_minimisation_run_by_its_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    timeouts: list[float] = []

    def fake_oracle_for(finding: Finding, variant: str, *, timeout: float = 120.0) -> Any:
        timeouts.append(timeout)
        return lambda program: None  # nothing reproduces: minimisation ends at once

    monkeypatch.setattr(triage, "oracle_for", fake_oracle_for)
    store = FindingStore(tmp_path / "findings")
    ledger = Ledger(store, tmp_path / "work")
    program = Program(ops=(Op.alloc(0, 8), Op.free(0)))
    ledger.add(Finding("parallel", "timeout", "driver timed out", "", program), "parallel")
    triage.triage(ledger, store, runs=1, seconds_each=25.0)
    assert timeouts == [25.0]
