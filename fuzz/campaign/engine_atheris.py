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
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from hakfuzz.campaign.events import Emitter
from hakfuzz.campaign.journal import Journal
from hakfuzz.campaign.reached import Counter


def native_coverage_available() -> bool:
    """True when the ``coverage`` variant can be built (clang with libFuzzer's flag)."""
    from hakfuzz.native._toolchain import VARIANTS

    if "coverage" not in VARIANTS:
        return False
    from shutil import which

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
    import hashlib

    digest = hashlib.sha1(data).hexdigest()
    with open(quarantine_file(workdir), "a") as out:
        out.write(digest + "\n")
    if corpus_dir.is_dir():
        for path in corpus_dir.iterdir():
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                path.unlink()


def write_seeds(corpus_dir: Path, sources: list[Path], skip: set[str] | None = None) -> int:
    """Encode the JSON corpus programs into ``corpus_dir`` (once); how many were written."""
    import hashlib

    from hakfuzz.program import canonicalize, encode, load_program

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
) -> None:
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
    from hakfuzz.program.dictionary import libfuzzer_dict
    from hakfuzz.variants import load_module

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
            from hakfuzz.differential.executor import run_differential

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
