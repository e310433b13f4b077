"""Build variants, the C compiler and the sanitizer runtimes.

A *variant* is a named set of compiler and linker flags; the allocator sources
are always compiled with :data:`COMMON_CFLAGS` first.  The compiler is
``$HAKFUZZ_CC``, else ``$CC``, else ``gcc``; its full version text is part of
the build cache key.  Sanitizer variants need their runtime preloaded into
any process that loads them: :func:`sanitizer_env` gives the variables.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from dataclasses import dataclass

from hakfuzz._errors import HakfuzzError, UsageError

COMMON_CFLAGS: tuple[str, ...] = ("-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-fPIC")
"""Flags every allocator source is compiled with, whatever the variant."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of building the allocator.

    ``cflags`` apply to the allocator sources (after :data:`COMMON_CFLAGS`);
    ``wrapper_cflags`` to the cffi-generated wrapper, which is not held to
    ``-Werror``; ``ldflags`` to the link of the extension module.  ``runtime``
    names the sanitizer runtime (``asan``, ``tsan``) that must be preloaded
    into any process that loads the module.
    """

    name: str
    cflags: tuple[str, ...]
    wrapper_cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    runtime: str | None = None
    summary: str = ""
    compiler: str | None = None  # a compiler this variant needs (e.g. clang), else the default


_ASAN = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer")
_TSAN = ("-fsanitize=thread",)

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("release", ("-O2", "-g", "-DNDEBUG"), summary="optimised, asserts off"),
        Variant(
            "debug",
            # HAK_DEBUG compiles in HAK_ASSERT (native/src/internal.h): the
            # invariants next to the fields, checked where they change.
            # Python's own CFLAGS carry -DNDEBUG; -UNDEBUG keeps assert() on too.
            ("-O0", "-g", "-UNDEBUG", "-DHAK_DEBUG=1", "-DHAK_DEFAULT_CHECKED=1"),
            summary="HAK_ASSERT invariants on, checked mode by default",
        ),
        Variant(
            "asan",
            ("-O1", "-g", *_ASAN),
            wrapper_cflags=("-g", *_ASAN),
            ldflags=_ASAN,
            runtime="asan",
            summary="AddressSanitizer + UBSan; needs the ASan runtime preloaded",
        ),
        Variant(
            "coverage",
            # libFuzzer's inline 8-bit counters and comparison hooks; the
            # symbols resolve against atheris's libFuzzer (loaded RTLD_GLOBAL).
            # fuzzer-no-link's counters, PC table and comparison hooks, but not
            # its stack-depth tracking (__sancov_lowest_stack is not exported
            # by the libFuzzer atheris ships).
            ("-O1", "-g", "-fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp"),
            wrapper_cflags=("-g",),
            summary="clang, -fsanitize=fuzzer-no-link: native edges for atheris/libFuzzer",
            compiler="clang",
        ),
        Variant(
            "gcov",
            # Line counters for `hakfuzz coverage`.  Atomic updates keep the
            # driver's threads from losing counts; -u pulls gcov's dump and
            # reset into the module, so a forked child that leaves by _exit
            # can still write its counters.  They go to $GCOV_PREFIX.
            ("-O0", "-g", "-DNDEBUG", "--coverage", "-fprofile-update=atomic"),
            ldflags=("--coverage", "-Wl,-u,__gcov_dump", "-Wl,-u,__gcov_reset"),
            summary="gcc --coverage -O0: line counters for `hakfuzz coverage` (to $GCOV_PREFIX)",
            compiler="gcc",  # its notes must match the gcov that reads them
        ),
        Variant(
            "tsan",
            ("-O1", "-g", *_TSAN),
            wrapper_cflags=("-g", *_TSAN),
            ldflags=_TSAN,
            runtime="tsan",
            summary="ThreadSanitizer; needs the TSan runtime preloaded",
        ),
    )
}
"""Every variant ``hakfuzz build --variant`` accepts, by name."""

DEFAULT_VARIANT = "release"


def get_variant(name: str) -> Variant:
    """The variant called ``name``; a :class:`HakfuzzError` naming the choices otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        choices = ", ".join(VARIANTS)
        raise HakfuzzError(f"unknown build variant {name!r} (choose from {choices})") from None


def variant_from_env() -> str:
    """``$HAKFUZZ_VARIANT`` if set and non-empty, else ``release``.

    A value that names no variant is a :class:`UsageError` blaming the
    variable: the user gave no ``--variant``, so an error about one would
    send them looking for a flag that is not there.  ``mutant:NAME`` passes
    here; the mutant's name is checked where it is built.
    """
    text = os.environ.get("HAKFUZZ_VARIANT") or DEFAULT_VARIANT
    if text not in VARIANTS and not text.startswith("mutant:"):
        raise UsageError(
            f"HAKFUZZ_VARIANT={text}: unknown build variant (choose from "
            f"{', '.join(VARIANTS)}, mutant:NAME; or unset it for {DEFAULT_VARIANT})"
        )
    return text


@dataclass(frozen=True, slots=True)
class Compiler:
    """The C compiler: its command line prefix and what it says about itself."""

    command: tuple[str, ...]
    version_text: str  # full `--version` output, part of the cache key
    version: str  # e.g. "12.2.0"

    @property
    def banner(self) -> str:
        """The first line of ``--version``, e.g. ``gcc (Debian 12.2.0-14) 12.2.0``."""
        return self.version_text.splitlines()[0] if self.version_text else " ".join(self.command)


