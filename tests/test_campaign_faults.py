"""The campaign under faults: bad output paths, repeats, kills from outside, dead engines.

Each test pins one way a finding could be lost or a dead campaign reported
green; ``test_chaos.py`` does the same end to end with signals.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from cli_helpers import hakfuzz

from hakfuzz.campaign.ledger import Ledger
from hakfuzz.campaign.reproduce import crash_finding
from hakfuzz.campaign.store import FindingStore, read_meta
from hakfuzz.campaign.supervisor import CampaignOptions, Supervisor
from hakfuzz.campaign.triage import triage
from hakfuzz.cli import build_parser
from hakfuzz.cli import fuzz as cli_fuzz
from hakfuzz.diagnostics import diagnose
from hakfuzz.findings import Finding
from hakfuzz.program import Op, Program, load_program

MAGIC = 1021  # native/testfaults/abort-on-magic.patch aborts on hak_malloc(1021)


# ---- output paths are checked before any work (and a late failure loses nothing) ----


@pytest.mark.parametrize(
    "flag", ["--findings", "--report", "--workdir", "--corpus-dir", "--hypothesis-db"]
)
def test_an_unwritable_output_path_is_a_usage_error_before_any_work(
    tmp_path: Path, flag: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = hakfuzz("fuzz", "--time", "600", flag, str(blocker / "sub"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert flag in lines[0]
    assert "a-file/sub" in lines[0]
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.rglob("journal-*"))  # no worker started


def test_a_store_that_fails_late_falls_back_and_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "gone"
    blocker.write_text("the findings directory was replaced by a file")
    said: list[str] = []
    ledger = Ledger(FindingStore(blocker), tmp_path, said.append)
    program = Program(ops=(Op.alloc(0, 8),))
    finding = Finding("parallel", "oracle", "pattern", "byte 3 changed", program)
    assert ledger.add(finding, "parallel")
    assert ledger.store is not None
    assert ledger.store.root != blocker
    saved = ledger.seen[finding.signature].saved
    assert saved is not None
    assert saved.path.is_file()
    assert load_program(saved.path).ops == finding.program.ops
    assert said
    assert str(ledger.store.root) in said[0]


# ---- distinct programs are never merged or dropped ----


def test_the_file_named_in_the_summary_holds_that_program(tmp_path: Path) -> None:
    """A second, different program of a known signature gets a file of its own."""
    store = FindingStore(tmp_path / "findings")
    small = Program(ops=(Op.alloc(0, 8),) * 1)
    big = Program(ops=tuple(Op.alloc(h, 16) for h in range(30)))
    old = Finding("hypothesis", "oracle", "pattern", "from an earlier campaign", small)
    store.save(old, small, minimised=True)
    ledger = Ledger(store, tmp_path)
    new = Finding("hypothesis", "oracle", "pattern", "met now", big)
    assert ledger.add(new, "hypothesis")
    triaged = triage(ledger, store)
    assert len(triaged) == 1
    assert load_program(triaged[0].path).ops == big.ops  # not folded into the old file
    assert triaged[0].ops_after == len(big.ops)
    assert load_program(tmp_path / "findings" / f"{old.signature}.json").ops == small.ops


def test_repeats_in_a_campaign_keep_the_smallest_and_count(tmp_path: Path) -> None:
    ledger = Ledger(FindingStore(tmp_path), tmp_path)
    big = Program(ops=tuple(Op.alloc(h, 16) for h in range(30)))
    small = Program(ops=(Op.alloc(0, 16),))
    assert ledger.add(Finding("parallel", "oracle", "x", "m", big), "parallel")
    assert not ledger.add(Finding("hypothesis", "oracle", "x", "m", small), "hypothesis")
    seen = ledger.seen["oracle-x"]
    assert seen.count == 2
    assert seen.engines == ["parallel", "hypothesis"]
    assert seen.saved is not None
    assert load_program(seen.saved.path).ops == small.ops  # the file follows the smallest
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["oracle-x.json"]


# ---- signatures and kills from outside ----


def test_a_signal_signature_ignores_libfuzzer_status_lines() -> None:
    stderr = "\n".join(
        [
            "INFO: Seed: 1",
            "#2048\tpulse  cov: 97 ft: 120 corp: 12/1kb exec/s: 812 rss: 106Mb",
            "#4096\tpulse  cov: 97 ft: 121 corp: 12/1kb exec/s: 790 rss: 106Mb",
        ]
    )
    assert diagnose(-9, stderr)[1] == "SIGKILL"
    program = Program(ops=(Op.alloc(0, 8),))
    finding = crash_finding("atheris", -9, stderr, program, variant="release", seed=1)
    assert finding.signature == "signal-sigkill"
    abort = diagnose(-6, stderr + "\nfree(): invalid pointer\n")[1]
    assert abort == "SIGABRT free(): invalid pointer"


def _suspect_ledger(tmp_path: Path, program: Program, variant: str = "release") -> Ledger:
    ledger = Ledger(FindingStore(tmp_path / "findings"), tmp_path / "work")
    killed = crash_finding("hypothesis", -9, "", program, variant=variant, seed=1)
    ledger.suspect(killed, 3, "SIGKILL")
    return ledger


def test_an_input_in_flight_at_a_kill_from_outside_counts_only_if_it_reproduces(
    tmp_path: Path,
) -> None:
    harmless = _suspect_ledger(tmp_path / "a", Program(ops=(Op.alloc(0, 64), Op.free(0))))
    assert triage(harmless, FindingStore(tmp_path / "a" / "findings")) == []
    assert len(harmless.events) == 1
    assert "passed when re-run" in harmless.events[0]
    assert not list((tmp_path / "a" / "work" / "suspects").iterdir())

    variant = "testfault:abort-on-magic"
    program = Program(ops=(Op.alloc(0, 64), Op.alloc(1, MAGIC)))
    crashing = _suspect_ledger(tmp_path / "b", program, variant)
    found = triage(crashing, FindingStore(tmp_path / "b" / "findings"), runs=1)
    assert [t.finding.signature for t in found] == [
        "signal-sigabrt-hakfuzz-test-fault-abort-on-the-magic-size"
    ]
    assert read_meta(found[0].path)["minimised"] is True


# ---- an engine that never ran is not green ----


class _DeadEngine(Supervisor):
    """Workers of ``parallel`` die at once, outside any input."""

    def _command(
        self, engine: str, job: int, seed: int, variant: str = "release", deadline: float = 0.0
    ) -> list[str]:
        if engine == "parallel":
            return [sys.executable, "-c", "import sys; sys.exit('cannot start')"]
        return super()._command(engine, job, seed, variant, deadline)


def test_an_engine_whose_workers_die_at_start_fails_the_campaign(tmp_path: Path) -> None:
    opts = CampaignOptions(engines=("parallel",), seconds=600, jobs=1, workdir=tmp_path)
    result = _DeadEngine(opts).run()
    assert "parallel" in result.failures
    assert "die at start-up" in result.failures["parallel"]
    tally = result.tallies["parallel"]
    assert tally.workers == 1  # one job slot, however often it was restarted
    assert tally.restarts == 2


def test_the_exit_status_is_not_green_when_an_engine_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_fuzz, "Supervisor", _DeadEngine)
    monkeypatch.chdir(tmp_path)
    status = cli_fuzz.run(
        cli_fuzz_args(tmp_path, "--engine", "parallel", "--time", "600", "--json")
    )
    assert status == 1


def cli_fuzz_args(tmp_path: Path, *argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["fuzz", *argv, "--workdir", str(tmp_path / "w")])


def test_redis_database_without_the_package_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "redis" else real(name, *a),
    )
    monkeypatch.chdir(tmp_path)
    args = cli_fuzz_args(tmp_path, "--hypothesis-db", "redis://127.0.0.1:1/0")
    with pytest.raises(cli_fuzz.UsageError, match="redis package is not installed"):
        cli_fuzz.run(args)


# ---- output a person can read in a log ----


def test_the_summary_does_not_wrap_in_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    long_notice = "native edges are measured on the release build only " + "x" * 150
    tally = {
        "workers": 1,
        "restarts": 0,
        "execs": 1,
        "ops": 1,
        "coverage": 1,
        "native_edges": 0,
        "findings": 0,
        "seconds": 1.0,
        "execs_per_sec": 1.0,
        "notices": [long_notice],
        "failure": None,
        "by_variant": {"release": 1},
    }
    doc = {
        "seconds": 1.0,
        "variant": "release",
        "interrupted": None,
        "failures": {},
        "events": [],
        "unconfirmed": [],
        "engines": {"atheris": tally},
        "findings": [],
        "report_dir": "r",
        "reached": [],
    }
    cli_fuzz._summary(json.loads(json.dumps(doc)))
    out = capsys.readouterr().out
    assert any(long_notice in line for line in out.splitlines()), out
    assert "atheris: atheris:" not in out


def test_findings_are_credited_to_the_engine_whose_worker_met_them(tmp_path: Path) -> None:
    opts = CampaignOptions(engines=("parallel", "atheris"), workdir=tmp_path)
    supervisor = Supervisor(opts)
    big = Program(ops=tuple(Op.alloc(h, 16) for h in range(9)))
    supervisor._add("parallel", Finding("parallel", "oracle", "x", "m", big))
    supervisor._add("atheris", Finding("atheris", "oracle", "x", "m", Program(ops=big.ops[:1])))
    assert supervisor.tallies["parallel"].findings == 1
    assert supervisor.tallies["atheris"].findings == 0
    assert supervisor.ledger.seen["oracle-x"].engines == ["parallel", "atheris"]


def test_workers_need_no_terminal_signal(tmp_path: Path) -> None:
    """Workers run in sessions of their own, so a terminal's Ctrl-C reaches only the supervisor."""
    opts = CampaignOptions(engines=("parallel",), seconds=600, jobs=1, workdir=tmp_path)
    supervisor = _DeadEngine(opts)
    supervisor.started = supervisor.deadline = 0.0
    supervisor._start("parallel", 0, 1)
    worker = supervisor.workers[0]
    assert os.getpgid(worker.proc.pid) == worker.proc.pid != os.getpgid(0)
    worker.proc.wait()


