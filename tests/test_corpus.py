"""Every regression program is its own test: adding a file adds a test case.

Only ``corpus/regressions`` is collected.  ``corpus/findings`` holds what a
campaign found (failing programs, not tracked by git); a finding becomes a
regression test only when ``hakfuzz promote`` moves it, once it is fixed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hakfuzz._errors import UsageError
from hakfuzz.program import Op, Program, save_program
from hakfuzz.replay import corpus_files, parse_shard, replay, shard

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"


def regression_files(corpus: Path) -> list[Path]:
    """The programs replayed as tests: those under ``corpus/regressions`` only."""
    return corpus_files([corpus / "regressions"])


FILES = regression_files(CORPUS)


def test_corpus_has_regressions() -> None:
    assert len(FILES) >= 15


def test_findings_are_not_collected(tmp_path: Path) -> None:
    program = Program(ops=(Op.alloc(0, 8),))
    save_program(program, tmp_path / "regressions" / "kept.json")
    save_program(program, tmp_path / "findings" / "signal-sigabrt-x.json")
    assert regression_files(tmp_path) == [tmp_path / "regressions" / "kept.json"]


def test_findings_are_ignored_by_git() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree")
    done = subprocess.run(
        [git, "check-ignore", "-q", "corpus/findings/signal-sigabrt-x.json"],
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, "corpus/findings/ must be in .gitignore"
    kept = subprocess.run(
        [git, "check-ignore", "-q", "corpus/regressions/x.json"], cwd=ROOT, check=False
    )
    assert kept.returncode == 1, "corpus/regressions/ must stay tracked"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One case per regression file, or per file of this job's share (--corpus-shard K/N)."""
    if "path" not in metafunc.fixturenames:
        return
    spec = metafunc.config.getoption("corpus_shard")
    files = shard(FILES, *parse_shard(spec)) if spec else FILES
    metafunc.parametrize("path", files, ids=[str(p.relative_to(CORPUS)) for p in files])


def test_replay(path: Path) -> None:
    (result,) = replay([path])
    assert result.error is None, result.error
    assert result.differential is None, result.differential
    assert result.parallel is None, result.parallel


def test_shards_cover_every_file_once() -> None:
    shares = [shard(FILES, k, 3) for k in (1, 2, 3)]
    assert sorted(p for share in shares for p in share) == sorted(FILES)
    assert all(abs(len(a) - len(b)) <= 1 for a in shares for b in shares)
    with pytest.raises(UsageError):
        parse_shard("0/3")
    with pytest.raises(UsageError):
        parse_shard("4/3")