class CompilerError(UsageError):
    """The configured C compiler cannot be run at all: fix the setting (exit status 2)."""


def compiler_setting() -> str:
    """Where the compiler command comes from, for messages: ``HAKFUZZ_CC=...``, ``CC=...``."""
    for name in ("HAKFUZZ_CC", "CC"):
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return "the default compiler, gcc"


def compiler_command() -> tuple[str, ...]:
    """The compiler command: ``$HAKFUZZ_CC``, else ``$CC``, else ``gcc``."""
    text = os.environ.get("HAKFUZZ_CC") or os.environ.get("CC") or "gcc"
    try:
        command = tuple(shlex.split(text))
    except ValueError as exc:  # e.g. an unclosed quote
        raise CompilerError(f"{compiler_setting()}: not a command line ({exc})") from None
    if not command:
        raise CompilerError(f"{compiler_setting()}: no command in it")
    return command


@functools.lru_cache(maxsize=8)
def _probe(command: tuple[str, ...], setting: str) -> Compiler:
    shown = " ".join(command)
    try:
        text = _run(command, "--version")
        version = _run(command, "-dumpfullversion", "-dumpversion").strip()
    except FileNotFoundError:
        raise CompilerError(
            f"C compiler {shown!r} ({setting}) not found; install gcc (apt-get install gcc) "
            "or set CC / HAKFUZZ_CC"
        ) from None
    except OSError as exc:
        raise CompilerError(
            f"C compiler {shown!r} ({setting}) cannot be run: {exc.strerror or exc}"
        ) from None
    except subprocess.TimeoutExpired:
        raise CompilerError(f"C compiler {shown!r} ({setting}) did not answer --version") from None
    except HakfuzzError as exc:
        raise CompilerError(f"C compiler {shown!r} ({setting}) does not work: {exc}") from None
    if not text.strip():
        raise CompilerError(
            f"C compiler {shown!r} ({setting}) printed nothing for --version; "
            "set HAKFUZZ_CC to a C compiler (gcc, clang)"
        )
    return Compiler(command, text.strip(), version)


def find_compiler(variant: Variant | None = None) -> Compiler:
    """Probe the compiler ``variant`` requires, else :func:`compiler_command`'s (cached)."""
    if variant is not None and variant.compiler is not None:
        return _probe((variant.compiler,), f"needed by the {variant.name} variant")
    return _probe(compiler_command(), compiler_setting())


def describe_failure(done: subprocess.CompletedProcess[str]) -> str:
    """What a failed command said on stderr, or, if nothing, how it ended.

    A compiler that fails without a word (``HAKFUZZ_CC=false``) must not
    produce an error message with an empty reason: then the exit status is
    the reason, with the first line of stdout if there was one.
    """
    said = (done.stderr or "").strip()
    if said:
        return said
    if done.returncode < 0:
        how = f"was killed by signal {-done.returncode}"
    else:
        how = f"exited with status {done.returncode}"
    out = (done.stdout or "").strip()
    if not out:
        return f"{how} and printed nothing"
    return f"{how} and printed nothing on stderr (stdout: {out.splitlines()[0][:200]})"


def runtime_library(runtime: str, compiler: Compiler | None = None) -> str:
    """Absolute path of the shared sanitizer runtime ``lib<runtime>.so`` of the compiler."""
    compiler = compiler or find_compiler()
    name = f"lib{runtime}.so"
    path = _run(compiler.command, f"-print-file-name={name}").strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise HakfuzzError(
            f"{compiler.banner} has no {name}; install the sanitizer runtime "
            f"(e.g. apt-get install lib{runtime}8) or use a compiler that ships it"
        )
    return os.path.realpath(path)


def _run(command: tuple[str, ...], *args: str) -> str:
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        shown = " ".join([*command, *args])
        raise HakfuzzError(f"`{shown}` failed: {describe_failure(done)}")
    return done.stdout


_RUNTIME_OPTIONS = {
    # Python itself "leaks" by design at exit; leak reports would drown the rest.
    "asan": {
        "ASAN_OPTIONS": "detect_leaks=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    },
    "tsan": {"TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"},
}


def sanitizer_env(variant: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables a process needs to load ``variant``'s module (empty if none needed).

    ``LD_PRELOAD`` gets the runtime in front of what ``base`` (default: this
    process's environment) already preloads; option variables keep any
    settings from ``base``, which come last and so win.
    """
    runtime = get_variant(variant).runtime
    if runtime is None:
        return {}
    base = dict(os.environ) if base is None else base
    library = runtime_library(runtime)
    preload = [library, *(p for p in base.get("LD_PRELOAD", "").split() if p != library)]
    env = {"LD_PRELOAD": " ".join(preload)}
    for name, ours in _RUNTIME_OPTIONS[runtime].items():
        theirs = base.get(name, "")
        env[name] = f"{ours}:{theirs}" if theirs else ours
    return env


def asan_env() -> dict[str, str]:
    """:func:`sanitizer_env` of the ``asan`` variant: ``LD_PRELOAD`` of libasan and options."""
    return sanitizer_env("asan")


def tsan_env() -> dict[str, str]:
    """:func:`sanitizer_env` of the ``tsan`` variant: ``LD_PRELOAD`` of libtsan and options."""
    return sanitizer_env("tsan")
