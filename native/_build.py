"""Compile the allocator into a cffi extension module, cached by content.

The cache entry of a build is ``<cache>/<variant>-<key16>/`` where the key
hashes every input byte (the C sources and headers, the cdef), the variant's
flags, the compiler's version text, the Python version and the cffi version.
A changed input is a new entry; an unchanged one is a cache hit.

Concurrency: builds of one entry are serialised by an ``fcntl`` lock; the
entry is assembled in a private temporary directory and published with one
atomic ``rename``, so a reader never sees half an entry, and a crashed build
leaves nothing behind that looks complete.  Several pytest-xdist workers can
call :func:`build` at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cffi

from hakfuzz._errors import HakfuzzError
from hakfuzz.native._cache import cache_root as cache_root  # re-exported: native.cache_root
from hakfuzz.native._cdef import CDEF, PREAMBLE
from hakfuzz.native._toolchain import (
    COMMON_CFLAGS,
    Compiler,
    Variant,
    compiler_setting,
    describe_failure,
    find_compiler,
    get_variant,
)

_FORMAT = "hakfuzz-build/1"  # bump when this module changes what a build contains
_MANIFEST = "build.json"
_EXCLUDED = frozenset({"preload.c"})  # the LD_PRELOAD shim is built on its own

Progress = Callable[[str], None]
"""A callback that receives one human-readable line per build step."""


class BuildError(HakfuzzError):
    """The allocator could not be compiled; the message carries the compiler's words."""


@dataclass(frozen=True, slots=True)
class NativeTree:
    """A directory laid out like ``native/``: C sources in ``src/``, headers in ``include/``.

    ``cdef`` and ``preamble`` describe the public header to cffi.  Tests use a
    throwaway tree; everything else uses :func:`default_tree`.
    """

    root: Path
    cdef: str = CDEF
    preamble: str = PREAMBLE
    name: str = "hakmem"
    excluded: frozenset[str] = field(default=_EXCLUDED)

    @property
    def src_dir(self) -> Path:
        """Where the ``.c`` files and the internal headers live."""
        return self.root / "src"

    @property
    def include_dir(self) -> Path:
        """Where the public header lives."""
        return self.root / "include"

    def sources(self) -> list[Path]:
        """The ``.c`` files compiled into the module, sorted by name."""
        return sorted(p for p in self.src_dir.glob("*.c") if p.name not in self.excluded)

    def inputs(self) -> list[Path]:
        """Every file whose bytes go into the cache key."""
        headers = [*self.src_dir.glob("*.h"), *self.include_dir.glob("*.h")]
        return [*self.sources(), *sorted(headers)]


def default_tree() -> NativeTree:
    """The allocator shipped in this package (``native/`` of the source tree)."""
    return NativeTree(Path(__file__).resolve().parent)


def build_cache_dir() -> Path:
    """The directory holding one subdirectory per built (variant, key)."""
    return cache_root() / "build"


@dataclass(frozen=True, slots=True)
class BuildPlan:
    """Everything about a build that is known before compiling anything."""

    variant: Variant
    tree: NativeTree
    compiler: Compiler
    key: str
    directory: Path
    module_name: str

    @property
    def so_path(self) -> Path:
        """The extension module inside the cache entry."""
        return self.directory / (self.module_name + _ext_suffix())

    @property
    def built(self) -> bool:
        """Whether the cache entry is complete (its manifest is written last)."""
        return (self.directory / _MANIFEST).is_file() and self.so_path.is_file()

    @property
    def cflags(self) -> tuple[str, ...]:
        """Flags the allocator sources are compiled with."""
        return (*COMMON_CFLAGS, *self.variant.cflags)

    @property
    def ldflags(self) -> tuple[str, ...]:
        """Flags the extension module is linked with."""
        return ("-pthread", *self.variant.ldflags)


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What :func:`build` produced, or found in the cache (``cached``)."""

    variant: str
    module_name: str
    path: Path
    directory: Path
    key: str
    cached: bool
    seconds: float
    compiler: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    sources: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (paths as strings, tuples as lists)."""
        out = asdict(self)
        for name, value in out.items():
            if isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, tuple):
                out[name] = list(value)
        return out


def plan(
    variant: str = "release", *, tree: NativeTree | None = None, cache_dir: Path | None = None
) -> BuildPlan:
    """Resolve the variant, probe the compiler and compute the cache key; compile nothing."""
    spec = get_variant(variant)
    tree = tree or default_tree()
    sources = tree.sources()
    if not sources:
        raise BuildError(f"no C sources to build in {tree.src_dir}")
    compiler = find_compiler(spec)
    key = _cache_key(tree, spec, compiler)
    safe = re.sub(r"\W", "_", spec.name)
    directory = (cache_dir or build_cache_dir()) / f"{safe}-{key[:16]}"
    return BuildPlan(spec, tree, compiler, key, directory, f"_{tree.name}_{safe}_{key[:8]}")


