"""Campaign engine ``preload``: the allocator as a real program's malloc.

Some bugs live only in the ``LD_PRELOAD`` build: its entry points
(``realloc(NULL, n)``, ``malloc_usable_size`` of NULL and of foreign blocks,
``aligned_alloc``, ``memalign``, ``reallocarray``, ``valloc``), its lazy set-up,
and every program that allocates in ways no Program does.  Each exec is one
*job*, in rotation:

- ``driver``: a seeded parallel workload run by the C driver in its glibc
  mode, so every ``malloc``/``free``/``realloc`` goes through the preloaded
  ``libhakmem.so`` (with the Program's config as ``HAKMEM_*`` variables),
  judged by the driver's allocator-neutral oracles;
- ``calls``: ``preloadcalls``, our check of the calls only a preload sees;
- real programs, when installed: ``python3``, ``sqlite3``, ``sort``,
  ``gzip``, ``cc``, each on input made from the job's seed.

A job other than ``driver`` runs under plain glibc and under the preload,
and the two must agree (exit status and stdout); a crash or a sanitizer
report under the preload is a finding whatever glibc did.  A job is named
by ``(name, seed)`` and made again from them, so a finding replays: the
finding file records the job, and :func:`rerun` runs it again.

With a foreign ``target`` the preloaded library is the target's (no
``HAKMEM_*`` config), and the ``driver`` job runs the foreign driver under
it, glibc's blocks freed by the target when ``foreign_frees``.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, replace

from hakfuzz._process import run_measured, strip_hakmem_stats
from hakfuzz.diagnostics import diagnose
from hakfuzz.differential.driver import judge, run_driver
from hakfuzz.engines.events import Emitter
from hakfuzz.engines.foreign_run import judge_foreign_run, run_foreign, stamp
from hakfuzz.engines.journal import Journal
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.engines.reached import Counter
from hakfuzz.findings import Finding
from hakfuzz.model.options import OPTION
from hakfuzz.program import Program, ProgramConfig
from hakfuzz.targets import PRELOAD_VARIANTS, Target, preload_vars
from hakfuzz.variants import flags_of, tool

_TIMEOUT = 60.0


def can_preload(variant: str) -> bool:
    """Whether ``variant``'s ``libhakmem.so`` can serve a real program."""
    return flags_of(variant) in PRELOAD_VARIANTS


def config_env(config: ProgramConfig) -> dict[str, str]:
    """A Program's allocator config as the ``HAKMEM_*`` variables the preload reads.

    Under a preload the C library itself allocates through us (thread
    stacks' records, stdio buffers), so the ``null`` policy would make
    pthread_create and printf fail by design, not by a bug: the preload
    always falls back to glibc at a cap.
    """
    fields = {**config.as_c_fields(), "oom_policy": 0}
    return {OPTION[name].env: str(value) for name, value in fields.items()}


@dataclass(frozen=True, slots=True)
class Job:
    """One real-program run: the command and what it reads."""

    name: str
    seed: int
    argv: tuple[str, ...]
    stdin: bytes


def _lines(rnd: random.Random, count: int) -> bytes:
    words = ("alpha", "beta", "gamma", "delta", "hakmem", "slab", "remote", "orphan")
    out = [
        f"{rnd.choice(words)}{rnd.randrange(10**rnd.randint(1, 9))} {rnd.random():.6f}"
        for _ in range(count)
    ]
    return ("\n".join(out) + "\n").encode()


_PYTHON = """
import json, sys, threading
seed = int(sys.argv[1])
def work(k):
    box = {}
    for i in range(2000 + seed % 3000):
        box[i % 97] = [bytes((i * k) % 256 for _ in range(i % 300)), str(i) * (i % 40)]
        if i % 7 == 0:
            box.pop((i * 13) % 97, None)
    out[k] = sum(len(v[0]) + len(v[1]) for v in box.values())
out = {}
threads = [threading.Thread(target=work, args=(k,)) for k in range(1 + seed % 6)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(sorted(out.items())))
"""


