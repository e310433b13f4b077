"""What an allocator under test is: a name or a shared library given by path, and proof it served.

A *target* is the allocator a run is meant to use.  ``--allocator`` accepts

- ``hakmem``: our ``libhakmem.so`` (built for the variant), through ``LD_PRELOAD``;
- ``glibc``: nothing preloaded; the C library's own ``malloc``;
- a peer, ``jemalloc``, ``mimalloc`` or ``tcmalloc``: the shared library of a
  Debian package (:data:`PEERS`), through ``LD_PRELOAD``;
- a path to any shared library that replaces ``malloc`` (an ``LD_PRELOAD``
  library), e.g. your own allocator's build.

:func:`resolve_target` turns that text into a :class:`Target` record (name,
kind, library path, its real path and the sha256 of the file) and proves,
before any run, that the library loads and replaces ``malloc``.  The proof
runs in a child process, never in hakfuzz's own: ``native/bench/servedby.c``
started with ``LD_PRELOAD=<library>`` asks ``dladdr`` which object defines
the ``malloc`` the process binds, and ``dlopen``'s the library itself to get
the reason in words when it cannot be loaded (the dynamic linker only warns,
and goes on with glibc).  Anything wrong is a :class:`TargetError`: one line
naming the path and the reason, exit status 2.

:func:`served_by` is the one check that a run was served by its target: the
object a run's ``dladdr`` named for ``malloc`` must be the target's real
path.  :func:`child_env` is the one way a child gets its target: a copy of
the environment with any inherited ``LD_PRELOAD`` removed and the target's
set.  hakfuzz never writes ``LD_PRELOAD`` into its own environment, so its
own process, compilers and every unrelated child run without the target.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hakfuzz._errors import HakfuzzError, UsageError
from hakfuzz.native._tools import build_tool

PRELOAD_VARIANTS: tuple[str, ...] = ("release", "debug")
"""Variants whose ``libhakmem.so`` can be preloaded: a sanitizer's runtime
defines ``malloc`` itself and, preloaded first as it must be, would shadow ours."""

_PROBE_TIMEOUT_S = 30.0


class TargetError(UsageError):
    """A target that cannot serve a run: the path and the reason, exit status 2."""


class TargetKind(Enum):
    """Where a target's ``malloc`` comes from."""

    HAKMEM = "hakmem"  # our libhakmem.so, preloaded
    GLIBC = "glibc"  # nothing preloaded
    PEER = "peer"  # a Debian package's library, preloaded
    PATH = "path"  # a library the user named by path, preloaded


# ---- peers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """A peer allocator shipped by a Debian package."""

    name: str
    package: str
    patterns: tuple[str, ...]  # library file names, most specific first


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("jemalloc", "libjemalloc2", ("libjemalloc.so.2", "libjemalloc.so*")),
        Peer("mimalloc", "libmimalloc2.0", ("libmimalloc.so.2", "libmimalloc.so.2.*",
                                            "libmimalloc.so*")),
        Peer("tcmalloc", "libtcmalloc-minimal4", ("libtcmalloc_minimal.so.4",
                                                  "libtcmalloc_minimal.so.4.*")),
    )
}
"""Peers by name."""

NAMES: tuple[str, ...] = ("hakmem", "glibc", *PEERS)
"""Every target that has a name; anything else is a path."""

_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
             "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu")


def _from_dpkg(peer: Peer) -> str | None:
    if shutil.which("dpkg") is None:
        return None
    done = subprocess.run(["dpkg", "-L", peer.package], capture_output=True, text=True,
                          check=False, timeout=30)
    if done.returncode != 0:
        return None
    files = [line.strip() for line in done.stdout.splitlines()]
    for pattern in peer.patterns:
        for path in files:
            if fnmatch.fnmatch(os.path.basename(path), pattern) and os.path.isfile(path):
                return path
    return None


def _from_glob(peer: Peer) -> str | None:
    for pattern in peer.patterns:
        for directory in _LIB_DIRS:
            hits = sorted(glob.glob(os.path.join(directory, pattern)))
            hits = [h for h in hits if "debug" not in os.path.basename(h) and os.path.isfile(h)]
            if hits:
                return hits[0]
    return None


def find_library(name: str) -> str:
    """Absolute path of peer ``name``'s shared library, or an error naming its package."""
    peer = PEERS.get(name)
    if peer is None:
        raise HakfuzzError(f"{name!r} is not a peer allocator (peers: {', '.join(PEERS)})")
    path = _from_dpkg(peer) or _from_glob(peer)
    if path is None:
        raise HakfuzzError(f"{name} is not installed: install the Debian package {peer.package} "
                           f"(apt-get install {peer.package})")
    return os.path.realpath(path)


