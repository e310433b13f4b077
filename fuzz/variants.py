"""Build variants by name, including ``mutant:NAME`` and ``testfault:NAME``.

Engines take a variant as text; this module turns it into a loaded allocator
module or a built tool: a plain variant (``release``, ``asan``, ...) builds
the shipped sources with its flags; ``mutant:NAME`` builds a patched copy of
the sources (``native/mutants/NAME.patch``) with the release flags;
``testfault:NAME`` does the same with ``native/testfaults/NAME.patch``
(deliberate faults used only by the tests).  Either takes ``@VARIANT`` to
build the patched tree with another variant's flags: ``testfault:NAME@debug``
is that tree with HAK_ASSERT compiled in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hakfuzz._errors import UsageError

TESTFAULT_PREFIX = "testfault:"


def split(text: str) -> tuple[str, Any]:
    """(base variant, source tree or None) for a variant name."""
    from hakfuzz.native import VARIANTS
    from hakfuzz.native._mutants import mutant_tree, resolve_variant, split_build

    if text.startswith(TESTFAULT_PREFIX):
        name, build = split_build(text[len(TESTFAULT_PREFIX) :])
        return build, mutant_tree(name, directory=_testfaults_dir())
    if ":" not in text and text not in VARIANTS:
        raise UsageError(
            f"unknown variant {text!r} "
            f"(choose from {', '.join(VARIANTS)}, mutant:NAME[@VARIANT])"
        )
    return resolve_variant(text)


def _testfaults_dir() -> Path:
    from hakfuzz.native._build import default_tree

    return default_tree().root / "testfaults"


def load_module(text: str) -> Any:
    """The loaded allocator module of a variant (built on first use)."""
    from hakfuzz import native

    base, tree = split(text)
    return native.load(base, tree=tree, progress=None)


def tool(name: str, text: str) -> Path:
    """A built tool (``hakdriver``, ...) of a variant."""
    from hakfuzz.native._tools import build_tool

    base, tree = split(text)
    return build_tool(name, base, tree=tree)
