"""The coverage-gap report: which lines of native/src/ a set of programs never runs.

Each test replays a few programs (written into tmp_path) on the gcov builds;
the builds are cached by content, and every run's counters go to a scratch
directory of its own, so the tests are fast after the first build and safe
under pytest -n.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hakfuzz.campaign.gaps import (
    HYPOTHESIS_DB_REASON,
    OUTSIDE_REASONS,
    CoverageReport,
    FileCoverage,
    coverage_gaps,
    find_inputs,
    gcov_env,
    measure,
)
from hakfuzz.campaign.gcov import Function, Line, file_coverage
from hakfuzz.cli import main
from hakfuzz.native import build, default_tree
from hakfuzz.program import encode, loads_program

_CONFIG = {"cache_cap": 0}


def _program(ops: list[dict[str, Any]], threads: int = 1) -> str:
    return json.dumps(
        {"format": "hakfuzz-program/1", "config": _CONFIG, "threads": threads, "ops": ops}
    )


ALLOC_FREE = _program(
    [
        {"op": "alloc", "handle": 0, "size": 24},
        {"op": "alloc", "handle": 1, "size": 300},
        {"op": "free", "handle": 0},
        {"op": "free", "handle": 1},
    ]
)
WRITE_VERIFY = _program(
    [
        {"op": "alloc", "handle": 0, "size": 64},
        {"op": "write", "handle": 0, "seed": 7},
        {"op": "verify", "handle": 0},
        {"op": "free", "handle": 0},
    ]
)
CALLOC = _program(
    [
        {"op": "calloc", "handle": 0, "count": 4, "size": 8},
        {"op": "verify", "handle": 0},
        {"op": "free", "handle": 0},
    ]
)
REMOTE_FREE = _program(
    [
        {"op": "alloc", "thread": 0, "handle": 0, "size": 32},
        {"op": "free", "thread": 1, "handle": 0},
    ],
    threads=2,
)
MAGIC_CRASH = _program([{"op": "alloc", "handle": 0, "size": 1021}])  # testfault:abort-on-magic


def _corpus(directory: Path, **programs: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in programs.items():
        (directory / f"{name}.json").write_text(text)
    return directory


def _gap_functions(report: CoverageReport, file: str) -> set[str]:
    return {g.function for g in report.gaps if g.file == file}


def _uncalled(report: CoverageReport, file: str) -> tuple[str, ...]:
    return next(f.uncalled for f in report.files if f.file == file)


def _file(report: CoverageReport, name: str) -> FileCoverage:
    return next(f for f in report.files if f.file == name)


def test_a_function_no_program_calls_is_a_gap_until_one_does(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", a_alloc=ALLOC_FREE, b_write=WRITE_VERIFY)
    before = measure(find_inputs([corpus]), scratch=tmp_path / "one")
    assert before.programs == 2
    assert "hak_calloc" in _uncalled(before, "api.c")
    assert "hak_malloc" not in _uncalled(before, "api.c")
    calloc_gap = next(g for g in before.gaps if g.function == "hak_calloc")
    assert str(calloc_gap) == f"api.c:{calloc_gap.first}-{calloc_gap.last} in hak_calloc"
    assert not calloc_gap.called

    _corpus(corpus, c_calloc=CALLOC)
    after = measure(find_inputs([corpus]), scratch=tmp_path / "two")
    assert after.programs == 3
    assert "hak_calloc" not in _uncalled(after, "api.c")
    # what is left of hak_calloc is the overflow branch, which CALLOC does not take
    left = [g for g in after.gaps if g.function == "hak_calloc"]
    assert left
    assert all(g.called for g in left)
    assert sum(g.lines for g in left) < calloc_gap.lines
    assert _file(after, "api.c").executed > _file(before, "api.c").executed


def test_multi_threaded_programs_also_count_in_the_driver(tmp_path: Path) -> None:
    single = measure(find_inputs([_corpus(tmp_path / "single", a=ALLOC_FREE)]))
    assert single.driver_runs == 0
    assert single.executed_by["driver"] == 0
    assert "_hak_remote_free" in _uncalled(single, "remote.c")

    threaded = measure(find_inputs([_corpus(tmp_path / "threaded", r=REMOTE_FREE)]))
    assert threaded.driver_runs == 1
    assert threaded.executed_by["driver"] > 0
    assert threaded.executed_by["module"] > 0
    assert "_hak_remote_free" not in _uncalled(threaded, "remote.c")


def test_counters_go_to_the_scratch_directory_only(tmp_path: Path) -> None:
    module = build("gcov")
    measure(find_inputs([_corpus(tmp_path / "c", a=ALLOC_FREE)]), scratch=tmp_path / "counts")
    assert (tmp_path / "counts" / "api.gcda").is_file()
    assert not list(module.directory.glob("*.gcda"))
    assert not list(module.directory.parent.glob(".tmp-gcov-*"))  # the compile-time path
    assert gcov_env(tmp_path)["GCOV_PREFIX"] == str(tmp_path.resolve())


def test_a_crash_loses_only_its_own_counts(tmp_path: Path) -> None:
    from hakfuzz.variants import split

    _, tree = split("testfault:abort-on-magic")
    corpus = _corpus(tmp_path / "c", a_calloc=CALLOC, b_crash=MAGIC_CRASH, c_remote=REMOTE_FREE)
    report = measure(find_inputs([corpus]), tree=tree)
    assert [Path(n.path).name for n in report.crashed] == ["b_crash.json"]
    assert "SIGABRT" in report.crashed[0].reason
    assert "hak_calloc" not in _uncalled(report, "api.c")  # ran before the crash
    assert "_hak_remote_free" not in _uncalled(report, "remote.c")  # ran after it


def test_sources_no_program_can_run_are_listed_apart(tmp_path: Path) -> None:
    report = measure(find_inputs([_corpus(tmp_path / "c", a=ALLOC_FREE)]))
    apart = {o.file: o for o in report.outside}
    assert set(apart) == {"preload.c", "asan.c", "covcount.c"}
    assert "LD_PRELOAD" in apart["preload.c"].reason
    assert apart["asan.c"].executable == 0
    assert "asan build" in apart["asan.c"].reason
    counted = {f.file for f in report.files}
    assert not counted & set(apart)
    assert {"api.c", "slab.c", "remote.c", "internal.h"} <= counted
    assert report.executable == sum(f.executable for f in report.files)


def test_every_listed_reason_names_a_real_source() -> None:
    sources = {p.name for p in default_tree().src_dir.iterdir()}
    assert set(OUTSIDE_REASONS) <= sources


def test_gaps_break_at_a_line_that_ran_and_at_a_new_function() -> None:
    lines = {
        10: Line(0, "f"),
        11: Line(0, "f"),
        14: Line(0, "f"),  # 12-13 are comments: still one range
        15: Line(3, "f"),
        16: Line(0, "f"),
        20: Line(0, "g"),
        21: Line(0, "g"),
    }
    report = file_coverage("x.c", lines, {"f": Function(10, 2), "g": Function(20, 0)})
    assert [str(g) for g in report.gaps] == ["x.c:10-14 in f", "x.c:16 in f", "x.c:20-21 in g"]
    assert [g.lines for g in report.gaps] == [3, 1, 2]
    assert [g.called for g in report.gaps] == [True, True, False]
    assert report.uncalled == ("g",)
    assert (report.executed, report.executable) == (1, 7)


def test_inputs_decode_the_atheris_corpus_and_skip_the_hypothesis_db(tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    atheris = workdir / "atheris-corpus"
    atheris.mkdir(parents=True)
    (atheris / "0123abcd").write_bytes(encode(loads_program(CALLOC)))
    (workdir / "hypothesis-db" / "deadbeef").mkdir(parents=True)
    (workdir / "hypothesis-db" / "deadbeef" / "cafe").write_bytes(b"\x00\x01")
    (workdir / "journal-0").write_bytes(b"not a program")
    corpus = _corpus(tmp_path / "corpus", a=ALLOC_FREE, bad='{"format": "nope"}')
    (corpus / "README.md").write_text("notes")

    inputs = find_inputs([corpus], workdir)
    assert sorted(Path(label).name for label, _ in inputs.programs) == ["0123abcd", "a.json"]
    assert [Path(n.path).name for n in inputs.malformed] == ["bad.json"]
    skipped = {Path(n.path).name: n.reason for n in inputs.skipped}
    assert skipped["hypothesis-db"] == HYPOTHESIS_DB_REASON
    assert "README.md" in skipped

    # the work directory named as a path stands for its atheris corpus, and the
    # atheris corpus named twice counts once
    again = find_inputs([workdir, atheris], workdir)
    assert [Path(label).name for label, _ in again.programs] == ["0123abcd"]


def test_cli_json_report_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _corpus(tmp_path / "c", a=ALLOC_FREE)
    assert main(["coverage", str(corpus), "--workdir", str(tmp_path / "w"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["format"] == "hakfuzz-coverage/1"
    assert document["programs"] == 1
    assert any(g.endswith("in hak_calloc") for g in document["gaps"])
    assert 0 < document["executed"] < document["executable"]

    assert main(["coverage", str(corpus), "--workdir", str(tmp_path / "w")]) == 0
    text = capsys.readouterr().out
    assert "api.c" in text
    assert "in hak_calloc" in text
    assert "preload.c" in text

    assert main(["coverage", str(tmp_path / "missing")]) == 2
    assert "missing: no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["coverage", str(tmp_path / "empty"), "--workdir", str(tmp_path / "w")]) == 2
    assert "no programs to replay" in capsys.readouterr().err


def test_coverage_gaps_for_the_campaign_report(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "findings", a=ALLOC_FREE)
    summary = coverage_gaps([corpus, tmp_path / "no-such-dir"], tmp_path / "w")
    assert summary["programs"] == 1
    assert summary["gaps"]
    json.dumps(summary)  # goes into report.json as it is
