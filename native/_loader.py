"""Load a built allocator module into this process.

Each (variant, cache key) has its own module name, so several variants (and
several source versions) can be loaded side by side: their symbols stay local
to their own shared object.  A module is loaded at most once per process.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from hakfuzz._errors import HakfuzzError
from hakfuzz.native._build import NativeTree, Progress, build
from hakfuzz.native._toolchain import get_variant, variant_from_env


class LoadError(HakfuzzError):
    """A built module cannot be loaded into this process (e.g. no sanitizer runtime)."""


class HakmemModule(Protocol):
    """A loaded allocator module: cffi's ``ffi`` and the C functions in ``lib``."""

    ffi: Any  # cffi's CompiledFFI: ffi.new, ffi.NULL, ffi.errno, ...
    lib: Any  # the hak_* functions and HAK_* constants of hakmem.h
    __name__: str
    __file__: str | None


_LOADED: dict[tuple[str, Path | None, Path | None], HakmemModule] = {}
_LOCK = threading.Lock()


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load(
    variant: str | None = None,
    *,
    tree: NativeTree | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = _stderr_progress,
) -> HakmemModule:
    """The allocator module of ``variant``, built on first use.

    ``variant`` defaults to ``$HAKFUZZ_VARIANT``, else ``release``.  A build
    announces itself on stderr (``building hakmem (release)...``) unless
    ``progress`` is ``None``.  Sanitizer variants can only be loaded by a
    process started with their runtime preloaded (see
    :func:`hakfuzz.native.sanitizer_env`); otherwise :class:`LoadError`.
    """
    name = variant or variant_from_env()
    memo = (name, tree.root if tree else None, cache_dir)
    with _LOCK:
        if memo in _LOADED:
            return _LOADED[memo]
        runtime = get_variant(name).runtime
        if runtime is not None and not runtime_loaded(runtime):
            raise LoadError(
                f"the {name} variant needs the {runtime} runtime preloaded into this process; "
                f"run the command as `python -m hakfuzz.native.sanitize {name} -- COMMAND` "
                f"(or set the variables of hakfuzz.native.sanitizer_env({name!r}))"
            )
        result = build(name, progress=progress, tree=tree, cache_dir=cache_dir)
        module = sys.modules.get(result.module_name) or _import(result.module_name, result.path)
        loaded = cast(HakmemModule, module)
        _LOADED[memo] = loaded
        return loaded


def _import(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load {path}: not an extension module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise LoadError(f"cannot load {path}: {exc}") from exc
    sys.modules[module_name] = module
    return module


def runtime_loaded(runtime: str) -> bool:
    """Whether ``lib<runtime>.so`` (e.g. libasan) is mapped into this process."""
    needle = f"/lib{runtime}.so"
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any(needle in line for line in maps)
    except OSError:  # no procfs: trust LD_PRELOAD
        return needle in os.environ.get("LD_PRELOAD", "")
