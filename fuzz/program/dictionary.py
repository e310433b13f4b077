"""A libFuzzer dictionary for the binary program form.

Each entry is a fragment that libFuzzer splices into inputs: headers that
reach growth, fallback and fault injection quickly, and ops with typical
arguments (class-boundary sizes, large sizes, sizes past glibc's mmap
threshold, realloc across owners, the ops on NULL, write/verify pairs).
Entries are built with ``encode`` helpers in op layout 2 (every header sets
its bit), so they stay in step with ``binary``'s layout.
"""

from __future__ import annotations

from hakfuzz.program.binary import OPCODE_OF
from hakfuzz.program.binary import _encode_num as _num
from hakfuzz.program.binary_header import (
    BIG_NUM,
    BUDGET_TABLE,
    CACHE_CAP_TABLE,
    FAIL_MAP_TABLE,
    LAYOUT_2,
    REFILL_TABLE,
    SS_BYTES,
    SS_CAP_TABLE,
    SS_KEEP_TABLE,
    encode_header,
)
from hakfuzz.program.model import (
    CACHE_CAP_MAX,
    MAX_BIG_SIZE,
    REFILL_BATCH_MAX,
    OpKind,
    ProgramConfig,
)

MMAP_THRESHOLD = 128 << 10
"""glibc's initial M_MMAP_THRESHOLD: larger blocks are mmapped chunks."""

_BOUNDARY_SIZES = (0, 1, 8, 9, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257,
                   512, 513, 1024, 1025, 4096, 65535)


def _header(*, threads: int = 1, ss_cap: int = 0, budget_ss: int = 0,
            null: bool = False, cache_cap: int = 64, refill: int = 16,
            keep: int = 2, release: bool = True, checked: bool = False,
            fail_map_at: int = 0) -> bytes:
    h0 = ((threads - 1) | SS_CAP_TABLE.index(ss_cap) << 2
          | BUDGET_TABLE.index(budget_ss * SS_BYTES) << 4
          | (0x40 if null else 0) | LAYOUT_2)
    h1 = (CACHE_CAP_TABLE.index(cache_cap) | REFILL_TABLE.index(refill) << 2
          | SS_KEEP_TABLE.index(keep) << 4 | (0 if release else 0x40)
          | (0x80 if checked else 0))
    return bytes((h0, h1, FAIL_MAP_TABLE.index(fail_map_at)))


def _op(kind: OpKind, *args: int, thread: int = 0, nums: tuple[int, ...] = (),
        ) -> bytes:
    out = bytearray((thread << 4 | OPCODE_OF[kind], *args))
    for value in nums:
        _num(value, out)
    return bytes(out)


