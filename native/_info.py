"""What a build of the allocator is, or would be: ``hakfuzz info`` and :func:`info`.

The allocator's default configuration is read from the built module itself
(``hak_config_default``).  A sanitizer build that this process cannot load is
asked in a child process started with the sanitizer runtime preloaded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import cffi

from hakfuzz._errors import HakfuzzError
from hakfuzz.native._build import BuildPlan, NativeTree, plan
from hakfuzz.native._loader import LoadError, load, runtime_loaded
from hakfuzz.native._toolchain import sanitizer_env, variant_from_env


def info(
    variant: str | None = None, *, tree: NativeTree | None = None, cache_dir: Path | None = None
) -> dict[str, Any]:
    """Describe a variant's build: toolchain, flags, cache entry, default config.

    Never compiles: ``built`` says whether the cache entry exists, and
    ``config`` (the allocator's ``hak_config_default``) is ``None`` until it does.
    """
    the_plan = plan(variant or variant_from_env(), tree=tree, cache_dir=cache_dir)
    out: dict[str, Any] = {
        "variant": the_plan.variant.name,
        "summary": the_plan.variant.summary,
        "compiler": the_plan.compiler.banner,
        "compiler_command": list(the_plan.compiler.command),
        "compiler_version": the_plan.compiler.version,
        "cflags": list(the_plan.cflags),
        "ldflags": list(the_plan.ldflags),
        "sources": [p.name for p in the_plan.tree.sources()],
        "source_dir": str(the_plan.tree.src_dir),
        "cache_dir": str(the_plan.directory),
        "module": the_plan.module_name,
        "built": the_plan.built,
        "python": platform.python_version(),
        "cffi": cffi.__version__,
        "runtime_env": _runtime_env(the_plan),
        "config": None,
    }
    if the_plan.built:
        out["config"] = _default_config(the_plan, tree=tree, cache_dir=cache_dir)
    return out


def _runtime_env(the_plan: BuildPlan) -> dict[str, str]:
    if the_plan.variant.runtime is None:
        return {}
    try:
        return sanitizer_env(the_plan.variant.name, base={})
    except HakfuzzError as exc:
        return {"error": str(exc)}


def _default_config(
    the_plan: BuildPlan, *, tree: NativeTree | None, cache_dir: Path | None
) -> dict[str, int] | None:
    runtime = the_plan.variant.runtime
    if runtime is None or runtime_loaded(runtime):
        module = load(the_plan.variant.name, tree=tree, cache_dir=cache_dir, progress=None)
        return read_default_config(module.ffi, module.lib)
    env = {**os.environ, **sanitizer_env(the_plan.variant.name)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hakfuzz.native._probe",
            the_plan.module_name,
            str(the_plan.so_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise LoadError(
            f"loading {the_plan.so_path} under {runtime} failed: "
            f"{done.stderr.strip()[-2000:] or f'exit status {done.returncode}'}"
        )
    config: dict[str, int] | None = json.loads(done.stdout)
    return config


def read_default_config(ffi: Any, lib: Any) -> dict[str, int] | None:
    """``hak_config_default`` as a dict of field → value (``None`` if the module lacks it)."""
    if not hasattr(lib, "hak_config_default"):
        return None
    cfg = ffi.new("hak_config_t *")
    lib.hak_config_default(cfg)
    return {name: int(getattr(cfg, name)) for name, _ in ffi.typeof("hak_config_t").fields}
