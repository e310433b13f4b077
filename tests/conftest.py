"""Shared fixtures: the compiled allocator, reset around every test that uses it.

``hak`` is the loaded allocator module (``hak.ffi``, ``hak.lib``) of the
variant in ``$HAKFUZZ_VARIANT`` (default ``release``), built on first use
into the shared cache; builds are safe across pytest-xdist workers.  Tests
that use it are marked ``native`` automatically, which is what ``tox -e
sanitize`` selects.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hakfuzz.native import HakmemModule, load

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the compiled allocator as ``native``."""
    for item in items:
        if _NATIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.native)
