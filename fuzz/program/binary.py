"""The binary form of a Program: the atheris input.

``decode`` is total: every byte string is a valid, canonical Program (handles
numbered 0, 1, 2, ... in creation order), and it never raises.  ``encode`` is
exact: ``decode(encode(p)) == p`` for every valid canonical program ``p``
whose description is empty (the binary form carries no description).

The form is internal to the fuzzers (a campaign's atheris corpus); findings
are always stored as JSON.  Bit 7 of the first header byte (E0 in the
explicit form) picks the op layout: 0 is layout 1, exactly the ops and
arguments of ``hakfuzz-program/1`` (so what ``encode`` wrote before /2, which
left that bit 0, decodes to the same program), 1 is layout 2, which reaches
every /2 op.  ``encode`` always writes layout 2.

Layout (all multi-byte integers little-endian; a read past the end of the
input yields 0):

Header, compact form (3 bytes; byte 0 is not 0xFF).  An all-zero header is
the default configuration with one thread::

    H0  bits 0-1  threads - 1                (1..4)
        bits 2-3  ss_cap        [0, 1, 2, 3]
        bits 4-5  budget_bytes  [0, 1, 2, 3] x 2 MiB
        bit  6    oom_policy    0 libc, 1 null
        bit  7    op layout     0: layout 1, 1: layout 2
    H1  bits 0-1  cache_cap     [64, 0, 4, 16]
        bits 2-3  refill_batch  [16, 1, 2, 4]
        bits 4-5  ss_keep       [2, 0, 1, 3]
        bit  6    release_empty off (0 means on)
        bit  7    checked
    H2  bits 0-2  fail_map_at   [0, 1, 2, 3, 4, 5, 8, 16]
        bit  3    budget_bytes reads [0, 2 MiB - 1, 2 MiB + 1, 1]
        bits 4-5  cache_cap reads table 0 (above), or
                  1: [64, 1, 2, 1024], 2: [64, 1023, 1024, 1], 3: [64, 2, 1023, 0]
        bit  6    refill_batch reads [16, 1023, 1024, 3]
        bit  7    ss_cap reads [0, 2**32 - 1, 1, 2], ss_keep [2, 2**32 - 1, 0, 1],
                  fail_map_at [0, 2**32 - 1, 1, 2, 3, 4, 5, 8]

The tables of H2's bits 3-7 hold the boundary values of hakfuzz.engines.configs the
first tables lack (a budget just under and over one SuperSlab, a cache of
one block and the largest, the largest batch, the 32-bit maxima), so random
headers land on them often.  Each starts with the default, so an H2 of
0xF8 still reads the default configuration.

Header, explicit form (26 bytes), for configs the tables cannot express
(and for the one compact header that would read 0xFF)::

    0xFF
    E0  bits 0-3 threads - 1 (1..16); bit 4 oom null; bit 5 release_empty
        off; bit 6 checked; bit 7 op layout (as H0's)
    u32 ss_cap, u64 budget_bytes, u16 cache_cap (taken mod 1025),
    u16 refill_batch (value = 1 + raw mod 1024), u32 ss_keep, u32 fail_map_at

Then ops until the input ends or MAX_OPS ops are read.  Each op is one
opcode byte ``b``: ``kind = OPCODES[b & 15]`` (layout 1) or
``OPCODES_2[b & 15]`` (layout 2), ``thread = (b >> 4) % threads``; then its
arguments:

    alloc, libc_alloc   NUM size
    calloc              NUM count, NUM size   (count 65535: the overflowing
                                               count 2**63, size at least 2;
                                               else if count*size > 2**20:
                                               count %= 2**20 // size + 1)
    memalign            u8 a (align = 8 << (a % 10)), NUM size
    aligned_alloc       u8 a (align = 1 << (a % 13)), NUM size   (layout 2)
    realloc             REF, NUM size         (size 0 kills the handle)
    free                REF                   (kills the handle)
    usable_size         REF                   (layout 2)
    write               REF, u8 seed
    verify              REF
    flush, thread_exit, check                 (no arguments)
    macro               u8 m, u8 arg          (layout 2: the opcodes 0xCC, 0xDC,
                                               0xEC, 0xFC; see below)

Layout 1: an op that needs a handle (realloc, free, write, verify) when no
handle is live is an ``alloc`` instead: it reads NUM size at that point.

Layout 2: the REF of realloc, free and usable_size picks from the live
handles followed by NULL (``index % (len(live) + 1)``; ``index ==
len(live)`` is NULL), so NULL is one more pointer to pass, and these ops
never lack one.  On NULL they are ``realloc_null`` (which creates the next
handle), ``free_null`` and ``usable_size_null``.  write and verify with no
live handle are an ``alloc``, as in layout 1.

Layout 2 macros: an opcode whose low nibble is 12 (the second realloc slot,
which ``encode`` never writes: it writes realloc as 5) and whose high nibble
is 12 or more is a macro of :mod:`hakfuzz.program.macros`, ``expand(m, arg)``: the
plain ops that fill a class to its cap, free every k-th block, run thread
lifetimes, or exhaust and release a SuperSlab.  The macros of one input
expand to at most MACRO_ROOM ops in all (a macro past that expands to
nothing), so a program stays bounded; ``encode`` writes their plain ops.

NUM (1 to 4 bytes), by its first byte ``b0``:

    b0 < 0x80           e = b0 >> 4, m = b0 & 15; value = (8 << e) - 8 + m
                        (sizes around every class boundary: 0..15, 8..23,
                        24..39, 56..71, ... 1016..1031)
    0x80 <= b0 < 0xC0   value = (b0 & 0x3F) << 8 | b1            (0..16383)
    b0 >= 0xC0          value = b1 | b2 << 8                     (0..65535)
    b0 == 0xFF          layout 2 only: value = (b1 | b2 << 8 | b3 << 16)
                        % (MAX_BIG_SIZE + 1)                     (0..8 MiB)

In layout 2 a value above MAX_SIZE becomes ``value & 0xFFFF`` where a big
size is not allowed: in calloc, and when MAX_BIG_LIVE other handles already
hold big blocks.

REF (an index, 1 or 2 bytes):

    r0 < 0x80           index = r0
    r0 >= 0x80          index = (r0 & 0x7F) << 8 | r1
    handle = live[index % len(live)]        (live handles, oldest first)
"""

