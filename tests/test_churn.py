"""Thread churn at scale: the churn section of a Program and the driver's churn phase.

Assertions are on counts reached under a lifetimes bound (the time bound is
far away), never on time.  Every native run happens in a child process.
"""

from __future__ import annotations

import dataclasses
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hakfuzz._errors import HakfuzzError
from hakfuzz.campaign.store import program_digest
from hakfuzz.differential.driver import RunResult, judge, run_driver
from hakfuzz.differential.wire import FLAG_CHURN, to_wire
from hakfuzz.engines.journal import Journal, recover
from hakfuzz.engines.parallel.stress import StressOptions, final_stats_problems, run_stress
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.engines.reached import MILESTONES, Counter, driver_churn
from hakfuzz.native._toolchain import sanitizer_env
from hakfuzz.native._tools import build_tool
from hakfuzz.program import (
    ChurnSpec,
    Op,
    Program,
    ProgramConfig,
    ProgramError,
    decode,
    dump_program,
    encode,
    loads_program,
    save_program,
    validate,
)
from hakfuzz.program.minimize import minimize
from hakfuzz.targets import child_env, resolve_target
from hakfuzz.variants import tool

SS = 2 << 20


def _program(churn: ChurnSpec | None, **config: Any) -> Program:
    ops = (Op.alloc(0, 24, 0), Op.libc_alloc(1, 100, 1), Op.free(0, 1), Op.thread_exit(1))
    return Program(config=ProgramConfig(**config), threads=2, ops=ops, churn=churn)


BIG = ChurnSpec(threads=64, lifetimes=3000, seconds=600.0, seed=7, blocks=16, libc_ratio=0.3)


def _churn_of(run: RunResult) -> dict[str, Any]:
    churn = driver_churn(run.result)
    assert churn is not None, (run.returncode, run.stderr[-2000:])
    return churn


# ---- the format -------------------------------------------------------------------------


def test_churn_round_trips_through_json_and_absent_changes_nothing() -> None:
    program = _program(BIG)
    text = dump_program(program)
    assert '"churn": {"threads": 64, "lifetimes": 3000' in text
    assert loads_program(text) == program
    plain = _program(None)
    assert "churn" not in dump_program(plain)
    assert loads_program(dump_program(plain)).churn is None


def test_a_partial_section_takes_defaults_and_integers_count_as_seconds() -> None:
    section = '"churn": {"threads": 20, "seconds": 3}'
    text = dump_program(_program(None)).rstrip().rstrip("}") + f", {section}}}"
    program = loads_program(text)
    assert program.churn == ChurnSpec(threads=20, seconds=3)


@pytest.mark.parametrize(
    ("section", "field", "words"),
    [
        ('{"threads": 0}', "churn.threads", "out of range 1..64"),
        ('{"threads": 65}', "churn.threads", "out of range 1..64"),
        ('{"threads": 17.0}', "churn.threads", "expected an integer"),
        ('{"lifetimes": 100001}', "churn.lifetimes", "out of range"),
        ('{"seconds": 0}', "churn.seconds", "out of range"),
        ('{"seconds": true}', "churn.seconds", "expected a number"),
        ('{"blocks": 257}', "churn.blocks", "out of range"),
        ('{"libc_ratio": 1.5}', "churn.libc_ratio", "out of range 0..1"),
        ('{"seed": -1}', "churn.seed", "out of range"),
        ('{"lifetime": 5}', "churn.lifetime", "did you mean 'lifetimes'"),
        ('{"threads": 20, "threads": 30}', "churn.threads", "duplicate key"),
        ("[1]", "churn", "expected an object"),
    ],
)
def test_a_bad_section_is_named_by_its_field(section: str, field: str, words: str) -> None:
    text = dump_program(_program(None)).rstrip().rstrip("}") + f', "churn": {section}}}'
    with pytest.raises(ProgramError) as info:
        loads_program(text, "bad.json")
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith("bad.json: ")


def test_a_v1_document_may_not_carry_a_section() -> None:
    text = dump_program(_program(None)).replace("hakfuzz-program/2", "hakfuzz-program/1")
    text = text.rstrip().rstrip("}") + ', "churn": {"threads": 20}}'
    with pytest.raises(ProgramError, match="needs"):
        loads_program(text.replace('"op": "libc_alloc"', '"op": "alloc"'))


