"""Shared fixtures: the compiled allocator, reset around every test that uses it.

``hak`` is the loaded allocator module (``hak.ffi``, ``hak.lib``) of the
variant in ``$HAKFUZZ_VARIANT`` (default ``release``), built on first use
into the shared cache; builds are safe across pytest-xdist workers.  Tests
that use it are marked ``native`` automatically, which is what ``tox -e
sanitize`` selects.

Hypothesis runs under the ``ci`` profile unless ``--hypothesis-profile`` or
``$HYPOTHESIS_PROFILE`` names another: derandomized (every run tries the same
examples, so a red test is red for everyone), no example database (nothing
written into the tree, nothing replayed from an earlier run), ``print_blob``
(a failure prints the line that reproduces it), and no deadline (a loaded
machine must not fail a test).  Random exploration is the fuzz campaign's
job; ``--hypothesis-profile explore`` brings it to pytest for a person
hunting a bug (with it, ``--hypothesis-seed`` takes effect, and failures are
kept in ``.hypothesis/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import InvalidArgument

from hakfuzz.native import HakmemModule, load

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# The database is named: where CI is detected, Hypothesis's own default has none.
settings.register_profile(
    "explore",
    derandomize=False,
    print_blob=True,
    deadline=None,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
)

_NATIVE_FIXTURES = frozenset({"hak", "hak_module"})


@pytest.fixture(scope="session")
def hak_module() -> HakmemModule:
    """The allocator module of this session's variant, loaded once per worker."""
    return load()


@pytest.fixture
def hak(hak_module: HakmemModule) -> Iterator[HakmemModule]:
    """The allocator module, with ``hak_reset()`` before and after the test."""
    hak_module.lib.hak_reset()
    yield hak_module
    hak_module.lib.hak_reset()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--corpus-shard K/N``: replay only this CI job's share of the regression corpus."""
    parser.addoption(
        "--corpus-shard",
        dest="corpus_shard",
        default=None,
        metavar="K/N",
        help="run the K-th of N shares of the corpus regression cases (a CI matrix of N jobs "
        "replays every file once between them)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Load the test run's Hypothesis profile before any test module is imported.

    ``@given`` and ``@settings`` copy the loaded profile when a test module is
    imported, so it must be loaded before collection.  Running first lets
    Hypothesis's own plugin apply ``--hypothesis-profile`` (and verbosity) on top.
    """
    chosen = config.getoption("--hypothesis-profile", default=None)
    name = chosen or os.environ.get("HYPOTHESIS_PROFILE") or "ci"
    try:
        settings.load_profile(name)
    except InvalidArgument:
        raise pytest.UsageError(
            f"Hypothesis profile {name!r} is not registered (tests/conftest.py has ci, explore)"
        ) from None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the compiled allocator as ``native``."""
    for item in items:
        if _NATIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.native)
