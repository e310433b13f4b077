"""Coverage gaps: the lines of ``native/src/`` that no program of a campaign runs.

The programs (corpus files, findings, the atheris corpus) replay on the
``gcov`` build (gcc ``--coverage``): every program differentially, in a forked
child, on the cffi module; a program with several threads also on real
pthreads in the gcov build of the C driver.  Then gcov reads the counters
(:mod:`hakfuzz.campaign.gcov`) and the report says, per source file, how
many executable lines ran, which functions were never called, and which
lines did not run, as ranges within one function (``slab.c:120-128 in
_hak_retire``).  Those are the next work for the engines.

Where the counters go: the module and the driver write them under
``$GCOV_PREFIX`` (a scratch directory of this run, so parallel runs never
share a file), with every directory of the compile-time path stripped
(``$GCOV_PREFIX_STRIP`` beyond any depth keeps just the file name): the
module's ``api.gcda``, the driver's ``hakdriver-api.gcda``.  Counters of
several runs of one binary add up in its file.  A forked child leaves by
``_exit``, which skips gcov's own dump at exit, so the child dumps (and
zeroes) the counters itself after every program: a program that crashes the
child loses only its own counts.

Some sources cannot run in these builds at all (the ``LD_PRELOAD`` shim, the
ASan support compiled to nothing, clang's edge counter): they are listed
apart, with the reason, and not counted.  The Hypothesis example database is
not a set of programs (it holds Hypothesis's choice sequences) and is skipped,
with a note saying so.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hakfuzz import native
from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz.campaign.forked import Death, stream
from hakfuzz.campaign.gcov import (
    Counts,
    FileCoverage,
    Gap,
    file_coverage,
    gcov_version,
    read_counters,
)
from hakfuzz.differential import DifferentialExecutor
from hakfuzz.differential.driver import run_driver
from hakfuzz.native import build, default_tree
from hakfuzz.native._tools import build_tool
from hakfuzz.program import Program, ProgramError, decode, load_program

if TYPE_CHECKING:
    from hakfuzz.native import NativeTree

FORMAT = "hakfuzz-coverage/1"
"""The ``format`` of the JSON document."""

BUILD = "gcov"
"""The build variant whose line counters are read."""

DRIVER = "hakdriver"

_STRIP_ALL = "999"  # more levels than any path has: gcov keeps only the file's own name

OUTSIDE_REASONS: dict[str, str] = {
    "preload.c": "built only into libhakmem.so, the LD_PRELOAD library (hakfuzz preload); "
    "programs run the cffi module and the C driver",
    "asan.c": "compiles to nothing unless AddressSanitizer is on "
    "(#if defined(__SANITIZE_ADDRESS__)): it runs only in the asan build",
    "covcount.c": "reads clang's sanitizer-coverage counters, which only the clang `coverage` "
    "build has; only the atheris engine calls hak_cov_edges",
}
"""Sources of ``native/src/`` that no program can run in the gcov builds, and why."""

HYPOTHESIS_DB_REASON = (
    "the Hypothesis example database holds Hypothesis's choice sequences, not programs"
)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Note:
    """A path, and what happened to it (skipped, malformed, crashed the child)."""

    path: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Outside:
    """A source no program can run in these builds; ``executable`` lines are not counted."""

    file: str
    executable: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "executable": self.executable, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Inputs:
    """The programs to replay (with where each came from), and the paths that are not."""

    programs: tuple[tuple[str, Program], ...]
    malformed: tuple[Note, ...] = ()
    skipped: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """Line coverage of ``native/src/`` by a set of programs on the gcov builds."""

    files: tuple[FileCoverage, ...]
    outside: tuple[Outside, ...]
    programs: int
    driver_runs: int
    executed_by: dict[str, int]  # lines that ran in the module / in the driver
    crashed: tuple[Note, ...] = ()
    malformed: tuple[Note, ...] = ()
    skipped: tuple[Note, ...] = ()
    gcov: str = ""

    @property
    def executed(self) -> int:
        return sum(f.executed for f in self.files)

    @property
    def executable(self) -> int:
        return sum(f.executable for f in self.files)

    @property
    def gaps(self) -> list[Gap]:
        return [g for f in self.files for g in f.gaps]

    def as_json(self) -> dict[str, Any]:
        executable = self.executable
        return {
            "format": FORMAT,
            "build": BUILD,
            "gcov": self.gcov,
            "programs": self.programs,
            "driver_runs": self.driver_runs,
            "executed": self.executed,
            "executable": executable,
            "percent": round(100.0 * self.executed / executable, 1) if executable else 0.0,
            "executed_by": dict(self.executed_by),
            "gaps": [str(g) for g in self.gaps],
            "uncalled": [f"{f.file}:{name}" for f in self.files for name in f.uncalled],
            "files": [f.as_json() for f in self.files],
            "outside": [o.as_json() for o in self.outside],
            "crashed": [n.as_json() for n in self.crashed],
            "malformed": [n.as_json() for n in self.malformed],
            "skipped": [n.as_json() for n in self.skipped],
        }


# ---- inputs -----------------------------------------------------------------


def find_inputs(paths: Iterable[str | Path], workdir: Path | None = None) -> Inputs:
    """The programs under ``paths``, plus the atheris corpus of ``workdir``.

    In a directory, ``*.json`` files are programs (a finding file is one too)
    and files without a suffix are atheris inputs (libFuzzer names them by
    their SHA-1), decoded as the atheris engine does; a directory called
    ``hypothesis-db`` is skipped with a note, as are other files.  A
    campaign's work directory stands for its atheris corpus (its journals
    and reports are not programs).  A path that does not exist is a
    :class:`UsageError`.
    """
    gathered = _Gathered()
    for raw in paths:
        gathered.add(Path(raw))
    if workdir is not None:
        atheris = workdir / "atheris-corpus"
        if atheris.is_dir():
            gathered.add(atheris)
        hypothesis = workdir / "hypothesis-db"
        if hypothesis.is_dir():
            gathered.add(hypothesis)
    return Inputs(tuple(gathered.programs), tuple(gathered.malformed), tuple(gathered.skipped))


@dataclass
class _Gathered:
    programs: list[tuple[str, Program]] = field(default_factory=list)
    malformed: list[Note] = field(default_factory=list)
    skipped: list[Note] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)

    def add(self, path: Path) -> None:
        if not path.exists():
            raise UsageError(f"hakfuzz coverage: {path}: no such file or directory")
        if path.is_file():
            self._file(path, named=True)
            return
        if path.name == "hypothesis-db":
            self._skip(path, HYPOTHESIS_DB_REASON)
            return
        if _is_workdir(path):  # its journals and reports are not programs
            for part in ("atheris-corpus", "hypothesis-db"):
                if (path / part).is_dir():
                    self.add(path / part)
            return
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                self.add(child)
            else:
                self._file(child, named=False)

    def _skip(self, path: Path, reason: str) -> None:
        key = path.resolve()
        if key not in self.seen:
            self.seen.add(key)
            self.skipped.append(Note(str(path), reason))

    def _file(self, path: Path, *, named: bool) -> None:
        key = path.resolve()
        if key in self.seen:
            return
        if path.suffix == ".json":
            self.seen.add(key)
            try:
                self.programs.append((str(path), load_program(path)))
            except ProgramError as exc:
                self.malformed.append(Note(str(path), str(exc)))
        elif path.suffix == "" or named:
            self.seen.add(key)
            try:
                data = path.read_bytes()
            except OSError as exc:
                self.malformed.append(Note(str(path), exc.strerror or str(exc)))
                return
            self.programs.append((str(path), decode(data)))
        else:
            self._skip(path, "neither a program (*.json) nor an atheris input (no suffix)")


def _is_workdir(path: Path) -> bool:
    """Whether ``path`` is a campaign's work directory (``hakfuzz fuzz --workdir``)."""
    return (path / "atheris-corpus").is_dir() or any(path.glob("journal-*"))