def available(names: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Split ``names`` into those usable here and ``{name: why not}`` for missing peers."""
    usable: list[str] = []
    missing: dict[str, str] = {}
    for name in names:
        if name in PEERS:
            try:
                find_library(name)
            except HakfuzzError as exc:
                missing[name] = str(exc)
                continue
        usable.append(name)
    return tuple(usable), missing


# ---- the record -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """An allocator a run is meant to use, identified down to the bytes of its library."""

    name: str  # what tables show: hakmem, glibc, a peer's name, or a path's file name
    kind: TargetKind
    library: str  # as given or found; for glibc, the C library that serves malloc
    real_path: str  # os.path.realpath(library): what dladdr must name
    sha256: str  # of the library file, so results say which build they measured

    @property
    def preloaded(self) -> bool:
        """Runs get ``LD_PRELOAD=<real_path>`` (everything but glibc)."""
        return self.kind is not TargetKind.GLIBC

    def describe(self) -> str:
        """E.g. ``mimalloc: /usr/lib/.../libmimalloc.so.2.0 (sha256 4f0c1d2e3b4a)``."""
        return f"{self.name}: {self.real_path} (sha256 {self.sha256[:12]})"

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"name": self.name, "kind": self.kind.value, "library": self.library,
                "real_path": self.real_path, "sha256": self.sha256}


def preload_vars(target: Target | None) -> dict[str, str]:
    """What a child's environment needs for ``target``: ``LD_PRELOAD``, or nothing for glibc."""
    if target is None or not target.preloaded:
        return {}
    return {"LD_PRELOAD": target.real_path}


def child_env(target: Target | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's environment: ``base`` (default: ours) without ``LD_PRELOAD``, plus the target's.

    ``None`` or glibc: nothing preloaded.  An ``LD_PRELOAD`` inherited from the
    user is dropped so it cannot serve a run meant for another allocator (the
    glibc baseline above all); :func:`inherited_preload_notice` says so.
    """
    env = dict(os.environ if base is None else base)
    env.pop("LD_PRELOAD", None)
    env.update(preload_vars(target))
    return env


def inherited_preload_notice(prog: str) -> str | None:
    """One line for the user when ``LD_PRELOAD`` is set in our environment, else None."""
    inherited = os.environ.get("LD_PRELOAD", "").strip()
    if not inherited:
        return None
    return (f"{prog}: note: LD_PRELOAD={inherited} from your environment is not passed to the "
            "runs; each run preloads only its own allocator (give that library to --allocator "
            "to measure it)")


# ---- the probe ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """What ``servedby`` saw in a child with a given environment."""

    malloc_from: str | None  # real path of the object defining the bound malloc
    exports_from: str | None  # where dlsym(library, "malloc") landed ("-": nowhere)
    load_error: str | None  # dlerror's reason when the library cannot be dlopen'ed
    status: str  # "exit 0", "killed by SIGSEGV", "timed out"
    stderr: str


def _status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def probe(env: Mapping[str, str], library: str | None = None) -> Probe:
    """Run ``servedby [library]`` with exactly ``env`` and read its answer."""
    argv = [str(build_tool("servedby")), *([library] if library is not None else [])]
    try:
        done = subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                              errors="replace", timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Probe(None, None, None, "timed out", "")
    facts: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in ("malloc-from", "exports-from", "load-error") and key not in facts:
            facts[key] = value.strip()
    return Probe(facts.get("malloc-from"), facts.get("exports-from"), facts.get("load-error"),
                 _status(done.returncode), done.stderr)


def _elf_problem(path: str) -> str | None:
    """Why ``path`` is not a shared library, judged from its ELF header; None if it may be."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(18)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if header[:4] != b"\x7fELF":
        return "not a shared library (not an ELF file)"
    if len(header) < 18:
        return "not a shared library (a truncated ELF file)"
    e_type = int.from_bytes(header[16:18], "little" if header[5] == 1 else "big")
    if e_type == 1:
        return "not a shared library (an object file: link it with -shared)"
    if e_type == 2:
        return "not a shared library (an executable)"
    if e_type != 3:
        return f"not a shared library (ELF type {e_type})"
    return None


def sha256_of(path: str) -> str:
    """The sha256 of the file at ``path`` (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_library(text: str, path: str) -> str:
    """The real path of ``path`` once it is proven to load and replace malloc."""
    if not os.path.lexists(path):
        raise TargetError(f"{text}: no such file")
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise TargetError(f"{text}: a broken symbolic link (to {real})")
    if not os.path.isfile(real):
        kind = "a directory" if os.path.isdir(real) else "not a regular file"
        raise TargetError(f"{text}: not a shared library ({kind})")
    problem = _elf_problem(real)
    if problem is not None:
        raise TargetError(f"{text}: {problem}")
    if any(c in real for c in " :"):
        raise TargetError(f"{text}: cannot be preloaded from {real!r} (LD_PRELOAD splits paths "
                          "at spaces and colons; copy or link the library to a plain path)")
    seen = probe(child_env(None) | {"LD_PRELOAD": real}, real)
    if seen.status != "exit 0":
        # The dynamic linker stops a program whose preload lacks a dependency; a dlopen
        # in a clean process then has the reason in words.
        clean = probe(child_env(None), real)
        if clean.status == "exit 0" and clean.load_error is not None:
            raise TargetError(f"{text}: cannot be loaded ({_reason(clean.load_error, real)})")
        raise TargetError(f"{text}: the process that loads it {_crash_words(seen.status)}")
    if seen.load_error is not None:
        raise TargetError(f"{text}: cannot be loaded ({_reason(seen.load_error, real)})")
    if seen.exports_from != real:
        where = "" if seen.exports_from in (None, "-") else \
            f"; the lookup lands in {seen.exports_from}, a dependency"
        raise TargetError(f"{text}: does not export malloc{where}")
    if seen.malloc_from != real:
        raise TargetError(f"{text}: does not replace malloc: preloaded, malloc still resolves "
                          f"to {seen.malloc_from or 'nothing'}")
    return real


def _reason(load_error: str, real: str) -> str:
    """The words of dlerror, without the path the message already names."""
    return load_error.removeprefix(f"{real}: ")


def _crash_words(status: str) -> str:
    return "timed out" if status == "timed out" else f"failed ({status})"


# ---- resolving --------------------------------------------------------------------------


def looks_like_path(text: str) -> bool:
    """``text`` is meant as a file, not a name: it has a slash, ``.so``, or exists."""
    return "/" in text or ".so" in text or os.path.lexists(text)


def resolve_for(prog: str, text: str, variant: str = "release") -> Target:
    """:func:`resolve_target` for a command's ``--allocator``.

    Any problem is a usage error naming ``prog`` and the flag (one line, exit status 2).
    """
    try:
        return resolve_target(text, variant)
    except UsageError as exc:  # TargetError included: it names the path already
        raise UsageError(f"{prog}: --allocator {exc}") from None
    except HakfuzzError as exc:  # a peer that is not installed
        raise UsageError(f"{prog}: --allocator {text}: {exc}") from None


def resolve_target(text: str, variant: str = "release") -> Target:
    """The target ``text`` names (a name of :data:`NAMES` or a path), proven to serve malloc.

    ``variant`` is the ``libhakmem.so`` build for ``hakmem``.  A bad path or a
    library that cannot serve is a :class:`TargetError`; a peer that is not
    installed a :class:`HakfuzzError` naming its package.
    """
    if text == "glibc":
        seen = probe(child_env(None))
        if seen.malloc_from in (None, "-"):
            raise HakfuzzError(f"glibc: cannot tell which object serves malloc ({seen.status}: "
                               f"{seen.stderr.strip()[:200]})")
        libc = str(seen.malloc_from)
        return Target("glibc", TargetKind.GLIBC, libc, libc, sha256_of(libc))
    if text == "hakmem":
        if variant not in PRELOAD_VARIANTS:
            raise TargetError(f"hakmem: variant {variant!r} cannot be preloaded (a sanitizer "
                              "runtime defines malloc itself and would shadow hakmem's); "
                              f"choose from {', '.join(PRELOAD_VARIANTS)}")

        library = str(build_tool("libhakmem.so", variant))
        return _target("hakmem", TargetKind.HAKMEM, text, library)
    if text in PEERS:
        return _target(text, TargetKind.PEER, text, find_library(text))
    if not looks_like_path(text):
        raise TargetError(f"unknown allocator {text!r} (choose from {', '.join(NAMES)}, or give "
                          "the path of a shared library that replaces malloc)")
    path = os.path.abspath(os.path.expanduser(text))
    return _target(os.path.basename(path) or text, TargetKind.PATH, text, path)


def _target(name: str, kind: TargetKind, text: str, library: str) -> Target:
    real = _check_library(text, library)
    return Target(name, kind, library, real, sha256_of(real))


# ---- the check ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServedBy:
    """Whether the object a run named for ``malloc`` is its target's library."""

    target: Target
    reported: str | None  # as the run printed it (dladdr's dli_fname), None if it did not
    real_path: str | None  # its real path
    problem: str | None  # None when the target served the run

    @property
    def ok(self) -> bool:
        """The target served the run."""
        return self.problem is None


def served_by(target: Target, reported: str | None) -> ServedBy:
    """Judge ``reported`` (what ``dladdr`` named for a run's ``malloc``) against ``target``."""
    if reported is None or reported in ("", "-", "?"):
        return ServedBy(target, reported, None,
                        "the run did not say which object its malloc came from")
    real = os.path.realpath(reported)
    if real == target.real_path:
        return ServedBy(target, reported, real, None)
    return ServedBy(target, reported, real,
                    f"malloc resolved to {real}, not {target.name}'s {target.real_path}")


def check_env(target: Target, env: Mapping[str, str]) -> ServedBy:
    """Would a program started with ``env`` be served by ``target``?  Asks ``servedby``."""
    seen = probe(env)
    return served_by(target, seen.malloc_from)
