"""``hakfuzz fuzz``, ``replay``, ``minimize`` and ``mutants`` aimed at a foreign allocator.

The target is resolved and proven before any work (a bad one is one line,
exit 2); only the engines that apply to it run; a finding's program records
the target (spec, real path, sha256), and ``replay`` and ``minimize`` run it
there again, saying when the library has changed and refusing when it is
gone.  Every native run happens in a child process.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import hakfuzz

from hakfuzz._errors import HakfuzzError
from hakfuzz.campaign.applies import engines_for, skipped_for
from hakfuzz.engines import ENGINES, hypothesis_engine, parallel_engine
from hakfuzz.engines.events import Emitter
from hakfuzz.engines.journal import Journal
from hakfuzz.native._tools import build_tool
from hakfuzz.program import (
    Op,
    Program,
    ProgramError,
    ProgramTarget,
    dump_program,
    load_program,
    loads_program,
)
from hakfuzz.program.jsonio import save_program
from hakfuzz.targets import Target, TargetKind, child_env, resolve_target

NO_MALLOC = "int not_an_allocator(int x) { return x + 1; }\n"


def _fake(name: str = "jemalloc") -> Target:
    return Target(name, TargetKind.PEER, f"/x/lib{name}.so", f"/x/lib{name}.so", "0" * 64)


def _one_line_exit_2(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.fixture(scope="module")
def no_malloc_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (Debian package: gcc)")
    root = tmp_path_factory.mktemp("libs")
    src = root / "nomalloc.c"
    src.write_text(NO_MALLOC)
    out = root / "libnomalloc.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out


def _peer(name: str) -> Target:
    try:
        return resolve_target(name)
    except HakfuzzError as exc:
        pytest.skip(str(exc))


# ---- which engines apply -----------------------------------------------------------------


def test_engines_for_hakmem_is_every_engine_and_a_foreign_target_the_neutral_ones() -> None:
    assert engines_for(None) == ENGINES
    if getattr(hypothesis_engine, "FOREIGN_CAPABLE", False):
        assert engines_for(_fake()) == ENGINES
    else:
        assert engines_for(_fake()) == ("parallel", "preload")
        why = skipped_for(_fake(), ENGINES)
        assert set(why) == {"hypothesis", "atheris"}
        assert "jemalloc" in why["hypothesis"]
    assert skipped_for(None, ENGINES) == {}


def test_in_process_engines_apply_once_their_module_says_it_can(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hypothesis_engine, "FOREIGN_CAPABLE", True, raising=False)
    assert engines_for(_fake()) == ENGINES
    monkeypatch.setattr(hypothesis_engine, "FOREIGN_CAPABLE", False, raising=False)
    assert engines_for(_fake()) == ("parallel", "preload")


# ---- the target in the program ----------------------------------------------------------


def test_a_program_records_its_target_and_old_files_still_read() -> None:
    recorded = ProgramTarget("jemalloc", "/usr/lib/libjemalloc.so.2", "ab" * 32)
    program = Program(threads=1, ops=(Op.alloc(0, 16), Op.free(0)), target=recorded)
    text = dump_program(program)
    assert '"target": {"spec": "jemalloc"' in text
    assert loads_program(text) == program
    old = dump_program(dataclasses.replace(program, target=None))
    assert '"target"' not in old
    assert loads_program(old).target is None


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ('"jemalloc"', "target"),
        ('{"spec": "x", "real_path": "/x"}', "target.sha256"),
        ('{"spec": "x", "real_path": "/x", "sha256": 3}', "target.sha256"),
        ('{"spec": "x", "real_path": "/x", "sha256": "a", "size": 1}', "target.size"),
    ],
)
def test_a_malformed_target_names_its_field(target: str, field: str) -> None:
    text = dump_program(Program()).replace('"config"', f'"target": {target},\n  "config"', 1)
    with pytest.raises(ProgramError) as info:
        loads_program(text, "f.json")
    assert f"'{field}'" in str(info.value)


# ---- fuzz --allocator: errors before any work ------------------------------------------


@pytest.mark.parametrize("command", ["fuzz", "replay", "minimize"])
def test_a_bad_allocator_path_is_one_line_exit_2(command: str, tmp_path: Path) -> None:
    program = tmp_path / "p.json"
    save_program(Program(threads=1, ops=(Op.alloc(0, 16),)), program)
    files = [] if command == "fuzz" else [str(program)]
    done = hakfuzz(command, *files, "--allocator", str(tmp_path / "nope.so"), cwd=tmp_path)
    _one_line_exit_2(done, "nope.so: no such file")
    assert not (tmp_path / ".hakfuzz").exists()  # nothing started


@pytest.mark.parametrize("command", ["fuzz", "replay", "minimize"])
def test_a_library_that_does_not_replace_malloc_is_one_line_exit_2(
    command: str, tmp_path: Path, no_malloc_lib: Path
) -> None:
    program = tmp_path / "p.json"
    save_program(Program(threads=1, ops=(Op.alloc(0, 16),)), program)
    files = [] if command == "fuzz" else [str(program)]
    done = hakfuzz(command, *files, "--allocator", str(no_malloc_lib), cwd=tmp_path)
    _one_line_exit_2(done, "does not export malloc")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--foreign-frees", "off"], "--foreign-frees needs a foreign --allocator"),
        (["--allocator", "glibc", "--variant", "asan"], "cannot run under --allocator glibc"),
        (["--allocator", "ptmalloc"], "unknown allocator 'ptmalloc'"),
        (["--configure", "cache_cap=0"], "--configure needs a foreign --allocator"),
        (["--allocator", "glibc", "--configure", "cache_cap"], "expected KEY=VALUE"),
    ],
)
def test_fuzz_allocator_usage_errors(argv: list[str], words: str, tmp_path: Path) -> None:
    _one_line_exit_2(hakfuzz("fuzz", *argv, cwd=tmp_path), words)


def test_fuzz_configure_an_option_the_target_refuses_stops_before_any_work(
    tmp_path: Path,
) -> None:
    library = build_tool("libhakmem.so", "release")  # exports hakfuzz_configure
    done = hakfuzz("fuzz", "--allocator", str(library), "--configure", "bogus=1",
                   "--time", "5", "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    _one_line_exit_2(done, "--configure: libhakmem.so: hakfuzz_configure(bogus, 1) refused")
    assert not list((tmp_path / "w").glob("journal-*")), "no worker started"


def test_fuzz_configure_reaches_every_program_and_the_findings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The parallel engine stamps the options into each program it runs, so a
    # finding's file carries them and replay applies them again.
    seen: list[tuple[tuple[str, str], ...]] = []

    def fake_run_foreign(program: Program, *args: object, **kw: object) -> object:
        seen.append(program.target_config)
        raise KeyboardInterrupt  # one program is enough

    monkeypatch.setattr(parallel_engine, "run_foreign", fake_run_foreign)
    journal = Journal(tmp_path / "journal")
    with pytest.raises(KeyboardInterrupt):
        parallel_engine.run(Emitter(), journal, seed=1, deadline=float("inf"),
                            variant="release", target=resolve_target("glibc"),
                            target_config={"cache_cap": "0"})
    assert seen == [(("cache_cap", "0"),)]


# ---- replay on the recorded target ----------------------------------------------------------


def _glibc_recorded(tmp_path: Path, **change: str) -> Path:
    glibc = resolve_target("glibc")
    recorded = ProgramTarget("glibc", glibc.real_path, glibc.sha256)
    program = Program(threads=1, ops=(Op.libc_alloc(0, 48), Op.free(0)),
                      target=dataclasses.replace(recorded, **change))
    path = tmp_path / "finding.json"
    save_program(program, path)
    return path


def test_replay_runs_a_file_on_the_target_it_records(tmp_path: Path) -> None:
    path = _glibc_recorded(tmp_path)
    done = hakfuzz("replay", str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["results"][0]
    assert row["target"]["name"] == "glibc"
    assert row["ran_parallel"]
    assert row["parallel"] is None
    assert row["target_change"] is None
    assert done.stderr == ""


def test_replay_says_when_the_recorded_library_changed(tmp_path: Path) -> None:
    library = tmp_path / "libhakmem-copy.so"
    shutil.copy(build_tool("libhakmem.so"), library)
    program = Program(threads=1, ops=(Op.libc_alloc(0, 48), Op.free(0)),
                      target=ProgramTarget(str(library), str(library), "f" * 64))
    path = tmp_path / "finding.json"
    save_program(program, path)
    done = hakfuzz("replay", str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    note = [line for line in done.stderr.splitlines() if "has changed" in line]
    assert len(note) == 1
    assert str(library) in note[0]
    assert "ffffffffffff then" in note[0]
    row = json.loads(done.stdout)["results"][0]
    assert row["target_change"] == "changed"
    assert row["target"]["real_path"] == str(library)


def test_replay_refuses_a_gone_library_unless_allocator_is_given(tmp_path: Path) -> None:
    gone = str(tmp_path / "libgone.so")
    path = _glibc_recorded(tmp_path, spec=gone, real_path=gone)
    for command in ("replay", "minimize"):
        _one_line_exit_2(hakfuzz(command, str(path), cwd=tmp_path), "libgone.so, is gone")
    done = hakfuzz("replay", str(path), "--allocator", "glibc", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["target"]["name"] == "glibc"


# ---- one short campaign against an installed peer ------------------------------------------


def _family(signature: str | None) -> str:
    """A foreign-free crash's signature without where it landed (``-free-``, ``-after-``...)."""
    text = signature or ""
    return "foreign-free" if text.startswith("signal-foreign-free-") else text


