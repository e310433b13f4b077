"""Findings: what an engine reports when a program exposes a bug.

A finding carries the program that reproduces it and a *signature* that
deduplicates it across engines: the kind of failure plus its first
distinguishing detail (the signal and glibc's message, the oracle name, or
the first differing field), never addresses or counts that change between
runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hakfuzz.program import Program

_SLUG = re.compile(r"[^a-z0-9]+")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+|\b\d+\b")


def slug(text: str, limit: int = 60) -> str:
    """Lower-case words joined by ``-``; addresses and numbers removed."""
    words = _SLUG.sub("-", _ADDRESS.sub("", text).lower()).strip("-")
    return words[:limit].rstrip("-") or "unknown"


def signature(kind: str, detail: str) -> str:
    """The deduplication key of a failure, e.g. ``signal-sigabrt-free-invalid-pointer``.

    Every engine, re-run and replay names a failure through this, so one bug
    has one key wherever it is met.
    """
    return f"{kind}-{slug(detail)}"


TIMEOUT_SIGNATURE = signature("timeout", "child timed out")
"""The key of a child process that gave no answer in time."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One failing program and what failed."""

    engine: str
    kind: str  # divergence | oracle | signal | timeout | exit
    detail: str  # the first distinguishing detail, stable across runs
    message: str  # everything a human needs, addresses included
    program: Program
    op_index: int | None = None
    variant: str = "release"
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        """The deduplication key (see :func:`signature`)."""
        return signature(self.kind, self.detail)

    def summary(self) -> str:
        """One line for tables."""
        where = f" at op {self.op_index}" if self.op_index is not None else ""
        return f"[{self.engine}] {self.signature}{where}: {self.message}"
