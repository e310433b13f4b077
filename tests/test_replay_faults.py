"""``hakfuzz replay`` never dies, never passes silently, and reports every file.

Crashing programs come from the ``testfault:abort-on-magic`` variant
(native/testfaults/): ``hak_malloc(1021)`` aborts the process that runs it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cli_helpers import hakfuzz

from hakfuzz.campaign.forked import Death, run_once, stream
from hakfuzz.program import Op, Program, save_program

MAGIC = 1021
TESTFAULT = "testfault:abort-on-magic"


def _programs(root: Path, *, bad: bool = False) -> Path:
    """``progs/``: two passing programs around one that aborts on the test fault."""
    progs = root / "progs"
    save_program(Program(ops=(Op.alloc(0, 64), Op.write(0, 1), Op.free(0))), progs / "a-ok.json")
    save_program(
        Program(ops=(Op.alloc(0, 64), Op.alloc(1, MAGIC), Op.free(0))), progs / "m-magic.json"
    )
    save_program(Program(ops=(Op.alloc(0, 24), Op.free(0))), progs / "z-ok.json")
    if bad:
        (progs / "b-bad.json").write_text(
            '{"format": "hakfuzz-program/1", "ops": [{"op": "free", "handle": 3}]}'
        )
    return progs


def test_an_empty_directory_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = hakfuzz("replay", "empty", cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert done.stderr.strip() == "hakfuzz replay: empty: no program files (*.json) there"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a program")
    _programs(tmp_path)
    done = hakfuzz("replay", "progs", "notes", cwd=tmp_path)  # one good path is not enough
    assert done.returncode == 2
    assert "notes: no program files" in done.stderr
    assert "Traceback" not in done.stderr


def test_repeat_zero_is_a_usage_error(tmp_path: Path) -> None:
    _programs(tmp_path)
    done = hakfuzz("replay", "progs/a-ok.json", "--repeat", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "hakfuzz replay: --repeat must be at least 1, got 0"


def test_a_crashing_program_is_a_failed_row_and_the_table_is_printed(tmp_path: Path) -> None:
    _programs(tmp_path)
    done = hakfuzz("replay", "progs", "--variant", TESTFAULT, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    for name in ("a-ok.json", "m-magic.json", "z-ok.json"):
        assert name in done.stdout
    assert "crashed: SIGABRT HAKFUZZ-TEST-FAULT" in done.stdout
    assert "2 passed, 1 failed" in done.stdout
    done = hakfuzz("replay", "progs", "--variant", TESTFAULT, "--json", cwd=tmp_path)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert (doc["programs"], doc["passed"], doc["failed"], doc["malformed"]) == (3, 2, 1, 0)
    rows = {Path(r["path"]).name: r for r in doc["results"]}
    assert rows["a-ok.json"]["ok"]
    assert rows["z-ok.json"]["ok"]
    magic = rows["m-magic.json"]
    assert not magic["ok"]
    assert "signal-sigabrt-hakfuzz-test-fault" in magic["differential"]
    assert "HAKFUZZ-TEST-FAULT" not in done.stderr  # the child's last words went into the row


def test_a_corrupt_file_and_a_crashing_program_are_both_reported(tmp_path: Path) -> None:
    _programs(tmp_path, bad=True)
    done = hakfuzz("replay", "progs", "--variant", TESTFAULT, "--json", cwd=tmp_path)
    assert done.returncode == 2  # a malformed file, reported after everything else ran
    doc = json.loads(done.stdout)
    assert (doc["programs"], doc["passed"], doc["failed"], doc["malformed"]) == (4, 2, 2, 1)
    rows = {Path(r["path"]).name: r for r in doc["results"]}
    bad = rows["b-bad.json"]
    assert bad["malformed"]
    assert not bad["ok"]
    assert "op 0 (free): field 'handle'" in bad["error"]
    assert "crashed: SIGABRT" in rows["m-magic.json"]["differential"]
    assert rows["z-ok.json"]["ok"]
    assert done.stderr.count("b-bad.json: op 0") == 1
    assert "Traceback" not in done.stderr
    table = hakfuzz("replay", "progs", "--variant", TESTFAULT, cwd=tmp_path)
    assert table.returncode == 2
    assert "malformed: op 0 (free)" in table.stdout
    assert "crashed: SIGABRT" in table.stdout
    assert "2 passed, 2 failed (1 malformed)" in table.stdout


def _job(index: int) -> dict[str, object]:
    if index == 1:
        os.write(2, b"free(): invalid pointer\n")
        os.abort()
    if index == 3:
        time.sleep(600)
    if index == 4:
        raise ValueError("a bug in the job")
    return {"index": index, "pid": os.getpid()}


def test_forked_stream_survives_deaths_and_goes_on() -> None:
    verdicts = list(stream(6, _job, timeout=2.0))
    assert len(verdicts) == 6
    first, aborted, after, hung, raised, last = verdicts
    assert isinstance(first, dict)
    assert first["index"] == 0
    assert isinstance(aborted, Death)
    assert aborted.returncode == -6
    assert aborted.detail == "SIGABRT free(): invalid pointer"
    assert aborted.signature == "signal-sigabrt-free-invalid-pointer"
    assert isinstance(after, dict)
    assert after["index"] == 2
    assert after["pid"] != first["pid"]  # a new child took over
    assert isinstance(hung, Death)
    assert hung.returncode is None
    assert hung.signature == "timeout-child-timed-out"
    assert isinstance(raised, dict)
    assert "ValueError: a bug in the job" in raised["exception"]
    assert isinstance(last, dict)
    assert last["index"] == 5
    assert run_once(lambda: {"answer": 42}) == {"answer": 42}


@pytest.mark.parametrize("count", [0, 1])
def test_forked_stream_of_few_jobs(count: int) -> None:
    assert list(stream(count, lambda i: {"i": i})) == [{"i": i} for i in range(count)]


def test_a_finding_whose_variant_cannot_be_built_fails_only_its_row(tmp_path: Path) -> None:
    from hakfuzz.campaign.store import FindingStore
    from hakfuzz.findings import Finding

    progs = _programs(tmp_path)
    (progs / "m-magic.json").unlink()
    program = Program(ops=(Op.alloc(0, 8),))
    gone = Finding("atheris", "divergence", "stats", "x", program, None, "mutant:no-such-patch")
    FindingStore(progs).save(gone, program, minimised=False)
    done = hakfuzz("replay", "progs", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["programs"], doc["passed"], doc["failed"]) == (3, 2, 1)
    (row,) = [r for r in doc["results"] if not r["ok"]]
    assert row["differential"].startswith("cannot build variant mutant:no-such-patch")
