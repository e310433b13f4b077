"""``hakfuzz minimize``: a finding's own variant, crashes in a child, output never in regressions.

Crashing programs come from the ``testfault:abort-on-magic`` variant
(native/testfaults/): ``hak_malloc(1021)`` aborts the process that runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import hakfuzz

from hakfuzz.campaign.store import FindingStore
from hakfuzz.cli.minimize import default_out
from hakfuzz.findings import Finding
from hakfuzz.program import Op, OpKind, Program, load_program, save_program

MAGIC = 1021
TESTFAULT = "testfault:abort-on-magic"
OPS = (Op.alloc(0, 64), Op.alloc(1, 100), Op.write(0, 3), Op.alloc(2, MAGIC), Op.free(1))


def _finding(root: Path) -> Path:
    """A saved crash finding of the test-fault variant, as a campaign writes it."""
    program = Program(ops=OPS)
    detail = "SIGABRT HAKFUZZ-TEST-FAULT: abort on the magic size 1021"
    finding = Finding("atheris", "signal", detail, detail, program, None, TESTFAULT, 7)
    return FindingStore(root).save(finding, program, minimised=False).path


def test_a_finding_is_minimised_on_the_variant_it_records(tmp_path: Path) -> None:
    path = _finding(tmp_path / "findings")
    done = hakfuzz("minimize", str(path), "--out", "small.json", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["variant"] == TESTFAULT
    assert doc["signature"].startswith("signal-sigabrt-hakfuzz-test-fault")
    assert (doc["ops_before"], doc["ops"]) == (5, 1)
    program = load_program(tmp_path / "small.json")
    assert [(op.kind, op.size) for op in program.ops] == [(OpKind.ALLOC, MAGIC)]


def test_a_crashing_program_is_minimised_in_a_child(tmp_path: Path) -> None:
    save_program(Program(ops=OPS), tmp_path / "plain.json")  # no finding metadata
    done = hakfuzz("minimize", "plain.json", "--variant", TESTFAULT, "--json", cwd=tmp_path)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert json.loads(done.stdout)["ops"] == 1
    assert (tmp_path / "plain.min.json").is_file()


def test_minimize_never_writes_into_the_regressions(tmp_path: Path) -> None:
    regressions = tmp_path / "corpus" / "regressions"
    path = _finding(regressions)
    done = hakfuzz("minimize", str(path.relative_to(tmp_path)), "--variant", TESTFAULT,
                    "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = Path("corpus") / "findings" / f"{path.stem}.min.json"
    assert json.loads(done.stdout)["out"] == str(out)
    assert load_program(tmp_path / out).ops
    assert sorted(p.name for p in regressions.iterdir()) == [path.name]


def test_default_out(tmp_path: Path) -> None:
    assert default_out(tmp_path / "x" / "p.json") == tmp_path / "x" / "p.min.json"
    nested = tmp_path / "corpus" / "regressions" / "sub" / "p.json"
    assert default_out(nested) == tmp_path / "corpus" / "findings" / "p.min.json"