from __future__ import annotations

# The module, not its names: hakfuzz.program.macros imports hakfuzz.program.model,
# whose package imports this module (either may be imported first).
from hakfuzz.program import macros as _macros
from hakfuzz.program.binary_header import BIG_NUM, decode_header, encode_header
from hakfuzz.program.model import (
    MAX_BIG_LIVE,
    MAX_BIG_SIZE,
    MAX_CALLOC_BYTES,
    MAX_OPS,
    MAX_SIZE,
    MAX_THREADS,
    NO_HANDLE,
    OVERFLOW_COUNT,
    Op,
    OpKind,
    Program,
    ProgramConfig,
)
from hakfuzz.program.validate import validate

MACRO_NIBBLE = 12
MACRO_MIN_HIGH = 12
"""A layout-2 opcode with this low nibble and a high nibble of at least MACRO_MIN_HIGH
is a macro."""
ALIGN_CHOICES = 10  # memalign: 8 << 0 .. 8 << 9 == 4096
ALIGNED_ALLOC_CHOICES = 13  # aligned_alloc: 1 << 0 .. 1 << 12 == 4096

OPCODES: tuple[OpKind, ...] = (
    OpKind.ALLOC, OpKind.FREE, OpKind.ALLOC, OpKind.FREE,
    OpKind.LIBC_ALLOC, OpKind.REALLOC, OpKind.CALLOC, OpKind.MEMALIGN,
    OpKind.WRITE, OpKind.VERIFY, OpKind.ALLOC, OpKind.FREE,
    OpKind.REALLOC, OpKind.FLUSH, OpKind.THREAD_EXIT, OpKind.CHECK,
)
"""Layout 1: opcode low nibble -> kind (weighted towards alloc, free and realloc)."""

OPCODES_2: tuple[OpKind, ...] = (
    OpKind.ALLOC, OpKind.FREE, OpKind.ALLOC, OpKind.FREE,
    OpKind.LIBC_ALLOC, OpKind.REALLOC, OpKind.CALLOC, OpKind.MEMALIGN,
    OpKind.WRITE, OpKind.VERIFY, OpKind.ALIGNED_ALLOC, OpKind.USABLE_SIZE,
    OpKind.REALLOC, OpKind.FLUSH, OpKind.THREAD_EXIT, OpKind.CHECK,
)
"""Layout 2: layout 1 with the third alloc and free slots given to the new kinds.

The ops on NULL have no opcode of their own: they are realloc, free and
usable_size whose REF picks NULL."""

