"""The campaign machinery: journal, minimiser, store, and a real crash end to end."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from cli_helpers import hakfuzz

from hakfuzz.campaign.store import FindingStore, read_meta
from hakfuzz.campaign.supervisor import CampaignOptions, Supervisor
from hakfuzz.campaign.triage import triage
from hakfuzz.engines.journal import Journal, recover
from hakfuzz.findings import Finding
from hakfuzz.program import Op, OpKind, Program, ProgramConfig, load_program, save_program
from hakfuzz.program.minimize import minimize
from hakfuzz.variants import tool

MAGIC = 1021  # native/testfaults/abort-on-magic.patch aborts on hak_malloc(1021)


def test_journal_survives_and_recovers(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.begin(ProgramConfig(ss_cap=1, oom_policy="null"), 2)
    ops = [Op.alloc(0, 24), Op.libc_alloc(1, 5000, 1), Op.free(0, 1), Op.flush(1)]
    for op in ops:
        journal.op(op)
    program = recover(tmp_path / "j")
    assert program is not None
    assert program.ops == tuple(ops)
    assert program.config.ss_cap == 1
    assert program.threads == 2
    journal.binary(b"\x00\x00\x00\x00\x18")  # header, then alloc of 24 bytes
    again = recover(tmp_path / "j")
    assert again is not None
    assert again.ops
    journal.clear()
    assert recover(tmp_path / "j") is None


def test_ddmin_finds_the_one_op_that_matters() -> None:
    ops = [Op.alloc(h, 8 * (h % 9)) for h in range(60)]
    ops.insert(37, Op.alloc(60, 777))
    program = Program(ops=tuple(ops))

    def oracle(p: Program) -> str | None:
        return "oracle-x" if any(o.kind is OpKind.ALLOC and o.size == 777 for o in p.ops) else None

    result = minimize(program, "oracle-x", oracle, runs=1)
    assert [(o.kind, o.size) for o in result.program.ops] == [(OpKind.ALLOC, 777)]
    assert result.reproduction_rate == 1.0


def test_store_keeps_every_distinct_program_of_a_signature(tmp_path: Path) -> None:
    """A file always holds the program its summary names; a repeat only counts."""
    store = FindingStore(tmp_path)
    first = Program(ops=(Op.alloc(0, 8),))
    finding = Finding("parallel", "oracle", "pattern", "byte 3 changed", first)
    saved = store.save(finding, first, minimised=True)
    assert saved.new
    other = Program(ops=(Op.alloc(0, 8), Op.free(0)))
    again = store.save(finding, other, minimised=False)
    assert again.new
    assert again.path != saved.path  # a different program: a file of its own
    assert load_program(saved.path).ops == first.ops
    assert load_program(again.path).ops == other.ops
    assert read_meta(again.path)["minimised"] is False
    repeat = store.save(finding, first, minimised=True)
    assert not repeat.new
    assert repeat.path == saved.path
    meta = read_meta(saved.path)
    assert meta["count"] == 2
    assert meta["replay"] == f"hakfuzz replay {saved.path}"
    assert read_meta(again.path)["count"] == 1
    assert store.holding(finding.signature, other) == again.path


def _stop_when(condition: Callable[[Supervisor], bool], supervisor: Supervisor) -> None:
    supervisor.should_stop = lambda: "test condition met" if condition(supervisor) else None


def test_native_crash_is_saved_minimised_replayable_and_campaign_goes_on(tmp_path: Path) -> None:
    """Waits for events (a restart, inputs after it), never for a clock.

    The campaign's deadline is only an upper bound: the supervisor is stopped
    as soon as atheris has died on the seed, been replaced, and run more
    inputs, and the parallel engine has run several programs.
    """
    (tmp_path / "corpus" / "regressions").mkdir(parents=True)
    ops = (Op.alloc(0, 64), Op.alloc(1, 100), Op.write(0, 3), Op.alloc(2, MAGIC), Op.free(1))
    seed = tmp_path / "corpus" / "regressions" / "magic.json"
    save_program(Program(description="reaches the magic size", ops=ops), seed)
    variant = "testfault:abort-on-magic"
    tool("hakdriver", variant)
    opts = CampaignOptions(
        engines=("atheris", "parallel"),
        seconds=600,
        jobs=2,
        variants=(variant,),
        workdir=tmp_path / "work",
        corpus_dir=tmp_path / "work" / "atheris-corpus",
        seeds=(seed,),
        findings_dir=tmp_path / "findings",
    )

    def enough(s: Supervisor) -> bool:
        atheris, parallel = s.tallies["atheris"], s.tallies["parallel"]
        return (
            atheris.restarts >= 1  # the worker died on the seed and was replaced...
            and atheris.execs > atheris.restarts + 1  # ...and kept fuzzing
            and parallel.execs > 1
            and len(s.ledger.seen) >= 1
        )

    supervisor = Supervisor(opts)
    _stop_when(enough, supervisor)
    result = supervisor.run()
    assert result.interrupted == "test condition met", "the deadline came first"
    assert enough(supervisor)
    triaged = triage(result.ledger, FindingStore(tmp_path / "findings"))
    assert len(triaged) == 1, triaged  # atheris and parallel met the same crash: one signature
    found = triaged[0]
    assert found.finding.signature.startswith("signal-sigabrt-hakfuzz-test-fault")
    assert found.ops_after == 1
    assert found.reproduction_rate == 1.0
    assert found.minimised
    program = load_program(found.path)
    assert [(o.kind, o.size) for o in program.ops] == [(OpKind.ALLOC, MAGIC)]
    replayed = hakfuzz("replay", str(found.path), "--json", cwd=tmp_path)
    assert replayed.returncode == 1  # still crashes on its variant, in a child process
    assert json.loads(replayed.stdout)["failed"] == 1
    clean = hakfuzz("replay", str(found.path), "--variant", "release", "--json", cwd=tmp_path)
    assert clean.returncode == 0  # and the shipped allocator has no such fault


def test_bad_input_is_a_clear_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "hakfuzz-program/1", "ops": [{"op": "free", "handle": 3}]}')
    done = hakfuzz("replay", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "bad.json" in done.stderr
    assert "op 0" in done.stderr
    assert "handle" in done.stderr
    assert "Traceback" not in done.stderr
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"format": "hakfuzz-program/1", "ops": [{"op": "alloc", "han')
    done = hakfuzz("replay", str(truncated), cwd=tmp_path)
    assert done.returncode == 2
    assert "truncated.json" in done.stderr
    assert "Traceback" not in done.stderr
    done = hakfuzz("fuzz", "--engine", "nope", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown engine 'nope'" in done.stderr
    done = hakfuzz("stress", "--workload", "nope", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown workload" in done.stderr


def test_driver_rejects_a_truncated_input(tmp_path: Path) -> None:
    from hakfuzz.differential.wire import to_wire
    from hakfuzz.engines.parallel.workloads import WORKLOADS
    from hakfuzz.native._tools import build_tool

    wire = to_wire(WORKLOADS["mixed"](1, 2, 200, 0.3))
    cut = tmp_path / "cut.bin"
    cut.write_bytes(wire[: len(wire) - 5])
    done = subprocess.run(
        [str(build_tool("hakdriver")), str(cut)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "truncated" in done.stderr


def test_executor_frees_glibc_blocks_left_live_at_the_end() -> None:
    """The glibc blocks still live when a program ends are freed.

    A 10-minute campaign once died at libFuzzer's 2 GiB RSS limit without this.
    """
    import resource

    from hakfuzz import native
    from hakfuzz.differential import DifferentialExecutor

    executor = DifferentialExecutor(native.load())
    program = Program(ops=tuple(Op.libc_alloc(h, 60000) for h in range(100)))
    executor.run(program)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(200):  # 1.2 GB if leaked
        assert executor.run(program) is None
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"RSS grew {grown_mb:.0f} MB"


def test_a_flaky_race_keeps_the_smallest_program_that_reproduces_half_the_time() -> None:
    """Fewer ops make this 'race' rarer: the 1-op program fails 1 run in 4, 8 ops every run."""
    ops = [Op.alloc(h, 16) for h in range(16)]
    program = Program(ops=tuple(ops))
    calls = {"n": 0}

    def oracle(p: Program) -> str | None:
        calls["n"] += 1
        period = 1 if len(p.ops) >= 8 else 4  # deterministic flakiness
        return "signal-sigsegv" if calls["n"] % period == 0 else None

    result = minimize(program, "signal-sigsegv", oracle, runs=4)
    assert result.reproduction_rate >= 0.5
    assert 8 <= len(result.program.ops) < len(program.ops)
    assert "reproduces at least 50%" in result.note

    def never_again(p: Program) -> str | None:
        calls["n"] += 1
        return "signal-sigsegv" if calls["n"] == 1 else None  # fails once, then never

    kept = minimize(program, "signal-sigsegv", never_again, runs=2)
    assert kept.program == program  # never a program that does not reproduce
    assert "as found is kept" in kept.note
