"""Dependencies point one way: the core never imports its consumers.

The layers, lowest first: the C's facts (``hakfuzz.model.limits`` mirrors
hakmem.h, ``hakfuzz.model.options`` the option table of config.c) → the
program format and the records of a run → the model, the native allocator
and the targets and builds it runs as → the executors (``differential``) →
the engines → the campaign → replay, mutants and the benchmarks → the CLI
(and anything not listed here).  Every ``import`` counts, including those
inside functions and under ``TYPE_CHECKING``: a deferred import is still a
dependency.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "hakfuzz._errors", "hakfuzz._paths", "hakfuzz._argtypes", "hakfuzz._console",
        "hakfuzz._process", "hakfuzz.model.limits", "hakfuzz.model.options",
    ),
    ("hakfuzz.program", "hakfuzz.findings", "hakfuzz.diagnostics"),
    ("hakfuzz.model", "hakfuzz.native", "hakfuzz.targets", "hakfuzz.variants"),
    ("hakfuzz.differential",),
    ("hakfuzz.engines",),
    ("hakfuzz.campaign",),
    ("hakfuzz.replay", "hakfuzz.mutants", "hakfuzz.perf"),
)
_HIGHEST = len(LAYERS)  # the CLI, and the helpers every layer may use (hakfuzz._console, ...)


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest listed prefix."""
    best, best_len = _HIGHEST, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    return best


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by name."""
    found: dict[str, Path] = {}
    for package in ("hakfuzz", "hakfuzz.model", "hakfuzz.native"):
        root = Path(importlib.import_module(package).__path__[0])
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found.setdefault(name, path)
    return found


def imports_of(path: Path) -> set[str]:
    """The hakfuzz modules ``path`` imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "hakfuzz":  # from hakfuzz import native
                names.update(f"hakfuzz.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return {name for name in names if name == "hakfuzz" or name.startswith("hakfuzz.")}


_LOW = sorted(name for name in _modules() if layer_of(name) < _HIGHEST)


@pytest.mark.parametrize("module", _LOW)
def test_low_layers_import_nothing_above_them(module: str) -> None:
    rank = layer_of(module)
    above = sorted(
        name for name in imports_of(_modules()[module])
        if name != "hakfuzz" and layer_of(name) > rank
    )
    assert not above, f"{module} (layer {rank}) imports {above} from a higher layer"


def test_the_layers_are_found() -> None:
    assert "hakfuzz.differential.executor" in _LOW
    assert "hakfuzz.program.validate" in _LOW
    assert layer_of("hakfuzz.model.options") < layer_of("hakfuzz.program.model")
    assert layer_of("hakfuzz.engines.parallel.stress") < layer_of("hakfuzz.campaign.supervisor")
    assert layer_of("hakfuzz.cli.fuzz") == _HIGHEST
    assert "hakfuzz.model.options" in imports_of(_modules()["hakfuzz.program.validate"])
