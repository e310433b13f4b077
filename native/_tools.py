"""Build the allocator's executables and the LD_PRELOAD library.

``build_tool(name, variant)`` compiles one of :data:`TOOLS` (the
multi-threaded program driver, larson linked with hakmem, plain larson for
any allocator, ``libhakmem.so``, the pairs benchmark and the fork check) with
the same variant flags as the cffi module, and caches it like the module:
``<cache>/tools/<name>-<variant>-<tree>-<key>``
where the key hashes the sources, headers, flags and compiler version.  Builds
are serialised by an ``fcntl`` lock and published by an atomic rename, so
parallel test workers can ask for the same tool at once.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hakfuzz.native._build import BuildError, NativeTree, default_tree
from hakfuzz.native._cache import cache_root, make_entry
from hakfuzz.native._toolchain import (
    COMMON_CFLAGS,
    compiler_setting,
    describe_failure,
    find_compiler,
    get_variant,
)


@dataclass(frozen=True, slots=True)
class Tool:
    """One artefact: its own sources (relative to the tree) and how to link it."""

    name: str
    sources: tuple[str, ...]
    with_allocator: bool
    shared: bool = False
    defines: tuple[str, ...] = ()
    summary: str = ""


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "hakdriver",
            (
                "driver/driver.c",
                "driver/oracles.c",
                "driver/churn.c",
                "driver/serve.c",
                "driver/backend_hakmem.c",
            ),
            True,
            summary="runs a Program on real pthreads (hakmem or glibc)",
        ),
        Tool(
            "hakdriver-foreign",
            (
                "driver/driver.c",
                "driver/oracles.c",
                "driver/churn.c",
                "driver/serve.c",
                "driver/foreign.c",
                "driver/backend_foreign.c",
            ),
            False,
            summary="the driver without hakmem: runs a Program on any LD_PRELOAD allocator",
        ),
        Tool(
            "larson-hakmem",
            ("bench/larson.c",),
            True,
            defines=("-DLARSON_HAKMEM",),
            summary="larson calling hak_malloc/hak_free directly",
        ),
        Tool(
            "larson",
            ("bench/larson.c",),
            False,
            summary="larson calling malloc/free, for LD_PRELOAD",
        ),
        Tool(
            "libhakmem.so",
            ("src/preload.c",),
            True,
            shared=True,
            defines=("-DHAK_PRELOAD",),
            summary="the allocator under the standard names, for LD_PRELOAD",
        ),
        Tool(
            "pairs",
            ("bench/pairs.c",),
            True,
            summary="single-thread malloc+free pairs/s and RSS, hakmem vs glibc in one run",
        ),
        Tool(
            "xthread",
            ("bench/xthread.c",),
            False,
            summary="cross-thread and thread-churn workloads calling malloc/free, for LD_PRELOAD",
        ),
        Tool(
            "preloadcalls",
            ("bench/preloadcalls.c",),
            False,
            summary="the calls only a preloaded malloc sees, checked (run under LD_PRELOAD)",
        ),
        Tool(
            "forkcheck",
            ("bench/forkcheck.c",),
            False,
            summary="fork() in a threaded parent, then allocate in the child (LD_PRELOAD)",
        ),
        Tool(
            "servedby",
            ("bench/servedby.c",),
            False,
            summary="names the object serving malloc (dladdr) under an LD_PRELOAD library",
        ),
    )
}


def _allocator_sources(tree: NativeTree) -> list[Path]:
    return tree.sources()


def _key(tool: Tool, tree: NativeTree, flags: tuple[str, ...], compiler_text: str) -> str:
    digest = hashlib.sha256()
    files = [tree.root / s for s in tool.sources]
    if tool.with_allocator:
        files += tree.inputs()
    files += sorted((tree.root / "driver").glob("*.h")) + sorted(tree.include_dir.glob("*.h"))
    for path in sorted(set(files)):
        digest.update(str(path.relative_to(tree.root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update("\0".join(flags).encode() + b"\0" + compiler_text.encode())
    return digest.hexdigest()[:16]


def tool_flags(tool: Tool, variant: str) -> tuple[str, ...]:
    """Compiler and linker flags of ``tool`` in ``variant``."""
    v = get_variant(variant)
    flags = [*COMMON_CFLAGS, *v.cflags, *tool.defines, *v.ldflags]
    if tool.shared:
        # Calls between our own exported functions bind locally: malloc ->
        # hak_malloc is a direct call, not a trip through the PLT.
        flags += ["-shared", "-fvisibility=default", "-Wl,-Bsymbolic-functions"]
    return tuple(flags)


def build_tool(
    name: str,
    variant: str = "release",
    *,
    tree: NativeTree | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """The path of the built tool (compiled now, or found in the cache)."""
    tool = TOOLS.get(name)
    if tool is None:
        raise BuildError(f"unknown tool {name!r} (choose from {', '.join(TOOLS)})")
    tree = tree or default_tree()
    compiler = find_compiler(get_variant(variant))
    flags = tool_flags(tool, variant)
    key = _key(tool, tree, flags, compiler.version_text)
    entry_name = f"{name}-{variant}-{tree.name}-{key}"

    def fill(staging: Path) -> None:
        sources = [tree.root / s for s in tool.sources]
        if tool.with_allocator:
            sources += [s for s in _allocator_sources(tree) if s.name != "preload.c"]
        command = [
            *compiler.command,
            *flags,
            f"-I{tree.include_dir}",
            f"-I{tree.src_dir}",
            *map(str, sources),
            "-o",
            str(staging / name),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(
                f"building {name} ({variant}) with {compiler_setting()} failed:\n"
                f"{describe_failure(done)}"
            )
        if not (staging / name).is_file():  # e.g. HAKFUZZ_CC=true
            raise BuildError(
                f"building {name} ({variant}) with {compiler_setting()}: "
                f"the compiler exited 0 but wrote no {name}"
            )

    root = (cache_dir or cache_root()) / "tools"
    return make_entry(root, entry_name, lambda e: (e / name).is_file(), fill) / name
