"""One diagnosis of a dead process: glibc's messages, sanitizer reports, libFuzzer noise."""

from __future__ import annotations

from hakfuzz.diagnostics import diagnose, sanitizer_report

ASAN_IN_PYTHON = """\
==10596==ERROR: AddressSanitizer: use-after-poison on address 0x7fe457201000 at pc 0x7fe45b24814b
READ of size 8 at 0x7fe457201000 thread T0
    #0 0x7fe45b24814a in __interceptor_memcpy ../src/libsanitizer/sanitizer_common/x.inc:827
    #1 0x7fe45ad4e1bc in PyBytes_FromStringAndSize Objects/bytesobject.c:142
    #2 0x7fe45892e5d5 in mb_slice (/usr/lib/python3/_cffi_backend.cpython-311.so+0xa5d5)
"""

ASAN_IN_DRIVER = """\
==77==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6020 at pc 0x55 bp 0x7f sp 0x7f
WRITE of size 4 at 0x6020 thread T3
    #0 0x55aa in slab_carve /work/native/src/slab.c:61
    #1 0x55ab in tiny_alloc /work/native/src/api.c:90
    #2 0x55ac in run_op /work/native/driver/driver.c:300
"""

TSAN = """\
==================
WARNING: ThreadSanitizer: data race (pid=4242)
  Write of size 8 at 0x7b0400000000 by thread T2:
    #0 _hak_remote_push /work/native/src/remote.c:40 (libhakmem.so+0x1234)
    #1 hak_free /work/native/src/api.c:200 (libhakmem.so+0x2234)
  Previous read of size 8 at 0x7b0400000000 by thread T1:
    #0 _hak_remote_drain /work/native/src/remote.c:80 (libhakmem.so+0x1334)
"""


def test_a_sanitizer_report_is_named_by_tool_kind_and_our_top_frames() -> None:
    assert diagnose(1, ASAN_IN_DRIVER) == (
        "sanitizer",
        "asan heap-buffer-overflow in slab_carve < tiny_alloc",
    )
    assert diagnose(-6, TSAN) == ("sanitizer", "tsan data race in _hak_remote_push < hak_free")
    # the interpreter's and cffi's frames say where Python touched memory, not the bug
    assert diagnose(1, ASAN_IN_PYTHON) == ("sanitizer", "asan use-after-poison")


def test_the_same_report_gives_the_same_detail_whatever_the_addresses() -> None:
    moved = ASAN_IN_DRIVER.replace("0x55aa", "0x1234").replace(":61", ":62")
    moved = moved.replace("==77==", "==9==")
    assert diagnose(1, moved) == diagnose(1, ASAN_IN_DRIVER)


def test_ubsan_runtime_errors_lose_their_numbers() -> None:
    report = sanitizer_report("x.c:12:5: runtime error: shift exponent 70 is too large\n")
    assert report is not None
    assert report.tool == "ubsan"
    assert report.kind == "shift exponent is too large"


def test_glibc_aborts_and_plain_exits() -> None:
    assert diagnose(-6, "noise\nfree(): invalid pointer\n") == (
        "signal",
        "SIGABRT free(): invalid pointer",
    )
    assert diagnose(-11, "#8 pulse cov: 3 ft: 4 corp: 1/1b exec/s: 9 rss: 50Mb\n") == (
        "signal",
        "SIGSEGV",
    )
    assert diagnose(2, "Traceback...\nValueError: nope\n") == ("exit", "exit 2 ValueError: nope")
