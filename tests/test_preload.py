"""Real programs nobody here wrote, under LD_PRELOAD=libhakmem.so, compared with glibc.

Each test runs a program under glibc and under hakmem, compares what it
produced, and checks hakmem's exit counters (HAKMEM_STATS=1) to prove the
preload really served it.  A test is skipped only when its program is not
installed.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hakfuzz.native._tools import build_tool
from hakfuzz.perf.larson.preload import PreloadRun, compare_program, library, run_program


def _need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (Debian package: {program})")
    return path


def _served(run: PreloadRun) -> None:
    assert run.stats, f"no HAKMEM_STATS block on stderr: {run.measured.stderr[-300:]}"
    assert run.served, f"hakmem created no SuperSlab: {[s.summary() for s in run.stats]}"


@pytest.fixture(scope="module")
def words() -> bytes:
    """About 2.5 MB of text lines, the same on every worker."""
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    lines = ["".join(rng.choices(alphabet, k=rng.randint(3, 40))) + f" {rng.randint(0, 10**9)}"
             for _ in range(110_000)]
    return ("\n".join(lines) + "\n").encode()


def test_fork_in_threaded_parent_then_allocate_in_child() -> None:
    forkcheck = build_tool("forkcheck")
    done = run_program([str(forkcheck), "40", "3"], timeout=60)
    assert done.measured.returncode == 0, done.measured.stdout + done.measured.stderr
    assert "40/40 children ok" in done.stdout
    _served(done)


def test_python_threads_many_small_objects() -> None:
    code = (
        "import threading, hashlib\n"
        "out = [None] * 4\n"
        "def work(k):\n"
        "    d = {}\n"
        "    for i in range(30000):\n"
        "        d[(k, i)] = [str(i), (i, k), {'x': i}]\n"
        "        if i % 3 == 0: d.pop((k, i // 2), None)\n"
        "    out[k] = hashlib.sha256(repr(sorted(d.items())).encode()).hexdigest()\n"
        "ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(out)\n"
    )
    # PYTHONMALLOC=malloc: every object through malloc, not pymalloc's arenas.
    env = {"PATH": "/usr/bin:/bin", "PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}
    result = compare_program([sys.executable, "-c", code], env=env, timeout=120)
    assert result.same, result.differences
    assert result.target.measured.returncode == 0, result.target.stderr[-500:]
    _served(result.target)


def test_sort_round_trip(tmp_path: Path, words: bytes) -> None:
    _need("sort")
    source = tmp_path / "words.txt"
    source.write_bytes(words)
    argv = ["sort", "--parallel=2", "-S", "1M", "-T", str(tmp_path), str(source)]
    result = compare_program(argv, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    assert result.same, result.differences
    assert result.target.stdout.encode() == b"".join(sorted(words.splitlines(keepends=True)))
    _served(result.target)


def test_gzip_round_trip(tmp_path: Path, words: bytes) -> None:
    _need("gzip")
    env = {"PATH": "/usr/bin:/bin"}
    packed = {}
    for allocator in ("glibc", "hakmem"):
        source = tmp_path / f"{allocator}.txt"
        source.write_bytes(words)
        squeeze = run_program(["gzip", "-6", "-n", "-k", str(source)], allocator=allocator,
                              env=env)
        assert squeeze.measured.returncode == 0, squeeze.stderr
        packed[allocator] = Path(f"{source}.gz").read_bytes()
        unpack = run_program(["gzip", "-dc", f"{source}.gz"], allocator=allocator, env=env)
        assert unpack.measured.returncode == 0, unpack.stderr
        assert unpack.measured.stdout.encode() == words
        if allocator == "hakmem":
            assert squeeze.stats, "gzip under hakmem printed no stats: not preloaded"
            _served(unpack)
    assert packed["hakmem"] == packed["glibc"]


def _git_history(repo: Path, allocator: str) -> PreloadRun:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "h", "GIT_AUTHOR_EMAIL": "h@example.org",
           "GIT_COMMITTER_NAME": "h", "GIT_COMMITTER_EMAIL": "h@example.org",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    script = (
        "set -e\n"
        "git init -q -b main .\n"
        "for i in $(seq 1 12); do\n"
        "  seq $i 3 900 > file$((i % 5)).txt\n"
        "  git add -A && git commit -q -m \"change $i\"\n"
        "done\n"
        "git gc -q\n"
        "git log --format='%H %s' && git rev-list --all --objects | wc -l && git fsck --strict\n"
    )
    repo.mkdir(parents=True)
    return run_program(["sh", "-c", script], allocator=allocator, env=env, cwd=repo, timeout=120)


def test_git_scratch_repository(tmp_path: Path) -> None:
    _need("git")
    glibc = _git_history(tmp_path / "glibc" / "repo", "glibc")
    hakmem = _git_history(tmp_path / "hakmem" / "repo", "hakmem")
    assert glibc.measured.returncode == 0, glibc.stderr[-500:]
    assert hakmem.measured.returncode == 0, hakmem.stderr[-500:]
    assert hakmem.stdout == glibc.stdout
    assert len(hakmem.stdout.splitlines()) == 13
    _served(hakmem)


def test_sqlite3_inserts_and_queries(tmp_path: Path) -> None:
    _need("sqlite3")
    sql = (
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL);\n"
        "CREATE INDEX t_name ON t(name);\n"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)\n"
        "INSERT INTO t(name, score) SELECT 'item' || (i * 7919 % 4000), (i * 37 % 1000) / 7.0 "
        "FROM n;\n"
        "UPDATE t SET score = score * 2 WHERE id % 3 = 0;\n"
        "DELETE FROM t WHERE id % 11 = 0;\n"
        "SELECT count(*), round(sum(score), 3), min(name), max(name) FROM t;\n"
        "SELECT name, count(*) FROM t GROUP BY substr(name, 1, 6) ORDER BY 2 DESC LIMIT 5;\n"
        "SELECT a.id, b.id FROM t a JOIN t b ON a.name = b.name AND a.id < b.id LIMIT 5;\n"
    )
    outputs = {}
    for allocator in ("glibc", "hakmem"):
        db = tmp_path / f"{allocator}.db"
        run = run_program(["sqlite3", str(db)], allocator=allocator, stdin=sql.encode(),
                          env={"PATH": "/usr/bin:/bin"})
        assert run.measured.returncode == 0, run.stderr
        outputs[allocator] = run.stdout
        if allocator == "hakmem":
            _served(run)
    assert outputs["hakmem"] == outputs["glibc"]
    assert outputs["hakmem"].startswith("3637|")


def test_cli_preload_passes_exit_status_through() -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", "preload", "--", "sh", "-c",
                           "exit 3"], capture_output=True, text=True, check=False)
    assert done.returncode == 3, done.stderr


def test_cli_preload_compare_json(tmp_path: Path) -> None:
    import json

    source = tmp_path / "n.txt"
    source.write_text("".join(f"{(i * 7919) % 1000}\n" for i in range(2000)))
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", "preload", "--compare", "--json",
                           "--", "sort", "-n", str(source)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["same"] is True
    assert doc["target"]["served"] is True


@pytest.mark.parametrize(("argv", "message"), [
    (["preload"], "no command given"),
    (["preload", "--variant", "asan", "--", "true"], "cannot be preloaded"),
])
def test_cli_preload_usage_errors(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "hakfuzz.cli", *argv], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_library_is_built_once_per_variant() -> None:
    assert library() == library()
    assert Path(library()).name == "libhakmem.so"
