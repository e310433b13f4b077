"""Mutants: the allocator with one real bug put back, built like any variant.

Each mutant is two files in ``native/mutants/``: ``NAME.patch``, a unified
diff over the clean sources (paths relative to ``native/``, applied with
``patch -p1``), and ``NAME.md``, the real-world failure it stands for (a
``# NAME — title`` line, then one paragraph).  :func:`mutant_tree` copies
``src/``, ``include/``, ``driver/`` and ``bench/`` of the shipped tree into the
cache, applies the patch to the copy and returns a :class:`NativeTree`, so
that::

    tree = mutant_tree("remote-push-nonatomic")
    hak = load("release", tree=tree)              # the cffi module
    driver = build_tool("hakdriver", "release", tree=tree)

build from it.  The cache entry is ``<cache>/mutants/<name>-<key>/`` where the
key hashes the patch and every copied source, so editing either makes a new
entry; entries are assembled in a private directory and published with one
``rename``, under an ``fcntl`` lock (parallel test workers are safe).

The variant spelling ``mutant:NAME`` (``hakfuzz build --variant``) is
resolved by :func:`resolve_variant`; ``mutant:NAME@VARIANT`` builds the same
patched tree with another variant's flags (``@debug``: with HAK_ASSERT, so
the broken invariant is named at the call that broke it).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz.native._build import NativeTree, default_tree
from hakfuzz.native._cache import cache_root, make_entry
from hakfuzz.native._toolchain import COMMON_CFLAGS, describe_failure, find_compiler, get_variant

MUTANTS_DIR = Path(__file__).resolve().parent / "mutants"
"""Where the shipped patches and their descriptions live."""

COPIED_DIRS: tuple[str, ...] = ("src", "include", "driver", "bench")
"""The parts of a tree a mutant copies (everything a module or a tool is built from)."""

MUTANT_PREFIX = "mutant:"
"""How a mutant is spelled where a variant is expected: ``mutant:NAME``."""

BUILD_SEPARATOR = "@"
"""``mutant:NAME@VARIANT``: the patched tree built with VARIANT's flags (default release)."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_TITLE = re.compile(r"^#\s*(?P<name>[\w-]+)\s*(?:\u2014|--?)\s*(?P<title>.+?)\s*$")


class MutantError(HakfuzzError):
    """A mutant's patch is missing, malformed or does not apply; the message names it."""


@dataclass(frozen=True, slots=True)
class Mutant:
    """One shipped mutant: its patch and what real failure it stands for."""

    name: str
    patch: Path
    title: str
    description: str
    files: tuple[str, ...]

    @property
    def ident(self) -> str:
        """``name`` as a C/Python identifier (module names cannot hold ``-``)."""
        return self.name.replace("-", "_")


def _patched_files(text: str) -> tuple[str, ...]:
    files = []
    for line in text.splitlines():
        if line.startswith("+++ "):
            path = line[4:].split("\t")[0].strip()
            files.append(path.split("/", 1)[1] if "/" in path else path)
    return tuple(files)


def _read_mutant(patch: Path) -> Mutant:
    name = patch.stem
    if not _NAME.match(name):
        raise MutantError(f"{patch}: a mutant's name must be lower-case words joined by '-'")
    text = patch.read_text(encoding="utf-8")
    files = _patched_files(text)
    if not files:
        raise MutantError(f"{patch}: not a unified diff (no '+++ ' line)")
    doc = patch.with_suffix(".md")
    if not doc.is_file():
        raise MutantError(f"{patch}: its description {doc.name} is missing")
    lines = doc.read_text(encoding="utf-8").strip().splitlines()
    head = _TITLE.match(lines[0]) if lines else None
    if head is None or head.group("name") != name:
        raise MutantError(f"{doc}: the first line must be '# {name} — <title>'")
    description = " ".join(line.strip() for line in lines[1:] if line.strip())
    return Mutant(name, patch, head.group("title"), description, files)


def mutants(directory: Path | None = None) -> dict[str, Mutant]:
    """Every mutant in ``directory`` (default :data:`MUTANTS_DIR`), by name, sorted."""
    root = directory or MUTANTS_DIR
    return {p.stem: _read_mutant(p) for p in sorted(root.glob("*.patch"))}


def get_mutant(name: str, directory: Path | None = None) -> Mutant:
    """The mutant called ``name``; a usage error naming the choices otherwise."""
    known = mutants(directory)
    if name not in known:
        raise UsageError(f"unknown mutant {name!r} (choose from {', '.join(known) or 'none'})")
    return known[name]


def _source_files(source: NativeTree) -> list[Path]:
    files: list[Path] = []
    for part in COPIED_DIRS:
        base = source.root / part
        if base.is_dir():
            files.extend(p for p in sorted(base.rglob("*")) if p.is_file() and _copied(p))
    return files


