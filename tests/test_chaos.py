"""Chaos: a campaign with a planted crash, interrupted or hurt from outside.

Each test starts ``hakfuzz fuzz`` on the ``testfault:abort-on-magic``
variant (hak_malloc(1021) aborts; a seed reaches it), waits for the finding
to be shown, then does what a user or a CI runner might: Ctrl-C, SIGTERM, or
SIGKILL of one worker.  The findings on disk, the report and the exit code
are checked each time.  The tests wait for events, never for a clock (the
campaign's --time is only an upper bound).  ``tox -e chaos`` runs them
repeatedly.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from cli_helpers import LiveCampaign

from hakfuzz.campaign.store import read_meta
from hakfuzz.program import Op, Program, load_program, save_program

pytestmark = pytest.mark.chaos

VARIANT = "testfault:abort-on-magic"
SIGNATURE = "signal-sigabrt-hakfuzz-test-fault-abort-on-the-magic-size"


class Campaign(LiveCampaign):
    """The chaos campaign: a planted crash a seed reaches, a report directory of its own."""

    def __init__(self, cwd: Path, *extra: str) -> None:
        program = Program(ops=(Op.alloc(0, 64), Op.alloc(1, 1021), Op.free(0)))
        (cwd / "corpus" / "regressions").mkdir(parents=True)
        save_program(program, cwd / "corpus" / "regressions" / "magic.json")
        self.report = cwd / "report"
        super().__init__(
            cwd, "--engine", "atheris,hypothesis", "--jobs", "2", "--time", "600",
            "--variant", VARIANT, "--report", str(self.report), "--no-gaps", *extra,
        )

    def workers(self) -> list[int]:
        """The pids of the campaign's worker processes still alive (sessions of their own)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                cwd = os.readlink(entry / "cwd")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"hakfuzz.campaign.worker" in cmdline and cwd == str(self.cwd) and state != "Z":
                found.append(int(entry.name))
        return found

    def findings(self) -> list[Path]:
        return sorted((self.cwd / "corpus" / "findings").glob("*.json"))


def _interrupted(tmp_path: Path, sig: signal.Signals) -> None:
    campaign = Campaign(tmp_path)
    campaign.wait_for("finding")
    campaign.proc.send_signal(sig)
    code, doc = campaign.finish()
    assert code == 128 + sig.value
    assert doc["interrupted"] == sig.name
    files = campaign.findings()
    assert [f.name for f in files] == [f"{SIGNATURE}.json"]
    assert [f["signature"] for f in doc["findings"]] == [SIGNATURE]  # type: ignore[attr-defined]
    meta = read_meta(files[0])
    assert meta["minimised"] is False  # saved as met: minimising was cut short
    assert any(op.size == 1021 for op in load_program(files[0]).ops)
    saved = json.loads((campaign.report / "report.json").read_text())
    assert saved["interrupted"] == sig.name
    assert saved["findings"][0]["path"] == str(Path("corpus/findings") / files[0].name)
    assert not campaign.workers()  # no worker left behind


def test_sigint_after_a_finding_saves_it_writes_the_report_and_exits_130(tmp_path: Path) -> None:
    _interrupted(tmp_path, signal.SIGINT)


def test_sigterm_after_a_finding_saves_it_writes_the_report_and_exits_143(tmp_path: Path) -> None:
    _interrupted(tmp_path, signal.SIGTERM)


def test_a_worker_killed_from_outside_is_an_event_not_a_finding(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path, "--minimize-time", "5")
    campaign.wait_for("finding")
    victims = campaign.workers()
    assert victims
    hypothesis = [
        pid for pid in victims if b"hypothesis" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(hypothesis[0], signal.SIGKILL)
    campaign.wait_for("by SIGKILL")  # the supervisor saw it: an event, or a suspect to re-run
    campaign.proc.send_signal(signal.SIGTERM)
    code, doc = campaign.finish()
    assert code == 143
    signatures = [f["signature"] for f in doc["findings"]]  # type: ignore[attr-defined]
    assert signatures == [SIGNATURE]  # the SIGKILL is not a finding
    assert not any("sigkill" in f.name for f in campaign.findings())
    events, unconfirmed = doc["events"], doc["unconfirmed"]
    assert isinstance(events, list)
    assert isinstance(unconfirmed, list)
    said = [e for e in events if "SIGKILL" in e]
    # no input in flight: an infrastructure event; one in flight: kept, not yet re-run
    assert len(said) + len(unconfirmed) == 1, (events, unconfirmed)
    for path in unconfirmed:
        assert load_program(tmp_path / path).ops
    notices = doc["engines"]["atheris"]["notices"]  # type: ignore[index]
    assert not any("atheris:" in n for n in notices), notices
    assert any("release build only" in n for n in notices), notices