_NULL_FORMS = {
    OpKind.REALLOC_NULL: OpKind.REALLOC,
    OpKind.FREE_NULL: OpKind.FREE,
    OpKind.USABLE_SIZE_NULL: OpKind.USABLE_SIZE,
}
"""Layout 2: an op on NULL -> the kind whose opcode carries it."""

OPCODE_OF: dict[OpKind, int] = {}
for _nibble, _kind in enumerate(OPCODES_2):
    OPCODE_OF.setdefault(_kind, _nibble)
for _null_kind, _kind in _NULL_FORMS.items():
    OPCODE_OF[_null_kind] = OPCODE_OF[_kind]
OPCODE_OF_1: dict[OpKind, int] = {}
for _nibble, _kind in enumerate(OPCODES):
    OPCODE_OF_1.setdefault(_kind, _nibble)

# Decoder dispatch: what the arguments of each kind are.
_A_SIZE, _A_CALLOC, _A_MEMALIGN, _A_ALIGNED, _A_REALLOC, _A_FREE, _A_USABLE, \
    _A_WRITE, _A_VERIFY, _A_NONE = range(10)
_ACTION = {
    OpKind.ALLOC: _A_SIZE, OpKind.LIBC_ALLOC: _A_SIZE,
    OpKind.CALLOC: _A_CALLOC, OpKind.MEMALIGN: _A_MEMALIGN,
    OpKind.ALIGNED_ALLOC: _A_ALIGNED,
    OpKind.REALLOC: _A_REALLOC, OpKind.FREE: _A_FREE,
    OpKind.USABLE_SIZE: _A_USABLE,
    OpKind.WRITE: _A_WRITE, OpKind.VERIFY: _A_VERIFY,
    OpKind.FLUSH: _A_NONE, OpKind.THREAD_EXIT: _A_NONE,
    OpKind.CHECK: _A_NONE,
    OpKind.REALLOC_NULL: _A_REALLOC, OpKind.FREE_NULL: _A_FREE,
    OpKind.USABLE_SIZE_NULL: _A_USABLE,
}
_OPCODE_ACTIONS = tuple(_ACTION[kind] for kind in OPCODES)
_OPCODE_ACTIONS_2 = tuple(_ACTION[kind] for kind in OPCODES_2)
_PAD = bytes(32)  # longest header (26) and longest op (8) fit in it

_ALLOC = OpKind.ALLOC
_FREE = OpKind.FREE
_REALLOC = OpKind.REALLOC
_REALLOC_NULL = OpKind.REALLOC_NULL
_FREE_NULL = OpKind.FREE_NULL
_USABLE_SIZE = OpKind.USABLE_SIZE
_USABLE_SIZE_NULL = OpKind.USABLE_SIZE_NULL
_BIG_MOD = MAX_BIG_SIZE + 1


def _read_num(buf: bytes, pos: int) -> tuple[int, int]:
    b0 = buf[pos]
    if b0 < 0x80:
        return (8 << (b0 >> 4)) - 8 + (b0 & 15), pos + 1
    if b0 < 0xC0:
        return (b0 & 0x3F) << 8 | buf[pos + 1], pos + 2
    return buf[pos + 1] | buf[pos + 2] << 8, pos + 3


def _read_ref(buf: bytes, pos: int) -> tuple[int, int]:
    """A REF: one byte below 0x80, else 15 bits in two."""
    r0 = buf[pos]
    if r0 < 0x80:
        return r0, pos + 1
    return (r0 & 0x7F) << 8 | buf[pos + 1], pos + 2


def _read_num_2(buf: bytes, pos: int) -> tuple[int, int]:
    if buf[pos] == BIG_NUM:
        return (buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16) % _BIG_MOD, pos + 4
    return _read_num(buf, pos)


def decode(data: bytes) -> Program:
    """The Program of any byte string (total: never raises)."""
    end = len(data)
    buf = bytes(data) + _PAD
    config, threads, pos, layout_2 = decode_header(buf)
    if layout_2:
        ops = _decode_ops_2(buf, pos, end, threads, config)
    else:
        ops = _decode_ops_1(buf, pos, end, threads)
    return Program(config=config, threads=threads, ops=tuple(ops))


