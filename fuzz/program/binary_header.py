"""The header of the binary form: a Program's config and thread count in 3 bytes, or 26.

The compact form packs each option as an index into a small table of values
(each led by the option's default, so an all-zero header is the default
config); a config that no table holds takes the explicit form (0xFF, then
every field in full).  ``hakfuzz.program.binary``'s docstring lays out the
bits; this module reads and writes them.
"""

from __future__ import annotations

from hakfuzz.model.limits import SS_SIZE as SS_BYTES
from hakfuzz.program.model import CACHE_CAP_MAX, REFILL_BATCH_MAX, U32_MAX, ProgramConfig

EXPLICIT_MARK = 0xFF
LAYOUT_2 = 0x80
"""The bit of H0 (and of E0) that selects op layout 2."""
BIG_NUM = 0xFF
"""The first byte of a 4-byte NUM (layout 2)."""
COMPACT_THREADS_MAX = 4
SS_CAP_TABLE = (0, 1, 2, 3)
BUDGET_TABLE = (0, SS_BYTES, 2 * SS_BYTES, 3 * SS_BYTES)
CACHE_CAP_TABLE = (64, 0, 4, 16)
REFILL_TABLE = (16, 1, 2, 4)
SS_KEEP_TABLE = (2, 0, 1, 3)
FAIL_MAP_TABLE = (0, 1, 2, 3, 4, 5, 8, 16)
# H2 bits 3-7: tables of boundary values, each led by the default.
BUDGET_TABLE_2 = (0, SS_BYTES - 1, SS_BYTES + 1, 1)
CACHE_CAP_TABLES = (
    CACHE_CAP_TABLE,
    (64, 1, 2, CACHE_CAP_MAX),
    (64, CACHE_CAP_MAX - 1, CACHE_CAP_MAX, 1),
    (64, 2, CACHE_CAP_MAX - 1, 0),
)
REFILL_TABLE_2 = (16, REFILL_BATCH_MAX - 1, REFILL_BATCH_MAX, 3)
SS_CAP_TABLE_2 = (0, U32_MAX, 1, 2)
SS_KEEP_TABLE_2 = (2, U32_MAX, 0, 1)
FAIL_MAP_TABLE_2 = (0, U32_MAX, 1, 2, 3, 4, 5, 8)
_BUDGET_TABLES = (BUDGET_TABLE, BUDGET_TABLE_2)
_REFILL_TABLES = (REFILL_TABLE, REFILL_TABLE_2)
_SS_CAP_TABLES = (SS_CAP_TABLE, SS_CAP_TABLE_2)
_SS_KEEP_TABLES = (SS_KEEP_TABLE, SS_KEEP_TABLE_2)
_FAIL_MAP_TABLES = (FAIL_MAP_TABLE, FAIL_MAP_TABLE_2)


def _u(buf: bytes, pos: int, width: int) -> int:
    return int.from_bytes(buf[pos:pos + width], "little")


def decode_header(buf: bytes) -> tuple[ProgramConfig, int, int, bool]:
    """The config, the thread count, the offset of the first op, and layout 2."""
    h0 = buf[0]
    if h0 == EXPLICIT_MARK:
        e0 = buf[1]
        config = ProgramConfig(
            ss_cap=_u(buf, 2, 4),
            budget_bytes=_u(buf, 6, 8),
            oom_policy="null" if e0 & 0x10 else "libc",
            cache_cap=_u(buf, 14, 2) % (CACHE_CAP_MAX + 1),
            refill_batch=1 + _u(buf, 16, 2) % REFILL_BATCH_MAX,
            release_empty=not e0 & 0x20,
            ss_keep=_u(buf, 18, 4),
            checked=bool(e0 & 0x40),
            fail_map_at=_u(buf, 22, 4),
        )
        return config, (e0 & 15) + 1, 26, bool(e0 & LAYOUT_2)
    h1 = buf[1]
    h2 = buf[2]
    huge = h2 >> 7
    config = ProgramConfig(
        ss_cap=_SS_CAP_TABLES[huge][(h0 >> 2) & 3],
        budget_bytes=_BUDGET_TABLES[(h2 >> 3) & 1][(h0 >> 4) & 3],
        oom_policy="null" if h0 & 0x40 else "libc",
        cache_cap=CACHE_CAP_TABLES[(h2 >> 4) & 3][h1 & 3],
        refill_batch=_REFILL_TABLES[(h2 >> 6) & 1][(h1 >> 2) & 3],
        release_empty=not h1 & 0x40,
        ss_keep=_SS_KEEP_TABLES[huge][(h1 >> 4) & 3],
        checked=bool(h1 & 0x80),
        fail_map_at=_FAIL_MAP_TABLES[huge][h2 & 7],
    )
    return config, (h0 & 3) + 1, 3, bool(h0 & LAYOUT_2)


