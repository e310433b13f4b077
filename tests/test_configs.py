"""Boundary configurations: every engine can draw each option at its limits."""

from __future__ import annotations

import random

from hakfuzz.engines.configs import BOUNDARY_VALUES, SS_BYTES, swarm_config
from hakfuzz.program import Program, ProgramConfig, decode, validate
from hakfuzz.program.dictionary import dictionary_entries


def test_every_boundary_value_is_a_valid_config() -> None:
    for name, values in BOUNDARY_VALUES.items():
        for value in values:
            validate(Program(config=ProgramConfig(**{name: value})))  # type: ignore[arg-type]


def test_the_swarm_reaches_every_boundary_value_and_is_seeded() -> None:
    seen: dict[str, set[object]] = {name: set() for name in BOUNDARY_VALUES}
    for seed in range(400):
        config = swarm_config(random.Random(seed))
        assert config == swarm_config(random.Random(seed))
        for name in BOUNDARY_VALUES:
            seen[name].add(getattr(config, name))
    for name, values in BOUNDARY_VALUES.items():
        assert set(values) <= seen[name], name


def test_atheris_dictionary_holds_headers_the_tables_cannot() -> None:
    configs = {name: decode(data).config for name, data in dictionary_entries()
               if name.startswith("hdrx_")}
    assert configs["hdrx_cache1"].cache_cap == 1
    assert configs["hdrx_cache_max"].cache_cap == 1024
    assert configs["hdrx_budget_under_1ss"].budget_bytes == SS_BYTES - 1
    assert configs["hdrx_budget_over_1ss"].budget_bytes == SS_BYTES + 1
