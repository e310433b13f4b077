"""Races the campaign found on the clean allocator stay fixed (ThreadSanitizer build).

A checked free on one thread read a slab's ``carved`` (is the pointer past
the carved blocks?) while the slab's owner carved more on another: a data
race TSan reported from both sides.  The owner now stores ``carved`` with a
relaxed atomic (``HAK_SET_CARVED``) and the checked free loads it so.  The
two minimised programs the campaign saved run under the TSan driver; before
the fix each reproduced in every run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hakfuzz.differential.driver import judge, run_driver
from hakfuzz.native._toolchain import sanitizer_env
from hakfuzz.native._tools import build_tool
from hakfuzz.program import load_program

REGRESSIONS = Path(__file__).resolve().parent.parent / "corpus" / "regressions"


@pytest.mark.parametrize(
    "name",
    ["checked-free-reads-carved-slab-pop.json", "checked-free-reads-carved-diagnose-free.json"],
)
def test_a_checked_remote_free_does_not_race_the_owner_carving(name: str) -> None:
    program = load_program(REGRESSIONS / name)
    assert program.config.checked
    assert program.threads > 1
    driver = build_tool("hakdriver", "tsan")
    for _ in range(3):
        run = run_driver(driver, program, env=sanitizer_env("tsan"), timeout=300)
        assert judge(run, program, variant="tsan", seed=None) is None, run.stderr[-3000:]
