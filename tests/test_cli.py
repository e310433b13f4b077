"""The hakfuzz command line: help, usage errors, build and info."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hakfuzz.cli import COMMANDS, main


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``hakfuzz ARGS`` as the user would: a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "hakfuzz.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=300,
    )


def test_console_script_is_installed() -> None:
    assert shutil.which("hakfuzz") is not None


def test_help_lists_every_command() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    assert "usage: hakfuzz" in done.stdout
    for name, _ in COMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert f"usage: hakfuzz {name}" in capsys.readouterr().out


def test_bad_variant_is_one_line_and_exit_2() -> None:
    done = run_cli("build", "--variant", "nope")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "nope" in lines[0]
    assert lines[0].startswith("hakfuzz build:")
    assert done.stdout == ""


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["--bogus"], ["build", "--bogus"], ["info", "extra"]],
    ids=["no-command", "unknown-command", "unknown-option", "build-option", "info-extra"],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "--help" in err


def test_build_twice_is_a_cache_hit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--variant", "release", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["build", "--variant", "release", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["cached"] is True
    assert second["path"] == first["path"]
    assert os.path.isfile(second["path"])


def test_info_json_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--variant", "release"]) == 0
    capsys.readouterr()
    assert main(["info", "--variant", "release", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["variant"] == "release"
    assert described["built"] is True
    assert "-Werror" in described["cflags"]
    assert described["compiler"]
    assert described["config"]["cache_cap"] >= 0
    assert "preload.c" not in described["sources"]


def test_info_of_an_unbuilt_variant(tmp_path: Path) -> None:
    done = run_cli("info", "--variant", "debug", "--json", env={"HAKFUZZ_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["built"] is False
    assert described["config"] is None
    assert described["cache_dir"].startswith(str(tmp_path))


def test_info_table_names_the_essentials() -> None:
    done = run_cli("info", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    for word in ("compiler", "cflags", "cache", "built"):
        assert word in done.stdout
