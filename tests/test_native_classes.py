"""Size classes, alignment, usable sizes and the binding's limits of the compiled allocator.

Requests of 0..1024 bytes map to classes of 8..1024 bytes, each block aligned
to its class size and placed where docs/policy.md says; larger requests are
glibc's.  The constants the binding exposes agree with hakfuzz.model.limits.
"""

from __future__ import annotations

import pytest
from native_helpers import (
    CLASS_SIZES,
    OWNER_LIBC,
    OWNER_TINY,
    OWNER_UNKNOWN,
    addr,
    assert_clean,
    exact,
    locate,
    malloc_ok,
    ss_base,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.model.config import Config, OomPolicy
from hakfuzz.model.location import Owner
from hakfuzz.native import HakmemModule


@pytest.mark.parametrize("caches", ["off", "on"])
def test_every_size_maps_to_its_class_aligned(hak: HakmemModule, caches: str) -> None:
    if caches == "off":
        exact(hak)
    for size in range(limits.MAX_BLOCK + 1):
        ptr = malloc_ok(hak, size)
        class_idx = limits.class_of(size)
        assert class_idx is not None
        block = CLASS_SIZES[class_idx]
        where = locate(hak, ptr)
        assert (where.owner, where.class_idx) == (OWNER_TINY, class_idx), (
            f"malloc({size}) should be a C{class_idx} block, hak_locate says {where}"
        )
        assert addr(hak, ptr) % block == 0, (
            f"malloc({size}) = {addr(hak, ptr):#x} is not aligned to its class size {block}"
        )
        assert hak.lib.hak_usable_size(ptr) == block, f"usable size of malloc({size})"
        offset = limits.block_offset(class_idx, where.slab_idx, where.block_idx)
        assert addr(hak, ptr) - ss_base(hak, ptr) == offset, (
            f"malloc({size}) at {where} is not at its policy offset {offset:#x}"
        )
        assert max(size, 1) <= block, f"class {class_idx} is too small for {size}"
        assert class_idx == 0 or size > CLASS_SIZES[class_idx - 1], (
            f"malloc({size}) is not in the smallest class that fits"
        )
    assert_clean(hak, "after one block of every size")


def test_first_blocks_follow_the_policy_offsets(hak: HakmemModule) -> None:
    exact(hak)
    for class_idx, block in enumerate(CLASS_SIZES):
        ptrs = [malloc_ok(hak, block) for _ in range(3)]
        places = [locate(hak, p).place for p in ptrs]
        assert places == [(class_idx + 1, 0, 0), (class_idx + 1, 0, 1), (class_idx + 1, 0, 2)], (
            f"C{class_idx}: the first blocks of a fresh class (caches off) are carved in order"
        )
        base = ss_base(hak, ptrs[0])
        assert addr(hak, ptrs[0]) == base + limits.SS_HEADER_SIZE, (
            f"C{class_idx}: block 0 of slab 0 starts right after the SuperSlab header"
        )


@pytest.mark.parametrize("size", [1025, 1500, 2048, 4096, 65536, 200_000, 1 << 20, (4 << 20) + 3])
def test_large_requests_are_glibcs(hak: HakmemModule, size: int) -> None:
    ptr = hak.lib.hak_malloc(size)
    assert ptr != hak.ffi.NULL, f"hak_malloc({size}) returned NULL"
    where = locate(hak, ptr)
    assert where.owner == OWNER_LIBC, f"hak_malloc({size}) should be glibc's, got {where}"
    assert where.class_idx == -1, f"a glibc pointer has no class: {where}"
    assert hak.lib.hak_usable_size(ptr) >= size, f"usable size of hak_malloc({size})"
    assert stats(hak).total("fallback_allocs") == 0, "a large request is not a fallback"
    hak.lib.hak_free(ptr)
    assert_clean(hak)


def test_free_null_is_a_no_op(hak: HakmemModule) -> None:
    exact(hak)
    ptr = malloc_ok(hak, 40)
    hak.lib.hak_free(hak.ffi.NULL)
    assert locate(hak, ptr).owner == OWNER_TINY
    assert_clean(hak, "after free(NULL)")


def test_usable_size_and_locate_of_null(hak: HakmemModule) -> None:
    assert hak.lib.hak_usable_size(hak.ffi.NULL) == 0
    where = locate(hak, hak.ffi.NULL)
    assert (where.owner, where.class_idx, where.slab_idx, where.block_idx) == (
        OWNER_UNKNOWN,
        -1,
        -1,
        -1,
    ), f"hak_locate(NULL) = {where}"


@pytest.mark.parametrize("caches", ["off", "on"])
def test_malloc_zero_gives_distinct_pointers(hak: HakmemModule, caches: str) -> None:
    if caches == "off":
        exact(hak)
    ptrs = [hak.lib.hak_malloc(0) for _ in range(200)]
    assert all(p != hak.ffi.NULL for p in ptrs), "malloc(0) returned NULL"
    addresses = {addr(hak, p) for p in ptrs}
    assert len(addresses) == len(ptrs), "malloc(0) returned the same pointer twice"
    assert all(locate(hak, p).class_idx == 0 for p in ptrs), "malloc(0) is a C0 block"
    assert all(hak.lib.hak_usable_size(p) == CLASS_SIZES[0] for p in ptrs)
    for p in ptrs:
        hak.lib.hak_free(p)
    hak.lib.hak_flush()
    assert_clean(hak)


# ---- the binding's constants ---------------------------------------------------

LIMIT_NAMES = (
    "NUM_CLASSES",
    "MIN_BLOCK",
    "MAX_BLOCK",
    "SLAB_SIZE",
    "SLABS_PER_SS",
    "SS_SIZE",
    "SS_HEADER_SIZE",
    "CACHE_CAP_MAX",
    "CHECK_MSG_MAX",
    "FREE_OK",
    "FREE_DOUBLE",
    "FREE_INTERIOR",
)


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_binding_limits_equal_model_limits(hak: HakmemModule, name: str) -> None:
    compiled = getattr(hak.lib, f"HAK_{name}")
    assert compiled == getattr(limits, name), (
        f"hak.lib.HAK_{name} = {compiled} but hakfuzz.model.limits.{name} = {getattr(limits, name)}"
    )


def test_binding_enums_equal_model_enums(hak: HakmemModule) -> None:
    assert hak.lib.HAK_OWNER_UNKNOWN == Owner.NULL
    assert hak.lib.HAK_OWNER_TINY == Owner.TINY
    assert hak.lib.HAK_OWNER_LIBC == Owner.LIBC
    assert hak.lib.HAK_OOM_LIBC == OomPolicy.LIBC
    assert hak.lib.HAK_OOM_NULL == OomPolicy.NULL


def test_binding_default_config_equals_model_default(hak: HakmemModule) -> None:
    cfg = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_default(cfg)
    native = {name: int(getattr(cfg, name)) for name, _ in hak.ffi.typeof("hak_config_t").fields}
    model = Config().c_fields()
    # The debug variant turns checked mode on by default (HAK_DEFAULT_CHECKED=1).
    native.pop("checked")
    model.pop("checked")
    assert native == model, "hak_config_default differs from hakfuzz.model.config.Config()"


def test_class_table_agrees_with_block_sizes(hak: HakmemModule) -> None:
    for class_idx in range(hak.lib.HAK_NUM_CLASSES):
        assert CLASS_SIZES[class_idx] == hak.lib.HAK_MIN_BLOCK << class_idx
    assert CLASS_SIZES[-1] == hak.lib.HAK_MAX_BLOCK
    assert hak.lib.HAK_SS_SIZE == hak.lib.HAK_SLAB_SIZE * hak.lib.HAK_SLABS_PER_SS
