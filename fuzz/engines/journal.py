"""Write-ahead journal of the input a worker is about to run natively.

The journal is rewritten at the start of every program and appended to
before every op, with plain ``write`` calls: the data is in the kernel once
the call returns, so it survives the process dying on the next instruction
(no ``fsync`` is needed for that; it would only matter for a machine crash).

Two forms: JSON lines (first line: config and thread count; then one op per
line) for op-by-op engines, and the raw binary input (tag byte ``B``) for
atheris.  :func:`recover` turns either back into a Program.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hakfuzz.program import OP_FIELDS, ChurnSpec, Op, Program, ProgramConfig, decode, loads_program
from hakfuzz.program.jsonio import dump_program
from hakfuzz.program.model import KIND_BY_NAME

_JSON, _BINARY = b"J", b"B"


class Journal:
    """One worker's journal file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def begin(self, config: ProgramConfig, threads: int, churn: ChurnSpec | None = None) -> None:
        """Start a new op-by-op program (``churn``: its churn section, run after the ops)."""
        head = dump_program(Program(config=config, threads=threads, churn=churn))
        header = json.dumps(json.loads(head), separators=(",", ":"))
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, _JSON + header.encode() + b"\n", 0)
        os.lseek(self._fd, 0, os.SEEK_END)

    def op(self, op: Op) -> None:
        """Append one op (before it runs)."""
        fields = {"op": op.kind.json_name, "thread": op.thread}
        if op.handle >= 0:
            fields["handle"] = op.handle
        for name in ("size", "count", "align", "seed"):
            value = getattr(op, name)
            if value:
                fields[name] = value
        os.write(self._fd, json.dumps(fields, separators=(",", ":")).encode() + b"\n")

    def binary(self, data: bytes) -> None:
        """Replace the journal with one binary input (before it runs)."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, _BINARY + data, 0)

    def clear(self) -> None:
        """Nothing is in flight."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        os.close(self._fd)


def recover_bytes(path: Path) -> bytes | None:
    """The raw binary input in flight, when the journal holds one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data[1:] if data[:1] == _BINARY else None


def recover(path: Path) -> Program | None:
    """The program that was in flight, or None if the journal is empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    if data[:1] == _BINARY:
        return decode(data[1:])
    lines = data[1:].decode(errors="replace").splitlines()
    if not lines:
        return None
    head = json.loads(lines[0])
    ops = []
    for line in lines[1:]:
        try:
            op = json.loads(line)
        except json.JSONDecodeError:
            break  # a torn last line: the op never started
        op.setdefault("thread", 0)
        ops.append(op)
    head["ops"] = _required_fields(ops)
    return loads_program(json.dumps(head), source=str(path))


def _required_fields(ops: list[dict[str, object]]) -> list[dict[str, object]]:
    """Zero fields were left out when writing; put back those the kind needs."""
    out = []
    for op in ops:
        kind = KIND_BY_NAME[str(op["op"])]
        full: dict[str, object] = {"op": op["op"], "thread": op["thread"]}
        for name in OP_FIELDS[kind]:
            full[name] = op.get(name, 0)
        out.append(full)
    return out
