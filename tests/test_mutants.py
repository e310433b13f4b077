"""Mutants: every patch applies and compiles; the campaign kills them.

A kill campaign is ``hakfuzz fuzz``'s campaign aimed at one mutant and
stopped at its first finding.  Two cheap mutants are killed in the default
run; every mutant, with the corpus left out (the engines alone), is ``slow``;
``tox -e mutants`` runs it through the CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hakfuzz._errors import UsageError
from hakfuzz.engines.parallel.storms import EXTRA_WORKLOADS, remote_storm
from hakfuzz.mutants import KillOptions, run_mutant
from hakfuzz.native import NativeTree, default_tree
from hakfuzz.native._mutants import (
    MutantError,
    check_applies,
    compile_check,
    get_mutant,
    mutant_tree,
    mutants,
    resolve_variant,
)
from hakfuzz.program import Op, OpKind, Program, save_program, validate

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus" / "regressions"
TESTFAULTS = ROOT / "native" / "testfaults"
NAMES = list(mutants())

BUG_CLASSES = {
    "guess-owner-from-header", "fallback-unregistered-pool", "refill-skips-active",
    "user-base-offset", "drain-drops-foreign", "remote-push-nonatomic", "realloc-libc-as-tiny",
    "remote-free-counts-early", "calloc-no-overflow-check", "thread-exit-drops-cache",
}
"""The first ten bug classes, one mutant each."""

def test_catalogue_has_every_bug_class() -> None:
    assert set(NAMES) >= BUG_CLASSES
    for mutant in mutants().values():
        assert mutant.title, mutant.name
        assert len(mutant.description) > 200, mutant.name
        assert mutant.files, mutant.name
        assert all(f.startswith(("src/", "include/")) for f in mutant.files), mutant.name


@pytest.mark.parametrize("name", NAMES)
def test_patch_applies_to_the_shipped_sources(name: str) -> None:
    check_applies(name)


@pytest.mark.parametrize("name", NAMES)
def test_patch_compiles_with_werror(name: str) -> None:
    compile_check(name)


def test_mutant_tree_is_a_patched_copy(tmp_path: Path) -> None:
    source = default_tree()
    before = (source.src_dir / "remote.c").read_bytes()
    tree = mutant_tree("remote-push-nonatomic", cache_dir=tmp_path)
    assert tree.name == "mutant_remote_push_nonatomic"
    assert tree.name.isidentifier()  # it becomes part of the cffi module name
    assert "no CAS loop" in (tree.src_dir / "remote.c").read_text()
    assert (source.src_dir / "remote.c").read_bytes() == before  # the original is untouched
    for part in ("include", "driver", "bench"):
        assert (tree.root / part).is_dir()
    assert mutant_tree("remote-push-nonatomic", cache_dir=tmp_path).root == tree.root  # cached


def test_a_patch_that_does_not_apply_is_named(tmp_path: Path) -> None:
    shutil.copytree(default_tree().src_dir, tmp_path / "src")
    shutil.copytree(default_tree().include_dir, tmp_path / "include")
    (tmp_path / "src" / "remote.c").write_text("/* rewritten */\n")
    with pytest.raises(MutantError, match=r"remote-push-nonatomic\.patch does not apply"):
        check_applies("remote-push-nonatomic", NativeTree(tmp_path))


def test_unknown_mutant_names_the_choices() -> None:
    with pytest.raises(UsageError, match=r"unknown mutant 'nope'.*user-base-offset"):
        get_mutant("nope")
    with pytest.raises(UsageError):
        resolve_variant("mutant:nope")
    assert resolve_variant("release") == ("release", None)


@pytest.mark.parametrize("argv", [
    ["mutants", "--only", "nope"],
    ["mutants", "--time", "0"],
    ["mutants", "--engine", "nope"],
    ["mutants", "--builds", "nope"],
    ["mutants", "--patches", "/nonexistent"],
    ["build", "--variant", "mutant:nope"],
    ["build", "--variant", "mutant:user-base-offset@nope"],
])
def test_cli_usage_errors_exit_2(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", *argv], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert "hakfuzz" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_lists_mutants() -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", "mutants", "--list"],
                          capture_output=True, text=True, check=True)
    assert {line.split(":")[0] for line in done.stdout.splitlines()} == set(NAMES)


def test_remote_storm_is_seeded_and_valid() -> None:
    assert "remote_storm" in EXTRA_WORKLOADS
    program = remote_storm(7, 4, 5000, 0.3)
    assert program == remote_storm(7, 4, 5000, 0.3)
    validate(program)
    assert len(program.ops) <= 5000
    assert program.config.cache_cap == 0
    frees = {op.thread for op in program.ops if op.kind is OpKind.FREE}
    assert frees == {1, 2, 3}  # every non-owner thread frees the owner's blocks


def test_a_corpus_file_kills_a_mutant_at_replay(tmp_path: Path) -> None:
    opts = KillOptions(seconds=60.0, engines=("parallel",), builds=("release",),
                       corpus=(CORPUS,), minimise_seconds=10.0)
    result = run_mutant(get_mutant("thread-exit-drops-cache"), opts, tmp_path)
    assert result.error is None, result.error
    assert result.killed_by == "replay"
    assert result.program is not None
    assert result.program.ops


def test_the_engines_alone_kill_a_mutant_and_minimise_the_program(tmp_path: Path) -> None:
    """No corpus at all: the campaign's own engines find it, on the mutant's build."""
    opts = KillOptions(seconds=120.0, engines=("parallel",), builds=("release",),
                       replay=False, minimise_seconds=15.0)
    result = run_mutant(get_mutant("fallback-unregistered-pool"), opts, tmp_path)
    assert result.error is None, result.error
    assert result.killed_by == "parallel"
    assert result.build == "mutant:fallback-unregistered-pool"
    assert result.ops_found is not None
    assert result.ops_minimised is not None
    assert 0 < result.ops_minimised <= result.ops_found
    assert result.program is not None
    assert len(result.program.ops) == result.ops_minimised


def test_patches_from_another_directory(tmp_path: Path) -> None:
    """--patches: a user's own mutants (here the test faults), killed through the CLI."""
    (tmp_path / "seeds").mkdir()
    save_program(Program(ops=(Op.alloc(0, 1021),)), tmp_path / "seeds" / "magic.json")
    done = subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", "mutants", "--patches", str(TESTFAULTS),
         "--only", "abort-on-magic", "--engine", "parallel", "--builds", "release",
         "--jobs", "1", "--time", "120", "--corpus", str(tmp_path / "seeds"), "--json"],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert [m["mutant"] for m in doc["mutants"]] == ["abort-on-magic"]
    assert doc["mutants"][0]["killed"]
    assert doc["mutants"][0]["engine"] == "replay"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_mutant_is_killed_by_the_engines_alone(name: str, tmp_path: Path) -> None:
    opts = KillOptions(seconds=60.0, replay=False, minimise_seconds=10.0)
    result = run_mutant(get_mutant(name), opts, tmp_path)
    assert result.error is None, result.error
    assert result.killed, f"{name} survived 60 s: {result.as_json()}"