def _decode_ops_1(buf: bytes, pos: int, end: int, threads: int) -> list[Op]:
    read_num = _read_num
    ops: list[Op] = []
    append = ops.append
    live: list[int] = []  # live handles, oldest first
    next_handle = 0
    while pos < end and len(ops) < MAX_OPS:
        opcode = buf[pos]
        pos += 1
        nibble = opcode & 15
        kind = OPCODES[nibble]
        action = _OPCODE_ACTIONS[nibble]
        thread = (opcode >> 4) % threads
        if _A_REALLOC <= action <= _A_VERIFY:
            if not live:
                kind, action = _ALLOC, _A_SIZE
            else:
                ref, pos = _read_ref(buf, pos)
                index = ref % len(live)
                handle = live[index]
                if action == _A_REALLOC:
                    size, pos = read_num(buf, pos)
                    if size == 0:
                        del live[index]
                    append(Op(kind, thread, handle, size))
                elif action == _A_FREE:
                    del live[index]
                    append(Op(kind, thread, handle))
                elif action == _A_WRITE:
                    append(Op(kind, thread, handle, 0, 0, 0, buf[pos]))
                    pos += 1
                else:
                    append(Op(kind, thread, handle))
                continue
        if action == _A_NONE:
            append(Op(kind, thread))
            continue
        if action == _A_SIZE:
            size, pos = read_num(buf, pos)
            append(Op(kind, thread, next_handle, size))
        elif action == _A_CALLOC:
            count, pos = read_num(buf, pos)
            size, pos = read_num(buf, pos)
            if count == 65535:  # the largest NUM: the overflowing calloc
                append(Op(kind, thread, next_handle, max(size, 2), OVERFLOW_COUNT))
            else:
                append(Op(kind, thread, next_handle, size, _calloc_count(count, size)))
        else:  # memalign
            align = 8 << (buf[pos] % ALIGN_CHOICES)
            size, pos = read_num(buf, pos + 1)
            append(Op(kind, thread, next_handle, size, 0, align))
        live.append(next_handle)
        next_handle += 1
    return ops


