"""What a dead or failing process said, turned into a finding's kind and detail.

One home for the messages that name a memory bug: glibc's own aborts
(``free(): invalid pointer``), the allocator's (``hakmem: ...``), the
sanitizers' reports, and the test faults.  Every engine that watches a
process (the campaign supervisor, the child re-runs, the C driver's judge)
calls :func:`diagnose`, so one bug gets one signature whichever engine and
build met it.

A sanitizer report is named by its tool, its kind and the top frames of the
first stack that are not the sanitizer's own (interceptors, runtime):
``asan heap-use-after-free in tiny_free < hak_free``.  Addresses and line
numbers are left out, so the name is stable across runs and rebuilds.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

GLIBC_MESSAGES = (
    "free():",
    "double free",
    "malloc():",
    "realloc():",
    "munmap_chunk():",
    "corrupted",
    "malloc_consolidate",
)
"""How glibc's malloc starts a line when it aborts on a bad pointer or a corrupt heap."""

_OWN_MESSAGES = ("hakmem:", "HAKFUZZ-TEST-FAULT", "ERROR: libFuzzer")
_SANITIZERS = ("AddressSanitizer", "ThreadSanitizer", "LeakSanitizer", "runtime error")
_MARKERS = GLIBC_MESSAGES + _OWN_MESSAGES + _SANITIZERS

# libFuzzer's progress lines ("#4096 pulse cov: 97 ft: 120 corp: 12/1kb exec/s: 812 rss: 106Mb")
# and its closing statistics say nothing about why a process died.
_NOISE = re.compile(r"^(#\d+\s|stat::|INFO: |MS: |Done \d+ runs|base unit:|0x[0-9a-f]+,)")

_REPORT = re.compile(
    r"(?:ERROR|WARNING): (?P<tool>AddressSanitizer|ThreadSanitizer|LeakSanitizer): "
    r"(?P<kind>[A-Za-z][A-Za-z0-9 _-]*?)(?: on | \(|$| of | at | in |:)"
)
_UBSAN = re.compile(r"runtime error: (?P<kind>.*)")
_FRAME = re.compile(r"^\s*#\d+\s+(?:0x[0-9a-fA-F]+\s+in\s+)?(?P<func>[^\s(]+)(?P<where>.*)")
_RUNTIME_FRAME = re.compile(
    r"^(__interceptor_|__asan|__tsan|__sanitizer|__ubsan|__lsan|___interceptor|_cffi_|"
    r"<null>|\?\?|__libc_|__GI_|_start$|start_thread$|clone3?$|_?Py)"
)
# Frames of the interpreter, cffi, the C library and the sanitizer runtime: where
# the Python engines touch memory, not where the allocator went wrong.
_FOREIGN_PLACE = re.compile(
    r"_cffi_backend|libpython|/bin/python|libsanitizer|(^|[\s(])(Objects|Python|Modules|Include|"
    r"Parser)/|sysdeps/|csu/|libc\.so|libasan|libtsan|libubsan"
)
_TOOLS = {
    "AddressSanitizer": "asan",
    "ThreadSanitizer": "tsan",
    "LeakSanitizer": "lsan",
}
_TOP_FRAMES = 2


@dataclass(frozen=True, slots=True)
class SanitizerReport:
    """The first sanitizer report in a process's stderr."""

    tool: str  # asan, tsan, lsan, ubsan
    kind: str  # heap-use-after-free, data race, ...
    frames: tuple[str, ...]  # top functions of the first stack, innermost first

    def detail(self) -> str:
        """``asan heap-use-after-free in tiny_free < hak_free``."""
        where = f" in {' < '.join(self.frames)}" if self.frames else ""
        return f"{self.tool} {self.kind}{where}"


def sanitizer_report(stderr: str) -> SanitizerReport | None:
    """The first ASan/TSan/LSan/UBSan report in ``stderr``, or None."""
    lines = stderr.splitlines()
    for at, line in enumerate(lines):
        match = _REPORT.search(line)
        if match:
            tool, kind = _TOOLS[match.group("tool")], match.group("kind").strip()
        else:
            ub = _UBSAN.search(line)
            if ub is None:
                continue
            tool, kind = "ubsan", re.sub(r"\s*\d[\w.+-]*", "", ub.group("kind")).strip()
        return SanitizerReport(tool, kind, _top_frames(lines[at + 1 :]))
    return None


def _top_frames(lines: list[str]) -> tuple[str, ...]:
    frames: list[str] = []
    started = False
    for line in lines:
        match = _FRAME.match(line)
        if match is None:
            if started:
                break  # the end of the first stack
            continue
        started = True
        func = match.group("func")
        if not _RUNTIME_FRAME.match(func) and not _FOREIGN_PLACE.search(match.group("where")):
            frames.append(func)
            if len(frames) == _TOP_FRAMES:
                break
    return tuple(frames)


def first_diagnostic(stderr: str, *, fallback: bool = True) -> str:
    """The line that says what went wrong (glibc's message, a sanitizer's ERROR).

    With no such line, the last line that is not libFuzzer's progress output,
    unless ``fallback`` is off.
    """
    for line in stderr.splitlines():
        text = line.strip().lstrip("=0123456789").strip()
        if any(marker in text for marker in _MARKERS):
            return text
    if not fallback:
        return ""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not _NOISE.match(line)]
    return lines[-1] if lines else ""


def diagnose(returncode: int, stderr: str) -> tuple[str, str]:
    """(kind, detail) of a process that ended with ``returncode`` (negative: a signal).

    A sanitizer report wins over how the process ended (ASan exits 1, TSan
    may abort), so one bug has one signature in every engine.  A death by
    signal names only a real diagnostic: whatever else the process printed
    last (a progress line, a warning) would split one crash into many
    signatures.
    """
    report = sanitizer_report(stderr)
    if report is not None:
        return "sanitizer", report.detail()
    if returncode < 0:
        diag = first_diagnostic(stderr, fallback=False)
        return "signal", f"{signal.Signals(-returncode).name} {diag}".strip()
    return "exit", f"exit {returncode} {first_diagnostic(stderr)}".strip()
