"""Campaign engine ``atheris``: coverage-guided bytes -> Program -> differential.

The target decodes any byte string into a Program (the total binary codec)
and runs it on model and native in lockstep.  atheris instruments the
model, the program codec and the executor (Python coverage).  With clang
installed, the allocator is the ``coverage`` variant (``-fsanitize=
fuzzer-no-link``) and atheris's libFuzzer is loaded with ``RTLD_GLOBAL`` so
the allocator's inline 8-bit counters register with it: libFuzzer then sees
the C edges too, and ``hak_cov_edges`` reports how many native edges ran.
Seeds are the corpus programs, encoded; the working corpus is a directory the
user keeps; libFuzzer's own options pass through.

With a ``target`` (a foreign allocator), each decoded Program runs on the
target in a serving child (:mod:`hakfuzz.differential.foreign_server`):
invariant mode, the foreign driver's allocator-neutral oracles, no model, and
Python coverage only (the target's edges are in another process).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from shutil import which
from typing import Any

from hakfuzz.differential.driver import judge
from hakfuzz.differential.executor import run_differential
from hakfuzz.differential.foreign_server import ForeignServer
from hakfuzz.engines.events import Emitter
from hakfuzz.engines.journal import Journal
from hakfuzz.engines.reached import Counter
from hakfuzz.native._toolchain import VARIANTS
from hakfuzz.program import binary, canonicalize, encode, load_program
from hakfuzz.program.dictionary import libfuzzer_dict
from hakfuzz.targets import Target
from hakfuzz.variants import load_module

FOREIGN_CAPABLE = True
"""This engine runs against a foreign target (``run(..., target=...)``)."""


def native_coverage_available() -> bool:
    """True when the ``coverage`` variant can be built (clang with libFuzzer's flag)."""
    if "coverage" not in VARIANTS:
        return False

    return which("clang") is not None


def quarantine_file(workdir: Path) -> Path:
    """SHA-1s of inputs that killed a worker: never seeded again."""
    return workdir / "atheris-quarantine.txt"


def quarantined(workdir: Path) -> set[str]:
    """The quarantined SHA-1s."""
    path = quarantine_file(workdir)
    return set(path.read_text().split()) if path.is_file() else set()


def quarantine(workdir: Path, corpus_dir: Path, data: bytes) -> None:
    """Keep ``data`` out of the corpus: libFuzzer would replay it at every start."""
    digest = hashlib.sha1(data).hexdigest()
    with open(quarantine_file(workdir), "a") as out:
        out.write(digest + "\n")
    if corpus_dir.is_dir():
        for path in corpus_dir.iterdir():
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                path.unlink()


def write_seeds(corpus_dir: Path, sources: list[Path], skip: set[str] | None = None) -> int:
    """Encode the JSON corpus programs into ``corpus_dir`` (once); how many were written."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in sources:
        try:
            program = canonicalize(load_program(path))
            data = encode(program)
        except Exception:  # a program the binary form cannot hold: skip it
            continue
        target = corpus_dir / f"seed-{path.stem}"
        if skip and hashlib.sha1(data).hexdigest() in skip:
            continue
        if not target.exists():
            target.write_bytes(data)
            written += 1
    return written


def run(  # noqa: D103 - see the module docstring
    emit: Emitter,
    journal: Journal,
    *,
    seed: int,
    deadline: float,
    variant: str,
    corpus_dir: Path,
    workdir: Path,
    seeds: list[Path],
    libfuzzer_args: list[str],
    target: Target | None = None,
    foreign_frees: bool = True,
    target_config: Mapping[str, str] | None = None,
) -> None:
    if target is not None:
        _instrument_codec()
        one_input = foreign_input(emit, journal, deadline=deadline, variant=variant,
                                  target=target, foreign_frees=foreign_frees,
                                  target_config=target_config)
        _fuzz(one_input, seed=seed, deadline=deadline, corpus_dir=corpus_dir, workdir=workdir,
              seeds=seeds, libfuzzer_args=libfuzzer_args)
        return
    native_cov = variant == "release" and native_coverage_available()
    if native_cov:
        # atheris.Fuzz loads its libFuzzer core; with RTLD_GLOBAL its symbols
        # then resolve the hooks of the instrumented allocator, loaded on the
        # first input.
        sys.setdlopenflags(sys.getdlopenflags() | os.RTLD_GLOBAL)
    import atheris

    with atheris.instrument_imports(
        include=["hakfuzz.model", "hakfuzz.program", "hakfuzz.differential"]
    ):
        from hakfuzz.differential import DifferentialExecutor
        from hakfuzz.program import decode

    if not native_cov:
        emit.notice(
            "clang not found: Python coverage only, no native edges"
            if variant == "release"
            else f"native edges are measured on the release build only; on {variant}: "
            "Python coverage only"
        )
    seen: set[str] = set()
    counters = {"execs": 0, "ops": 0}
    reached = Counter()
    state: dict[str, Any] = {}

    def test_one_input(data: bytes) -> None:
        if not state:
            # atheris.Fuzz has just loaded its libFuzzer core (RTLD_GLOBAL):
            # only now can the instrumented allocator's hooks resolve.  libFuzzer
            # takes counter arrays registered at run time (atheris does too).
            loaded = load_module("coverage" if native_cov else variant)
            executor = DifferentialExecutor(loaded)
            executor.on_program_end = reached.program
            state.update(
                hak=loaded,
                executor=executor,
                edges=(lambda: loaded.lib.hak_cov_edges(loaded.ffi.NULL)) if native_cov else None,
            )
        hak, executor, edges = state["hak"], state["executor"], state["edges"]
        journal.binary(data)
        program = decode(data)
        divergence = executor.run(program)
        counters["execs"] += 1
        counters["ops"] += len(program.ops)
        if divergence is not None:
            finding = run_differential(hak, program, engine="atheris", variant=variant)
            if finding is not None and finding.signature not in seen:
                seen.add(finding.signature)
                emit.finding(finding)
        coverage = int(edges()) if edges else 0
        emit.stats(counters["execs"], counters["ops"], coverage, reached=reached.counts)
        if time.time() > deadline:
            journal.clear()
            emit.stats(
                counters["execs"], counters["ops"], coverage, force=True, reached=reached.counts
            )
            os._exit(0)  # libFuzzer has no clean stop from inside; the journal is clear

    _fuzz(test_one_input, seed=seed, deadline=deadline, corpus_dir=corpus_dir, workdir=workdir,
          seeds=seeds, libfuzzer_args=libfuzzer_args)


def _instrument_codec() -> None:
    """Python coverage of the binary codec, already imported by the time we run.

    The target's edges live in another process; the codec's branches are what
    libFuzzer can see of how the bytes shaped the program.
    """
    import atheris


    for name, obj in list(vars(binary).items()):
        if inspect.isfunction(obj) and obj.__module__ == binary.__name__:
            setattr(binary, name, atheris.instrument_func(obj))


def foreign_input(
    emit: Emitter,
    journal: Journal,
    *,
    deadline: float,
    variant: str,
    target: Target,
    foreign_frees: bool,
    target_config: Mapping[str, str] | None,
) -> Callable[[bytes], None]:
    """The callback libFuzzer calls for a foreign target: bytes -> Program -> the serving child.

    At the deadline it closes the server and ends the process (libFuzzer has
    no clean stop from inside).
    """
    server = ForeignServer(target, foreign_frees=foreign_frees, configure=target_config,
                           variant=variant)
    server.start()
    if server.configure_ignored:
        emit.notice(f"{target.name} has no hakfuzz_configure: the configure options are not "
                    "applied")
    seen: set[str] = set()
    counters = {"execs": 0, "ops": 0}

    def test_one_input(data: bytes) -> None:
        journal.binary(data)
        program = server.stamp(binary.decode(data))
        run = server.run(program)
        journal.clear()
        counters["execs"] += 1
        counters["ops"] += len(program.ops)
        finding = judge(run, program, variant=variant, seed=None, engine="atheris")
        if finding is not None:
            finding.extra["target"] = target.as_json()
            if finding.signature not in seen:
                seen.add(finding.signature)
                emit.finding(finding)
        emit.stats(counters["execs"], counters["ops"], len(seen))
        if time.time() > deadline:
            emit.stats(counters["execs"], counters["ops"], len(seen), force=True)
            server.close()
            os._exit(0)

    return test_one_input


def _fuzz(
    test_one_input: Callable[[bytes], None],
    *,
    seed: int,
    deadline: float,
    corpus_dir: Path,
    workdir: Path,
    seeds: list[Path],
    libfuzzer_args: list[str],
) -> None:
    """Hand ``test_one_input`` to libFuzzer until the deadline."""
    import atheris


    dict_path = workdir / "ops.dict"
    dict_path.write_text(libfuzzer_dict())
    write_seeds(corpus_dir, seeds, quarantined(workdir))
    budget = max(1, int(deadline - time.time()))
    argv = [
        sys.argv[0],
        f"-max_total_time={budget}",
        f"-seed={seed or 1}",
        f"-dict={dict_path}",
        f"-artifact_prefix={workdir}/",
        "-print_final_stats=1",
        "-max_len=4096",
        # Let fatal signals kill the process as they would anywhere else, so
        # a crash has the same signature whichever engine met it.
        "-handle_abrt=0",
        "-handle_segv=0",
        "-handle_bus=0",
        "-handle_ill=0",
        "-handle_fpe=0",
        *libfuzzer_args,
        str(corpus_dir),
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
