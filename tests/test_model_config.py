"""hakfuzz.model.config: defaults, validation naming the field, refill clamping."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from hakfuzz.model import Config, ModelAllocator, OomPolicy


def test_defaults_are_those_of_the_policy() -> None:
    assert Config() == Config(
        ss_cap=0,
        budget_bytes=0,
        oom_policy=OomPolicy.LIBC,
        cache_cap=64,
        refill_batch=16,
        release_empty=True,
        ss_keep=2,
        checked=False,
        fail_map_at=0,
    )
    Config().validate()


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().cache_cap = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cache_cap", 1025),
        ("cache_cap", -1),
        ("refill_batch", 0),
        ("refill_batch", 1025),  # above HAK_CACHE_CAP_MAX: hak_configure says EINVAL
        ("ss_cap", 2**32),
        ("ss_keep", -1),
        ("fail_map_at", -3),
        ("budget_bytes", 2**64),
        ("cache_cap", 1.5),
        ("ss_cap", True),
        ("release_empty", 1),
        ("checked", "yes"),
        ("oom_policy", "null"),
    ],
)
def test_validate_names_the_field(field: str, value: Any) -> None:
    config = dataclasses.replace(Config(), **{field: value})
    with pytest.raises(ValueError, match=field):
        config.validate()
    with pytest.raises(ValueError, match=field):
        ModelAllocator(config)


def test_limits_are_valid() -> None:
    Config(cache_cap=0, refill_batch=1).validate()
    Config(cache_cap=1024, refill_batch=1024, budget_bytes=2**64 - 1).validate()


def test_refill_count_is_clamped_to_cache_cap() -> None:
    assert Config(cache_cap=0).refill_count == 0
    assert Config(cache_cap=4, refill_batch=16).refill_count == 4
    assert Config(cache_cap=64, refill_batch=16).refill_count == 16
    assert Config(cache_cap=1, refill_batch=1).refill_count == 1


def test_c_fields() -> None:
    fields = Config(oom_policy=OomPolicy.NULL, release_empty=False).c_fields()
    assert fields["oom_policy"] == 1
    assert fields["release_empty"] == 0
    assert list(fields) == [f.name for f in dataclasses.fields(Config)]
    assert all(type(value) is int for value in fields.values())


def test_from_c_fields_inverts_c_fields() -> None:
    config = Config(ss_cap=3, oom_policy=OomPolicy.NULL, release_empty=False, checked=True)
    assert Config.from_c_fields(config.c_fields()) == config
