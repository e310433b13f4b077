"""hakfuzz.native: the hakmem allocator (C, in ``src/`` and ``include/``) and its cffi build.

Build and load::

    from hakfuzz import native
    result = native.build("debug")          # compile, or find in the cache
    hak = native.load()                     # $HAKFUZZ_VARIANT or "release"
    p = hak.lib.hak_malloc(24)
    hak.lib.hak_free(p)

Variants (:data:`VARIANTS`): ``release`` (-O2 -DNDEBUG), ``debug`` (-O0,
asserts on, ``-DHAK_DEFAULT_CHECKED=1``), ``asan`` (AddressSanitizer +
UBSan) and ``tsan`` (ThreadSanitizer).  Every allocator source except
``preload.c`` is compiled with ``-std=c11 -Wall -Wextra -Werror -pthread
-fPIC``; builds are cached under ``$HAKFUZZ_CACHE`` (default
``~/.cache/hakfuzz``) in ``build/<variant>-<hash>/``, keyed by the bytes of
every source and header, the flags, the compiler version and the Python and
cffi versions.  Each build has its own module name
(``_hakmem_<variant>_<hash8>``), so variants can be loaded side by side.

Sanitizer variants load only in a process started with their runtime in
``LD_PRELOAD``: use :func:`sanitizer_env` / :func:`asan_env`, or run
``python -m hakfuzz.native.sanitize asan -- COMMAND`` (what ``tox -e
sanitize`` does).

The GIL: cffi's API mode releases the GIL around *every* call into ``lib``
(the generated wrapper brackets each call with ``Py_BEGIN_ALLOW_THREADS``),
so the calls that may block or run long — ``hak_check``, ``hak_reset``,
``hak_flush``, ``hak_thread_exit``, ``hak_configure``, ``hak_stats`` — let
other Python threads run, and Python threads calling ``hak_malloc`` /
``hak_free`` really do run in parallel.  ``tests/test_build.py`` checks the
generated wrapper for this.  ``errno`` after a call is ``ffi.errno``.
"""

from hakfuzz.native._build import (
    BuildError,
    BuildPlan,
    BuildResult,
    NativeTree,
    build,
    build_cache_dir,
    cache_root,
    default_tree,
    plan,
)
from hakfuzz.native._info import info
from hakfuzz.native._loader import HakmemModule, LoadError, load, runtime_loaded
from hakfuzz.native._toolchain import (
    COMMON_CFLAGS,
    VARIANTS,
    Variant,
    asan_env,
    find_compiler,
    sanitizer_env,
    tsan_env,
)

__all__ = [
    "COMMON_CFLAGS",
    "VARIANTS",
    "BuildError",
    "BuildPlan",
    "BuildResult",
    "HakmemModule",
    "LoadError",
    "NativeTree",
    "Variant",
    "asan_env",
    "build",
    "build_cache_dir",
    "cache_root",
    "default_tree",
    "find_compiler",
    "info",
    "load",
    "plan",
    "runtime_loaded",
    "sanitizer_env",
    "tsan_env",
]
