"""Bad input is one line naming the culprit, with exit status 2 (or a shell's 126/127).

Every case runs the command line in this process through
:func:`hakfuzz.cli.main`: an exception that escapes ``main`` (a traceback for
the user) fails the test by itself.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest

from hakfuzz._errors import UsageError
from hakfuzz.cli import main
from hakfuzz.native._cache import CacheError, cache_root


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str], status: int = 2) -> str:
    """Run ``hakfuzz ARGV``; it must exit ``status`` with its error as the last stderr line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines, "no error message"
    # Progress lines ("building the driver...") may come first; the error is one line.
    assert lines[-1].startswith("hakfuzz")
    return lines[-1]


# ---- HAKFUZZ_CACHE ----------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ("file", "not a directory"),
        ("file/below", "Not a directory"),
        ("/proc/hakfuzz-no-such-dir", "cannot create"),
        ("/proc", "cannot write"),  # exists, and not even root can write there
    ],
)
@pytest.mark.parametrize("command", [["build"], ["info"], ["stress", "--ops", "10"]])
def test_unusable_cache_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    setting: str,
    reason: str,
    command: list[str],
) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    value = setting if setting.startswith("/") else str(tmp_path / setting)
    monkeypatch.setenv("HAKFUZZ_CACHE", value)
    line = one_error(capsys, command)
    assert f"HAKFUZZ_CACHE={value}" in line
    assert reason in line


def test_read_only_cache_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through permission bits")
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o555)
    monkeypatch.setenv("HAKFUZZ_CACHE", str(read_only))
    with pytest.raises(CacheError, match=r"HAKFUZZ_CACHE=.*cannot write there"):
        cache_root()


def test_default_cache_location_is_checked_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.delenv("HAKFUZZ_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    with pytest.raises(CacheError, match="XDG_CACHE_HOME") as caught:
        cache_root()
    assert caught.value.exit_code == 2


def test_many_threads_can_check_a_new_cache_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # pytest-xdist workers and campaign workers resolve the cache concurrently.
    monkeypatch.setenv("HAKFUZZ_CACHE", str(tmp_path / "a" / "b" / "cache"))
    errors: list[BaseException] = []

    def check() -> None:
        try:
            cache_root()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list((tmp_path / "a" / "b" / "cache").iterdir()) == []  # no probe left behind


# ---- numbers that make no sense ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["stress", "--timeout", "0"], "--timeout"),
        (["stress", "--timeout", "-1"], "--timeout"),
        (["stress", "--timeout=-0.5"], "--timeout"),
        (["stress", "--timeout", "nan"], "--timeout"),
        (["stress", "--timeout", "inf"], "--timeout"),
        (["stress", "--ops", "0"], "--ops"),
        (["stress", "--repeat", "-3"], "--repeat"),
        (["preload", "--timeout", "0", "--", "true"], "--timeout"),
        (["preload", "--timeout", "inf", "--", "true"], "--timeout"),
        (["larson", "--stability", "--seconds", "inf"], "--seconds"),
        (["larson", "--stability", "--runs", "0"], "--runs"),
        (["larson", "--stability", "--other-runs", "-1"], "--other-runs"),
        (["bench", "--seconds", "0"], "--seconds"),
        (["bench", "--repeat", "0"], "--repeat"),
    ],
)
def test_nonsense_numbers_are_rejected_before_any_work(
    capsys: pytest.CaptureFixture[str], argv: list[str], culprit: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # nothing built, nothing run
    assert f"hakfuzz {argv[0]}: argument {culprit}:" in err


@pytest.mark.parametrize(
    ("convert", "good", "bad"),
    [
        ("positive_float", {"0.5": 0.5, "300": 300.0}, ["0", "-0.0", "-1", "nan", "inf", "x"]),
        ("non_negative_float", {"0": 0.0, "2.5": 2.5}, ["-1", "-inf", "nan", ""]),
        ("positive_int", {"1": 1, "200_000": 200_000}, ["0", "-2", "1.5", "x"]),
        ("non_negative_int", {"0": 0, "7": 7}, ["-1", "1e3"]),
    ],
)
def test_argtypes(convert: str, good: dict[str, float], bad: list[str]) -> None:
    import argparse

    from hakfuzz import _argtypes

    function = getattr(_argtypes, convert)
    for text, value in good.items():
        assert function(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text).replace(".", r"\.")):
            function(text)


def test_bench_out_is_checked_before_any_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    line = one_error(capsys, ["bench", "--engine", "malloc", "--out", str(tmp_path / "file")])
    assert line.startswith(f"hakfuzz bench: --out {tmp_path / 'file'}: not a directory")


# ---- HAKFUZZ_CC ---------------------------------------------------------------


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("compiler", ["false", "silent"])
def test_a_compiler_that_fails_silently_is_named_with_its_status(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    compiler: str,
) -> None:
    command = "false" if compiler == "false" else str(_script(tmp_path / "cc", "exit 3\n"))
    status = "1" if compiler == "false" else "3"
    monkeypatch.setenv("HAKFUZZ_CC", command)
    monkeypatch.setenv("HAKFUZZ_CACHE", str(tmp_path / "cache"))
    line = one_error(capsys, ["build"])
    assert f"(HAKFUZZ_CC={command})" in line
    assert f"exited with status {status} and printed nothing" in line
    assert not line.rstrip().endswith(":")  # the old message ended in an empty reason


