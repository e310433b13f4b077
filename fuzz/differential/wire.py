"""The driver's input format, ``hakfuzz-driver/1`` (native/driver/driver.h).

A 96-byte header (magic, threads, op count, handle count, flags, the nine
``hak_config_t`` fields as u64) and one 16-byte record per op
(kind u8, thread u8, reserved u16, handle u32, size u32, arg u32), where kind
is the ``OpKind`` value and arg the calloc count, the memalign or
aligned_alloc alignment, or the write seed.  Handles must be canonical (0, 1,
2, ... in creation order); ``to_wire`` canonicalises.

A program with a churn section sets flag bit 0 and appends one 32-byte record
after the ops (threads, lifetimes, the wall-time bound in milliseconds, seed,
blocks per lifetime, the glibc share in thousandths, two reserved u32).
"""

from __future__ import annotations

import math
import struct

from hakfuzz.program import CREATING_KINDS, NO_HANDLE, OpKind, Program, canonicalize, is_canonical
from hakfuzz.program.churn import ChurnSpec
from hakfuzz.program.model import OVERFLOW_COUNT

MAGIC = b"HKDRV01\0"
_HEADER = struct.Struct("<8s4I9Q")
_OP = struct.Struct("<BBHIII")
_CHURN = struct.Struct("<8I")
FLAG_CHURN = 1
"""Header flag: a churn record follows the ops (DRV_FLAG_CHURN)."""
_NO_HANDLE_WIRE = 0xFFFFFFFF
_OVERFLOW_WIRE = 0xFFFFFFFF  # calloc count 2**63 (DRV_OVERFLOW_COUNT)
_ALIGNED = frozenset({OpKind.MEMALIGN, OpKind.ALIGNED_ALLOC})


def to_wire(program: Program) -> bytes:
    """The driver bytes of ``program``."""
    if not is_canonical(program):
        program = canonicalize(program)
    cfg = program.config.as_c_fields()
    nhandles = sum(1 for op in program.ops if op.kind in CREATING_KINDS)
    out = bytearray(
        _HEADER.pack(MAGIC, program.threads, len(program.ops), nhandles,
                     0 if program.churn is None else FLAG_CHURN, *cfg.values())
    )
    pack = _OP.pack
    calloc, write = OpKind.CALLOC, OpKind.WRITE
    for op in program.ops:
        kind = op.kind
        if kind is calloc:
            arg = _OVERFLOW_WIRE if op.count == OVERFLOW_COUNT else op.count
        elif kind in _ALIGNED:
            arg = op.align
        else:
            arg = op.seed if kind is write else 0
        handle = _NO_HANDLE_WIRE if op.handle == NO_HANDLE else op.handle
        out += pack(int(kind), op.thread, 0, handle, op.size, arg)
    if program.churn is not None:
        out += churn_record(program.churn)
    return bytes(out)


def churn_record(spec: ChurnSpec) -> bytes:
    """The driver's churn record (struct drv_churn_s)."""
    millis = max(1, min(math.ceil(spec.seconds * 1000), 0xFFFFFFFF))
    permille = round(spec.libc_ratio * 1000)
    return _CHURN.pack(spec.threads, spec.lifetimes, millis, spec.seed, spec.blocks, permille, 0, 0)