def build(
    variant: str = "release",
    *,
    force: bool = False,
    progress: Progress | None = None,
    tree: NativeTree | None = None,
    cache_dir: Path | None = None,
) -> BuildResult:
    """Build the allocator as a cffi extension module, or find it in the cache.

    ``variant`` is one of :data:`hakfuzz.native.VARIANTS`; ``force`` rebuilds
    even on a cache hit; ``progress`` receives a line when compilation starts.
    ``tree`` and ``cache_dir`` default to the shipped sources and
    :func:`build_cache_dir`.  Raises :class:`BuildError` if compilation fails.
    """
    started = time.monotonic()
    the_plan = plan(variant, tree=tree, cache_dir=cache_dir)
    if the_plan.built and not force:
        return _result(the_plan, cached=True, started=started)
    the_plan.directory.parent.mkdir(parents=True, exist_ok=True)
    with _entry_lock(the_plan, progress):
        if the_plan.built and not force:  # another process built it while we waited
            return _result(the_plan, cached=True, started=started)
        if progress is not None:
            progress(f"building {the_plan.tree.name} ({the_plan.variant.name})...")
        _build_entry(the_plan)
    return _result(the_plan, cached=False, started=started)


def _result(the_plan: BuildPlan, *, cached: bool, started: float) -> BuildResult:
    return BuildResult(
        variant=the_plan.variant.name,
        module_name=the_plan.module_name,
        path=the_plan.so_path,
        directory=the_plan.directory,
        key=the_plan.key,
        cached=cached,
        seconds=round(time.monotonic() - started, 3),
        compiler=the_plan.compiler.banner,
        cflags=the_plan.cflags,
        ldflags=the_plan.ldflags,
        sources=tuple(p.name for p in the_plan.tree.sources()),
    )


def _ext_suffix() -> str:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return suffix if isinstance(suffix, str) else ".so"


def _cache_key(tree: NativeTree, variant: Variant, compiler: Compiler) -> str:
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(f"{label}:{len(data)}:".encode())
        digest.update(data)

    feed("format", _FORMAT.encode())
    flags = (variant.cflags, variant.wrapper_cflags, variant.ldflags, variant.runtime)
    feed("variant", repr((variant.name, COMMON_CFLAGS, flags)).encode())
    feed("compiler", repr((compiler.command, compiler.version_text)).encode())
    feed("python", f"{sys.version}|{_ext_suffix()}|cffi {cffi.__version__}".encode())
    feed("env", repr([os.environ.get(k, "") for k in ("CFLAGS", "LDFLAGS", "LDSHARED")]).encode())
    feed("cdef", (tree.cdef + "\0" + tree.preamble).encode())
    for path in tree.inputs():
        feed(f"file {path.relative_to(tree.root)}", path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _entry_lock(the_plan: BuildPlan, progress: Progress | None) -> Iterator[None]:
    lock_path = the_plan.directory.parent / f".{the_plan.directory.name}.lock"
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(
                    f"waiting for another build of {the_plan.tree.name} "
                    f"({the_plan.variant.name})..."
                )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ffi.compile() changes the process's working directory while it runs, so at
# most one thread of a process may be inside it.
_COMPILE_LOCK = threading.Lock()


def _build_entry(the_plan: BuildPlan) -> None:
    parent = the_plan.directory.parent
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{the_plan.directory.name}-", dir=parent))
    try:
        work = staging / "work"
        objects = _compile_objects(the_plan, work / "obj")
        built = _link_module(the_plan, objects, work)
        os.replace(built, staging / the_plan.so_path.name)
        for notes in (work / "obj").glob("*.gcno"):  # a line-coverage build: gcov reads these
            os.replace(notes, staging / notes.name)
        shutil.rmtree(work)
        manifest = _result(the_plan, cached=False, started=time.monotonic()).to_json()
        manifest.update(format=_FORMAT, built_at=time.time())
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _publish(staging, the_plan.directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _compile_objects(the_plan: BuildPlan, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True)
    tree = the_plan.tree
    base = [
        *the_plan.compiler.command,
        *the_plan.cflags,
        f"-I{tree.include_dir}",
        f"-I{tree.src_dir}",
    ]

    def compile_one(source: Path) -> Path:
        obj = out_dir / (source.stem + ".o")
        done = subprocess.run(
            [*base, "-c", str(source), "-o", str(obj)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(
                f"compiling {source} ({the_plan.variant.name}) with {compiler_setting()} "
                f"failed:\n{describe_failure(done)}"
            )
        if not obj.is_file():  # e.g. HAKFUZZ_CC=true: "success", and nothing to link
            raise BuildError(
                f"compiling {source} ({the_plan.variant.name}) with {compiler_setting()}: "
                f"the compiler exited 0 but wrote no {obj.name}"
            )
        return obj

    workers = max(1, min(len(tree.sources()), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(compile_one, tree.sources()))


def _link_module(the_plan: BuildPlan, objects: list[Path], work: Path) -> Path:
    tree = the_plan.tree
    ffi = cffi.FFI()
    try:
        ffi.cdef(tree.cdef)
    except cffi.CDefError as exc:
        raise BuildError(f"the cdef of {tree.name} does not parse: {exc}") from exc
    ffi.set_source(
        the_plan.module_name,
        tree.preamble,
        include_dirs=[str(tree.include_dir)],
        extra_objects=[str(o) for o in objects],
        extra_compile_args=list(the_plan.variant.wrapper_cflags),
        extra_link_args=list(the_plan.ldflags),
    )
    with _COMPILE_LOCK:
        try:
            return Path(ffi.compile(tmpdir=str(work), verbose=False))
        except (cffi.VerificationError, OSError) as exc:
            raise BuildError(
                f"building the cffi module {the_plan.module_name} failed "
                f"(compiler output above): {exc}"
            ) from exc


def _publish(staging: Path, final: Path) -> None:
    """Move the finished entry into place atomically, replacing an older one."""
    if final.exists():  # only with force=True, under the entry lock
        trash = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
        os.rename(final, trash / "entry")
        os.rename(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, final)