def _sql(rnd: random.Random) -> bytes:
    rows = rnd.randint(100, 20000)
    width = rnd.randint(1, 400)
    return (
        "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT, n REAL);\n"
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) "
        f"INSERT INTO t SELECT x, substr(hex(randomblob({width})), 1, x % {width} + 1), "
        "x * 0.5 FROM c;\n"
        "CREATE INDEX iv ON t(v);\n"
        "SELECT count(*), sum(length(v)), max(n) FROM t;\n"
        "SELECT length(v) % 10 AS b, count(*) FROM t GROUP BY b ORDER BY b;\n"
        "DELETE FROM t WHERE k % 3 = 0;\n"
        "SELECT count(*) FROM t;\n"
    ).encode()


def _c_source(rnd: random.Random) -> bytes:
    functions = [
        f"int f{i}(int x) {{ int a[{rnd.randint(1, 64)}] = {{0}}; "
        f"for (int i = 0; i < x; i++) a[i % {rnd.randint(1, 64)} % 1] += i * {i}; return a[0]; }}"
        for i in range(rnd.randint(5, 200))
    ]
    return ("\n".join(functions) + "\nint main(void) { return f0(3); }\n").encode()


def _real(name: str, seed: int) -> Job | None:
    rnd = random.Random(seed)
    if name == "python3":
        return Job(name, seed, (sys.executable, "-c", _PYTHON, str(seed)), b"")
    if name == "sort":
        flags = rnd.choice(((), ("-n",), ("-u",), ("-r", "-k2")))
        return Job(name, seed, ("sort", *flags), _lines(rnd, rnd.randint(10, 30000)))
    if name == "gzip":
        return Job(name, seed, ("gzip", "-c", "-n", f"-{rnd.randint(1, 9)}"), _lines(rnd, 5000))
    if name == "sqlite3":
        return Job(name, seed, ("sqlite3", ":memory:"), _sql(rnd))
    if name == "cc":
        return Job(name, seed, ("cc", "-O1", "-S", "-x", "c", "-", "-o", "-"), _c_source(rnd))
    return None


REAL_PROGRAMS = ("python3", "sqlite3", "sort", "gzip", "cc")
JOBS = ("driver", "calls", *REAL_PROGRAMS)
"""Every job, in rotation order."""


def _env(library: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("HAKMEM_")}
    env["PYTHONHASHSEED"] = "0"
    env["LC_ALL"] = "C"
    if library is not None:
        env["LD_PRELOAD"] = library
    return {**env, **(extra or {})}


def _compare(job: Job, library: str | None, variant: str) -> Finding | None:
    """Run ``job`` under glibc and under the preload; a finding if they disagree."""
    glibc = run_measured(job.argv, env=_env(None), stdin=job.stdin, timeout=_TIMEOUT)
    ours = run_measured(job.argv, env=_env(library), stdin=job.stdin, timeout=_TIMEOUT)
    stderr = strip_hakmem_stats(ours.stderr)
    program = Program(description=f"preload job {job.name} seed {job.seed}: {' '.join(job.argv)}")
    extra = {"job": {"name": job.name, "seed": job.seed}, "stderr": stderr[-4000:]}
    if ours.timed_out and not glibc.timed_out:
        return Finding("preload", "timeout", f"{job.name} hangs", "hangs under the preload only",
                       program, None, variant, job.seed, extra)
    kind, detail = diagnose(ours.returncode, stderr)
    if kind != "exit" or (ours.returncode != glibc.returncode):
        # the detail names the crash only, so the same bug met by another engine dedupes
        return Finding("preload", kind, detail if kind != "exit" else f"{job.name} {detail}",
                       f"{' '.join(job.argv[:3])} under the preload: {detail} "
                       f"(glibc: {glibc.describe_status()})", program, None, variant, job.seed,
                       extra)
    if ours.stdout != glibc.stdout:
        return Finding("preload", "oracle", f"{job.name} output differs",
                       f"{job.name} prints something else under the preload than under glibc",
                       program, None, variant, job.seed, extra)
    return None


def _library(variant: str, target: Target | None) -> str | None:
    """What the job preloads: our libhakmem.so, the target's library, or nothing (glibc)."""
    if target is None:
        return str(tool("libhakmem.so", variant))
    return preload_vars(target).get("LD_PRELOAD")


