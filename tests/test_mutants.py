"""Mutants: every patch applies and compiles; three cheap ones are built and killed.

The full kill campaign (every mutant killed within its budget) is ``slow``;
``tox -e mutants`` runs it through the CLI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hakfuzz._errors import UsageError
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
from hakfuzz.parallel.generators_extra import EXTRA_WORKLOADS, remote_storm
from hakfuzz.program import OpKind, validate

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
NAMES = list(mutants())

BUG_CLASSES = {
    "guess-owner-from-header", "fallback-unregistered-pool", "refill-skips-active",
    "user-base-offset", "drain-drops-foreign", "remote-push-nonatomic", "realloc-libc-as-tiny",
    "remote-free-counts-early", "calloc-no-overflow-check", "thread-exit-drops-cache",
}
"""The ten bug classes of issue 7, one mutant each."""

KNOWN_SURVIVORS: dict[str, str] = {}
"""Mutants no engine can kill yet, and why (a strict xfail: fixing the hole fails the test)."""


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
    ["mutants", "--engines", "atheris"],
    ["build", "--variant", "mutant:nope"],
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


@pytest.mark.parametrize(("name", "engine"), [
    ("thread-exit-drops-cache", "replay"),      # a divergence in the stats
    ("fallback-unregistered-pool", "replay"),   # glibc aborts: a child killed by a signal
    ("calloc-no-overflow-check", "replay"),     # corpus: an overflowing calloc must be NULL
])
def test_cheap_mutants_are_killed(name: str, engine: str, tmp_path: Path) -> None:
    from hakfuzz.mutants import CampaignOptions, run_mutant

    opts = CampaignOptions(seconds=60.0, corpus=(CORPUS,), minimise_seconds=10.0)
    result = run_mutant(get_mutant(name), opts, tmp_path)
    assert result.error is None, result.error
    assert result.kill is not None, [r.as_json() for r in result.runs]
    assert result.kill.engine == engine
    assert result.kill.program.ops
    assert result.minimised is not None
    assert 0 < len(result.minimised.program.ops) <= len(result.kill.program.ops)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_SURVIVORS[n], strict=True))
    if n in KNOWN_SURVIVORS else n
    for n in NAMES
])
def test_every_mutant_is_killed(name: str, tmp_path: Path) -> None:
    from hakfuzz.mutants import CampaignOptions, run_mutant

    opts = CampaignOptions(seconds=60.0, corpus=(CORPUS,), minimise=False)
    result = run_mutant(get_mutant(name), opts, tmp_path)
    assert result.error is None, result.error
    assert result.killed, f"{name} survived 60 s: {[r.as_json() for r in result.runs]}"
