"""Build variants by name, including ``mutant:NAME`` and ``testfault:NAME``.

Engines take a variant as text; this module turns it into a loaded allocator
module or a built tool: a plain variant (``release``, ``asan``, ...) builds
the shipped sources with its flags; ``mutant:NAME`` builds a patched copy of
the sources (``native/mutants/NAME.patch``) with the release flags;
``testfault:NAME`` does the same with ``native/testfaults/NAME.patch``
(deliberate faults used only by the tests).  Either takes ``@VARIANT`` to
build the patched tree with another variant's flags: ``mutant:NAME@asan`` is
the mutant built with AddressSanitizer, so a bug only a sanitizer sees is
caught in the tree that has it; ``testfault:NAME@debug`` is that tree with
HAK_ASSERT compiled in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hakfuzz import native
from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz.native import VARIANTS, NativeTree
from hakfuzz.native._build import default_tree
from hakfuzz.native._mutants import mutant_tree, resolve_variant, split_build
from hakfuzz.native._tools import build_tool

TESTFAULT_PREFIX = "testfault:"
MUTANT_PREFIX = "mutant:"
_PATCHED = (TESTFAULT_PREFIX, MUTANT_PREFIX)
MUTANTS_DIR_ENV = "HAKFUZZ_MUTANTS_DIR"
"""Where ``mutant:NAME`` finds its patch (default ``native/mutants``); inherited by workers."""
MUTANTS_SOURCE_ENV = "HAKFUZZ_MUTANTS_SOURCE"
"""The allocator tree mutants patch (default the shipped ``native/``); inherited by workers."""

DEFAULT_VARIANTS = ("release", "asan", "tsan")
"""The builds a campaign runs by default: the shipped allocator, and sanitizer builds that
see what it cannot (tsan only in the C driver, see :func:`in_process`)."""


def flags_of(text: str) -> str:
    """The build flags (a plain variant) a variant name is built with, without building."""
    if "@" in text and text.startswith(_PATCHED):
        return text.rsplit("@", 1)[1]
    return "release" if text.startswith(_PATCHED) else text


def in_process(text: str) -> bool:
    """Whether a Python process can load this build (TSan must own its whole process)."""
    return flags_of(text) != "tsan"


def with_flags(text: str, flags: str) -> str:
    """A variant name for ``text``'s sources built with ``flags`` (``mutant:x`` + asan)."""
    if text.startswith(_PATCHED):
        base = text.rsplit("@", 1)[0] if "@" in text else text
        return base if flags == "release" else f"{base}@{flags}"
    return flags


def split(text: str) -> tuple[str, Any]:
    """(base variant, source tree or None) for a variant name."""
    if text.startswith(_PATCHED):
        prefix, _, rest = text.partition(":")
        try:
            name, build = split_build(rest)
        except HakfuzzError as exc:  # an unknown VARIANT after the @: the user's to fix
            raise UsageError(str(exc)) from None
        if f"{prefix}:" == MUTANT_PREFIX:
            return build, _mutant_tree(name)
        return build, mutant_tree(name, directory=_testfaults_dir())
    if ":" not in text and text not in VARIANTS:
        raise UsageError(
            f"unknown variant {text!r} "
            f"(choose from {', '.join(VARIANTS)}, mutant:NAME[@VARIANT])"
        )
    return resolve_variant(text)


def _mutant_tree(name: str) -> Any:

    directory, source = os.environ.get(MUTANTS_DIR_ENV), os.environ.get(MUTANTS_SOURCE_ENV)
    return mutant_tree(
        name,
        directory=Path(directory) if directory else None,
        source=NativeTree(Path(source)) if source else None,
    )


def _testfaults_dir() -> Path:

    return default_tree().root / "testfaults"


def load_module(text: str) -> Any:
    """The loaded allocator module of a variant (built on first use)."""
    base, tree = split(text)
    return native.load(base, tree=tree, progress=None)


def prepare(text: str) -> None:
    """Build a variant's module now; load it here only if this process can."""
    base, tree = split(text)
    if base in ("asan", "tsan"):
        native.build(base, tree=tree)  # loads only under its runtime: the workers get that
    else:
        native.load(base, tree=tree, progress=None)


def tool(name: str, text: str) -> Path:
    """A built tool (``hakdriver``, ...) of a variant."""
    base, tree = split(text)
    return build_tool(name, base, tree=tree)
