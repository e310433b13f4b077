"""The findings store: ``corpus/findings/<signature>.json``.

A finding file is a Program document with one extra top-level object,
``finding``: engine, kind, signature, message, op index, seed, variant, time,
reproduction rate, sizes before and after minimisation, and the one-line
replay command.  Loading it as a Program ignores that object, so every
engine and ``hakfuzz replay`` take finding files as they are.  The first
finding of a signature is kept; later duplicates only raise its ``count``.
"""

from __future__ import annotations

import json
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
    """Where a finding went and whether it was new."""

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


class FindingStore:
    """Findings under one directory (default ``corpus/findings``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, finding: Finding) -> Path:
        return self.root / f"{finding.signature}.json"

    def save(
        self,
        finding: Finding,
        program: Program,
        *,
        reproduction: float | None = None,
        minimized_from: int | None = None,
    ) -> Saved:
        """Write ``program`` (the minimised one, usually) for ``finding``."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(finding)
        if path.exists():
            known = read_meta(path)
            known["count"] = int(known.get("count", 1)) + 1
            text = finding_document(load_program(path), known)
            path.write_text(text)
            return Saved(path, False)
        meta: dict[str, Any] = {
            "signature": finding.signature,
            "engine": finding.engine,
            "kind": finding.kind,
            "message": finding.message,
            "op_index": finding.op_index,
            "seed": finding.seed,
            "variant": finding.variant,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "ops": len(program.ops),
            "ops_before_minimising": minimized_from,
            "reproduction_rate": reproduction,
            "replay": f"hakfuzz replay {path}",
            "count": 1,
        }
        description = program.description or f"{finding.engine}: {finding.message}"[:500]
        program = Program(program.format, description, program.config, program.threads, program.ops)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(finding_document(program, meta))
        tmp.replace(path)
        return Saved(path, True)


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
        program = Program(
            program.format, str(meta["message"]), program.config, program.threads, program.ops
        )
    target.write_text(dump_program(program))
    path.unlink()
    return target