# ---- running ----------------------------------------------------------------


def gcov_env(directory: Path) -> dict[str, str]:
    """The variables that send a gcov build's counters to ``directory/<object>.gcda``."""
    return {"GCOV_PREFIX": str(directory.resolve()), "GCOV_PREFIX_STRIP": _STRIP_ALL}


class _Job:
    """Runs program ``index`` differentially on the gcov module; called in the forked child.

    The module is loaded in the child, never in the parent: a parent that
    loaded it would write its (empty) counters at exit wherever the build
    directory was, as nothing would point it elsewhere.
    """

    def __init__(
        self, programs: Sequence[Program], counters: Path, tree: NativeTree | None
    ) -> None:
        self.programs = programs
        self.counters = counters
        self.tree = tree
        self.executor: Any = None
        self.dump: Callable[[], None] = lambda: None
        self.reset: Callable[[], None] = lambda: None

    def __call__(self, index: int) -> dict[str, Any]:
        if self.executor is None:
            self._start()
        try:
            divergence = self.executor.run(self.programs[index])
        finally:
            self.dump()  # gcov's own dump runs at exit(), which a forked child never reaches
            self.reset()
        return {"diverged": divergence is not None}

    def _start(self) -> None:

        os.environ.update(gcov_env(self.counters))  # read by gcov at every dump
        module = native.load(BUILD, tree=self.tree, progress=None)
        assert module.__file__ is not None
        library = ctypes.CDLL(module.__file__)  # the same handle: dlopen counts references
        # getattr: a dunder name written in a class body would be mangled
        self.dump = getattr(library, "__gcov_dump")
        self.reset = getattr(library, "__gcov_reset")
        self.executor = DifferentialExecutor(module)


@dataclass
class _Runs:
    driver_runs: int = 0
    crashed: list[Note] = field(default_factory=list)


