"""Every corpus program is its own test: adding a file adds a test case."""

from __future__ import annotations

from pathlib import Path

import pytest

from hakfuzz.replay import corpus_files, replay

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FILES = corpus_files([CORPUS])


def test_corpus_has_regressions() -> None:
    assert len(list((CORPUS / "regressions").glob("*.json"))) >= 15


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_replay(path: Path) -> None:
    (result,) = replay([path])
    assert result.differential is None, result.differential
    assert result.parallel is None, result.parallel
