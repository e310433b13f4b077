"""Real programs under an allocator (``LD_PRELOAD``), compared with glibc.

:func:`run_program` runs a command with its target's library preloaded
(``libhakmem.so`` by default, a peer, or any library by path: see
:mod:`hakfuzz.targets`), or with nothing preloaded for the glibc side, and
``HAKMEM_STATS=1``.  Each run is checked twice over:

- the environment it got serves ``malloc`` from the target's library:
  ``servedby`` (``dladdr`` of ``malloc``) run with exactly that environment
  (:func:`hakfuzz.targets.check_env`).  A program that ignores
  ``LD_PRELOAD`` (statically linked, or setuid) escapes this check;
- for hakmem, every process of the command that exits prints hakmem's
  counters on stderr: one whose counters show SuperSlabs created was really
  served by hakmem.

:func:`compare_program` runs the command under glibc and under the target
and lists what differs: exit status, stdout and, on request, stderr (without
the stats lines).  An ``LD_PRELOAD`` inherited from the user reaches neither.

A command that cannot be started is refused before anything is built, like
a shell would: :class:`CommandNotFound` (exit status 127) or
:class:`CommandNotExecutable` (126), naming the command.

Only builds without a sanitizer can be preloaded: a sanitizer's runtime
defines ``malloc`` itself and, preloaded first as it must be, would shadow
ours.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hakfuzz._errors import HakfuzzError
from hakfuzz._process import (
    HakmemStats,
    Measured,
    parse_all_hakmem_stats,
    run_measured,
    strip_hakmem_stats,
)
from hakfuzz.native._tools import build_tool
from hakfuzz.targets import (
    PRELOAD_VARIANTS,
    ServedBy,
    Target,
    TargetKind,
    check_env,
    child_env,
    resolve_target,
)


class CommandNotFound(HakfuzzError):
    """The command does not exist (a shell's ``command not found``): exit status 127."""

    exit_code = 127


class CommandNotExecutable(HakfuzzError):
    """The command exists but cannot be executed (a shell's 126)."""

    exit_code = 126


def check_command(name: str, *, env: Mapping[str, str] | None = None,
                  cwd: str | os.PathLike[str] | None = None,
                  prog: str = "hakfuzz preload") -> None:
    """Refuse ``name`` as a shell would if it cannot be started; the message starts ``prog:``.

    A name with a slash is a path (relative to ``cwd``); a bare name is looked
    up in ``env``'s ``PATH`` (default: ours), as the run itself will.
    """
    if "/" not in name:
        path = (os.environ if env is None else env).get("PATH", os.defpath)
        if shutil.which(name, path=path) is None:
            raise CommandNotFound(f"{prog}: {name}: command not found")
        return
    target = os.path.join(cwd or os.curdir, name)
    if not os.path.exists(target):
        raise CommandNotFound(f"{prog}: {name}: command not found (no such file)")
    if os.path.isdir(target):
        raise CommandNotExecutable(f"{prog}: {name}: cannot execute (it is a directory)")
    if not os.access(target, os.X_OK):
        raise CommandNotExecutable(f"{prog}: {name}: cannot execute (Permission denied)")


def spawn_error(name: str, exc: OSError, prog: str = "hakfuzz preload") -> HakfuzzError:
    """The shell-like error for a command that failed to start with ``exc``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        return CommandNotFound(f"{prog}: {name}: command not found ({reason})")
    return CommandNotExecutable(f"{prog}: {name}: cannot execute ({reason})")


def library(variant: str = "release") -> str:
    """Path of ``libhakmem.so`` of ``variant`` (built on first use)."""
    if variant not in PRELOAD_VARIANTS:
        raise HakfuzzError(f"variant {variant!r} cannot be preloaded (a sanitizer runtime would "
                           f"shadow malloc); choose from {', '.join(PRELOAD_VARIANTS)}")

    return str(build_tool("libhakmem.so", variant).resolve())


def target_of(allocator: str | Target, variant: str = "release") -> Target:
    """``allocator`` as a :class:`Target` (a name or path is resolved and proven)."""
    if isinstance(allocator, Target):
        return allocator
    if allocator == "hakmem":
        library(variant)  # the variant's own words when it cannot be preloaded
    return resolve_target(allocator, variant)


def preload_env(allocator: str | Target, variant: str = "release",
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a run under ``allocator``: ``base`` (default: ours), its preload only."""
    env = child_env(target_of(allocator, variant), base)
    env["HAKMEM_STATS"] = "1"
    return env


@dataclass(frozen=True, slots=True)
class PreloadRun:
    """One run of a real program."""

    target: Target
    measured: Measured
    stats: tuple[HakmemStats, ...]  # one block per process of the command that exited
    check: ServedBy  # does the run's environment serve malloc from the target?

    @property
    def allocator(self) -> str:
        """The target's name."""
        return self.target.name

    @property
    def served(self) -> bool:
        """The environment served malloc from the target and, for hakmem, it created SuperSlabs."""
        if not self.check.ok:
            return False
        return self.target.kind is not TargetKind.HAKMEM or any(s.ss_created > 0
                                                                for s in self.stats)

    @property
    def ss_created(self) -> int:
        """SuperSlabs created over every process of the command."""
        return sum(s.ss_created for s in self.stats)

    @property
    def stdout(self) -> str:
        """What the command printed on stdout."""
        return self.measured.stdout

    @property
    def stderr(self) -> str:
        """Stderr without the stats lines."""
        return strip_hakmem_stats(self.measured.stderr)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (output abbreviated)."""
        return {"allocator": self.allocator, "target": self.target.as_json(),
                "status": self.measured.describe_status(),
                "returncode": self.measured.returncode,
                "seconds": round(self.measured.wall_seconds, 3),
                # ru_maxrss: never below the launching Python's (see run_measured)
                "maxrss_kb": self.measured.maxrss_kb, "processes_with_stats": len(self.stats),
                "ss_created": self.ss_created, "served_by": self.check.real_path,
                "served": self.served, "problem": self.check.problem,
                "stdout_bytes": len(self.stdout), "stderr_tail": self.stderr[-400:]}


def run_program(argv: Sequence[str], *, allocator: str | Target = "hakmem",
                variant: str = "release", env: Mapping[str, str] | None = None,
                stdin: bytes | None = None, cwd: str | os.PathLike[str] | None = None,
                timeout: float = 120.0) -> PreloadRun:
    """Run ``argv`` under ``allocator`` (a name, a path or a Target); ``env`` is the base."""
    if not argv:
        raise HakfuzzError("no command to run")
    check_command(argv[0], env=env, cwd=cwd)  # before building libhakmem.so
    target = target_of(allocator, variant)
    run_env = preload_env(target, variant, env)
    check = check_env(target, {k: v for k, v in run_env.items() if k != "HAKMEM_STATS"})
    done = run_measured(argv, env=run_env, timeout=timeout, stdin=stdin, cwd=cwd)
    if done.returncode == 127 and not done.stdout and "not found" in done.stderr:
        raise HakfuzzError(f"cannot run {argv[0]}: {done.stderr.strip()}")
    return PreloadRun(target, done, tuple(parse_all_hakmem_stats(done.stderr)), check)


@dataclass(frozen=True, slots=True)
class PreloadComparison:
    """The same command under a target and under glibc."""

    argv: tuple[str, ...]
    target: PreloadRun
    glibc: PreloadRun
    differences: tuple[str, ...]

    @property
    def same(self) -> bool:
        """Nothing compared differs."""
        return not self.differences

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"argv": list(self.argv), "same": self.same, "differences": list(self.differences),
                "target": self.target.as_json(), "glibc": self.glibc.as_json()}


def _first_difference(name: str, a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False)):
        if x != y:
            return f"line {i + 1}: {name} {x[:60]!r} vs glibc {y[:60]!r}"
    return f"{name} {len(a.splitlines())} lines vs glibc {len(b.splitlines())} lines"


def compare_program(argv: Sequence[str], *, allocator: str | Target = "hakmem",
                    variant: str = "release", env: Mapping[str, str] | None = None,
                    stdin: bytes | None = None, cwd: str | os.PathLike[str] | None = None,
                    timeout: float = 120.0, compare_stderr: bool = False) -> PreloadComparison:
    """Run ``argv`` under glibc, then under ``allocator``, and list the differences."""
    glibc = run_program(argv, allocator="glibc", variant=variant, env=env, stdin=stdin, cwd=cwd,
                        timeout=timeout)
    target = run_program(argv, allocator=target_of(allocator, variant), variant=variant, env=env,
                         stdin=stdin, cwd=cwd, timeout=timeout)
    name = target.allocator
    diffs: list[str] = []
    if target.measured.returncode != glibc.measured.returncode or target.measured.timed_out:
        diffs.append(f"status: {name} {target.measured.describe_status()}, "
                     f"glibc {glibc.measured.describe_status()}")
    if target.stdout != glibc.stdout:
        diffs.append("stdout differs: " + _first_difference(name, target.stdout, glibc.stdout))
    if compare_stderr and target.stderr != glibc.stderr:
        diffs.append("stderr differs: " + _first_difference(name, target.stderr, glibc.stderr))
    return PreloadComparison(tuple(argv), target, glibc, tuple(diffs))
