"""Checked mode: double and interior frees are diagnosed, never silently corrupting.

``hak_free_checked`` returns HAK_FREE_DOUBLE or HAK_FREE_INTERIOR without
touching the allocator's state; plain ``hak_free`` in checked mode prints the
diagnosis and aborts, which is observed in a child process so the test
process survives.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest
from native_helpers import (
    OWNER_TINY,
    assert_clean,
    assert_drained,
    assert_only_held,
    configure,
    exact,
    locate,
    malloc_ok,
    stats,
)

from hakfuzz.model import limits
from hakfuzz.native import HakmemModule

CACHE_MODES = {"caches-off": 0, "caches-on": 64}


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_double_free_is_detected_and_changes_nothing(hak: HakmemModule, mode: str) -> None:
    configure(hak, checked=1, cache_cap=CACHE_MODES[mode])
    keep = malloc_ok(hak, 64)
    ptr = malloc_ok(hak, 64)
    assert hak.lib.hak_free_checked(ptr) == hak.lib.HAK_FREE_OK, "the first free is valid"
    before = stats(hak)
    assert hak.lib.hak_free_checked(ptr) == hak.lib.HAK_FREE_DOUBLE, "the second is a double free"
    assert stats(hak) == before, f"a rejected free changed the stats:\n{before}\n->\n{stats(hak)}"
    assert_clean(hak, "after a rejected double free")
    # The freed block is served again, once, and can be freed again.
    again = malloc_ok(hak, 64)
    assert again == ptr, "the freed block is reused (LIFO)"
    other = malloc_ok(hak, 64)
    assert other not in (ptr, keep), "a double free must not hand the block out twice"
    for block in (again, other, keep):
        assert hak.lib.hak_free_checked(block) == hak.lib.HAK_FREE_OK
    hak.lib.hak_flush()
    assert_drained(hak)
    assert_clean(hak)


@pytest.mark.parametrize("offset", [8, 1, 32, 63])
def test_interior_free_is_detected_and_changes_nothing(hak: HakmemModule, offset: int) -> None:
    configure(hak, checked=1)
    ptr = malloc_ok(hak, 64)
    before = stats(hak)
    inner = hak.ffi.cast("char *", ptr) + offset
    assert hak.lib.hak_free_checked(inner) == hak.lib.HAK_FREE_INTERIOR, (
        f"p+{offset} of a 64-byte block is an interior pointer"
    )
    assert stats(hak) == before, "a rejected interior free changed the stats"
    assert_clean(hak, "after a rejected interior free")
    assert locate(hak, ptr).owner == OWNER_TINY
    assert hak.lib.hak_free_checked(ptr) == hak.lib.HAK_FREE_OK, "the block itself is still live"
    hak.lib.hak_flush()
    assert_drained(hak)


def test_header_and_uncarved_addresses_are_interior(hak: HakmemModule) -> None:
    exact(hak, checked=1)
    ptr = malloc_ok(hak, 128)
    base = hak.ffi.cast("char *", ptr) - limits.SS_HEADER_SIZE  # block 0 of slab 0
    before = stats(hak)
    for address, what in [
        (base, "the SuperSlab header"),
        (base + 64, "inside the header"),
        (hak.ffi.cast("char *", ptr) + 128, "block 1, not carved yet"),
        (base + 5 * limits.SLAB_SIZE, "slab 5, never used"),
    ]:
        code = hak.lib.hak_free_checked(address)
        assert code == hak.lib.HAK_FREE_INTERIOR, f"{what}: {code}"
    assert stats(hak) == before
    assert_clean(hak)


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_valid_checked_free(hak: HakmemModule, mode: str) -> None:
    configure(hak, checked=1, cache_cap=CACHE_MODES[mode])
    ptrs = [malloc_ok(hak, size) for size in (0, 8, 100, 1000)]
    glibc = hak.lib.hak_libc_malloc(5000)
    assert hak.lib.hak_free_checked(hak.ffi.NULL) == hak.lib.HAK_FREE_OK
    assert hak.lib.hak_free_checked(glibc) == hak.lib.HAK_FREE_OK, "glibc pointers are freed"
    for ptr in ptrs:
        assert hak.lib.hak_free_checked(ptr) == hak.lib.HAK_FREE_OK
    hak.lib.hak_flush()
    snap = assert_drained(hak, "valid checked frees free")
    assert_only_held(snap, "after freeing everything")
    assert_clean(hak)


def test_checked_free_reports_on_stderr(
    hak: HakmemModule, capfd: pytest.CaptureFixture[str]
) -> None:
    configure(hak, checked=1)
    ptr = malloc_ok(hak, 64)
    hak.lib.hak_free_checked(ptr)
    capfd.readouterr()
    hak.lib.hak_free_checked(ptr)
    hak.lib.hak_free_checked(hak.ffi.cast("char *", malloc_ok(hak, 64)) + 8)
    err = capfd.readouterr().err
    assert "double free" in err, f"stderr: {err!r}"
    assert "interior pointer" in err, f"stderr: {err!r}"


def test_checked_free_after_checked_mode_was_turned_off(hak: HakmemModule) -> None:
    exact(hak, checked=1)
    first = malloc_ok(hak, 64)  # creates the SuperSlab with held bits
    exact(hak, checked=0)
    later = malloc_ok(hak, 64)  # a live block of the same SuperSlab
    code = hak.lib.hak_free_checked(later)
    assert code == hak.lib.HAK_FREE_OK, f"free of a live block returned {code} (DOUBLE=1)"
    hak.lib.hak_free(first)


# ---- plain hak_free in checked mode aborts: in a child process ----------------------------

CHILD = """
import sys
from hakfuzz import native

