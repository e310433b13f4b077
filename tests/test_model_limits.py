"""hakfuzz.model.limits, config, stats and location agree with native/include/hakmem.h."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from hakfuzz.model import limits
from hakfuzz.model.config import Config, OomPolicy
from hakfuzz.model.limits import class_of, slab_capacity
from hakfuzz.model.location import Owner
from hakfuzz.model.stats import CLASS_FIELDS, GLOBAL_FIELDS, ClassStats, Stats

HEADER = Path(__file__).resolve().parents[1] / "native" / "include" / "hakmem.h"


@pytest.fixture(scope="module")
def header() -> str:
    return HEADER.read_text()


def _defines(header: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, value in re.findall(r"^#define\s+HAK_(\w+)\s+(\d+)u?\b", header, re.MULTILINE):
        found[name] = int(value)
    return found


def _struct_fields(header: str, struct: str) -> list[str]:
    match = re.search(r"typedef struct " + struct + r"\s*\{(.*?)\}", header, re.DOTALL)
    assert match, f"struct {struct} not found in {HEADER}"
    body = re.sub(r"/\*.*?\*/", "", match.group(1), flags=re.DOTALL)
    return re.findall(r"\b(\w+)(?:\[\w+\])?\s*;", body)


def _enum_values(header: str, prefix: str) -> dict[str, int]:
    return {
        name: int(value)
        for name, value in re.findall(r"\b" + prefix + r"(\w+)\s*=\s*(\d+)", header)
    }


def test_every_define_is_mirrored(header: str) -> None:
    defines = _defines(header)
    assert len(defines) >= 10, "the header parser found too few #define HAK_* lines"
    for name, value in defines.items():
        assert hasattr(limits, name), f"HAK_{name} has no counterpart in hakfuzz.model.limits"
        assert getattr(limits, name) == value, f"HAK_{name} is {value} in hakmem.h"


def test_derived_limits_are_consistent() -> None:
    assert limits.SS_SIZE == limits.SLAB_SIZE * limits.SLABS_PER_SS
    assert limits.CLASS_SIZES == (8, 16, 32, 64, 128, 256, 512, 1024)
    assert limits.CLASS_SIZES[-1] == limits.MAX_BLOCK
    assert limits.CLASS_SIZES[0] == limits.MIN_BLOCK
    assert len(limits.CLASS_SIZES) == limits.NUM_CLASSES


def test_stats_fields_follow_the_c_structs(header: str) -> None:
    assert _struct_fields(header, "hak_class_stats_s") == list(CLASS_FIELDS)
    assert [f.name for f in fields(ClassStats)] == list(CLASS_FIELDS)
    assert _struct_fields(header, "hak_stats_s") == ["cls", *GLOBAL_FIELDS]
    assert [f.name for f in fields(Stats)] == ["cls", *GLOBAL_FIELDS]


def test_config_fields_follow_hak_config_t(header: str) -> None:
    assert [f.name for f in fields(Config)] == _struct_fields(header, "hak_config_s")


def test_enums_follow_the_header(header: str) -> None:
    assert _enum_values(header, "HAK_OOM_") == {p.name: p.value for p in OomPolicy}
    owners = _enum_values(header, "HAK_OWNER_")
    assert owners == {"UNKNOWN": Owner.NULL, "TINY": Owner.TINY, "LIBC": Owner.LIBC}


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, 0), (1, 0), (8, 0), (9, 1), (16, 1), (17, 2), (32, 2), (33, 3), (64, 3),
        (65, 4), (128, 4), (129, 5), (256, 5), (257, 6), (512, 6), (513, 7), (1024, 7),
        (1025, None), (65535, None), (2**64 - 1, None),
    ],
)  # fmt: skip
def test_class_of(size: int, expected: int | None) -> None:
    assert class_of(size) == expected


def test_class_of_matches_the_definition_everywhere() -> None:
    for size in range(limits.MAX_BLOCK + 1):
        class_idx = class_of(size)
        assert class_idx is not None
        assert limits.CLASS_SIZES[class_idx] >= max(size, 1)
        assert class_idx == 0 or limits.CLASS_SIZES[class_idx - 1] < max(size, 1)


def test_class_of_rejects_negative_sizes() -> None:
    with pytest.raises(ValueError, match="size"):
        class_of(-1)


def test_slab_capacity() -> None:
    assert slab_capacity(0, 0) == (65536 - 4096) // 8 == 7680
    assert slab_capacity(0, 1) == 8192
    assert slab_capacity(3, 0) == 960
    assert slab_capacity(3, 31) == 1024
    assert slab_capacity(7, 0) == 60
    assert slab_capacity(7, 1) == 64
    for class_idx in range(limits.NUM_CLASSES):
        for slab_idx in range(limits.SLABS_PER_SS):
            assert limits.SLAB_CAPACITY[class_idx][slab_idx] == slab_capacity(class_idx, slab_idx)


def test_slab_capacity_rejects_bad_indices() -> None:
    with pytest.raises(ValueError, match="class_idx"):
        slab_capacity(8, 0)
    with pytest.raises(ValueError, match="slab_idx"):
        slab_capacity(0, 32)


def test_blocks_are_aligned_to_their_size_and_fit() -> None:
    for class_idx, size in enumerate(limits.CLASS_SIZES):
        for slab_idx in (0, 1, 31):
            last = slab_capacity(class_idx, slab_idx) - 1
            for block_idx in (0, 1, last):
                offset = limits.block_offset(class_idx, slab_idx, block_idx)
                assert offset % size == 0
                assert offset + size <= (slab_idx + 1) * limits.SLAB_SIZE
            assert limits.block_offset(class_idx, slab_idx, 0) >= (
                limits.SS_HEADER_SIZE if slab_idx == 0 else 0
            )