def _copied(path: Path) -> bool:
    return "__pycache__" not in path.parts and path.suffix not in (".o", ".so", ".pyc")


def mutant_key(mutant: Mutant, source: NativeTree | None = None) -> str:
    """The hash of the patch and of every source file the mutant copies (16 hex digits)."""
    source = source or default_tree()
    digest = hashlib.sha256(b"hakfuzz-mutant/1\0")
    digest.update(mutant.patch.read_bytes() + b"\0")
    for path in _source_files(source):
        digest.update(str(path.relative_to(source.root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run_patch(mutant: Mutant, directory: Path, *, dry_run: bool) -> None:
    command = [
        "patch",
        "-p1",
        "--batch",
        "--forward",
        "--no-backup-if-mismatch",
        "--silent",
        "-d",
        str(directory),
        "-i",
        str(mutant.patch),
    ]
    if dry_run:
        command.append("--dry-run")
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError:
        raise MutantError(
            "the `patch` program is missing; install it (apt-get install patch)"
        ) from None
    if done.returncode != 0:
        words = (done.stdout + done.stderr).strip()
        raise MutantError(
            f"mutant {mutant.name}: {mutant.patch} does not apply to the sources "
            f"in {directory}:\n{words}"
        )


def check_applies(name: str, source: NativeTree | None = None) -> Mutant:
    """``patch --dry-run`` of the mutant against ``source``; raises :class:`MutantError`."""
    mutant = get_mutant(name)
    _run_patch(mutant, (source or default_tree()).root, dry_run=True)
    return mutant


def mutant_tree(
    name: str,
    *,
    source: NativeTree | None = None,
    cache_dir: Path | None = None,
    directory: Path | None = None,
) -> NativeTree:
    """A patched copy of ``source`` (default: the shipped tree), from the cache or made now.

    ``directory`` holds the patch (default :data:`MUTANTS_DIR`).
    """
    mutant = get_mutant(name, directory)
    source = source or default_tree()
    key = mutant_key(mutant, source)
    tree_name = f"mutant_{mutant.ident}"

    def fill(staging: Path) -> None:
        for part in COPIED_DIRS:
            if (source.root / part).is_dir():
                shutil.copytree(
                    source.root / part,
                    staging / part,
                    ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.so", "*.pyc"),
                )
        _run_patch(mutant, staging, dry_run=False)
        (staging / ".applied").write_text(f"{mutant.patch}\n")

    root = (cache_dir or cache_root()) / "mutants"
    entry = make_entry(root, f"{mutant.name}-{key}", lambda e: (e / ".applied").is_file(), fill)
    return NativeTree(root=entry, name=tree_name)


def compile_check(name: str, variant: str = "release", *, cache_dir: Path | None = None) -> None:
    """Compile the ``.c`` files the patch touches with the variant's flags.

    All sources are compiled if the patch touches a header; ``-Werror`` is
    on, as in every build.  Raises :class:`MutantError` naming the file.
    """
    mutant = get_mutant(name)
    tree = mutant_tree(name, cache_dir=cache_dir)
    touched = [tree.root / f for f in mutant.files]
    if any(p.suffix == ".h" for p in touched):
        sources = tree.sources()
    else:
        sources = [p for p in touched if p.suffix == ".c" and p.parent == tree.src_dir]
    compiler = find_compiler()
    flags = [*COMMON_CFLAGS, *get_variant(variant).cflags]
    for source in sources:
        done = subprocess.run(
            [
                *compiler.command,
                *flags,
                f"-I{tree.include_dir}",
                f"-I{tree.src_dir}",
                "-c",
                str(source),
                "-o",
                os.devnull,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise MutantError(
                f"mutant {name}: {source.name} does not compile ({variant}):\n"
                f"{describe_failure(done)}"
            )


def split_build(text: str) -> tuple[str, str]:
    """``NAME@VARIANT`` -> (``NAME``, ``VARIANT``); ``NAME`` -> (``NAME``, ``release``).

    An unknown VARIANT is an error naming the choices.
    """
    name, separator, build = text.partition(BUILD_SEPARATOR)
    if not separator:
        return name, "release"
    get_variant(build)
    return name, build


def resolve_variant(text: str) -> tuple[str, NativeTree | None]:
    """``release`` -> (``release``, None); ``mutant:NAME[@VARIANT]`` -> (VARIANT, its tree)."""
    if text.startswith(MUTANT_PREFIX):
        name, build = split_build(text[len(MUTANT_PREFIX) :])
        return build, mutant_tree(name)
    get_variant(text)
    return text, None


__all__ = [
    "BUILD_SEPARATOR",
    "COPIED_DIRS",
    "MUTANTS_DIR",
    "MUTANT_PREFIX",
    "Mutant",
    "MutantError",
    "check_applies",
    "compile_check",
    "get_mutant",
    "mutant_key",
    "mutant_tree",
    "mutants",
    "resolve_variant",
    "split_build",
]
