"""The Program format (``hakfuzz-program/2``; ``/1`` is read): records, JSON and binary forms.

One format serves every engine, every finding and every regression file; see
docs/program.md.  Public API:

- records: ``Program``, ``ProgramConfig``, ``Op``, ``OpKind``, ``ChurnSpec``;
- JSON: ``load_program``, ``loads_program``, ``dump_program``,
  ``save_program``;
- binary (atheris): ``decode`` (total), ``encode``;
- checks: ``validate``, ``ProgramError``, ``canonicalize``, ``is_canonical``.
"""

from hakfuzz.program.binary import decode, encode
from hakfuzz.program.churn import ChurnSpec
from hakfuzz.program.errors import ProgramError
from hakfuzz.program.jsonio import (
    dump_program,
    load_program,
    loads_program,
    save_program,
)
from hakfuzz.program.model import (
    CREATING_KINDS,
    DEFAULT_CONFIG,
    FORMAT,
    FORMAT_V1,
    HANDLE_KINDS,
    MAX_BIG_LIVE,
    MAX_BIG_SIZE,
    MAX_OPS,
    MAX_THREADS,
    NO_HANDLE,
    OP_FIELDS,
    Op,
    OpKind,
    Program,
    ProgramConfig,
    ProgramTarget,
    canonicalize,
    is_canonical,
)
from hakfuzz.program.validate import validate

__all__ = [
    "CREATING_KINDS",
    "DEFAULT_CONFIG",
    "FORMAT",
    "FORMAT_V1",
    "HANDLE_KINDS",
    "MAX_BIG_LIVE",
    "MAX_BIG_SIZE",
    "MAX_OPS",
    "MAX_THREADS",
    "NO_HANDLE",
    "OP_FIELDS",
    "ChurnSpec",
    "Op",
    "OpKind",
    "Program",
    "ProgramConfig",
    "ProgramError",
    "ProgramTarget",
    "canonicalize",
    "decode",
    "dump_program",
    "encode",
    "is_canonical",
    "load_program",
    "loads_program",
    "save_program",
    "validate",
]
