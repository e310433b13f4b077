"""hak_configure: validation (EINVAL applies nothing), hak_config_get, hak_reset, the environment.

An invalid configuration must leave everything as it was: the fields, the
caches (a valid configure flushes the caller's) and the fault-injection
counter (a valid configure restarts it).
"""

from __future__ import annotations

import errno

import pytest
from native_helpers import (
    OOM_NULL,
    OWNER_TINY,
    config_dict,
    configure,
    exact,
    locate,
    malloc_ok,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

INVALID = [
    {"cache_cap": limits.CACHE_CAP_MAX + 1},
    {"cache_cap": 2**32 - 1},
    {"refill_batch": 0},
    {"refill_batch": limits.CACHE_CAP_MAX + 1},
    {"oom_policy": 2},
    {"release_empty": 2},
    {"checked": 7},
]


def configure_rc(hak: HakmemModule, **fields: int) -> int:
    cfg = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_get(cfg)
    for name, value in fields.items():
        setattr(cfg, name, value)
    return int(hak.lib.hak_configure(cfg))


@pytest.mark.parametrize(
    "bad", INVALID, ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items())
)
def test_invalid_values_are_einval_and_apply_nothing(
    hak: HakmemModule, bad: dict[str, int]
) -> None:
    configure(hak, ss_cap=3, ss_keep=1)
    before = config_dict(hak)
    rc = configure_rc(hak, ss_cap=9, budget_bytes=1 << 30, fail_map_at=4, **bad)
    assert rc == errno.EINVAL, f"hak_configure({bad}) = {rc}, expected EINVAL"
    assert config_dict(hak) == before, f"a rejected configuration ({bad}) changed something"


def test_einval_keeps_the_callers_caches(hak: HakmemModule) -> None:
    ptr = malloc_ok(hak, 100)
    assert stats(hak).cls[4]["active_blocks"] == 16
    assert configure_rc(hak, cache_cap=5000) == errno.EINVAL
    assert stats(hak).cls[4]["active_blocks"] == 16, "a rejected configure does not flush"
    assert configure_rc(hak, ss_cap=0) == 0
    assert stats(hak).cls[4]["active_blocks"] == 1, "a valid configure flushes the caller's cache"
    hak.lib.hak_free(ptr)


def test_einval_keeps_the_mapping_attempt_counter(hak: HakmemModule) -> None:
    exact(hak, fail_map_at=2, oom_policy=OOM_NULL)
    first = malloc_ok(hak, 8)  # mapping attempt 1
    assert configure_rc(hak, oom_policy=5) == errno.EINVAL
    assert hak.lib.hak_malloc(16) == hak.ffi.NULL, "attempt 2 still fails: nothing was reset"
    assert stats(hak)["os_map_failures"] == 1
    hak.lib.hak_free(first)


@pytest.mark.parametrize(
    "good",
    [
        {"cache_cap": limits.CACHE_CAP_MAX, "refill_batch": limits.CACHE_CAP_MAX},
        {"cache_cap": 4, "refill_batch": 100},  # clamped when used
        {"cache_cap": 0, "refill_batch": 1},
        {"oom_policy": OOM_NULL, "ss_cap": 2**32 - 1, "budget_bytes": 2**64 - 1},
        {"ss_keep": 0, "release_empty": 0, "checked": 1, "fail_map_at": 2**32 - 1},
    ],
)
def test_valid_values_are_applied(hak: HakmemModule, good: dict[str, int]) -> None:
    configure(hak, **good)
    applied = config_dict(hak)
    for name, value in good.items():
        assert applied[name] == value, f"hak_config_get().{name} = {applied[name]}, set {value}"
    ptr = malloc_ok(hak, 24)
    assert locate(hak, ptr).owner == OWNER_TINY
    hak.lib.hak_free(ptr)


def test_reset_restores_the_defaults(hak: HakmemModule) -> None:
    default = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_default(default)
    expected = {
        name: int(getattr(default, name)) for name, _ in hak.ffi.typeof("hak_config_t").fields
    }
    configure(hak, ss_cap=1, cache_cap=0, ss_keep=9, oom_policy=OOM_NULL)
    malloc_ok(hak, 8)
    hak.lib.hak_reset()
    assert config_dict(hak) == expected
    snap = stats(hak)
    assert (snap.total("ss_live"), snap["os_maps"], snap["ss_mapped"]) == (0, 0, 0), str(snap)
    assert locate(hak, malloc_ok(hak, 8)).ss_seq == 1, "hak_reset restarts the ss_seq counter"


def test_configure_from_env(
    hak: HakmemModule, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HAKMEM_SS_CAP", "5")
    monkeypatch.setenv("HAKMEM_OOM_POLICY", "null")
    monkeypatch.setenv("HAKMEM_CACHE_CAP", "2000")  # out of range: ignored, named on stderr
    monkeypatch.setenv("HAKMEM_SS_KEEP", "-1")
    hak.lib.hak_configure_from_env()
    applied = config_dict(hak)
    assert (applied["ss_cap"], applied["oom_policy"]) == (5, OOM_NULL), str(applied)
    assert (applied["cache_cap"], applied["ss_keep"]) == (64, 2), "invalid values are ignored"
    err = capfd.readouterr().err
    assert "HAKMEM_CACHE_CAP" in err, f"the invalid variable is named on stderr: {err!r}"
    assert "HAKMEM_SS_KEEP" in err, f"the invalid variable is named on stderr: {err!r}"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("OOM_POLICY", "abort", "(expected libc or null)"),
        ("SS_CAP", "+5", "(expected a whole number from 0 to 4294967295)"),
        ("CACHE_CAP", " 8", "(expected a whole number from 0 to 1024)"),
        ("REFILL_BATCH", "0", "(expected a whole number from 1 to 1024)"),
        ("BUDGET_BYTES", "18446744073709551616", "(expected a whole number from 0 to 1844"),
        ("CHECKED", "yes", "(expected a whole number from 0 to 1)"),
    ],
)
def test_a_rejected_env_value_is_named_with_its_text_and_what_it_should_be(
    hak: HakmemModule,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    name: str,
    text: str,
    expected: str,
) -> None:
    before = config_dict(hak)
    monkeypatch.setenv(f"HAKMEM_{name}", text)
    hak.lib.hak_configure_from_env()
    assert config_dict(hak) == before, f"HAKMEM_{name}={text!r} changed the configuration"
    err = capfd.readouterr().err
    assert f"hakmem: ignoring HAKMEM_{name}={text} {expected}" in err, err


def test_env_values_are_applied_as_hak_configure_would(
    hak: HakmemModule, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # hak_configure keeps a refill_batch above cache_cap (clamped when used);
    # the environment must not rewrite it silently on the way in.
    monkeypatch.setenv("HAKMEM_CACHE_CAP", "8")
    monkeypatch.setenv("HAKMEM_REFILL_BATCH", "100")
    monkeypatch.setenv("HAKMEM_OOM_POLICY", "1")  # the number hak_configure takes
    hak.lib.hak_configure_from_env()
    applied = config_dict(hak)
    assert (applied["cache_cap"], applied["refill_batch"]) == (8, 100), str(applied)
    assert applied["oom_policy"] == OOM_NULL, str(applied)
    assert capfd.readouterr().err == "", "valid values are applied without a word"
