"""Replay corpus programs: the regression suite every test run repeats.

Each program runs differentially (model vs native, serialised, exact mode);
a program with several threads also runs in the C driver on real pthreads,
where the driver's oracles and the model's invariant mode judge it.  Corpus
files are found under the given paths (``*.json``, recursively).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hakfuzz._errors import UsageError
from hakfuzz.program import ProgramError, load_program


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The verdict on one corpus file."""

    path: Path
    ops: int
    threads: int
    differential: str | None  # None: agreed; else the divergence
    parallel: str | None  # None: passed or not run; else the finding
    ran_parallel: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.differential is None and self.parallel is None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "ops": self.ops,
            "threads": self.threads,
            "differential": self.differential,
            "parallel": self.parallel,
            "ran_parallel": self.ran_parallel,
            "seconds": round(self.seconds, 4),
        }


def corpus_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*.json`` under ``paths``, sorted (files taken as given).

    A missing path is a usage error.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.json")))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"hakfuzz replay: {path}: no such file or directory")
    return found


def replay(
    paths: Iterable[Path],
    *,
    variant: str | None = None,
    parallel: bool = True,
    repeat: int = 1,
    isolate: bool = False,
) -> Iterator[ReplayResult]:
    """Replay each file; a malformed file raises :class:`ProgramError` naming it.

    A finding file that records a crash (``signal``, ``exit``, ``timeout``)
    replays in a child process, as does every file with ``isolate``, so a
    crash is a failed replay rather than the end of this process.  With no
    ``variant``, a finding replays on the variant it was found on (its
    metadata), anything else on ``release``.
    """
    from hakfuzz.campaign.reproduce import run_in_child
    from hakfuzz.campaign.store import read_meta
    from hakfuzz.differential import DifferentialExecutor
    from hakfuzz.parallel.runner import judge, run_driver
    from hakfuzz.parallel.stress import final_stats_problems
    from hakfuzz.variants import load_module, tool

    executors: dict[str, DifferentialExecutor] = {}
    drivers: dict[str, Path] = {}
    for path in paths:
        program = load_program(path)
        started = time.perf_counter()
        meta = read_meta(path)
        chosen = variant or str(meta.get("variant") or "release")
        verdict: str | None
        if isolate or meta.get("kind") in ("signal", "exit", "timeout"):
            signature = run_in_child(program, chosen)
            verdict = None if signature is None else f"in a child process: {signature}"
        else:
            if chosen not in executors:
                executors[chosen] = DifferentialExecutor(load_module(chosen))
            divergence = executors[chosen].run(program)
            verdict = divergence.describe() if divergence else None
        parallel_verdict: str | None = None
        ran = parallel and program.threads > 1
        if ran:
            if chosen not in drivers:
                drivers[chosen] = tool("hakdriver", chosen)
            for _ in range(repeat):
                run = run_driver(drivers[chosen], program)
                finding = judge(run, program, variant=chosen, seed=None, engine="replay")
                problems = [] if finding else final_stats_problems(run, program)
                if finding or problems:
                    parallel_verdict = finding.summary() if finding else problems[0]
                    break
        yield ReplayResult(
            path,
            len(program.ops),
            program.threads,
            verdict,
            parallel_verdict,
            ran,
            time.perf_counter() - started,
        )


__all__ = ["ProgramError", "ReplayResult", "corpus_files", "replay"]
