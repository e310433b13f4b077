"""Triage keeps a divergence only as a program that fails in a new process.

Divergences of the in-process engines are minimised in the campaign's own
process, one candidate after another, with ``hak_reset`` in between.  A bug
that leaves state behind past ``hak_reset`` makes candidates fail there only
because earlier candidates ran; the minimised program then passes under
``hakfuzz replay`` (a new process) and the finding is lost.  The mutant
``refill-ramp-outlives-thread`` is such a bug: a recycled thread record
keeps the refill slow start of the thread that had it, across thread exits
and ``hak_reset`` alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hakfuzz.campaign.ledger import Ledger
from hakfuzz.campaign.reproduce import run_in_child
from hakfuzz.campaign.store import FindingStore, read_meta
from hakfuzz.campaign.triage import NEEDS_HISTORY, REMINIMISED, triage
from hakfuzz.differential import DifferentialExecutor
from hakfuzz.findings import Finding
from hakfuzz.program import Op, Program, ProgramConfig, load_program
from hakfuzz.variants import load_module

pytestmark = pytest.mark.native

VARIANT = "mutant:refill-ramp-outlives-thread"
FIELD = "stats.cls[0].active_blocks"
SIGNATURE = "divergence-stats-cls-active-blocks"
CONFIG = ProgramConfig(cache_cap=1024, refill_batch=1024)


def _ramp_then_new_identity() -> Program:
    # Refills of 16 and 32 blocks, a thread exit, and a malloc on the
    # recycled record: 16 blocks by the policy, 64 on the mutant.
    ops = [*(Op.alloc(h, 8) for h in range(17)), Op.thread_exit(), Op.alloc(17, 8)]
    return Program(config=CONFIG, ops=tuple(ops))


def _triage_one(tmp_path: Path, program: Program) -> tuple[Path, str, dict[str, object]]:
    store = FindingStore(tmp_path / "findings")
    ledger = Ledger(store, tmp_path / "work")
    finding = Finding("atheris", "divergence", FIELD, f"op 0: {FIELD}", program, 0, VARIANT)
    ledger.add(finding, "atheris")
    [triaged] = triage(ledger, store, runs=1, seconds_each=120.0)
    return triaged.path, triaged.note, read_meta(triaged.path)


def test_a_program_minimised_on_leftover_state_is_minimised_again_in_new_processes(
    tmp_path: Path,
) -> None:
    program = _ramp_then_new_identity()
    assert run_in_child(program, VARIANT) == SIGNATURE, "the program fails in a new process"
    path, note, meta = _triage_one(tmp_path, program)
    stored = load_program(path)
    assert run_in_child(stored, VARIANT) == SIGNATURE, f"the stored program must replay: {stored}"
    # In this process every candidate after the first ran on a record that
    # had ramped already, so the in-process minimum was a lone malloc.
    assert REMINIMISED in note, note
    assert meta["note"] == note
    assert len(stored.ops) < len(program.ops)


def test_a_divergence_that_needs_earlier_programs_is_kept_as_met_with_rate_0(
    tmp_path: Path,
) -> None:
    DifferentialExecutor(load_module(VARIANT)).run(_ramp_then_new_identity())  # the history
    lone = Program(config=CONFIG, ops=(Op.alloc(0, 8),))
    assert run_in_child(lone, VARIANT) is None, "a lone malloc passes in a new process"
    path, note, meta = _triage_one(tmp_path, lone)
    assert note == NEEDS_HISTORY
    assert meta["reproduction_rate"] == 0.0
    assert meta["minimised"] is False
    assert load_program(path).ops == lone.ops
