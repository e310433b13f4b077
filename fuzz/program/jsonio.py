"""The JSON form of a Program: load, validate, dump, save.

JSON is the stored form of every finding and regression program.  Loading
checks everything docs/program.md states and fails with a ProgramError that
names the file, the op index and the field.  Both ``hakfuzz-program/1`` and
``/2`` documents load (a /1 document under /1's rules) into the same records;
dumping always writes /2.  Dumping is stable and diffable:
keys in a fixed order, the full config spelled out, one op per line.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hakfuzz.program.churn import churn_from_json, churn_to_json
from hakfuzz.program.errors import ProgramError
from hakfuzz.program.model import (
    CONFIG_FIELDS,
    FORMAT,
    KIND_BY_NAME,
    MAX_OPS,
    NO_HANDLE,
    OP_FIELDS,
    READ_FORMATS,
    TARGET_FIELDS,
    Op,
    Program,
    ProgramConfig,
    ProgramTarget,
)
from hakfuzz.program.validate import (
    OpChecker,
    check_config_value,
    check_threads,
    describe,
    validate,
)

_TOP_KEYS = ("format", "description", "target", "config", "threads", "ops", "churn",
             "finding", "target_config")
# "finding": metadata a finding file carries (engine, signature, seed, ...);
# it must be an object and is not part of the Program.


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers keys it saw more than once."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.duplicates: list[str] = []
        for key, value in pairs:
            if key in self:
                self.duplicates.append(key)
            self[key] = value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in JSON")


def load_program(path: str | os.PathLike[str]) -> Program:
    """Read and validate the program stored at ``path``."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProgramError(f"cannot read: {exc}", path=source) from exc
    return loads_program(text, source)