def test_a_compile_that_fails_silently_says_how_it_ended(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Answers the probe like a compiler, then fails every compile without a word.
    fake = _script(
        tmp_path / "fakecc",
        'case "$1" in --version) echo "fakecc 1.0";; -dumpfullversion) echo 1.0;; '
        "*) exit 4;; esac\n",
    )
    monkeypatch.setenv("HAKFUZZ_CC", str(fake))
    monkeypatch.setenv("HAKFUZZ_CACHE", str(tmp_path / "cache"))
    assert main(["build"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"with HAKFUZZ_CC={fake} failed" in err
    assert "exited with status 4 and printed nothing" in err


@pytest.mark.parametrize(
    ("setting", "words"),
    [("  ", "no command in it"), ('gcc "', "not a command line"), ("/", "cannot be run")],
)
def test_an_unusable_compiler_setting_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    setting: str,
    words: str,
) -> None:
    monkeypatch.setenv("HAKFUZZ_CC", setting)
    monkeypatch.setenv("HAKFUZZ_CACHE", str(tmp_path / "cache"))
    line = one_error(capsys, ["build"])
    assert words in line
    assert "HAKFUZZ_CC=" in line


# ---- HAKFUZZ_VARIANT ------------------------------------------------------------


@pytest.mark.parametrize("command", [["build"], ["info"], ["info", "--json"]])
def test_a_bad_variant_in_the_environment_blames_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("HAKFUZZ_VARIANT", "nonsense")
    line = one_error(capsys, command)
    assert "HAKFUZZ_VARIANT=nonsense" in line
    assert "--variant" not in line  # nobody gave that flag


def test_a_bad_variant_in_the_environment_spares_other_commands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hakfuzz.cli import build_parser
    from hakfuzz.native import load

    monkeypatch.setenv("HAKFUZZ_VARIANT", "nonsense")
    build_parser()  # --help and commands that do not build still work
    with pytest.raises(UsageError, match="HAKFUZZ_VARIANT=nonsense"):
        load()


def test_the_variant_flag_still_wins_over_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAKFUZZ_VARIANT", "nonsense")
    assert main(["info", "--variant", "debug", "--json"]) == 0
    assert '"variant": "debug"' in capsys.readouterr().out


# ---- preload of a command that cannot start ---------------------------------


@pytest.mark.parametrize("mode", [[], ["--json"], ["--compare"]])
def test_preload_of_a_missing_command_exits_127_like_a_shell(
    capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    line = one_error(capsys, ["preload", *mode, "--", "/nonexistent"], status=127)
    assert line.startswith("hakfuzz preload: /nonexistent: command not found")


def test_preload_of_a_name_not_on_path_exits_127(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    line = one_error(capsys, ["preload", "--", "no-such-tool"], status=127)
    assert line == "hakfuzz preload: no-such-tool: command not found"


@pytest.mark.parametrize("what", ["plain file", "directory"])
def test_preload_of_something_not_executable_exits_126(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, what: str
) -> None:
    target = tmp_path / "thing"
    if what == "directory":
        target.mkdir()
    else:
        target.write_text("echo hi\n")  # no execute bit
    line = one_error(capsys, ["preload", "--", str(target)], status=126)
    assert line.startswith(f"hakfuzz preload: {target}: cannot execute")


def test_run_program_refuses_a_missing_command_before_building() -> None:
    from hakfuzz.perf.larson.preload import CommandNotFound, run_program

    with pytest.raises(CommandNotFound, match="/nonexistent: command not found"):
        run_program(["/nonexistent"], variant="no-such-variant")  # never gets to build


# ---- stress --save ----------------------------------------------------------------


def test_stress_save_is_checked_before_any_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    assert main(["stress", "--save", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    # One line, and no "building the driver": nothing started.
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"hakfuzz stress: --save {tmp_path / 'file'}: not a directory")


def test_stress_save_falls_back_when_writing_fails_late(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import hakfuzz.engines.parallel.stress as stress
    from hakfuzz.cli import stress as cli_stress
    from hakfuzz.engines.parallel.workloads import WORKLOADS
    from hakfuzz.findings import Finding
    from hakfuzz.program import load_program

    save = tmp_path / "save"
    program = WORKLOADS["larson"](1, 2, 50, 0.3)

    def fake_run(opts: stress.StressOptions, driver: Path, **kw: object) -> stress.StressReport:
        # The directory passed the check, then went away (a file took its place).
        save.rmdir()
        save.write_text("")
        finding = Finding("parallel", "oracle", "overlap", "blocks overlap", program)
        on_finding = kw["on_finding"]
        assert callable(on_finding)
        on_finding(finding)
        return stress.StressReport(opts, findings={finding.signature: finding})

    monkeypatch.setattr(cli_stress, "run_stress", fake_run)
    monkeypatch.setattr(cli_stress, "tool", lambda name, variant: tmp_path / name)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where fallback_dir goes

    assert main(["stress", "--ops", "10", "--save", str(save), "--json"]) == 1
    err = capsys.readouterr().err
    saved = list((tmp_path / "tmp").glob("hakfuzz-stress-*/oracle-overlap.json"))
    assert len(saved) == 1, err
    assert load_program(saved[0]) == program  # the finding is not lost
    assert f"the findings' programs are in {saved[0].parent}" in " ".join(err.split())