def _run_all(
    programs: Sequence[tuple[str, Program]],
    counters: Path,
    tree: NativeTree | None,
    driver: Path | None,
    timeout: float,
    progress: Progress | None,
) -> _Runs:

    runs = _Runs()
    job = _Job([p for _, p in programs], counters, tree)
    verdicts = stream(len(programs), job, timeout=timeout)
    try:
        for index, outcome in enumerate(verdicts):
            label, program = programs[index]
            if isinstance(outcome, Death):
                runs.crashed.append(Note(label, f"the differential run died: {outcome.detail}"))
            elif "exception" in outcome:
                last = str(outcome["exception"]).strip().splitlines()[-1]
                runs.crashed.append(Note(label, f"the differential run failed: {last}"))
            if driver is not None and program.threads > 1:
                run = run_driver(driver, program, timeout=timeout, env=gcov_env(counters))
                runs.driver_runs += 1
                if run.returncode < 0 or run.timed_out:
                    how = "timed out" if run.timed_out else f"died of signal {-run.returncode}"
                    runs.crashed.append(Note(label, f"the driver {how}"))
            if progress is not None and (index + 1) % 100 == 0:
                progress(f"replayed {index + 1}/{len(programs)} programs")
    finally:
        verdicts.close()
    return runs


# ---- the report -------------------------------------------------------------------


def measure(
    inputs: Inputs,
    *,
    tree: NativeTree | None = None,
    scratch: Path | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> CoverageReport:
    """Replay ``inputs`` on the gcov builds and report which lines of ``native/src/`` ran.

    ``scratch`` receives the counters (default: a temporary directory,
    removed afterwards); ``timeout`` bounds each run.
    """
    version = gcov_version()
    tree = tree or default_tree()
    module = build(BUILD, tree=tree, progress=progress)
    notes = sorted(module.directory.glob("*.gcno"))
    if not notes:
        raise HakfuzzError(
            f"the gcov build in {module.directory} has no .gcno notes for gcov to read; "
            "rebuild it: hakfuzz build --variant gcov --force"
        )
    threaded = any(p.threads > 1 for _, p in inputs.programs)
    driver = build_tool(DRIVER, BUILD, tree=tree) if threaded else None
    own = scratch is None
    counters = Path(tempfile.mkdtemp(prefix="hakfuzz-gcov-")) if scratch is None else scratch
    try:
        counters.mkdir(parents=True, exist_ok=True)
        runs = _run_all(inputs.programs, counters, tree, driver, timeout, progress)
        in_module = read_counters(counters, notes, tree.src_dir)
        in_driver = Counts()
        if driver is not None:
            driver_notes = sorted(driver.parent.glob(f"{DRIVER}-*.gcno"))
            in_driver = read_counters(counters, driver_notes, tree.src_dir)
    finally:
        if own:
            shutil.rmtree(counters, ignore_errors=True)
    counts = Counts()
    counts.add(in_module)
    counts.add(in_driver)
    compiled = {s.name for s in tree.sources()}
    files, outside = _split(tree, counts, compiled)
    return CoverageReport(
        files=files,
        outside=outside,
        programs=len(inputs.programs),
        driver_runs=runs.driver_runs,
        executed_by={"module": in_module.executed(), "driver": in_driver.executed()},
        crashed=tuple(runs.crashed),
        malformed=inputs.malformed,
        skipped=inputs.skipped,
        gcov=version,
    )


def _split(
    tree: NativeTree, counts: Counts, compiled: set[str]
) -> tuple[tuple[FileCoverage, ...], tuple[Outside, ...]]:
    """Files programs can run, and the sources they cannot (with the reason)."""
    files: list[FileCoverage] = []
    outside: list[Outside] = []
    names = sorted({p.name for p in tree.src_dir.iterdir() if p.suffix in (".c", ".h")})
    for name in names:
        lines = counts.lines.get(name, {})
        reason = OUTSIDE_REASONS.get(name)
        if reason is None and name.endswith(".c") and name not in compiled:
            reason = "not compiled into the cffi module or the C driver"
        if reason is None and name.endswith(".c") and not lines:
            reason = "no executable code in this build (preprocessed away)"
        if reason is not None:
            outside.append(Outside(name, len(lines), reason))
        elif lines:
            files.append(file_coverage(name, lines, counts.functions.get(name)))
    return tuple(files), tuple(outside)


def coverage_gaps(paths: Iterable[str | Path], workdir: Path | None = None) -> dict[str, Any]:
    """The gap report of a campaign's programs as one JSON-ready dict, for report.json.

    Paths that do not exist (no finding was written, say) are left out, and
    any failure (no gcov, a build that fails) is ``{"error": "..."}``, so a
    finished campaign always gets its report.
    """
    present = [Path(p) for p in paths if Path(p).exists()]
    try:
        return measure(find_inputs(present, workdir)).as_json()
    except HakfuzzError as exc:
        return {"format": FORMAT, "error": str(exc)}


__all__ = [
    "BUILD",
    "FORMAT",
    "OUTSIDE_REASONS",
    "CoverageReport",
    "FileCoverage",
    "Gap",
    "Inputs",
    "Note",
    "Outside",
    "coverage_gaps",
    "find_inputs",
    "gcov_env",
    "measure",
]
