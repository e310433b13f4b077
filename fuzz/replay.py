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
    paths: Iterable[Path], *, variant: str = "release", parallel: bool = True, repeat: int = 1
) -> Iterator[ReplayResult]:
    """Replay each file; a malformed file raises :class:`ProgramError` naming it."""
    from hakfuzz import native
    from hakfuzz.differential import DifferentialExecutor
    from hakfuzz.native._tools import build_tool
    from hakfuzz.parallel.runner import judge, run_driver
    from hakfuzz.parallel.stress import final_stats_problems

    executor = DifferentialExecutor(native.load(variant))
    driver: Path | None = None
    for path in paths:
        program = load_program(path)
        started = time.perf_counter()
        divergence = executor.run(program)
        parallel_verdict: str | None = None
        ran = parallel and program.threads > 1
        if ran:
            driver = driver or build_tool("hakdriver", variant)
            for _ in range(repeat):
                run = run_driver(driver, program)
                finding = judge(run, program, variant=variant, seed=None, engine="replay")
                problems = [] if finding else final_stats_problems(run, program)
                if finding or problems:
                    parallel_verdict = finding.summary() if finding else problems[0]
                    break
        yield ReplayResult(
            path,
            len(program.ops),
            program.threads,
            divergence.describe() if divergence else None,
            parallel_verdict,
            ran,
            time.perf_counter() - started,
        )


__all__ = ["ProgramError", "ReplayResult", "corpus_files", "replay"]
