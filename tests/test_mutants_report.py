"""The mutants table says how big the killing program is and whether it fails again."""

from __future__ import annotations

from typing import Any

from hakfuzz.mutants.report import _size


def _row(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"finding_ops": 12, "minimised_ops": 12, "minimised": True,
                           "reproduction_rate": None, "engine": "atheris"}
    return {**row, **kw}


def test_a_program_minimisation_did_not_shrink_still_shows_its_rate() -> None:
    unshrunk = _row(reproduction_rate=0.0, minimised=False)
    assert _size(unshrunk) == "12 (not minimised, reproduces 0%)"
    assert _size(_row(reproduction_rate=1.0)) == "12 (reproduces 100%)"


def test_a_shrunk_program_shows_both_sizes_and_its_rate() -> None:
    assert _size(_row(minimised_ops=3, reproduction_rate=0.67)) == "3 (from 12, reproduces 67%)"
    assert _size(_row(minimised_ops=3)) == "3 (from 12)"


def test_no_finding_and_corpus_replays() -> None:
    assert _size(_row(finding_ops=None)) == "-"
    assert _size(_row(minimised=False, engine="replay")) == "12"
