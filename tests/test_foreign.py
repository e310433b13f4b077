"""The foreign driver: programs run on any allocator under LD_PRELOAD.

``hakdriver-foreign`` is the driver without hakmem: every op goes through the
preloaded target's ``malloc`` family, the ``libc_alloc`` blocks come from
glibc's own allocator, and with ``--foreign-frees on`` the target frees them.
The peers (mimalloc, jemalloc, tcmalloc) are skipped when not installed; a
peer that crashes on a foreign free is a finding for that peer, and the test
only checks that the finding says so.  Every run happens in a child process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hakfuzz._errors import HakfuzzError
from hakfuzz.differential.driver import judge, run_driver
from hakfuzz.engines.parallel import stress
from hakfuzz.engines.parallel.stress import StressOptions, run_stress
from hakfuzz.engines.parallel.workloads import WORKLOADS
from hakfuzz.findings import Finding
from hakfuzz.native._tools import build_tool
from hakfuzz.program import Op, Program
from hakfuzz.program.minimize import Minimized
from hakfuzz.program.model import OVERFLOW_COUNT
from hakfuzz.targets import PEERS, Target, TargetError, TargetKind, child_env, resolve_target

SMALL = {"threads": 4, "ops": 6000, "program_ops": 1000, "seed": 3}


def _peer(name: str) -> Target:
    try:
        return resolve_target(name)
    except HakfuzzError as exc:
        pytest.skip(str(exc))


def _foreign(target: Target, on: bool, **kw: object) -> StressOptions:
    opts: dict[str, Any] = {**SMALL, "minimize_seconds": 0.0, **kw}
    return StressOptions(allocator=target.name, target=target, foreign_frees=on, **opts)


@pytest.fixture(scope="module")
def driver() -> Path:
    return build_tool("hakdriver-foreign")


def _libc_block_freed() -> Program:
    """One glibc block, freed through the target at op 1."""
    return Program(threads=1, ops=(Op.libc_alloc(0, 48, 0), Op.free(0, 0)))


# ---- item 1: the foreign driver, served by the target ----------------------------------


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_runs_every_workload_clean_with_foreign_frees_off(name: str, driver: Path) -> None:
    target = _peer(name)
    report = run_stress(_foreign(target, False), driver)
    doc = report.as_json()
    assert doc["findings"] == [], doc["findings"]
    assert doc["served_by"] == target.real_path
    assert doc["foreign_frees"] == "off"
    assert report.runs >= len(WORKLOADS)
    assert report.ops > 0


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_with_foreign_frees_on_reports_what_it_does(name: str, driver: Path) -> None:
    """Whatever a peer does with glibc's pointers, a crash there is named a foreign free."""
    target = _peer(name)
    report = run_stress(_foreign(target, True), driver)
    for f in report.findings.values():
        assert f.message.startswith("foreign free: the allocator crashed"), f.summary()
        assert "did not allocate" in f.message
        assert f.extra.get("foreign_free") is True


def test_a_foreign_free_crash_is_one_clear_finding_with_a_minimal_program(driver: Path) -> None:
    target = _peer("mimalloc")  # it does not survive glibc's pointers
    program = WORKLOADS["larson"](0, 4, 2000, 0.3)
    run = run_driver(driver, program, env=child_env(target), foreign_frees=True)
    if judge(run, program, variant="release", seed=0) is None:
        pytest.skip("this mimalloc survived foreign frees")
    # Where the crash lands (inside the foreign free, or later, in state it broke)
    # depends on timing; the stress report attributes either way.
    report = run_stress(_foreign(target, True, workloads=("larson",), ops=2000,
                                 program_ops=2000, seed=0, minimize_seconds=20.0), driver)
    (only,) = report.findings.values()
    assert only.message.startswith("foreign free: the allocator crashed")
    assert len(only.program.ops) <= len(program.ops)
    assert only.extra["original_ops"] == len(program.ops)
    # The minimal program: one glibc block, freed through the target at the end.
    # mimalloc reads a "segment" at the block's address rounded down to 4 MiB;
    # where the address layout puts mapped memory there, it survives (1 run in
    # 200 measured), so one of a few runs must crash.
    single = _libc_block_freed()
    crash = None
    for _ in range(5):
        crash = judge(run_driver(driver, single, env=child_env(target), foreign_frees=True),
                      single, variant="release", seed=0)
        if crash is not None:
            break
    assert crash is not None
    assert crash.message.startswith(
        "foreign free: the allocator crashed freeing a pointer it did not allocate"
    )


