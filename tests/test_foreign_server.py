"""The serving child: one program per request, a fork each, under a foreign target.

``hakdriver-foreign --serve`` runs under ``LD_PRELOAD`` of the target and
forks a child per program; :class:`ForeignServer` is its Python side.  The
target here is the test shim (``foreign_shim``), whose behaviour is chosen by
request size, so a clean run, an oracle failure, a crash and a hang are each
one program.  Also here: the free-form ``--configure`` pairs and the
``hakfuzz_stats`` oracle.  Every target runs only in child processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import foreign_shim
import pytest

from hakfuzz.differential.driver import judge
from hakfuzz.differential.foreign_server import ForeignServer, parse_pairs
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.findings import Finding
from hakfuzz.program import Op, Program
from hakfuzz.targets import Target, TargetError, TargetKind, resolve_target


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Target:
    return foreign_shim.target(tmp_path_factory.mktemp("shim"))


def _one(size: int, *more: Op) -> Program:
    return Program(threads=1, ops=(Op.alloc(0, size, 0), *more))


def _judge(server: ForeignServer, program: Program) -> Finding | None:
    return judge(server.run(program), program, variant="release", seed=None)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---- the protocol ------------------------------------------------------------------------


def test_a_clean_program_passes_and_the_server_names_its_target(shim: Target) -> None:
    with ForeignServer(shim, timeout=10) as server:
        assert server.hello["malloc_from"] == shim.real_path
        assert set(server.hello["hooks"]) == {"check", "owns", "configure", "stats"}
        program = _one(48, Op.libc_alloc(1, 32, 0), Op.free(1, 0), Op.free(0, 0))
        run = server.run(program)
        assert run.ok, run.stderr
        assert run.result is not None
        assert run.result["malloc_from"] == shim.real_path
        assert run.result["ops"] == 4


def test_an_oracle_failure_is_a_result(shim: Target) -> None:
    with ForeignServer(shim, timeout=10) as server:
        finding = _judge(server, _one(4244))
    assert finding is not None
    assert finding.signature == "oracle-owns"
    assert finding.op_index == 0


def test_a_crash_is_a_result_and_the_server_survives_it(shim: Target) -> None:
    with ForeignServer(shim, timeout=10) as server:
        pid = server.pid
        finding = _judge(server, _one(4242))
        assert finding is not None
        assert finding.kind == "signal"
        assert finding.detail.startswith("SIGSEGV")
        assert server.pid == pid  # the child died, not the server
        assert server.run(_one(16)).ok
        assert server.starts == 1


def test_a_hang_is_a_timeout_and_the_server_goes_on(shim: Target) -> None:
    with ForeignServer(shim, timeout=1.0) as server:
        pid = server.pid
        run = server.run(_one(4243))
        assert run.timed_out
        finding = judge(run, _one(4243), variant="release", seed=None)
        assert finding is not None
        assert finding.kind == "timeout"
        assert server.pid == pid
        assert server.run(_one(16)).ok


def test_a_dead_server_is_restarted(shim: Target) -> None:
    with ForeignServer(shim, timeout=10) as server:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert server.run(_one(16)).ok
        assert server.starts == 2
        assert server.pid != first


def test_close_reaps_the_server(shim: Target) -> None:
    server = ForeignServer(shim, timeout=10)
    server.start()
    pid = server.pid
    assert pid is not None
    server.close()
    assert not _running(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie of ours


def test_the_server_dies_with_the_process_that_started_it(shim: Target, tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from hakfuzz.differential.foreign_server import ForeignServer\n"
        "from hakfuzz.targets import resolve_target\n"
        "s = ForeignServer(resolve_target(sys.argv[1]))\n"
        "s.start()\n"
        "print(s.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, shim.real_path], capture_output=True,
                          text=True, check=False, cwd=tmp_path, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    pid = int(done.stdout.strip())
    for _ in range(200):  # PR_SET_PDEATHSIG delivers SIGKILL as the parent dies
        if not _running(pid):
            break
        time.sleep(0.05)
    assert not _running(pid)


def test_a_server_not_served_by_its_target_is_refused(tmp_path: Path) -> None:
    lib = foreign_shim.build(tmp_path, "NO_MALLOC")
    fake = Target("nomalloc", TargetKind.PATH, str(lib), str(lib), "0" * 64)
    with pytest.raises(TargetError, match="not served by it"):
        ForeignServer(fake, timeout=10).start()


def test_the_protocol_is_one_json_line_per_length_prefixed_program(shim: Target) -> None:
    from hakfuzz.differential.wire import to_wire
    from hakfuzz.targets import child_env
    from hakfuzz.variants import tool

    data = to_wire(_one(16))
    request = b"".join(len(d).to_bytes(4, "little") + d for d in (data, data))
    done = subprocess.run([str(tool("hakdriver-foreign", "release")), "--serve"], input=request,
                          capture_output=True, env=child_env(shim), check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    hello, *answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert hello["format"] == "hakfuzz-serve/1"
    assert [a["request"] for a in answers] == [0, 1]
    assert all(a["status"] == "exit" and a["code"] == 0 for a in answers)
    assert json.loads(answers[0]["stdout"])["ok"] is True


# ---- configuration as key/value pairs ------------------------------------------------------


def test_config_fields_and_free_form_pairs_reach_hakfuzz_configure(shim: Target) -> None:
    with ForeignServer(shim, timeout=10, configure={"echo": "1", "arena": "tiny"}) as server:
        finding = _judge(server, _one(16))
    assert finding is not None
    assert finding.signature == "oracle-hakfuzz-check"
    assert "ss_cap=0;" in finding.message  # a field of the program's config
    assert "cache_cap=" in finding.message
    assert "echo=1;arena=tiny;" in finding.message  # after the fields, in order


def test_configure_pairs_are_parsed_and_a_bad_one_names_the_flag() -> None:
    from hakfuzz._errors import UsageError

    assert parse_pairs(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(UsageError, match="--configure 'nokey'"):
        parse_pairs(["nokey"])


# ---- hakfuzz_stats ---------------------------------------------------------------------


def test_hakfuzz_stats_that_do_not_return_to_zero_are_a_finding(tmp_path: Path) -> None:
    leaky = foreign_shim.target(tmp_path, "LEAKY_STATS")
    with ForeignServer(leaky, timeout=10) as server:
        assert _judge(server, _one(50, Op.free(0, 0))) is None
        finding = _judge(server, _one(100, Op.free(0, 0)))
    assert finding is not None
    assert finding.signature == "oracle-stats"
    assert "live_blocks is" in finding.message


def test_hakmem_exports_hakfuzz_stats_and_passes_at_quiescence() -> None:
    hakmem = resolve_target("hakmem")
    with ForeignServer(hakmem, timeout=30) as server:
        assert "stats" in server.hello["hooks"]
        for seed, name in enumerate(("larson", "producer_consumer", "churn")):
            program = WORKLOADS[name](seed, 3, 600, 0.3)
            assert _judge(server, program) is None, name


def test_hakfuzz_stats_catches_a_mutant_that_strands_cached_blocks() -> None:
    """thread-exit-drops-cache loses a thread's cache at exit: no crash, no bad byte."""
    from hakfuzz.variants import tool

    lib = tool("libhakmem.so", "mutant:thread-exit-drops-cache")
    mutant = resolve_target(str(lib))
    with ForeignServer(mutant, timeout=30) as server:
        finding = _judge(server, _one(16, Op.free(0, 0)))
    assert finding is not None
    assert finding.signature == "oracle-stats"