def _calloc_count(count: int, size: int) -> int:
    """A literal count whose product with ``size`` is at most 1 MiB."""
    if count * size > MAX_CALLOC_BYTES:
        return count % (MAX_CALLOC_BYTES // size + 1)
    return count


def _decode_ops_2(buf: bytes, pos: int, end: int, threads: int,
                  config: ProgramConfig) -> list[Op]:
    read_num = _read_num_2
    ops: list[Op] = []
    append = ops.append
    live: list[int] = []  # live handles, oldest first
    big: set[int] = set()  # live handles holding a size above MAX_SIZE
    next_handle = 0
    macro_room = _macros.MACRO_ROOM
    while pos < end and len(ops) < MAX_OPS:
        opcode = buf[pos]
        pos += 1
        nibble = opcode & 15
        if nibble == MACRO_NIBBLE and opcode >> 4 >= MACRO_MIN_HIGH:
            expansion = _macros.expand(buf[pos], buf[pos + 1], config=config, threads=threads,
                               first_handle=next_handle,
                               room=min(macro_room, MAX_OPS - len(ops)))
            pos += 2
            ops += expansion.ops
            live += expansion.survivors
            next_handle += expansion.created
            macro_room -= len(expansion.ops)
            continue
        kind = OPCODES_2[nibble]
        action = _OPCODE_ACTIONS_2[nibble]
        thread = (opcode >> 4) % threads
        if _A_REALLOC <= action <= _A_USABLE:  # REF over live + [NULL]
            ref, pos = _read_ref(buf, pos)
            count = len(live)
            index = ref % (count + 1)
            if index == count:
                if action == _A_REALLOC:
                    size, pos = read_num(buf, pos)
                    if size > MAX_SIZE:
                        if len(big) < MAX_BIG_LIVE:
                            big.add(next_handle)
                        else:
                            size &= 0xFFFF
                    append(Op(_REALLOC_NULL, thread, next_handle, size))
                    live.append(next_handle)
                    next_handle += 1
                elif action == _A_FREE:
                    append(Op(_FREE_NULL, thread))
                else:
                    append(Op(_USABLE_SIZE_NULL, thread))
                continue
            handle = live[index]
            if action == _A_REALLOC:
                size, pos = read_num(buf, pos)
                if size > MAX_SIZE:
                    if handle in big or len(big) < MAX_BIG_LIVE:
                        big.add(handle)
                    else:
                        size &= 0xFFFF
                if size <= MAX_SIZE:
                    big.discard(handle)
                if size == 0:
                    del live[index]
                append(Op(kind, thread, handle, size))
            elif action == _A_FREE:
                del live[index]
                big.discard(handle)
                append(Op(kind, thread, handle))
            else:
                append(Op(kind, thread, handle))
            continue
        if action in (_A_WRITE, _A_VERIFY):
            if live:
                ref, pos = _read_ref(buf, pos)
                handle = live[ref % len(live)]
                if action == _A_WRITE:
                    append(Op(kind, thread, handle, 0, 0, 0, buf[pos]))
                    pos += 1
                else:
                    append(Op(kind, thread, handle))
                continue
            kind, action = _ALLOC, _A_SIZE
        if action == _A_NONE:
            append(Op(kind, thread))
            continue
        if action == _A_CALLOC:
            count, pos = read_num(buf, pos)
            size, pos = read_num(buf, pos)
            count &= 0xFFFF
            size &= 0xFFFF
            if count == 65535:  # the largest 16-bit NUM: the overflowing calloc
                append(Op(kind, thread, next_handle, max(size, 2), OVERFLOW_COUNT))
            else:
                append(Op(kind, thread, next_handle, size, _calloc_count(count, size)))
        else:
            align = 0
            if action == _A_MEMALIGN:
                align = 8 << (buf[pos] % ALIGN_CHOICES)
                pos += 1
            elif action == _A_ALIGNED:
                align = 1 << (buf[pos] % ALIGNED_ALLOC_CHOICES)
                pos += 1
            size, pos = read_num(buf, pos)
            if size > MAX_SIZE:
                if len(big) < MAX_BIG_LIVE:
                    big.add(next_handle)
                else:
                    size &= 0xFFFF
            append(Op(kind, thread, next_handle, size, 0, align))
        live.append(next_handle)
        next_handle += 1
    return ops


def _encode_num(value: int, out: bytearray) -> None:
    for exponent in range(8):
        base = (8 << exponent) - 8
        if base <= value <= base + 15:
            out.append(exponent << 4 | (value - base))
            return
    if value < 0x4000:
        out += bytes((0x80 | value >> 8, value & 0xFF))
    elif value <= 0xFFFF:
        out += bytes((0xC0, value & 0xFF, value >> 8))
    else:
        out += bytes((BIG_NUM, value & 0xFF, value >> 8 & 0xFF, value >> 16))


def _encode_ref(index: int, out: bytearray) -> None:
    if index < 0x80:
        out.append(index)
    else:
        out += bytes((0x80 | index >> 8, index & 0xFF))


def encode(program: Program) -> bytes:
    """The bytes (layout 2) that decode to ``canonicalize(program)``, less description.

    Raises ProgramError if ``program`` is not valid.
    """
    validate(program)
    assert program.threads <= MAX_THREADS
    out = bytearray(encode_header(program.config, program.threads))
    live: list[int] = []
    for op in program.ops:
        kind = op.kind
        out.append(op.thread << 4 | OPCODE_OF[kind])
        action = _ACTION[kind]
        if _A_REALLOC <= action <= _A_VERIFY:
            if op.handle == NO_HANDLE or kind is _REALLOC_NULL:
                _encode_ref(len(live), out)  # NULL: the entry after the live ones
                if kind is _REALLOC_NULL:
                    _encode_num(op.size, out)
                    live.append(op.handle)
                continue
            index = live.index(op.handle)
            _encode_ref(index, out)
            if action == _A_REALLOC:
                _encode_num(op.size, out)
            elif action == _A_WRITE:
                out.append(op.seed)
            if op.kills_handle():
                del live[index]
            continue
        if action == _A_NONE:
            continue
        if action == _A_CALLOC:
            _encode_num(65535 if op.count == OVERFLOW_COUNT else op.count, out)
        elif action == _A_MEMALIGN:
            out.append(op.align.bit_length() - 4)
        elif action == _A_ALIGNED:
            out.append(op.align.bit_length() - 1)
        _encode_num(op.size, out)
        live.append(op.handle)
    return bytes(out)
