"""Targets: an allocator given by name or by the path of a shared library, and proof it served.

The libraries these tests load are built here with ``gcc -shared``: a
``malloc`` shim over glibc's ``__libc_malloc`` (a real, if trivial,
replacement), a library without ``malloc``, one whose constructor crashes
and one whose dependency is missing.  Every load happens in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hakfuzz._errors import HakfuzzError
from hakfuzz.perf.larson.peers import parse_allocators
from hakfuzz.perf.larson.runner import LarsonConfig, prepare, prepare_all, run_once
from hakfuzz.targets import (
    PEERS,
    TargetError,
    TargetKind,
    check_env,
    child_env,
    find_library,
    resolve_target,
    served_by,
)

QUICK = LarsonConfig(0.2, 8, 128, 256, 100, 12345, 2)

SHIM = """#include <stddef.h>
extern void *__libc_malloc(size_t);
void *malloc(size_t n) { return __libc_malloc(n); }
"""
NO_MALLOC = "int answer(void) { return 42; }\n"
CRASHES = SHIM + "__attribute__((constructor)) static void boom(void) { __builtin_trap(); }\n"
NEEDS_ANSWER = SHIM + "int answer(void);\nint twice(void) { return 2 * answer(); }\n"


@dataclass(frozen=True)
class Libs:
    """Libraries built for these tests, and a text file."""

    shim: Path
    no_malloc: Path
    crashes: Path
    missing_dep: Path
    text: Path


def _gcc(source: str, out: Path, *extra: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src), *extra], check=True)
    return out


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> Libs:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (Debian package: gcc)")
    root = tmp_path_factory.mktemp("libs")
    dep = _gcc(NO_MALLOC, root / "libgone.so")
    needs = _gcc(NEEDS_ANSWER, root / "libneedsgone.so", f"-L{root}", "-Wl,--no-as-needed",
                 "-lgone")
    dep.unlink()  # now libneedsgone.so cannot be loaded
    text = root / "notes.txt"
    text.write_text("not a library\n")
    return Libs(_gcc(SHIM, root / "libshim.so"), _gcc(NO_MALLOC, root / "libnomalloc.so"),
                _gcc(CRASHES, root / "libcrash.so"), needs, text)


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hakfuzz.cli", *argv], capture_output=True,
                          text=True, check=False, env=env, timeout=300)


def _peer_path(peer: str) -> str:
    try:
        return find_library(peer)
    except HakfuzzError as exc:
        pytest.skip(str(exc))


# ---- resolving ------------------------------------------------------------------------


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_a_peer_by_name_and_by_path_is_the_same_library(peer: str) -> None:
    path = _peer_path(peer)
    by_name, by_path = resolve_target(peer), resolve_target(path)
    assert by_name.kind is TargetKind.PEER
    assert by_path.kind is TargetKind.PATH
    assert by_name.real_path == by_path.real_path == os.path.realpath(path)
    assert by_name.sha256 == by_path.sha256
    assert by_path.name == os.path.basename(path)


def test_glibc_and_hakmem_are_targets_too() -> None:
    glibc = resolve_target("glibc")
    assert glibc.kind is TargetKind.GLIBC
    assert not glibc.preloaded
    assert os.path.basename(glibc.real_path).startswith("libc.so")
    hakmem = resolve_target("hakmem")
    assert hakmem.kind is TargetKind.HAKMEM
    assert os.path.basename(hakmem.real_path) == "libhakmem.so"
    with pytest.raises(TargetError, match="variant 'asan' cannot be preloaded"):
        resolve_target("hakmem", "asan")


def test_a_library_of_our_own_by_path(libs: Libs) -> None:
    target = resolve_target(str(libs.shim))
    assert (target.name, target.kind, target.real_path) == ("libshim.so", TargetKind.PATH,
                                                            str(libs.shim))
    assert len(target.sha256) == 64
    assert json.dumps(target.as_json())


@pytest.mark.parametrize(("which", "reason"), [
    ("nowhere", "no such file"),
    ("text", "not a shared library (not an ELF file)"),
    ("directory", "not a shared library (a directory)"),
    ("no_malloc", "does not export malloc"),
    ("missing_dep", "cannot be loaded (libgone.so: cannot open shared object file"),
    ("crashes", "the process that loads it failed (killed by SIGILL)"),
    ("unknown", "unknown allocator 'ptmalloc'"),
])
def test_a_library_that_cannot_serve_is_refused_with_its_reason(libs: Libs, which: str,
                                                               reason: str) -> None:
    text = {"nowhere": str(libs.shim.parent / "libnowhere.so"), "text": str(libs.text),
            "directory": str(libs.shim.parent), "no_malloc": str(libs.no_malloc),
            "missing_dep": str(libs.missing_dep), "crashes": str(libs.crashes),
            "unknown": "ptmalloc"}[which]
    with pytest.raises(TargetError) as caught:
        resolve_target(text)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    if which != "unknown":
        assert message.startswith(f"{text}: ")


def test_a_path_ld_preload_cannot_carry_is_refused(libs: Libs, tmp_path: Path) -> None:
    spaced = tmp_path / "my libs"
    spaced.mkdir()
    shutil.copy(libs.shim, spaced / "libshim.so")
    with pytest.raises(TargetError, match="LD_PRELOAD splits paths at spaces and colons"):
        resolve_target(str(spaced / "libshim.so"))


def test_allocator_lists_take_paths(libs: Libs, tmp_path: Path) -> None:
    assert parse_allocators(f"glibc,{libs.shim}") == ("glibc", str(libs.shim))
    comma = tmp_path / "lib,shim.so"
    shutil.copy(libs.shim, comma)
    assert parse_allocators(str(comma)) == (str(comma),)
    twin = tmp_path / "libshim.so"
    shutil.copy(libs.shim, twin)
    launches = prepare_all((str(libs.shim), str(twin)))
    assert [launch.allocator for launch in launches.values()] == [str(libs.shim), str(twin)]


# ---- the served-by check ------------------------------------------------------------


def test_served_by_names_the_library_that_served(libs: Libs) -> None:
    path = _peer_path("mimalloc")
    mimalloc = resolve_target(path)
    verdict = check_env(mimalloc, child_env(mimalloc))
    assert verdict.ok, verdict.problem
    assert verdict.real_path == os.path.realpath(path)
    shim = resolve_target(str(libs.shim))
    assert not check_env(shim, child_env(mimalloc)).ok


def test_a_library_that_is_not_preloaded_is_detected(libs: Libs) -> None:
    shim = resolve_target(str(libs.shim))
    verdict = check_env(shim, child_env(None))  # exports malloc, but nothing preloads it
    assert not verdict.ok
    assert f"libc.so.6, not libshim.so's {libs.shim}" in (verdict.problem or "")
    assert "did not say" in (served_by(shim, None).problem or "")


def test_an_inherited_ld_preload_never_reaches_a_run(libs: Libs,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", str(libs.shim))
    assert "LD_PRELOAD" not in child_env(None)
    glibc = prepare("glibc")
    result = run_once(glibc, QUICK)
    assert result.ok, result.problem
    assert os.path.basename(result.served_by or "").startswith("libc.so")
    shim = prepare(str(libs.shim))
    assert run_once(shim, QUICK).ok
    assert os.environ["LD_PRELOAD"] == str(libs.shim)  # ours, untouched by the runs


def test_hakfuzz_never_puts_a_target_in_its_own_environment(libs: Libs) -> None:
    before = os.environ.get("LD_PRELOAD")
    launch = prepare(str(libs.shim))
    assert launch.env == {"LD_PRELOAD": str(libs.shim)}
    assert run_once(launch, QUICK).ok
    assert os.environ.get("LD_PRELOAD") == before


# ---- the commands ----------------------------------------------------------------------


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_larson_runs_a_peer_given_by_path(peer: str) -> None:
    path = _peer_path(peer)
    launch = prepare(path)
    result = run_once(launch, QUICK)
    assert result.ok, result.problem
    assert result.allocator == os.path.basename(path)
    assert result.served_by == os.path.realpath(path)


def test_cli_larson_stability_with_a_path(libs: Libs) -> None:
    done = _cli("larson", "--stability", "--allocator", str(libs.shim), "--runs", "1",
                "--other-runs", "0", "--seconds", "0.2", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["passed"] is True
    assert doc["target"]["real_path"] == str(libs.shim)
    assert doc["tests"][0]["results"][0]["served_by"] == str(libs.shim)


def test_cli_larson_glibc_baseline_ignores_an_inherited_preload(libs: Libs) -> None:
    env = {**os.environ, "LD_PRELOAD": str(libs.shim)}
    done = _cli("larson", "0.2", "8", "128", "256", "100", "1", "1", "--allocator", "glibc",
                "--repeat", "1", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (glibc,) = json.loads(done.stdout)["allocators"]
    assert os.path.basename(glibc["served_by"]).startswith("libc.so")
    assert f"LD_PRELOAD={libs.shim} from your environment is not passed" in done.stderr


def test_cli_bench_with_a_path(libs: Libs, tmp_path: Path) -> None:
    done = _cli("bench", "--engine", "larson", "--allocator", f"glibc,{libs.shim}", "--seconds",
                "0.1", "--repeat", "1", "--out", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rows = doc["engines"][0]["rows"]
    assert {r["allocator"] for r in rows} == {"glibc", "libshim.so"}
    assert all(r["failures"] == 0 for r in rows)
    assert any(t.startswith(f"libshim.so = {libs.shim} sha256:") for t in doc["targets"])
    assert any(f"served by {libs.shim}" in n for n in doc["engines"][0]["notes"])
    assert str(libs.shim) in (tmp_path / "bench.md").read_text()


def test_cli_preload_with_a_path(libs: Libs) -> None:
    done = _cli("preload", "--allocator", str(libs.shim), "--", "true")
    assert done.returncode == 0, done.stderr
    assert f"malloc served by {libs.shim} (libshim.so" in done.stderr
    done = _cli("preload", "--allocator", str(libs.shim), "--json", "--", "echo", "hi")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["served"], doc["served_by"], doc["stdout"]) == (True, str(libs.shim), "hi\n")


@pytest.mark.parametrize("command", [
    ["larson", "--stability", "--runs", "1"],
    ["bench", "--engine", "larson", "--repeat", "1"],
    ["preload", "--", "true"],
])
@pytest.mark.parametrize("which", ["nowhere", "text", "no_malloc"])
def test_cli_refuses_a_bad_library_in_one_line(libs: Libs, tmp_path: Path, command: list[str],
                                               which: str) -> None:
    path = {"nowhere": str(tmp_path / "libnowhere.so"), "text": str(libs.text),
            "no_malloc": str(libs.no_malloc)}[which]
    argv = [*command[:-2], "--allocator", path, *command[-2:]] if command[0] == "preload" \
        else [*command, "--allocator", path, "--out", str(tmp_path)] if command[0] == "bench" \
        else [*command, "--allocator", path]
    done = _cli(*argv)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"hakfuzz {command[0]}: --allocator {path}: ")
