"""The Hypothesis profile of a test run: derandomized unless a person asks for random.

A property test that draws new examples on every run turns CI red on some
runs and green on others; random exploration belongs to the fuzz campaign.
These tests check the profile the default run loads (conftest.py) and that
every collected Hypothesis test inherits it rather than opting out.
"""

from __future__ import annotations

import os
import unittest

import pytest
from hypothesis import is_hypothesis_test, settings


def _chosen_profile(config: pytest.Config) -> str | None:
    chosen = config.getoption("--hypothesis-profile", default=None)
    return chosen or os.environ.get("HYPOTHESIS_PROFILE") or None


def _settings_of(item: pytest.Item) -> settings | None:
    """The settings a collected Hypothesis test runs with, or None if it is not one."""
    cls = getattr(item, "cls", None)
    if cls is not None and issubclass(cls, unittest.TestCase):
        # A RuleBasedStateMachine's TestCase keeps its settings on the class.
        found = getattr(cls, "settings", None)
        return found if isinstance(found, settings) else None
    function = getattr(item, "obj", None)
    if function is None or not is_hypothesis_test(function):
        return None
    # @given records, when the module is imported, the settings the test runs with.
    found = getattr(function, "_hypothesis_internal_use_settings", None)
    assert isinstance(found, settings), item.nodeid
    return found


def test_the_default_run_is_derandomized_without_a_database(pytestconfig: pytest.Config) -> None:
    chosen = _chosen_profile(pytestconfig)
    if chosen:
        # Hypothesis's plugin may derive "<name>-with-<level>-verbosity" from it.
        assert settings.get_current_profile_name().startswith(chosen)
        pytest.skip(f"this run chose the Hypothesis profile {chosen!r}")
    assert settings.get_current_profile_name() == "ci"
    current = settings()
    assert current.derandomize is True
    assert current.database is None
    assert current.print_blob is True
    assert current.deadline is None


def test_every_hypothesis_test_inherits_the_ci_profile(request: pytest.FixtureRequest) -> None:
    if _chosen_profile(request.config):
        pytest.skip("this run chose its Hypothesis profile")
    checked, problems = 0, []
    for item in request.session.items:
        found = _settings_of(item)
        if found is None:
            continue
        checked += 1
        if found.derandomize is not True or found.database is not None:
            problems.append(f"{item.nodeid}: derandomize={found.derandomize}, {found.database=}")
    assert problems == []
    # Only meaningful when this run collected property tests besides this one.
    if checked == 0:
        pytest.skip("no Hypothesis test collected in this run")


def test_the_explore_profile_is_random_with_a_database() -> None:
    explore = settings.get_profile("explore")
    assert explore.derandomize is False
    assert explore.database is not None