def test_validate_names_the_field_of_a_bad_record() -> None:
    with pytest.raises(ProgramError) as info:
        validate(_program(ChurnSpec(threads=100)))
    assert info.value.field == "churn.threads"


def test_the_binary_form_ignores_the_section_and_stays_total() -> None:
    program = _program(BIG)
    data = encode(program)
    assert data == encode(_program(None))
    assert decode(data).churn is None


def test_the_wire_form_appends_a_record_only_with_a_section() -> None:
    plain, churned = to_wire(_program(None)), to_wire(_program(BIG))
    assert len(plain) == 96 + 16 * 4
    assert struct.unpack_from("<I", plain, 20)[0] == 0
    assert churned[: len(plain)][:20] == plain[:20]
    assert struct.unpack_from("<I", churned, 20)[0] == FLAG_CHURN
    assert struct.unpack("<8I", churned[len(plain):]) == (64, 3000, 600_000, 7, 16, 300, 0, 0)


def test_findings_and_the_journal_keep_the_section(tmp_path: Path) -> None:
    program = _program(BIG)
    assert program_digest(program) != program_digest(_program(None))
    journal = Journal(tmp_path / "journal")
    journal.begin(program.config, program.threads, program.churn)
    for op in program.ops:
        journal.op(op)
    recovered = recover(tmp_path / "journal")
    assert recovered is not None
    assert recovered.churn == BIG
    assert recovered.ops == program.ops


# ---- the driver -------------------------------------------------------------------------


def test_release_driver_runs_64_threads_and_thousands_of_lifetimes() -> None:
    program = _program(BIG)
    run = run_driver(build_tool("hakdriver"), program, timeout=300)
    assert judge(run, program, variant="release", seed=None) is None, run.stderr[-2000:]
    assert final_stats_problems(run, program) == []
    churn = _churn_of(run)
    assert churn["lifetimes"] == 3000
    assert churn["stopped_by"] == "lifetimes"
    assert churn["peak_threads"] == 64
    assert churn["blocks"] == 3000 * 16
    assert 0 < churn["libc_blocks"] < churn["blocks"]
    assert churn["exchange_frees"] > 10_000  # most frees come out of the exchange
    counter = Counter()
    counter.program(program.config, None, churn)
    assert counter.counts == {"churn>16-threads": 1, "churn-1000-lifetimes": 1}
    assert set(counter.counts) <= set(MILESTONES)


def test_a_capped_class_falls_back_to_glibc_mid_churn() -> None:
    """The production shape: SuperSlabs run out and glibc serves.

    Its blocks are then freed by other threads through hak_free.
    """
    program = _program(BIG, budget_bytes=SS, cache_cap=16, refill_batch=4)
    run = run_driver(build_tool("hakdriver"), program, timeout=300)
    assert judge(run, program, variant="release", seed=None) is None, run.stderr[-2000:]
    assert final_stats_problems(run, program) == []
    assert _churn_of(run)["lifetimes"] == 3000
    assert run.result is not None
    assert sum(cls[6] for cls in run.result["stats"]["classes"]) > 1000  # fallback_allocs


def test_the_driver_refuses_a_bad_churn_record() -> None:
    wire = bytearray(to_wire(_program(BIG)))
    struct.pack_into("<I", wire, len(wire) - 32, 0)  # threads 0
    done = subprocess.run([str(build_tool("hakdriver")), "-"], input=bytes(wire),
                          capture_output=True, check=False)
    assert done.returncode == 2
    assert b"churn record: threads out of range" in done.stderr
    truncated = to_wire(_program(BIG))[:-4]
    done = subprocess.run([str(build_tool("hakdriver")), "-"], input=truncated,
                          capture_output=True, check=False)
    assert done.returncode == 2
    assert b"churn record: truncated" in done.stderr


@pytest.mark.parametrize("name", ["glibc", "jemalloc"])
def test_foreign_driver_runs_the_churn_under_a_preloaded_target(name: str) -> None:
    try:
        target = resolve_target(name)
    except HakfuzzError as exc:
        pytest.skip(str(exc))
    program = _program(BIG)
    run = run_driver(build_tool("hakdriver-foreign"), program, env=child_env(target),
                     foreign_frees=False, timeout=300)
    assert judge(run, program, variant="release", seed=None) is None, run.stderr[-2000:]
    churn = _churn_of(run)
    assert (churn["lifetimes"], churn["peak_threads"]) == (3000, 64)


