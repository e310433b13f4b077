"""The write-ahead journal keeps the ops of hakfuzz-program/2 (zero fields included)."""

from __future__ import annotations

from pathlib import Path

from hakfuzz.engines.journal import Journal, recover
from hakfuzz.program import MAX_BIG_SIZE, Op, Program, ProgramConfig, decode, encode


def test_journal_recovers_every_v2_op(tmp_path: Path) -> None:
    ops = (
        Op.realloc_null(0, 0), Op.aligned_alloc(1, 1, 0, thread=1), Op.free_null(thread=1),
        Op.usable_size(0), Op.usable_size_null(), Op.libc_alloc(2, MAX_BIG_SIZE),
        Op.realloc(2, 131072, thread=1), Op.realloc(1, 0),
    )
    config = ProgramConfig(cache_cap=0)
    journal = Journal(tmp_path / "j")
    journal.begin(config, 2)
    for op in ops:
        journal.op(op)
    journal.close()
    assert recover(tmp_path / "j") == Program(config=config, threads=2, ops=ops)


def test_journal_recovers_a_layout_2_binary_input(tmp_path: Path) -> None:
    program = Program(ops=(Op.realloc_null(0, 40), Op.free_null(), Op.usable_size(0)))
    journal = Journal(tmp_path / "j")
    journal.binary(encode(program))
    journal.close()
    assert recover(tmp_path / "j") == decode(encode(program)) == program