def test_fuzz_a_peer_records_the_target_and_replay_and_minimize_use_it(tmp_path: Path) -> None:
    target = _peer("jemalloc")
    done = hakfuzz("fuzz", "--allocator", "jemalloc", "--engine", "parallel", "--time", "3",
                   "--jobs", "1", "--minimize-time", "0", "--no-gaps", "--json",
                   "--workdir", str(tmp_path / "wd"), "--findings", str(tmp_path / "found"),
                   cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    doc = json.loads(done.stdout)
    assert doc["target"]["real_path"] == target.real_path
    assert doc["foreign_frees"] == "on"
    assert doc["engines"]["parallel"]["execs"] >= 1
    # jemalloc dies freeing glibc's blocks: the campaign's first program shows it
    files = sorted((tmp_path / "found").glob("*.json"))
    assert files, doc["findings"]
    program = load_program(files[0])
    assert program.target == ProgramTarget("jemalloc", target.real_path, target.sha256)
    meta = json.loads(files[0].read_text())["finding"]
    replayed = hakfuzz("replay", str(files[0]), "--json", cwd=tmp_path)
    assert replayed.returncode == 1, replayed.stderr
    row = json.loads(replayed.stdout)["results"][0]
    assert row["target"]["name"] == "jemalloc"
    # Where jemalloc dies after freeing glibc's block (in that free, or later in
    # another call) depends on its heap: the foreign-free crash is what repeats.
    assert _family(row["parallel"]) == _family(meta["signature"]), (row, meta)
    minimized = hakfuzz("minimize", str(files[0]), "--out", str(tmp_path / "min.json"),
                        "--time", "20", "--json", cwd=tmp_path)
    assert minimized.returncode == 0, minimized.stderr
    assert _family(json.loads(minimized.stdout)["signature"]) == _family(meta["signature"])
    assert load_program(tmp_path / "min.json").target == program.target


# ---- the foreign driver without hooks ------------------------------------------------------


def test_no_hooks_env_makes_the_driver_ignore_a_targets_hooks() -> None:
    from hakfuzz.differential.driver import run_driver

    driver = build_tool("hakdriver-foreign")
    target = resolve_target("hakmem")
    program = Program(threads=1, ops=(Op.libc_alloc(0, 48), Op.free(0)))
    hooked = run_driver(driver, program, env=child_env(target), foreign_frees=True)
    plain = run_driver(driver, program, env=child_env(target) | {"HAKFUZZ_NO_HOOKS": "1"},
                       foreign_frees=True)
    assert hooked.result is not None, hooked.stderr
    assert plain.result is not None, plain.stderr
    assert hooked.result["hooks"] == ["check", "owns", "configure", "stats"]
    assert plain.ok
    assert plain.result["hooks"] == []


@pytest.mark.slow
def test_mutants_as_foreign_kills_the_header_guess(tmp_path: Path) -> None:
    done = hakfuzz("mutants", "--as-foreign", "--only", "guess-owner-from-header", "--time",
                   "30", "--jobs", "1", "--minimise-time", "5", "--json", cwd=tmp_path)
    doc = json.loads(done.stdout)
    assert doc["as_foreign"] == {"hooks": False, "model": False}
    row = doc["mutants"][0]
    assert row["killed"], done.stderr
    assert row["engine"] in ("parallel", "preload")


# ---- the preload engine under a target -------------------------------------------------------


def test_preload_jobs_run_under_the_target_and_their_findings_record_it() -> None:
    from hakfuzz.engines.preload_engine import rerun

    assert rerun("calls", 7, "release", target=resolve_target("glibc")) is None
    jemalloc = _peer("jemalloc")
    # jemalloc does not define pvalloc: glibc's block reaches jemalloc's free
    found = rerun("calls", 7, "release", target=jemalloc)
    assert found is not None
    assert found.kind == "signal"
    assert found.program.target == ProgramTarget("jemalloc", jemalloc.real_path, jemalloc.sha256)


def test_workers_get_the_target_as_arguments_never_through_ld_preload(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hakfuzz.campaign.supervisor import CampaignOptions, Supervisor

    monkeypatch.setenv("LD_PRELOAD", "/inherited/libother.so")
    opts = CampaignOptions(engines=("parallel",), workdir=tmp_path, target=_fake(),
                           foreign_frees=False)
    supervisor = Supervisor(opts)
    command = supervisor._command("parallel", 0, 1)
    at = command.index("--allocator")
    assert command[at: at + 4] == ["--allocator", "jemalloc", "--foreign-frees", "off"]
    assert "LD_PRELOAD" not in supervisor._env("release")
    hakmem = Supervisor(CampaignOptions(engines=("parallel",), workdir=tmp_path))
    assert "--allocator" not in hakmem._command("parallel", 0, 1)


def test_a_foreign_targets_swarm_configs_never_use_the_null_policy() -> None:
    from hakfuzz.engines.parallel_engine import make_program

    nulls = [seed for seed in range(60)
             if make_program("mixed", seed, 3, 2, 50, foreign=False).config.oom_policy == "null"]
    assert nulls  # the swarm does reach the null policy for hakmem
    for seed in nulls:
        assert make_program("mixed", seed, 3, 2, 50, foreign=True).config.oom_policy == "libc"