@pytest.mark.parametrize("variant", ["debug", "asan", "tsan"])
def test_the_churn_phase_is_clean_under_every_checking_build(variant: str) -> None:
    """TSan sees no race in the driver's own exchange; ASan and the debug asserts stay quiet."""
    spec = ChurnSpec(threads=24, lifetimes=400, seconds=600.0, seed=3, blocks=8)
    program = _program(spec, ss_cap=1, cache_cap=4, refill_batch=4)
    env = sanitizer_env(variant) if variant in ("asan", "tsan") else {}
    run = run_driver(build_tool("hakdriver", variant), program, env=env, timeout=300)
    assert judge(run, program, variant=variant, seed=None) is None, run.stderr[-3000:]
    assert _churn_of(run)["lifetimes"] == 400


def test_churn_catches_a_thread_exit_that_loses_remote_frees() -> None:
    """The orphaning exchange split in two: a remote free racing a thread's exit is lost."""
    program = Program(churn=ChurnSpec(threads=32, lifetimes=2000, seconds=600.0, seed=1))
    clean = run_driver(build_tool("hakdriver"), program, timeout=300)
    assert judge(clean, program, variant="release", seed=None) is None
    driver = tool("hakdriver", "testfault:orphan-split-exchange")
    signatures = set()
    for _ in range(3):
        run = run_driver(driver, program, timeout=300)
        found = judge(run, program, variant="testfault", seed=None)
        if found is not None:
            signatures.add(found.signature)
            break
    assert signatures == {"oracle-quiescence"}


# ---- the workload, stress and minimisation ----------------------------------------------


def test_thread_churn_workload_is_seeded_and_oversubscribed() -> None:
    generate = WORKLOADS["thread_churn"]
    program = generate(4, 4, 8000, 0.3)
    validate(program)
    assert program == generate(4, 4, 8000, 0.3)
    assert program != generate(5, 4, 8000, 0.3)
    assert program.churn is not None
    assert program.churn.threads > 16
    assert program.churn.lifetimes == 2000
    assert program.threads == 4
    assert program.ops


def test_stress_reports_lifetimes_and_peak_threads() -> None:
    opts = StressOptions(threads=4, ops=8000, program_ops=8000, seed=1,
                         workloads=("thread_churn",))
    report = run_stress(opts, build_tool("hakdriver"))
    doc = report.as_json()
    assert doc["findings"] == []
    tally = doc["workloads"]["thread_churn"]
    assert tally["programs"] == 1  # the churn's blocks count against the op share
    assert tally["lifetimes"] == 2000
    assert tally["peak_threads"] > 16


def test_minimise_shrinks_the_churn_section() -> None:
    program = dataclasses.replace(WORKLOADS["thread_churn"](1, 4, 8000, 0.3))
    assert program.churn is not None

    def once(candidate: Program) -> str | None:
        churn = candidate.churn
        return "sig" if churn is not None and churn.lifetimes >= 100 else None

    result = minimize(program, "sig", once, runs=1, budget_seconds=60)
    churn = result.program.churn
    assert churn is not None
    assert 100 <= churn.lifetimes < 200
    assert churn.threads == 1
    assert churn.blocks == 1
    assert len(result.program.ops) <= 1
    validate(result.program)

    gone = minimize(program, "sig", lambda c: "sig", runs=1, budget_seconds=60)
    assert gone.program.churn is None


def test_replay_runs_a_one_thread_program_with_churn_on_pthreads(tmp_path: Path) -> None:
    """A saved churn finding replays in the driver even when its ops need one thread."""
    from hakfuzz.replay import replay

    path = tmp_path / "churn.json"
    save_program(Program(churn=ChurnSpec(threads=32, lifetimes=2000, seconds=600.0, seed=1)),
                 path)
    (clean,) = replay([path], variant="release")
    assert clean.ran_parallel
    assert clean.ok, clean.as_json()
    broken = [r for _ in range(3)
              for r in replay([path], variant="testfault:orphan-split-exchange")]
    assert all(r.ran_parallel for r in broken)
    assert any(r.parallel and "quiescence" in r.parallel for r in broken)