def _table_index(value: int, tables: tuple[tuple[int, ...], ...]) -> tuple[int, int]:
    """(table, index) of the first table holding ``value``; ValueError if none does."""
    for which, table in enumerate(tables):
        if value in table:
            return which, table.index(value)
    raise ValueError(value)


def encode_header(config: ProgramConfig, threads: int) -> bytes:
    """The compact header when every option is in a table, else the explicit one (layout 2)."""
    try:
        if threads > COMPACT_THREADS_MAX:
            raise ValueError
        # ss_cap, ss_keep and fail_map_at share H2's bit 7: all read the first
        # tables, or all the second.
        for huge in (0, 1):
            if (config.ss_cap in _SS_CAP_TABLES[huge] and config.ss_keep in _SS_KEEP_TABLES[huge]
                    and config.fail_map_at in _FAIL_MAP_TABLES[huge]):
                break
        else:
            raise ValueError
        budget_table, budget = _table_index(config.budget_bytes, _BUDGET_TABLES)
        cache_table, cache = _table_index(config.cache_cap, CACHE_CAP_TABLES)
        refill_table, refill = _table_index(config.refill_batch, _REFILL_TABLES)
        h0 = (
            (threads - 1)
            | _SS_CAP_TABLES[huge].index(config.ss_cap) << 2
            | budget << 4
            | (0x40 if config.oom_policy == "null" else 0)
            | LAYOUT_2
        )
        h1 = (
            cache
            | refill << 2
            | _SS_KEEP_TABLES[huge].index(config.ss_keep) << 4
            | (0 if config.release_empty else 0x40)
            | (0x80 if config.checked else 0)
        )
        h2 = (_FAIL_MAP_TABLES[huge].index(config.fail_map_at) | budget_table << 3
              | cache_table << 4 | refill_table << 6 | huge << 7)
        if h0 != EXPLICIT_MARK:  # 4 threads, every table at its last entry, null
            return bytes((h0, h1, h2))
    except ValueError:
        pass
    e0 = (
        (threads - 1)
        | (0x10 if config.oom_policy == "null" else 0)
        | (0 if config.release_empty else 0x20)
        | (0x40 if config.checked else 0)
        | LAYOUT_2
    )
    return b"".join((
        bytes((EXPLICIT_MARK, e0)),
        config.ss_cap.to_bytes(4, "little"),
        config.budget_bytes.to_bytes(8, "little"),
        config.cache_cap.to_bytes(2, "little"),
        (config.refill_batch - 1).to_bytes(2, "little"),
        config.ss_keep.to_bytes(4, "little"),
        config.fail_map_at.to_bytes(4, "little"),
    ))


__all__ = [
    "BIG_NUM",
    "BUDGET_TABLE",
    "CACHE_CAP_TABLE",
    "CACHE_CAP_TABLES",
    "EXPLICIT_MARK",
    "FAIL_MAP_TABLE",
    "LAYOUT_2",
    "REFILL_TABLE",
    "SS_BYTES",
    "SS_CAP_TABLE",
    "SS_KEEP_TABLE",
    "decode_header",
    "encode_header",
]
