"""One campaign on many machines through a real Redis server.

Each test starts its own ``redis-server`` on a free loopback port (no disk
persistence) and stops it at the end; without the server binary (or the
``redis`` package) the tests skip and say why.  Several campaigns with
separate work directories play several machines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import PATIENCE, LiveCampaign

from hakfuzz.campaign.shared import SharedCampaign, connect, machines, pull_findings
from hakfuzz.findings import Finding
from hakfuzz.program import Op, Program, save_program

redis = pytest.importorskip("redis", reason="the redis package is not installed")
SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(SERVER is None, reason="redis-server is not installed")

SIGNATURE = "signal-sigabrt-hakfuzz-test-fault-abort-on-the-magic-size"


class Server:
    """A redis-server of this test's own, on a free loopback port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert SERVER is not None
        self.proc = subprocess.Popen(
            [SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    yield running
    running.stop()


def _finding(ops: int) -> Finding:
    program = Program(ops=tuple(Op.alloc(h, 16) for h in range(ops)))
    return Finding("parallel", "oracle", "pattern", "byte 3 changed", program)


def test_findings_are_deduplicated_across_machines(server: Server) -> None:
    client = connect(server.url)
    first, second = SharedCampaign(client, "a"), SharedCampaign(client, "b")
    first.publish(_finding(9), "parallel")
    second.publish(_finding(3), "hypothesis")  # smaller: kept
    first.publish(_finding(5), "parallel")  # larger than the kept one: only counted
    (shared,) = pull_findings(client)
    assert shared["signature"] == "oracle-pattern"
    assert shared["count"] == 3
    assert shared["machines"] == ["a", "b"]
    assert shared["first_machine"] == "a"
    assert shared["ops"] == 3


def test_the_corpus_and_the_quarantine_reach_every_machine(server: Server, tmp_path: Path) -> None:
    client = connect(server.url)
    dirs = {name: tmp_path / name for name in ("a", "b")}
    for d in dirs.values():
        d.mkdir()
    (dirs["a"] / "1111").write_bytes(b"adds coverage")
    (dirs["a"] / "2222").write_bytes(b"killed a worker")
    quarantine = tmp_path / "a-quarantine.txt"
    quarantine.write_text("2222\n")
    a = SharedCampaign(client, "a", corpus_dir=dirs["a"], quarantine_file=quarantine)
    b_quarantine = tmp_path / "b-quarantine.txt"
    b = SharedCampaign(client, "b", corpus_dir=dirs["b"], quarantine_file=b_quarantine)
    a.tick({}, 1.0, force=True)
    b.tick({}, 1.0, force=True)
    assert (dirs["b"] / "1111").read_bytes() == b"adds coverage"
    assert not (dirs["b"] / "2222").exists()  # quarantined anywhere: seeded nowhere
    assert "2222" in b_quarantine.read_text().split()
    assert b.pulled == 1
    assert [m["machine"] for m in machines(client)] == ["a", "b"]


def test_an_outage_is_said_once_loses_nothing_and_syncs_on_return(server: Server) -> None:
    said: list[str] = []
    shared = SharedCampaign(connect(server.url), "a", on_notice=said.append)
    shared.tick({}, 1.0, force=True)
    server.stop()
    shared.publish(_finding(4), "parallel")
    shared.tick({}, 2.0, force=True)
    shared.publish(_finding(2), "atheris")
    assert len([s for s in said if "went away" in s]) == 1
    assert len(shared.pending) == 2
    server.start()
    shared.tick({}, 3.0, force=True)
    assert any("is back" in s for s in said)
    assert shared.pending == []
    (found,) = pull_findings(connect(server.url))
    assert found["count"] == 2
    assert found["ops"] == 2


class Machine(LiveCampaign):
    """``hakfuzz fuzz --shared`` in a directory of its own: one machine of the campaign."""

    def __init__(self, cwd: Path, url: str, *extra: str) -> None:
        super().__init__(cwd, "--shared", url, "--time", "600", "--jobs", "2", "--no-gaps",
                         *extra)

    def interrupt(self) -> dict[str, object]:
        self.proc.send_signal(signal.SIGINT)
        code, doc = self.finish()
        assert code == 130, "".join(self.stderr)[-3000:]
        return doc


def _planted(cwd: Path) -> None:
    save_program(Program(ops=(Op.alloc(0, 64), Op.alloc(1, 1021))),
                 cwd / "corpus" / "regressions" / "magic.json")


def test_two_machines_share_one_finding_and_count_both(server: Server, tmp_path: Path) -> None:
    pair = []
    for name in ("a", "b"):
        _planted(tmp_path / name)
        pair.append(Machine(tmp_path / name, server.url, "--engine", "atheris",
                            "--variant", "testfault:abort-on-magic"))
    for machine in pair:
        machine.wait_for("finding")
    for machine in pair:
        machine.interrupt()
    found = {f["signature"]: f for f in pull_findings(connect(server.url))}
    assert len(found[SIGNATURE]["machines"]) == 2
    assert found[SIGNATURE]["count"] == 2
    status = subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", "status", server.url, "--json"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(status.stdout)["findings"][0]["signature"] == SIGNATURE
    home = tmp_path / "home"
    pulled = subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", "findings", "pull", server.url, "--into",
         str(home), "--json"],
        capture_output=True, text=True, check=True,
    )
    (row,) = json.loads(pulled.stdout)["findings"]
    assert Path(row["path"]).is_file()


def test_killing_the_server_mid_run_loses_nothing(server: Server, tmp_path: Path) -> None:
    _planted(tmp_path / "a")
    machine = Machine(tmp_path / "a", server.url, "--engine", "atheris,parallel",
                      "--variant", "testfault:abort-on-magic")
    machine.wait_for("shared state: redis")
    server.stop()
    # the crash is met at once, before or after the outage is noticed: in any order
    machine.wait_for("went away", "finding")
    doc = machine.interrupt()
    assert [f["signature"] for f in doc["findings"]] == [SIGNATURE]  # type: ignore[attr-defined]
    assert (tmp_path / "a" / "corpus" / "findings" / f"{SIGNATURE}.json").is_file()
    assert doc["failures"] == {}


def test_asking_for_redis_without_the_package_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "redis.py").write_text("raise ImportError('hidden for this test')\n")
    (blocker / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        "_real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'redis' else _real(n, *a)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", "fuzz", "--shared", "redis://127.0.0.1:1/0"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(blocker)},
    )
    assert done.returncode == 2, done.stderr
    assert "redis package is not installed" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _until(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"never happened: {what}")


def test_an_input_that_adds_coverage_on_one_machine_reaches_the_other(
    server: Server, tmp_path: Path
) -> None:
    client = connect(server.url)
    first = Machine(tmp_path / "a", server.url, "--engine", "atheris", "--variant", "release")
    _until(lambda: client.llen("hakfuzz:corpus:log") > 0, "machine a published its corpus")
    first.interrupt()
    published = {n.decode() for n in client.lrange("hakfuzz:corpus:log", 0, -1)}
    second = Machine(tmp_path / "b", server.url, "--engine", "atheris", "--variant", "release")
    corpus = tmp_path / "b" / ".hakfuzz" / "atheris-corpus"
    _until(
        lambda: corpus.is_dir() and bool(published & {p.name for p in corpus.iterdir()}),
        "machine b received machine a's inputs",
    )
    second.interrupt()