def rerun(
    name: str,
    seed: int,
    variant: str,
    *,
    threads: int = 4,
    target: Target | None = None,
    foreign_frees: bool = True,
) -> Finding | None:
    """Run job ``(name, seed)`` again on ``variant`` (or ``target``); its finding, or None."""
    library = _library(variant, target)
    found: Finding | None
    if name == "driver":
        program = _workload(seed, threads)
        return _driver(program, library, variant, seed, target, foreign_frees)
    if name == "calls":
        calls = str(tool("preloadcalls", variant))
        found = _compare(Job(name, seed, (calls, str(seed), "200"), b""), library, variant)
    else:
        job = _real(name, seed)
        assert job is not None, name
        found = _compare(job, library, variant)
    return _stamped(found, target)


def _stamped(found: Finding | None, target: Target | None) -> Finding | None:
    if found is None or target is None:
        return found

    return replace(found, program=stamp(found.program, target))


def run_job(
    job: dict[str, object],
    program: Program,
    variant: str,
    *,
    target: Target | None = None,
    foreign_frees: bool = True,
) -> Finding | None:
    """Replay a finding's job; the finding it makes again, or None.

    A ``driver`` job runs ``program`` (the file's, maybe minimised); any other
    job is made again from its name and seed.
    """
    name, seed = str(job["name"]), int(str(job["seed"]))
    if name == "driver":
        return _driver(program, _library(variant, target), variant, seed, target, foreign_frees)
    return rerun(name, seed, variant, target=target, foreign_frees=foreign_frees)


def _workload(seed: int, threads: int) -> Program:
    names = list(WORKLOADS)
    return WORKLOADS[names[seed % len(names)]](seed, threads, 3000, 0.3)


def _driver(
    program: Program,
    library: str | None,
    variant: str,
    seed: int,
    target: Target | None = None,
    foreign_frees: bool = True,
) -> Finding | None:
    if target is not None:

        run = run_foreign(program, target, foreign_frees, variant, timeout=_TIMEOUT)
        found = judge_foreign_run(run, program, target, foreign_frees, variant, seed=seed,
                                  engine="preload")
    else:
        assert library is not None
        driver = tool("hakdriver", variant)
        env = {"LD_PRELOAD": library, **config_env(program.config)}
        run = run_driver(driver, program, allocator="glibc", timeout=_TIMEOUT, env=env)
        found = judge(run, program, variant=variant, seed=seed, engine="preload")
    if found is None:
        return None
    extra = {**found.extra, "job": {"name": "driver", "seed": seed}}
    return Finding(found.engine, found.kind, found.detail, found.message, found.program,
                   found.op_index, found.variant, found.seed, extra)


def run(  # noqa: D103 - see the module docstring
    emit: Emitter,
    journal: Journal,
    *,
    seed: int,
    deadline: float,
    variant: str,
    target: Target | None = None,
    foreign_frees: bool = True,
) -> None:
    available = [j for j in JOBS if j in ("driver", "calls") or _installed(j)]
    missing = [j for j in REAL_PROGRAMS if j not in available]
    if missing:
        emit.notice(f"not installed, not run: {', '.join(missing)}")
    execs = ops = 0
    outcomes: set[tuple[str, str]] = set()
    reached = Counter()
    n = 0
    while time.time() < deadline:
        name = available[n % len(available)]
        job_seed = seed * 1_000_003 + n
        n += 1
        if name == "driver":
            program = _workload(job_seed, 4)
            reached.program(program.config, None)  # glibc mode: no hakmem counters to read
            journal.begin(program.config, program.threads)  # the driver runs in a child,
            for op in program.ops:  # but a journal lets the supervisor name the input
                journal.op(op)
            ops += len(program.ops)
        found = rerun(name, job_seed, variant, target=target, foreign_frees=foreign_frees)
        journal.clear()
        execs += 1
        outcomes.add((name, found.signature if found else "pass"))
        if found is not None:
            emit.finding(found)
        emit.stats(execs, ops, len(outcomes), reached=reached.counts)
    emit.stats(execs, ops, len(outcomes), force=True, reached=reached.counts)


def _installed(name: str) -> bool:
    return name == "python3" or shutil.which(name) is not None


__all__ = ["JOBS", "can_preload", "config_env", "rerun", "run", "run_job"]