def test_a_programs_target_config_round_trips_through_json(tmp_path: Path) -> None:
    from hakfuzz.program import ProgramError, load_program, loads_program, save_program

    program = Program(threads=1, ops=(Op.alloc(0, 16, 0),),
                      target_config=(("arena", "tiny"), ("echo", "1")))
    save_program(program, tmp_path / "p.json")
    assert load_program(tmp_path / "p.json") == program
    plain = (tmp_path / "p.json").read_text().replace(
        '  "target_config": {"arena": "tiny", "echo": "1"},\n', "")
    assert loads_program(plain).target_config == ()  # optional: old files load unchanged
    with pytest.raises(ProgramError, match=r"target_config\.arena"):
        loads_program((tmp_path / "p.json").read_text().replace('"tiny"', "3"))


def test_a_programs_target_config_reaches_the_target_one_shot_and_served(
    shim: Target,
) -> None:
    from hakfuzz.differential.driver import run_driver
    from hakfuzz.targets import child_env
    from hakfuzz.variants import tool

    program = Program(threads=1, ops=(Op.alloc(0, 16, 0),),
                      target_config=(("echo", "1"), ("arena", "tiny")))
    driver = tool("hakdriver-foreign", "release")
    one_shot = judge(run_driver(driver, program, env=child_env(shim), foreign_frees=True),
                     program, variant="release", seed=None)
    with ForeignServer(shim, timeout=10) as server:
        served = _judge(server, program)
        assert server.configure == {"echo": "1", "arena": "tiny"}
        assert server.stamp(_one(8)).target_config == program.target_config
    for finding in (one_shot, served):
        assert finding is not None
        assert finding.signature == "oracle-hakfuzz-check"
        assert "echo=1;arena=tiny;" in finding.message