hak = native.load(progress=None)
lib, ffi = hak.lib, hak.ffi
case, cache_cap = sys.argv[1], int(sys.argv[2])
cfg = ffi.new("hak_config_t *")
lib.hak_config_default(cfg)
cfg.checked, cfg.cache_cap = 1, cache_cap
assert lib.hak_configure(cfg) == 0
ptr = lib.hak_malloc(64)
if case == "double":
    lib.hak_free(ptr)
    lib.hak_free(ptr)
elif case == "interior":
    lib.hak_free(ffi.cast("char *", ptr) + 8)
elif case == "retired-double":
    # Free every block of slab 0 while slab 1 is current: slab 0 is retired.
    ptrs = [lib.hak_malloc(1024) for _ in range(61)]
    for block in ptrs[:60]:
        lib.hak_free(block)
    print("checked:", lib.hak_free_checked(ptrs[0]), flush=True)
    lib.hak_free(ptrs[0])
else:
    lib.hak_free(ptr)
print("survived", flush=True)
"""


def _no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_child(case: str, cache_cap: int) -> subprocess.CompletedProcess[str]:
    """Run CHILD with this process's environment (variant, sanitizer preload)."""
    return subprocess.run(
        [sys.executable, "-c", CHILD, case, str(cache_cap)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        preexec_fn=_no_core_dump,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "cache_cap", "message"),
    [
        ("double", 0, "double free"),
        ("double", 64, "double free"),
        ("interior", 64, "interior pointer"),
    ],
)
def test_plain_free_of_a_bad_pointer_aborts(
    hak: HakmemModule, case: str, cache_cap: int, message: str
) -> None:
    done = run_child(case, cache_cap)
    assert done.returncode == -signal.SIGABRT, (
        f"{case} free in checked mode: exit {done.returncode}, expected SIGABRT\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    assert message in done.stderr, f"stderr should say {message!r}: {done.stderr!r}"
    assert "survived" not in done.stdout


def test_plain_valid_free_in_checked_mode_survives(hak: HakmemModule) -> None:
    done = run_child("valid", 64)
    assert (done.returncode, done.stdout.strip()) == (0, "survived"), done.stderr


def test_plain_free_and_checked_free_give_the_same_diagnosis(hak: HakmemModule) -> None:
    done = run_child("retired-double", 0)
    assert done.returncode == -signal.SIGABRT, done.stderr
    checked = done.stdout.split("checked:")[1].split()[0]
    expected = {"1": "double free", "2": "interior pointer"}[checked]
    last = done.stderr.strip().splitlines()[-1]
    assert expected in last, f"hak_free_checked returned {checked} but hak_free printed {last!r}"
