"""The in-process engines in invariant mode against a foreign allocator.

With ``target=...`` the Hypothesis engine builds Programs with the state
machine's rules and atheris decodes bytes to Programs; both run them on the
target through the serving child and report findings through the same
emitter as against hakmem.  The targets are the test shim built to decide
ownership from the bytes in front of a pointer (the original crash, on the
first glibc block it frees) and a hakmem mutant built as an ``LD_PRELOAD``
library.  atheris runs in a child process (libFuzzer ends its process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import foreign_shim
import pytest

from hakfuzz.engines import atheris_engine, hypothesis_engine
from hakfuzz.engines.events import Emitter
from hakfuzz.engines.journal import Journal
from hakfuzz.program import Op, Program, save_program
from hakfuzz.targets import Target, resolve_target


class _Events(Emitter):
    def __init__(self) -> None:
        super().__init__(interval=0.0)
        self.events: list[dict[str, Any]] = []

    def _send(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


@pytest.fixture(scope="module")
def guesser(tmp_path_factory: pytest.TempPathFactory) -> Target:
    return foreign_shim.target(tmp_path_factory.mktemp("guess"), "GUESS_OWNER")


@pytest.fixture(scope="module")
def mutant() -> Target:
    from hakfuzz.variants import tool

    return resolve_target(str(tool("libhakmem.so", "mutant:thread-exit-drops-cache")))


def _hypothesis(target: Target, tmp_path: Path, seconds: float, *, foreign_frees: bool = True,
                monkeypatch: pytest.MonkeyPatch, rounds: int = 1) -> _Events:
    """Runs of ``seconds`` each (seeds 1, 2, ...) until one meets a finding, ``rounds`` at most.

    The engine is bounded by time, so on a loaded machine one short run may
    end before it reaches its first failing program; more rounds make the
    test depend on the engine's reach, not on the machine's speed.
    """
    monkeypatch.setattr(hypothesis_engine, "_SHRINK_GRACE_S", 2.0)
    events = _Events()
    journal = Journal(tmp_path / "journal")
    for seed in range(1, rounds + 1):
        hypothesis_engine.run(events, journal, seed=seed, deadline=time.time() + seconds,
                              variant="release", target=target, foreign_frees=foreign_frees)
        assert (tmp_path / "journal").read_bytes() == b""  # nothing in flight at the end
        if events.of("finding"):
            break
    return events


def test_both_engines_say_they_can_aim_at_a_foreign_target() -> None:
    assert hypothesis_engine.FOREIGN_CAPABLE is True
    assert atheris_engine.FOREIGN_CAPABLE is True


def test_hypothesis_finds_the_crash_on_a_foreign_free(
    guesser: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _hypothesis(guesser, tmp_path, 3.0, monkeypatch=monkeypatch, rounds=10)
    findings = events.of("finding")
    assert findings, events.events
    crash = next(f for f in findings if f["detail"].startswith("foreign-free"))
    assert crash["engine"] == "hypothesis"
    assert crash["kind"] == "signal"
    assert crash["message"].startswith("foreign free: the allocator crashed")
    assert "free(): invalid pointer" in crash["message"] or "realloc" in crash["message"]
    program = json.loads(crash["program"])
    assert any(op["op"] == "libc_alloc" for op in program["ops"])
    assert events.of("stats")[-1]["execs"] > 0


def test_hypothesis_with_foreign_frees_off_leaves_the_guesser_alone(
    guesser: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _hypothesis(guesser, tmp_path, 2.0, foreign_frees=False, monkeypatch=monkeypatch)
    assert events.of("finding") == []
    assert events.of("stats")[-1]["execs"] > 0


def test_hypothesis_kills_a_mutant_preloaded_as_a_foreign_target(
    mutant: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _hypothesis(mutant, tmp_path, 4.0, monkeypatch=monkeypatch, rounds=10)
    signatures = {f"{f['kind']}-{f['detail']}" for f in events.of("finding")}
    assert "oracle-stats" in signatures, events.events


def _atheris(
    target: Target, tmp_path: Path, seconds: int, seeds: list[Path]
) -> list[dict[str, Any]]:
    """Runs of ``seconds``, then twice as long, ... until one meets a finding (four at most).

    Most of a short run on a loaded machine can go to starting atheris and
    instrumenting the decoder; a longer run then gets to the inputs.
    """
    events: list[dict[str, Any]] = []
    for attempt in range(4):
        work = tmp_path / f"run{attempt}"
        work.mkdir()
        events += _atheris_once(target, work, seconds << attempt, seeds)
        if any(e["event"] == "finding" for e in events):
            break
    return events


def _atheris_once(
    target: Target, tmp_path: Path, seconds: int, seeds: list[Path]
) -> list[dict[str, Any]]:
    pytest.importorskip("atheris")
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from hakfuzz.engines import atheris_engine\n"
        "from hakfuzz.engines.events import Emitter\n"
        "from hakfuzz.engines.journal import Journal\n"
        "from hakfuzz.targets import resolve_target\n"
        "work = Path(sys.argv[2])\n"
        "atheris_engine.run(Emitter(0.0), Journal(work / 'journal'), seed=1,\n"
        "    deadline=time.time() + float(sys.argv[3]), variant='release',\n"
        "    corpus_dir=work / 'corpus', workdir=work, seeds=[Path(p) for p in sys.argv[4:]],\n"
        "    libfuzzer_args=['-runs=100000'], target=resolve_target(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, target.real_path, str(tmp_path), str(seconds),
         *map(str, seeds)],
        capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_atheris_finds_the_crash_on_a_foreign_free(guesser: Target, tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    save_program(Program(threads=1, ops=(Op.libc_alloc(0, 40, 0), Op.free(0, 0))), seed)
    events = _atheris(guesser, tmp_path, 3, [seed])
    findings = [e for e in events if e["event"] == "finding"]
    assert any(f["detail"] == "foreign-free free SIGABRT" and f["engine"] == "atheris"
               for f in findings), findings


def test_atheris_kills_a_mutant_preloaded_as_a_foreign_target(
    mutant: Target, tmp_path: Path
) -> None:
    events = _atheris(mutant, tmp_path, 3, [])
    findings = [e for e in events if e["event"] == "finding"]
    assert any(f["kind"] == "oracle" and f["detail"] == "stats" for f in findings), events[-3:]
