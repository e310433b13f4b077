"""The allocator's options are stated once, in the C table, and every reader agrees.

The C table (``hak_option_info``) is the source; the checked-in rows of
``hakfuzz.model.options`` and docs/options.md are generated from it, and the
model (``Config.validate``), the program validator (``check_config_value``)
and ``hak_configure`` accept exactly the same values at each bound.
"""

from __future__ import annotations

import dataclasses
import errno

import pytest
from option_table import generated, read_options

from hakfuzz.model import Config, OomPolicy
from hakfuzz.model.options import OPTIONS, Option
from hakfuzz.native import HakmemModule
from hakfuzz.native._toolchain import get_variant, variant_from_env
from hakfuzz.program import DEFAULT_CONFIG, ProgramConfig, ProgramError, model
from hakfuzz.program.validate import check_config_value

_WIDTH = {"u64": 64}  # every other hak_config_t field is a uint32_t

# The one default a variant changes (the debug build checks frees).
_CHECKED_ON = "-DHAK_DEFAULT_CHECKED=1" in get_variant(variant_from_env()).cflags


def _release_table(hak: HakmemModule) -> tuple[Option, ...]:
    table = read_options(hak)
    if _CHECKED_ON:
        table = tuple(dataclasses.replace(o, default=0) if o.name == "checked" else o
                      for o in table)
    return table


def test_the_checked_in_table_is_the_c_table(hak: HakmemModule) -> None:
    assert _release_table(hak) == OPTIONS, "run: python tests/option_table.py --write"


def test_generated_files_are_up_to_date(hak: HakmemModule) -> None:
    for path, text in generated(_release_table(hak)).items():
        assert path.read_text() == text, (
            f"{path.name} is stale; run: python tests/option_table.py --write"
        )


def test_the_table_covers_hak_config_t_in_order(hak: HakmemModule) -> None:
    fields = [name for name, _ in hak.ffi.typeof("hak_config_t").fields]
    assert [o.name for o in OPTIONS] == fields
    assert [o.env for o in OPTIONS] == [f"HAKMEM_{name.upper()}" for name in fields]
    assert list(model.CONFIG_FIELDS) == fields
    assert [f.name for f in dataclasses.fields(Config)] == fields
    assert hak.lib.hak_option_info(len(OPTIONS), hak.ffi.new("hak_option_t *")) == -1


def test_defaults_agree(hak: HakmemModule) -> None:
    default = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_default(default)
    c_defaults = {o.name: int(getattr(default, o.name)) for o in OPTIONS}
    if _CHECKED_ON:
        c_defaults["checked"] = 0
    assert Config().c_fields() == c_defaults
    assert DEFAULT_CONFIG.as_c_fields() == c_defaults
    assert {o.name: o.default for o in OPTIONS} == c_defaults


def test_the_program_constants_are_the_tables() -> None:
    by_name = {o.name: o for o in OPTIONS}
    assert by_name["refill_batch"].max == model.REFILL_BATCH_MAX
    assert by_name["cache_cap"].max == model.CACHE_CAP_MAX
    assert by_name["oom_policy"].values == model.OOM_POLICIES


def _c_accepts(hak: HakmemModule, option: Option, value: int) -> bool:
    if not 0 <= value < 1 << _WIDTH.get(option.type, 32):
        return False  # not a value of the C field at all
    cfg = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_default(cfg)
    setattr(cfg, option.name, value)
    rc = int(hak.lib.hak_configure(cfg))
    assert rc in (0, errno.EINVAL), f"hak_configure({option.name}={value}) = {rc}"
    return rc == 0


def _env_accepts(hak: HakmemModule, monkeypatch: pytest.MonkeyPatch, option: Option,
                 value: int) -> bool:
    """Whether ``HAKMEM_<NAME>=value`` is applied by ``hak_configure_from_env``."""
    if value < 0:
        return False  # a sign is no number of the environment's
    hak.lib.hak_reset()
    monkeypatch.setenv(option.env, str(value))
    hak.lib.hak_configure_from_env()
    monkeypatch.delenv(option.env)
    cfg = hak.ffi.new("hak_config_t *")
    hak.lib.hak_config_get(cfg)
    return int(getattr(cfg, option.name)) == value


def _model_accepts(option: Option, value: int) -> bool:
    typed: object = value
    if option.type == "bool" and value in (0, 1):
        typed = bool(value)
    elif option.values and 0 <= value < len(option.values):
        typed = OomPolicy(value)
    try:
        dataclasses.replace(Config(), **{option.name: typed}).validate()
    except ValueError:
        return False
    return True


def _validator_accepts(option: Option, value: int) -> bool:
    typed: object = value
    if option.type == "bool" and value in (0, 1):
        typed = bool(value)
    elif option.values and 0 <= value < len(option.values):
        typed = option.values[value]
    try:
        check_config_value(option.name, typed, "<test>")
    except ProgramError:
        return False
    # What validates must also be a ProgramConfig whose C fields are the value.
    config = dataclasses.replace(ProgramConfig(), **{option.name: typed})
    assert config.as_c_fields()[option.name] == value
    return True


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_c_model_and_validator_accept_the_same_values(
    hak: HakmemModule, monkeypatch: pytest.MonkeyPatch, option: Option
) -> None:
    for value in (option.min - 1, option.min, option.max, option.max + 1):
        c = _c_accepts(hak, option, value)
        assert c == option.accepts(value), f"{option.name}={value}: the table says otherwise"
        assert _env_accepts(hak, monkeypatch, option, value) == c, f"{option.env}={value}"
        assert _model_accepts(option, value) == c, (
            f"{option.name}={value}: hak_configure {'accepts' if c else 'refuses'} it, "
            "the model does not"
        )
        assert _validator_accepts(option, value) == c, (
            f"{option.name}={value}: hak_configure {'accepts' if c else 'refuses'} it, "
            "the program validator does not"
        )
