"""The findings store: ``corpus/findings/<signature>[-<digest>].json``.

A finding file is a Program document with one extra top-level object,
``finding``: engine, kind, signature, message, op index, seed, variant, time,
whether it is minimised, reproduction rate, sizes before and after
minimisation, the count of times it was met, and the one-line replay
command.  Loading it as a Program ignores that object, so every engine and
``hakfuzz replay`` take finding files as they are.

Every distinct program of a signature has a file of its own: the first is
``<signature>.json``, later different ones ``<signature>-<digest>.json``
(the digest of the program).  Meeting a program that a file already holds
only raises that file's ``count``.  So a file always holds the program its
summary line names, and no program is dropped.

Writes are atomic (a temporary file, then a rename): a campaign killed while
saving leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hakfuzz._errors import UsageError
from hakfuzz.findings import Finding
from hakfuzz.program import Program, load_program
from hakfuzz.program.jsonio import dump_program


@dataclass(frozen=True, slots=True)
class Saved:
    """Where a finding's program is and whether the file is new."""

    path: Path
    new: bool


def finding_document(program: Program, meta: dict[str, Any]) -> str:
    """The JSON text of a finding file."""
    text = dump_program(program).rstrip()
    assert text.endswith("}")
    extra = json.dumps(meta, indent=2).replace("\n", "\n  ")
    return f'{text[:-1].rstrip()},\n  "finding": {extra}\n}}\n'


def read_meta(path: Path) -> dict[str, Any]:
    """The ``finding`` object of a file ({} when it has none)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    meta = doc.get("finding") if isinstance(doc, dict) else None
    return meta if isinstance(meta, dict) else {}


def program_digest(program: Program) -> str:
    """What makes two programs the same finding input: config, threads and ops."""
    bare = dataclasses.replace(program, description="")
    return hashlib.sha1(dump_program(bare).encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


class FindingStore:
    """Findings under one directory (default ``corpus/findings``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def files_for(self, signature: str) -> list[Path]:
        """The files holding programs of ``signature``, the first one first."""
        if not self.root.is_dir():
            return []
        main = self.root / f"{signature}.json"
        others = sorted(self.root.glob(f"{signature}-" + "[0-9a-f]" * 8 + ".json"))
        return ([main] if main.is_file() else []) + others

    def holding(self, signature: str, program: Program) -> Path | None:
        """The file of ``signature`` that holds exactly ``program``, if any."""
        digest = program_digest(program)
        for path in self.files_for(signature):
            try:
                if program_digest(load_program(path)) == digest:
                    return path
            except Exception:  # a file edited by hand into something else: not a match
                continue
        return None

    def _count(self, path: Path, times: int) -> Saved:
        meta = read_meta(path)
        meta["count"] = int(meta.get("count", 1)) + times
        _write_atomic(path, finding_document(load_program(path), meta))
        return Saved(path, False)

    def save(
        self,
        finding: Finding,
        program: Program,
        *,
        minimised: bool,
        reproduction: float | None = None,
        minimized_from: int | None = None,
        count: int = 1,
        replace: Path | None = None,
        note: str = "",
    ) -> Saved:
        """Store ``program`` (the one that fails as ``finding`` says).

        A file that already holds the same program gets its ``count`` raised
        by ``count``; otherwise the program gets a file of its own.  With
        ``replace`` (a file this campaign wrote earlier for the same finding,
        e.g. the unminimised program), that file is rewritten, or removed when
        another file already holds ``program``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        signature = finding.signature
        known = self.holding(signature, program)
        if known is not None and known != replace:
            if replace is not None:
                replace.unlink(missing_ok=True)
            return self._count(known, count)
        if replace is not None:
            path = replace
        else:
            path = self.root / f"{signature}.json"
            if path.exists():
                path = self.root / f"{signature}-{program_digest(program)[:8]}.json"
        meta: dict[str, Any] = {
            "signature": signature,
            "engine": finding.engine,
            "kind": finding.kind,
            "message": finding.message,
            "op_index": finding.op_index,
            "seed": finding.seed,
            "variant": finding.variant,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "minimised": minimised,
            "ops": len(program.ops),
            "ops_before_minimising": minimized_from,
            "reproduction_rate": reproduction,
            "replay": f"hakfuzz replay {path}",
            "count": count,
        }
        if note:  # what minimisation kept, or why the program was kept as met
            meta["note"] = note
        if "job" in finding.extra:  # a preload job: how to run it again
            meta["job"] = finding.extra["job"]
        if "foreign_frees" in finding.extra:  # met on a foreign target: how its frees ran
            meta["foreign_frees"] = finding.extra["foreign_frees"]
        description = program.description or f"{finding.engine}: {finding.message}"[:500]
        program = dataclasses.replace(
            program, description=description, target=program.target or finding.program.target
        )
        _write_atomic(path, finding_document(program, meta))
        return Saved(path, replace is None)


def promote(path: Path, regressions: Path) -> Path:
    """Move a finding into the regression corpus; returns the new path.

    The ``finding`` metadata is dropped; the description keeps its message.
    """
    if not path.is_file():
        raise UsageError(f"hakfuzz promote: {path}: no such finding file")
    program = load_program(path)
    meta = read_meta(path)
    regressions.mkdir(parents=True, exist_ok=True)
    target = regressions / path.name
    if target.exists():
        raise UsageError(f"hakfuzz promote: {target} already exists")
    if not program.description and meta.get("message"):
        program = dataclasses.replace(program, description=str(meta["message"]))
    target.write_text(dump_program(program))
    path.unlink()
    return target
