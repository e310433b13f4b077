"""What gcov says of a gcov build's counters: lines run, functions called, gaps.

gcc ``--coverage`` leaves a notes file (``.gcno``) beside each object when it
compiles, and the running program adds its counts to a data file
(``.gcda``).  :func:`read_counters` puts each notes file next to its data file
and asks gcov (``--json-format``, gcc 9 and later) about both; an object that
never ran has no data file, and then every line of it counts as not run.
Counts of several objects (the cffi module, the C driver) merge by source
file and line.  :func:`file_coverage` turns one file's lines into the report:
executed / executable, the functions never called, and the *gaps*, runs of
executable lines of one function none of which ran (blank and comment lines
do not break a run; a line that ran, or the next function, does).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hakfuzz._errors import HakfuzzError


@dataclass(frozen=True, slots=True)
class Line:
    """One executable line: how many times it ran, and the function it is in."""

    count: int
    function: str


@dataclass(frozen=True, slots=True)
class Function:
    """One function: where it starts, and how many times it was called."""

    start: int
    calls: int


@dataclass
class Counts:
    """Per source file (its name in ``native/src/``): its executable lines and functions."""

    lines: dict[str, dict[int, Line]] = field(default_factory=dict)
    functions: dict[str, dict[str, Function]] = field(default_factory=dict)

    def executed(self) -> int:
        """How many lines, over every file, ran at least once."""
        return sum(1 for per in self.lines.values() for line in per.values() if line.count > 0)

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these (the same line of two objects adds up)."""
        for name, lines in other.lines.items():
            mine = self.lines.setdefault(name, {})
            for number, line in lines.items():
                old = mine.get(number)
                mine[number] = Line(line.count + (old.count if old else 0), line.function)
        for name, functions in other.functions.items():
            known = self.functions.setdefault(name, {})
            for function, info in functions.items():
                seen = known.get(function)
                calls = info.calls + (seen.calls if seen else 0)
                known[function] = Function(info.start, calls)


@dataclass(frozen=True, slots=True)
class Gap:
    """Consecutive executable lines of one function, none of which ran."""

    file: str
    first: int
    last: int
    function: str
    lines: int  # executable lines in the range (comments and blank lines are not)
    called: bool = True  # False: the function never ran at all

    def __str__(self) -> str:
        where = f"{self.first}" if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.file}:{where} in {self.function}"

    def as_json(self) -> dict[str, Any]:
        return {
            "range": str(self),
            "file": self.file,
            "first": self.first,
            "last": self.last,
            "function": self.function,
            "lines": self.lines,
            "function_called": self.called,
        }


@dataclass(frozen=True, slots=True)
class FileCoverage:
    """One source file: executable lines, those that ran, uncalled functions and the gaps."""

    file: str
    executed: int
    executable: int
    gaps: tuple[Gap, ...]
    uncalled: tuple[str, ...] = ()  # in source order

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "executed": self.executed,
            "executable": self.executable,
            "uncalled": list(self.uncalled),
            "gaps": [g.as_json() for g in self.gaps],
        }


def gcov_version() -> str:
    """The first line of ``gcov --version``; a :class:`HakfuzzError` when there is no gcov."""
    try:
        done = subprocess.run(
            ["gcov", "--version"], capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise HakfuzzError(
            "hakfuzz coverage needs gcov (it comes with gcc: apt-get install gcc)"
        ) from None
    return (done.stdout.splitlines() or [""])[0]


def read_counters(counters: Path, notes: Sequence[Path], src_dir: Path) -> Counts:
    """What gcov says of the sources in ``src_dir``, from ``notes`` and the counters beside them.

    Each ``.gcno`` of ``notes`` is copied into ``counters``, the directory
    holding the ``.gcda`` files of the same names.
    """
    counts = Counts()
    if not notes:
        return counts
    for note in notes:
        shutil.copyfile(note, counters / note.name)
    done = subprocess.run(
        ["gcov", "--json-format", "--stdout", *(n.name for n in notes)],
        cwd=counters,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise HakfuzzError(f"gcov failed in {counters}: {said[-1] if said else done.returncode}")
    src = src_dir.resolve()
    for text in done.stdout.splitlines():
        if not text.strip():
            continue
        document = json.loads(text)
        for entry in document.get("files", []):
            path = Path(entry["file"])
            if not path.is_absolute():
                path = Path(document.get("current_working_directory", "/")) / path
            # By name, not by absolute path: a build is cached by content, so its notes
            # may name the checkout that first built it, not this one.
            if path.parent.name == src.name and (src / path.name).is_file():
                one = Counts({path.name: _lines(entry)}, {path.name: _functions(entry)})
                counts.add(one)
    return counts


def _lines(entry: dict[str, Any]) -> dict[int, Line]:
    spans = [(f["start_line"], f["end_line"], f["name"]) for f in entry.get("functions", [])]
    out: dict[int, Line] = {}
    for line in entry.get("lines", []):
        number = int(line["line_number"])
        function = line.get("function_name") or next(
            (name for first, last, name in spans if first <= number <= last), "?"
        )
        old = out.get(number)  # a line can appear once per function placed on it
        out[number] = Line(int(line["count"]) + (old.count if old else 0), function)
    return out


def _functions(entry: dict[str, Any]) -> dict[str, Function]:
    return {
        f["name"]: Function(int(f["start_line"]), int(f["execution_count"]))
        for f in entry.get("functions", [])
    }


def file_coverage(
    name: str, lines: dict[int, Line], functions: dict[str, Function] | None = None
) -> FileCoverage:
    """Counts, uncalled functions and gaps of one file."""
    functions = functions or {}
    uncalled = sorted((f.start, n) for n, f in functions.items() if f.calls == 0)
    never = {n for _, n in uncalled}
    gaps: list[Gap] = []
    open_gap: Gap | None = None
    for number in sorted(lines):
        line = lines[number]
        if line.count > 0:
            open_gap = None
            continue
        if open_gap is not None and open_gap.function == line.function:
            open_gap = Gap(
                name, open_gap.first, number, line.function, open_gap.lines + 1, open_gap.called
            )
            gaps[-1] = open_gap
        else:
            open_gap = Gap(name, number, number, line.function, 1, line.function not in never)
            gaps.append(open_gap)
    executed = sum(1 for line in lines.values() if line.count > 0)
    return FileCoverage(name, executed, len(lines), tuple(gaps), tuple(n for _, n in uncalled))


__all__ = [
    "Counts",
    "FileCoverage",
    "Function",
    "Gap",
    "Line",
    "file_coverage",
    "gcov_version",
    "read_counters",
]