def dictionary_entries() -> list[tuple[str, bytes]]:
    """(name, bytes) pairs, in a stable order."""
    entries: list[tuple[str, bytes]] = [
        ("hdr_default", _header()),
        ("hdr_budget1_cache0", _header(budget_ss=1, cache_cap=0, refill=1,
                                       keep=0)),
        ("hdr_budget1_null", _header(budget_ss=1, null=True, cache_cap=0)),
        ("hdr_fail1", _header(fail_map_at=1, cache_cap=0)),
        ("hdr_fail2_null", _header(fail_map_at=2, null=True)),
        ("hdr_cap1_cache4", _header(ss_cap=1, cache_cap=4, refill=2)),
        ("hdr_threads4", _header(threads=4, cache_cap=4, refill=2)),
        ("hdr_checked_norelease", _header(checked=True, release=False)),
    ]
    # Boundaries the header tables cannot hold, in the explicit header form.
    for name, config in (
        ("cache1", ProgramConfig(cache_cap=1)),
        ("cache_max", ProgramConfig(cache_cap=CACHE_CAP_MAX, refill_batch=REFILL_BATCH_MAX)),
        ("budget_under_1ss", ProgramConfig(budget_bytes=SS_BYTES - 1)),
        ("budget_over_1ss", ProgramConfig(budget_bytes=SS_BYTES + 1, cache_cap=4)),
        ("cap1_null_cache1", ProgramConfig(ss_cap=1, oom_policy="null", cache_cap=1)),
    ):
        entries.append((f"hdrx_{name}", encode_header(config, 1)))
    for size in _BOUNDARY_SIZES:
        entries.append((f"alloc_{size}", _op(OpKind.ALLOC, nums=(size,))))
    for size in (0, 40, 1024, 1025, 4096):
        entries.append((f"libc_alloc_{size}",
                        _op(OpKind.LIBC_ALLOC, nums=(size,))))
    # glibc's mmap threshold starts at 128 KiB; 8 MiB is the largest size.
    for size in (MMAP_THRESHOLD - 1, MMAP_THRESHOLD, 1 << 20, MAX_BIG_SIZE):
        entries.append((f"libc_alloc_big_{size}",
                        _op(OpKind.LIBC_ALLOC, nums=(size,))))
    entries += [
        ("big_num_prefix", bytes((BIG_NUM,))),
        # REF 0 picks NULL while no handle is live, the oldest handle after
        # (free_oldest below is free's).
        ("realloc_ref0_40", _op(OpKind.REALLOC, 0, nums=(40,))),
        ("usable_size_ref0", _op(OpKind.USABLE_SIZE, 0)),
        # REF 1 picks NULL with one live handle.
        ("free_ref1", _op(OpKind.FREE, 1)),
        ("usable_size_ref1", _op(OpKind.USABLE_SIZE, 1)),
        ("aligned_alloc_1_0", _op(OpKind.ALIGNED_ALLOC, 0, nums=(0,))),
        ("aligned_alloc_64_40", _op(OpKind.ALIGNED_ALLOC, 6, nums=(40,))),
        ("aligned_alloc_4096_5000", _op(OpKind.ALIGNED_ALLOC, 12, nums=(5000,))),
        ("realloc_big", _op(OpKind.REALLOC, 0, nums=(MAX_BIG_SIZE,))),
        ("realloc_past_mmap", _op(OpKind.REALLOC, 0, nums=(MMAP_THRESHOLD + 1,))),
    ]
    entries += [
        ("calloc_4x10", _op(OpKind.CALLOC, nums=(4, 10))),
        ("calloc_2x1024", _op(OpKind.CALLOC, nums=(2, 1024))),
        ("memalign_64_40", _op(OpKind.MEMALIGN, 3, nums=(40,))),
        ("memalign_4096_8", _op(OpKind.MEMALIGN, 9, nums=(8,))),
        ("free_oldest", _op(OpKind.FREE, 0)),
        ("free_oldest_t1", _op(OpKind.FREE, 0, thread=1)),
        ("realloc_0", _op(OpKind.REALLOC, 0, nums=(0,))),
        ("realloc_8", _op(OpKind.REALLOC, 0, nums=(8,))),
        ("realloc_1025", _op(OpKind.REALLOC, 0, nums=(1025,))),
        ("realloc_2048_t1", _op(OpKind.REALLOC, 0, thread=1, nums=(2048,))),
        ("write_verify", _op(OpKind.WRITE, 0, 0xA5) + _op(OpKind.VERIFY, 0)),
        ("flush", _op(OpKind.FLUSH)),
        ("flush_t1", _op(OpKind.FLUSH, thread=1)),
        ("thread_exit", _op(OpKind.THREAD_EXIT)),
        ("thread_exit_t1", _op(OpKind.THREAD_EXIT, thread=1)),
        ("check", _op(OpKind.CHECK)),
    ]
    return entries


def libfuzzer_dict() -> str:
    """The dictionary as libFuzzer's ``-dict=`` file text."""
    lines = ["# hakfuzz-program binary form, op layout 2 (see hakfuzz.program.binary)"]
    for name, data in dictionary_entries():
        escaped = "".join(f"\\x{byte:02X}" for byte in data)
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"