@pytest.mark.parametrize(
    ("flag", "value"), [("--minimize-time", "-1"), ("--time", "0"), ("--jobs", "0")]
)
def test_nonsense_campaign_numbers_are_usage_errors(tmp_path: Path, flag: str, value: str) -> None:
    done = hakfuzz("fuzz", flag, value, cwd=tmp_path)
    assert done.returncode == 2
    assert flag in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# ---- every engine spreads its time over the builds it can run ----


def test_builds_are_spread_over_slots_and_rounds(tmp_path: Path) -> None:
    opts = CampaignOptions(
        engines=("hypothesis", "parallel"),
        seconds=60.0,
        jobs=2,
        variants=("release", "asan", "tsan"),
        workdir=tmp_path,
    )
    supervisor = Supervisor(opts)
    supervisor.started, supervisor.deadline = 1000.0, 1060.0
    supervisor.slots = {"hypothesis": [0], "parallel": [1]}
    # one slot each: hypothesis runs release then asan (30 s each; no tsan in-process),
    # parallel runs release, asan, tsan (20 s each)
    assert supervisor._schedule("hypothesis", 0, 1000.0) == ("release", 1030.0)
    assert supervisor._schedule("hypothesis", 0, 1031.0) == ("asan", 1060.0)
    assert supervisor._schedule("parallel", 1, 1000.0) == ("release", 1020.0)
    assert supervisor._schedule("parallel", 1, 1025.0) == ("asan", 1040.0)
    assert supervisor._schedule("parallel", 1, 1059.0) == ("tsan", 1060.0)
    supervisor.slots = {"hypothesis": [0, 2], "parallel": [1, 3]}
    # two slots: the builds are shared out, and tsan's round comes second
    assert supervisor._schedule("hypothesis", 0, 1000.0) == ("release", 1060.0)
    assert supervisor._schedule("hypothesis", 2, 1000.0) == ("asan", 1060.0)
    assert supervisor._schedule("parallel", 3, 1000.0) == ("asan", 1030.0)
    assert supervisor._schedule("parallel", 1, 1031.0) == ("tsan", 1060.0)


