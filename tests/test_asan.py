"""The asan variant poisons free tiny blocks.

A use-after-free inside a SuperSlab is an ASan report that names the stacks
that allocated and freed the block.
"""

from __future__ import annotations

import subprocess
import sys

from hakfuzz.diagnostics import diagnose

SNIPPET = """
from hakfuzz import native
hak = native.load("asan")
ffi, lib = hak.ffi, hak.lib
p = ffi.cast("unsigned char *", lib.hak_malloc(64))
p[0] = 7
lib.hak_free(p)
print(ffi.buffer(p, 8)[:])  # use after free
"""


def test_use_after_free_of_a_tiny_block_is_an_asan_report_with_both_stacks() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hakfuzz.native.sanitize",
            "asan",
            "--",
            sys.executable,
            "-c",
            SNIPPET,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    err = done.stderr
    assert done.returncode != 0
    assert "ERROR: AddressSanitizer: use-after-poison" in err, err[-3000:]
    freed = err.index("(64 bytes) freed by:")
    allocated = err.index("(64 bytes) allocated by:")
    assert "hak_free" in err[freed:allocated]
    assert "hak_malloc" in err[allocated:]
    # the campaign names it by the report, whichever engine met it
    assert diagnose(done.returncode, err) == ("sanitizer", "asan use-after-poison")