def loads_program(text: str, source: str = "<string>") -> Program:
    """Parse and validate a program; errors name ``source``."""
    try:
        document = json.loads(
            text, object_pairs_hook=_JsonObject, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise ProgramError(
            f"invalid JSON: {exc.msg}", path=source, line=exc.lineno,
            column=exc.colno,
        ) from exc
    except ValueError as exc:
        raise ProgramError(f"invalid JSON: {exc}", path=source) from exc
    return _program_from_json(document, source)


def _unknown_key_error(
    keys: list[str], allowed: tuple[str, ...], what: str, source: str,
    *, prefix: str = "", op_index: int | None = None, op_kind: str | None = None,
) -> ProgramError:
    key = keys[0]
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ProgramError(
        f"not a field of {what} (its fields: {', '.join(allowed)}){hint}",
        path=source, field=prefix + key, op_index=op_index, op_kind=op_kind,
    )


def _check_object(value: object, source: str, *, field: str | None = None,
                  op_index: int | None = None, op_kind: str | None = None,
                  prefix: str = "") -> _JsonObject:
    if not isinstance(value, _JsonObject):
        raise ProgramError(
            f"expected an object, got {describe(value)}", path=source,
            field=field, op_index=op_index, op_kind=op_kind,
        )
    if value.duplicates:
        raise ProgramError(
            "duplicate key", path=source, field=prefix + value.duplicates[0],
            op_index=op_index, op_kind=op_kind,
        )
    return value


def _program_from_json(document: object, source: str) -> Program:
    top = _check_object(document, source)
    expected = " or ".join(f'"{name}"' for name in READ_FORMATS)
    if "format" not in top:
        raise ProgramError(f"missing (expected {expected})", path=source,
                           field="format")
    version = top["format"]
    if version not in READ_FORMATS or not isinstance(version, str):
        raise ProgramError(
            f"expected {expected}, got {describe(version)}",
            path=source, field="format",
        )
    unknown = [key for key in top if key not in _TOP_KEYS]
    if unknown:
        raise _unknown_key_error(unknown, _TOP_KEYS, "a program", source)
    if "finding" in top:
        _check_object(top["finding"], source, field="finding", prefix="finding.")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise ProgramError(
            f"expected a string, got {describe(description)}", path=source,
            field="description",
        )
    target = _target_from_json(top["target"], source) if "target" in top else None
    config = _config_from_json(top.get("config", _JsonObject([])), source)
    threads = top.get("threads", 1)
    check_threads(threads, source)
    if "ops" not in top:
        raise ProgramError("missing (a list of ops)", path=source, field="ops")
    raw_ops = top["ops"]
    if not isinstance(raw_ops, list):
        raise ProgramError(
            f"expected a list, got {describe(raw_ops)}", path=source,
            field="ops",
        )
    if len(raw_ops) > MAX_OPS:
        raise ProgramError(
            f"{len(raw_ops)} ops; at most {MAX_OPS} are allowed",
            path=source, field="ops",
        )
    checker = OpChecker(source, threads, version)
    ops = tuple(
        _op_from_json(index, raw, source, checker)
        for index, raw in enumerate(raw_ops)
    )
    churn = None
    if "churn" in top:
        raw_churn = _check_object(top["churn"], source, field="churn", prefix="churn.")
        if version != FORMAT:
            raise ProgramError(
                f"a churn section needs \"{FORMAT}\"", path=source, field="churn"
            )
        churn = churn_from_json(raw_churn, source)
    return Program(FORMAT, description, config, threads, ops, churn,
                   _target_config_from_json(top.get("target_config", _JsonObject([])), source),
                   target)


def _target_config_from_json(value: object, source: str) -> tuple[tuple[str, str], ...]:
    """``"target_config": {"key": "value", ...}``: strings only."""
    pairs = _check_object(value, source, field="target_config", prefix="target_config.")
    for key, item in pairs.items():
        if not isinstance(item, str):
            raise ProgramError(f"expected a string, got {describe(item)}", path=source,
                               field=f"target_config.{key}")
    return tuple((str(key), str(item)) for key, item in pairs.items())


def _target_from_json(value: object, source: str) -> ProgramTarget:
    """The allocator a finding was met on: three strings, all present."""
    top = _check_object(value, source, field="target", prefix="target.")
    unknown = [key for key in top if key not in TARGET_FIELDS]
    if unknown:
        raise _unknown_key_error(unknown, TARGET_FIELDS, "target", source, prefix="target.")
    for name in TARGET_FIELDS:
        if not isinstance(top.get(name), str):
            got = "missing" if name not in top else f"got {describe(top[name])}"
            raise ProgramError(f"expected a string ({got})", path=source, field=f"target.{name}")
    return ProgramTarget(top["spec"], top["real_path"], top["sha256"])


def _config_from_json(value: object, source: str) -> ProgramConfig:
    raw = _check_object(value, source, field="config", prefix="config.")
    unknown = [key for key in raw if key not in CONFIG_FIELDS]
    if unknown:
        raise _unknown_key_error(
            unknown, CONFIG_FIELDS, "config", source, prefix="config."
        )
    for name, field_value in raw.items():
        check_config_value(name, field_value, source)
    return ProgramConfig(**raw)


def _op_from_json(index: int, value: object, source: str,
                  checker: OpChecker) -> Op:
    raw = _check_object(value, source, op_index=index)
    if "op" not in raw:
        raise ProgramError("missing (the kind of op)", path=source,
                           op_index=index, field="op")
    name = raw["op"]
    kind = KIND_BY_NAME.get(name) if isinstance(name, str) else None
    if kind is None:
        close = (difflib.get_close_matches(name, list(KIND_BY_NAME), n=1)
                 if isinstance(name, str) else [])
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ProgramError(
            f"unknown op {describe(name)} (known: {', '.join(KIND_BY_NAME)})"
            + hint,
            path=source, op_index=index, field="op",
        )
    fields = OP_FIELDS[kind]
    allowed = ("op", "thread", *fields)
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise _unknown_key_error(
            unknown, allowed, f"op {name}", source, op_index=index,
            op_kind=name,
        )
    for field in fields:
        if field not in raw:
            raise ProgramError(
                f"missing ({name} needs {', '.join(fields)})", path=source,
                op_index=index, op_kind=name, field=field,
            )
    op = Op(
        kind,
        raw.get("thread", 0),
        raw.get("handle", NO_HANDLE),
        raw.get("size", 0),
        raw.get("count", 0),
        raw.get("align", 0),
        raw.get("seed", 0),
    )
    checker.check(index, op)
    return op


def _op_to_json(op: Op) -> str:
    parts = [f'"op": "{op.kind.json_name}"', f'"thread": {op.thread}']
    parts.extend(f'"{field}": {getattr(op, field)}' for field in OP_FIELDS[op.kind])
    return "{" + ", ".join(parts) + "}"


def dump_program(program: Program) -> str:
    """The JSON text of a valid program: stable key order, one op per line.

    Raises ProgramError if ``program`` is not valid.
    """
    validate(program)
    config = program.config
    lines = [
        "{",
        f'  "format": {json.dumps(program.format)},',
        f'  "description": {json.dumps(program.description, ensure_ascii=False)},',
    ]
    if program.target is not None:
        fields = ", ".join(
            f'"{name}": {json.dumps(getattr(program.target, name), ensure_ascii=False)}'
            for name in TARGET_FIELDS
        )
        lines.append(f'  "target": {{{fields}}},')
    lines.append('  "config": {')
    for position, name in enumerate(CONFIG_FIELDS):
        comma = "," if position < len(CONFIG_FIELDS) - 1 else ""
        lines.append(f'    "{name}": {json.dumps(getattr(config, name))}{comma}')
    lines.append("  },")
    lines.append(f'  "threads": {program.threads},')
    if program.target_config:
        pairs = json.dumps(dict(program.target_config), ensure_ascii=False)
        lines.append(f'  "target_config": {pairs},')
    if program.ops:
        lines.append('  "ops": [')
        last = len(program.ops) - 1
        lines.extend(
            f"    {_op_to_json(op)}{',' if position < last else ''}"
            for position, op in enumerate(program.ops)
        )
        lines.append("  ]")
    else:
        lines.append('  "ops": []')
    if program.churn is not None:
        lines[-1] += ","
        lines.append(f'  "churn": {churn_to_json(program.churn)}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def save_program(program: Program, path: str | os.PathLike[str]) -> None:
    """Write ``dump_program(program)`` to ``path`` atomically and durably.

    The file is complete on disk before this returns, so a crash of a later
    native run cannot lose it.
    """
    text = dump_program(program)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