def test_foreign_frees_off_frees_glibc_blocks_with_glibc(driver: Path) -> None:
    target = _peer("mimalloc")
    off = run_driver(driver, _libc_block_freed(), env=child_env(target), foreign_frees=False)
    assert off.ok, off.stderr
    assert off.result is not None
    assert off.result["foreign_frees"] is False


def test_glibc_target_passes_both_modes_and_json_names_the_library(
    driver: Path, tmp_path: Path
) -> None:
    target = resolve_target("glibc")
    for on in (True, False):
        assert run_stress(_foreign(target, on), driver).findings == {}
    hakfuzz = Path(sys.executable).with_name("hakfuzz")
    done = subprocess.run(
        [str(hakfuzz), "stress", "--allocator", "glibc", "--ops", "3000", "--program-ops",
         "1000", "--foreign-frees", "off", "--json"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["allocator"] == "glibc"
    assert doc["foreign_frees"] == "off"
    assert doc["served_by"] == target.real_path == doc["target"]["real_path"]


def test_a_run_served_by_another_library_is_an_error(driver: Path) -> None:
    """The C math library does not define malloc: preloaded, glibc serves, and the run says so."""
    glibc = resolve_target("glibc")
    libm = "/lib/x86_64-linux-gnu/libm.so.6"
    if not os.path.exists(libm):
        pytest.skip("no libm.so.6 at the Debian path")
    wrong = dataclasses.replace(glibc, kind=TargetKind.PATH, real_path=os.path.realpath(libm))
    with pytest.raises(TargetError, match="not served by it"):
        run_stress(_foreign(wrong, True, ops=500, workloads=("larson",)), driver)


DELAYED = r"""
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
extern void *__libc_malloc(size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern size_t __malloc_usable_size(void *);
#define MAGIC 0x5eedf00dcafe1234ull
/* A pointer it did not make is not a crash in free: it poisons the heap,
 * and the next malloc dies. */
static volatile int poisoned;
static int mine(void *p) { return ((uint64_t *)p)[-2] == MAGIC; }
void *malloc(size_t n) {
  if (poisoned) raise(SIGSEGV);
  uint64_t *b = __libc_malloc(n + 16);
  b[0] = MAGIC;
  return b + 2;
}
void free(void *p) {
  if (p == NULL) return;
  if (!mine(p)) { poisoned = 1; return; }
  ((uint64_t *)p)[-2] = 0;
  __libc_free((uint64_t *)p - 2);
}
void *calloc(size_t k, size_t n) { void *p = malloc(k * n); memset(p, 0, k * n); return p; }
void *realloc(void *p, size_t n) {
  if (p == NULL) return malloc(n);
  if (!mine(p)) { poisoned = 1; return NULL; }
  uint64_t *b = __libc_realloc((uint64_t *)p - 2, n + 16);
  return b + 2;
}
"""


def test_a_crash_after_a_foreign_free_is_put_down_to_it(driver: Path, tmp_path: Path) -> None:
    """Survive the foreign free, die in the next malloc: still the foreign free's finding."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    (tmp_path / "delayed.c").write_text(DELAYED)
    lib = tmp_path / "libdelayed.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "delayed.c")],
                   check=True)
    target = resolve_target(str(lib))
    program = Program(threads=1, ops=(Op.libc_alloc(0, 40), Op.free(0), Op.alloc(1, 24),
                                      Op.free(1)))
    assert run_driver(driver, program, env=child_env(target), foreign_frees=False).ok
    on = run_driver(driver, program, env=child_env(target), foreign_frees=True)
    assert judge(on, program, variant="release", seed=None) is not None
    report = run_stress(_foreign(target, True, workloads=("larson",), minimize_seconds=10.0),
                        driver)
    assert report.findings
    for f in report.findings.values():
        assert f.message.startswith("foreign free: the allocator crashed after freeing pointers "
                                    "it did not allocate"), f.summary()
        assert f.signature.startswith("signal-foreign-free-after-sigsegv")
        assert len(f.program.ops) <= 4


# ---- item 4: hooks ---------------------------------------------------------------------


def test_our_libhakmem_passes_both_modes_with_its_hooks_called(driver: Path) -> None:
    target = resolve_target("hakmem")
    run = run_driver(driver, _libc_block_freed(), env=child_env(target), foreign_frees=True)
    assert run.ok, run.stderr
    assert run.result is not None
    assert run.result["hooks"] == ["check", "owns", "configure", "stats"]
    for on in (True, False):
        report = run_stress(_foreign(target, on), driver)
        assert report.findings == {}, [f.summary() for f in report.findings.values()]


def test_libhakmem_hooks_answer(tmp_path: Path) -> None:
    library = build_tool("libhakmem.so")
    code = (
        "import ctypes,sys\n"
        f"lib = ctypes.CDLL({str(library)!r})\n"
        "buf = ctypes.create_string_buffer(256)\n"
        "print(lib.hakfuzz_configure(b'cache_cap', b'0'), lib.hakfuzz_configure(b'HAKMEM_SS_KEEP',"
        " b'3'), lib.hakfuzz_configure(b'bogus', b'1'), lib.hakfuzz_configure(b'refill_batch',"
        " b'0'), lib.hakfuzz_configure(b'oom_policy', b'null'), lib.hakfuzz_check(buf, 256))\n"
    )
    # owns: one of our blocks, a glibc block, NULL
    code += (
        "lib.hak_malloc.restype = ctypes.c_void_p\n"
        "q = lib.hak_malloc(24)\n"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
        "r = libc.malloc(24)\n"
        "lib.hakfuzz_owns.argtypes = [ctypes.c_void_p]\n"
        "print(lib.hakfuzz_owns(q), lib.hakfuzz_owns(r), lib.hakfuzz_owns(None))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0].split() == ["0", "0", "22", "22", "0", "0"]
    assert lines[1].split() == ["1", "-1", "0"]


HOOKED = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
void *malloc(size_t n) { return __libc_malloc(n); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
#ifdef BROKEN_CHECK
int hakfuzz_check(char *msg, size_t len) {
  strncpy(msg, "the shim's heap is broken", len);
  return 1;
}
#endif
#ifdef OWNS_ALL
int hakfuzz_owns(void *p) { (void)p; return 1; }
#endif
int posix_memalign(void **out, size_t align, size_t n) {
#ifdef BAD_ALIGN
  (void)align;
  *out = (char *)__libc_malloc(n + 64) + 8;
#else
  void *(*libc_memalign)(size_t, size_t) =
      (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  *out = libc_memalign(align, n);
#endif
  return 0;
}
void *calloc(size_t k, size_t n) {
#if defined(DIRTY_CALLOC)
  void *p = __libc_malloc(k * n);
  memset(p, 0xAA, k * n);
  return p;
#elif defined(CALLOC_WRAPS)
  return __libc_calloc(1, k * n + 1); /* the product wraps: a block, never NULL */
#else
  return __libc_calloc(k, n);
#endif
}
#ifdef SMALL_USABLE
size_t malloc_usable_size(void *p) { return p == NULL ? 0 : 1; }
#else
size_t malloc_usable_size(void *p) {
  size_t (*glibc)(void *) = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
  return glibc(p);
}
#endif
"""


def _shim(tmp_path: Path, define: str) -> Target:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "shim.c"
    src.write_text(HOOKED)
    lib = tmp_path / f"libshim-{define.lower()}.so"
    subprocess.run([cc, "-shared", "-fPIC", f"-D{define}", "-o", str(lib), str(src)], check=True)
    return resolve_target(str(lib))


def test_the_targets_hakfuzz_check_is_called_at_the_end(driver: Path, tmp_path: Path) -> None:
    target = _shim(tmp_path, "BROKEN_CHECK")
    run = run_driver(driver, _libc_block_freed(), env=child_env(target), foreign_frees=False)
    finding = judge(run, _libc_block_freed(), variant="release", seed=None)
    assert finding is not None
    assert finding.signature == "oracle-hakfuzz-check"
    assert "the shim's heap is broken" in finding.message


def test_hakfuzz_owns_claiming_a_glibc_block_fails(driver: Path, tmp_path: Path) -> None:
    target = _shim(tmp_path, "OWNS_ALL")
    run = run_driver(driver, _libc_block_freed(), env=child_env(target), foreign_frees=False)
    finding = judge(run, _libc_block_freed(), variant="release", seed=None)
    assert finding is not None
    assert finding.signature == "oracle-owns"
    assert finding.op_index == 0


# ---- item 2: the allocator-neutral oracles --------------------------------------------


@pytest.mark.parametrize(
    ("define", "ops", "signature", "words"),
    [
        ("BAD_ALIGN", (Op.memalign(0, 256, 100),), "oracle-alignment", "not aligned to 256"),
        ("DIRTY_CALLOC", (Op.calloc(0, 4, 16),), "oracle-pattern", "after calloc (not zero)"),
        ("CALLOC_WRAPS", (Op.calloc(0, OVERFLOW_COUNT, 16),), "oracle-calloc-overflow",
         "returned a block"),
        ("SMALL_USABLE", (Op.alloc(0, 24),), "oracle-usable-size", "usable size 1 < requested 24"),
        ("PLAIN", (Op.alloc(0, 24), Op.write(0, 7), Op.realloc(0, 3000), Op.usable_size(0),
                   Op.free_null(), Op.usable_size_null(), Op.realloc(0, 0), Op.check()),
         None, ""),
    ],
)
def test_neutral_oracles_judge_a_target(
    define: str, ops: tuple[Op, ...], signature: str | None, words: str, driver: Path,
    tmp_path: Path,
) -> None:
    target = _shim(tmp_path, define)
    program = Program(threads=1, ops=ops)
    run = run_driver(driver, program, env=child_env(target), foreign_frees=True)
    finding = judge(run, program, variant="release", seed=None)
    if signature is None:
        assert finding is None, finding.summary()
        return
    assert finding is not None, run.stderr
    assert finding.signature == signature
    assert words in finding.message


# ---- item 5: a mutant libhakmem.so is caught ------------------------------------------


def test_mutant_libhakmem_is_caught_in_foreign_mode(driver: Path) -> None:
    from hakfuzz.variants import tool

    library = tool("libhakmem.so", "mutant:guess-owner-from-header")
    target = resolve_target(str(library))
    report = run_stress(_foreign(target, True, ops=4000, seed=0), driver)
    assert report.findings, "the guess-owner-from-header mutant survived the foreign driver"


# ---- item 3: the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--foreign-frees", "off"], "--foreign-frees needs a foreign --allocator"),
        (["--allocator", "/no/such/lib.so"], "--allocator /no/such/lib.so: no such file"),
        (["--allocator", "glibc", "--variant", "asan"], "cannot run under --allocator glibc"),
        (["--allocator", "ptmalloc"], "unknown allocator 'ptmalloc'"),
    ],
)
def test_stress_allocator_errors_are_one_line_exit_2(
    argv: list[str], words: str, tmp_path: Path
) -> None:
    hakfuzz = Path(sys.executable).with_name("hakfuzz")
    done = subprocess.run([str(hakfuzz), "stress", *argv], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_foreign_finding_minimisation_could_not_shrink_still_says_its_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A crash whose place depends on the address layout may fail too rarely
    # for any smaller program to count: the program as found stays, and the
    # finding still says how many ops it had and how often it failed again.
    program = _libc_block_freed()

    def unshrunk(p: Program, signature: str, once: object, **kw: object) -> Minimized:
        return Minimized(p, len(p.ops), 0.5, 3, 0.1)

    monkeypatch.setattr(stress, "minimize", unshrunk)
    finding = Finding("parallel", "signal", "sigsegv", "foreign free", program)
    opts = StressOptions(minimize_seconds=5.0)
    out = stress.minimize_foreign(opts, Path("/nonexistent"), finding)
    assert out.program is program
    assert (out.extra["original_ops"], out.extra["reproduction_rate"]) == (2, 0.5)