def test_an_engine_with_no_build_it_can_load_is_a_usage_error(tmp_path: Path) -> None:
    done = hakfuzz("fuzz", "--engine", "hypothesis", "--variant", "tsan", cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot run tsan" in done.stderr
    done = hakfuzz("fuzz", "--variant", "release,nonsense", cwd=tmp_path)
    assert done.returncode == 2
    assert "nonsense" in done.stderr


def test_a_job_only_finding_never_replaces_a_program(tmp_path: Path) -> None:
    """A preload job (no ops, replayed from its name and seed) ranks after any program."""
    ledger = Ledger(FindingStore(tmp_path), tmp_path)
    program = Program(ops=tuple(Op.alloc(h, 16) for h in range(40)))
    ledger.add(Finding("parallel", "signal", "SIGABRT x", "m", program), "parallel")
    job = Finding("preload", "signal", "SIGABRT x", "m", Program(), None, "release", 3,
                  {"job": {"name": "calls", "seed": 3}})
    ledger.add(job, "preload")
    seen = ledger.seen["signal-sigabrt-x"]
    assert seen.finding.program.ops == program.ops
    assert seen.engines == ["parallel", "preload"]


def test_a_stop_signal_during_a_write_to_stderr_is_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler may run inside the main thread's own write to sys.stderr (seen under load)."""
    import signal

    from hakfuzz.campaign.interrupt import StopSignals

    class Busy:
        def write(self, text: str) -> int:
            raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")

        def flush(self) -> None:
            raise RuntimeError("reentrant call")

    monkeypatch.setattr(sys, "stderr", Busy())
    stop = StopSignals()
    stop._handle(signal.SIGINT, None)
    assert stop.requested() == "SIGINT"
    assert stop.exit_code == 130
