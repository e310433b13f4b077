"""The build function: caching, concurrency, variants, loading, and the cdef vs hakmem.h.

Most tests build a throwaway C tree (``fake``) into a private cache, so they
do not depend on the allocator's sources and are fast; the ones using the
``hak`` fixture check the real allocator.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cffi
import pytest

from hakfuzz._errors import HakfuzzError
from hakfuzz.native import (
    COMMON_CFLAGS,
    VARIANTS,
    BuildError,
    HakmemModule,
    LoadError,
    NativeTree,
    build,
    cache_root,
    default_tree,
    info,
    load,
    plan,
    runtime_loaded,
    sanitizer_env,
)
from hakfuzz.native._cdef import CDEF, PREAMBLE

FAKE_HEADER = """\
#ifndef HAKMEM_H
#define HAKMEM_H
#include <stdint.h>
#define HAK_ANSWER 42
typedef struct hak_config_s { uint32_t ss_cap; uint32_t checked; } hak_config_t;
void hak_config_default(hak_config_t *cfg);
int hak_answer(void);
int hak_asserts_on(void);
void hak_sleep_ms(int ms);
#endif
"""

FAKE_SOURCE = """\
#define _POSIX_C_SOURCE 199309L
#include <time.h>
#include "hakmem.h"
#ifndef HAK_DEFAULT_CHECKED
#define HAK_DEFAULT_CHECKED 0
#endif
void hak_config_default(hak_config_t *cfg) { cfg->ss_cap = 7; cfg->checked = HAK_DEFAULT_CHECKED; }
int hak_answer(void) { return HAK_ANSWER; }
int hak_asserts_on(void) {
#ifdef NDEBUG
  return 0;
#else
  return 1;
#endif
}
void hak_sleep_ms(int ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}
"""

FAKE_CDEF = """
#define HAK_ANSWER ...
typedef struct hak_config_s { uint32_t ss_cap; uint32_t checked; } hak_config_t;
void hak_config_default(hak_config_t *cfg);
int hak_answer(void);
int hak_asserts_on(void);
void hak_sleep_ms(int ms);
"""

HEADER = default_tree().include_dir / "hakmem.h"


def make_tree(root: Path, source: str = FAKE_SOURCE) -> NativeTree:
    """A throwaway native/ tree; its preload.c does not compile, proving it is skipped."""
    (root / "src").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "include" / "hakmem.h").write_text(FAKE_HEADER)
    (root / "src" / "fake.c").write_text(source)
    (root / "src" / "preload.c").write_text("#error preload.c must not be built here\n")
    return NativeTree(root, cdef=FAKE_CDEF, name="fake")


@pytest.fixture(scope="session")
def fake_tree(tmp_path_factory: pytest.TempPathFactory) -> NativeTree:
    return make_tree(tmp_path_factory.mktemp("fake-tree"))


@pytest.fixture(scope="session")
def fake_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fake-cache")


# ---- caching -----------------------------------------------------------------


def test_second_build_is_a_cache_hit(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    messages: list[str] = []
    first = build(tree=tree, cache_dir=tmp_path / "cache", progress=messages.append)
    second = build(tree=tree, cache_dir=tmp_path / "cache", progress=messages.append)
    assert not first.cached
    assert second.cached
    assert second.path == first.path
    assert first.path.is_file()
    assert messages == ["building fake (release)..."]  # the hit builds nothing
    assert first.sources == ("fake.c",)  # preload.c is left out


def test_changed_source_or_force_rebuilds(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    first = build(tree=tree, cache_dir=cache)
    forced = build(tree=tree, cache_dir=cache, force=True)
    assert not forced.cached
    assert forced.path == first.path
    (tree.src_dir / "fake.c").write_text(FAKE_SOURCE + "\n/* changed */\n")
    changed = build(tree=tree, cache_dir=cache)
    assert not changed.cached
    assert changed.key != first.key
    assert changed.module_name != first.module_name
    entries = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert len(entries) == 2


def test_entries_are_keyed_by_variant(fake_tree: NativeTree, fake_cache: Path) -> None:
    plans = [plan(name, tree=fake_tree, cache_dir=fake_cache) for name in VARIANTS]
    assert len({p.directory for p in plans}) == len(VARIANTS)
    assert len({p.module_name for p in plans}) == len(VARIANTS)
    for p in plans:
        assert p.directory.name.startswith(f"{p.variant.name}-")
        assert re.fullmatch(rf"_fake_{p.variant.name}_[0-9a-f]{{8}}", p.module_name)
        assert p.cflags[: len(COMMON_CFLAGS)] == COMMON_CFLAGS


def test_cache_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HAKFUZZ_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("HAKFUZZ_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "hakfuzz"


def test_concurrent_builds_share_one_entry(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    script = (
        "import sys; from pathlib import Path; from hakfuzz.native import NativeTree, build; "
        "t = NativeTree(Path(sys.argv[1]), cdef=sys.argv[2], name='fake'); "
        "print(build(tree=t, cache_dir=Path(sys.argv[3])).path)"
    )
    argv = [sys.executable, "-c", script, str(tree.root), FAKE_CDEF, str(cache)]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, outputs
    assert len({out.strip() for out, _ in outputs}) == 1
    leftovers = [p.name for p in cache.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert leftovers == []
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1


def test_compile_error_names_the_file_and_leaves_no_entry(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", source=FAKE_SOURCE + "int broken(void) { return; }\n")
    cache = tmp_path / "cache"
    with pytest.raises(BuildError, match=r"fake\.c") as caught:
        build(tree=tree, cache_dir=cache)
    assert "error" in str(caught.value)
    assert [p for p in cache.iterdir() if p.is_dir()] == []


def test_warnings_are_errors(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path / "tree", source=FAKE_SOURCE + "static int unused_fn(void) { return 0; }\n"
    )
    with pytest.raises(BuildError, match="unused"):
        build(tree=tree, cache_dir=tmp_path / "cache")


def test_unknown_variant_is_a_user_error(fake_tree: NativeTree) -> None:
    with pytest.raises(HakfuzzError, match="unknown build variant 'nope'"):
        build("nope", tree=fake_tree)


# ---- loading -----------------------------------------------------------------


def test_release_and_debug_load_side_by_side(fake_tree: NativeTree, fake_cache: Path) -> None:
    release = load("release", tree=fake_tree, cache_dir=fake_cache, progress=None)
    debug = load("debug", tree=fake_tree, cache_dir=fake_cache, progress=None)
    assert release is not debug
    assert release.__name__ != debug.__name__
    assert release.lib.hak_answer() == debug.lib.hak_answer() == 42
    assert release.lib.HAK_ANSWER == 42
    assert release.lib.hak_asserts_on() == 0
    assert debug.lib.hak_asserts_on() == 1  # -UNDEBUG beats Python's own -DNDEBUG
    assert load("release", tree=fake_tree, cache_dir=fake_cache) is release


def test_info_reads_the_default_config(fake_tree: NativeTree, fake_cache: Path) -> None:
    build("debug", tree=fake_tree, cache_dir=fake_cache)
    described = info("debug", tree=fake_tree, cache_dir=fake_cache)
    assert described["built"] is True
    assert described["config"] == {"ss_cap": 7, "checked": 1}  # -DHAK_DEFAULT_CHECKED=1
    assert described["sources"] == ["fake.c"]


def test_calls_release_the_gil(fake_tree: NativeTree, fake_cache: Path) -> None:
    lib = load("release", tree=fake_tree, cache_dir=fake_cache, progress=None).lib
    threads = [threading.Thread(target=lib.hak_sleep_ms, args=(400,)) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 1.0  # 1.2 s if each call held the GIL


def test_every_hak_call_releases_the_gil_in_the_wrapper(tmp_path: Path) -> None:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_gil_check", PREAMBLE)
    ffi.emit_c_code(str(tmp_path / "wrapper.c"))
    code = (tmp_path / "wrapper.c").read_text()
    for name in header_functions():
        body = re.search(rf"_cffi_f_{name}\(PyObject \*self.*?\n}}\n", code, re.S)
        assert body is not None, name
        text = body.group(0)
        call = re.search(rf"[{{=]\s*{name}\(", text)
        assert call is not None, name
        begin, end = text.find("Py_BEGIN_ALLOW_THREADS"), text.find("Py_END_ALLOW_THREADS")
        assert 0 <= begin < call.start() < end, f"{name} is called with the GIL held"


@pytest.mark.skipif(runtime_loaded("asan"), reason="this process already has the ASan runtime")
def test_sanitizer_variant_needs_its_runtime(fake_tree: NativeTree, fake_cache: Path) -> None:
    with pytest.raises(LoadError, match=r"python -m hakfuzz\.native\.sanitize asan"):
        load("asan", tree=fake_tree, cache_dir=fake_cache)


def test_asan_variant_loads_under_its_environment(fake_tree: NativeTree, fake_cache: Path) -> None:
    build("asan", tree=fake_tree, cache_dir=fake_cache)
    script = (
        "import sys; from pathlib import Path; from hakfuzz.native import NativeTree, load; "
        "t = NativeTree(Path(sys.argv[1]), cdef=sys.argv[2], name='fake'); "
        "print(load('asan', tree=t, cache_dir=Path(sys.argv[3])).lib.hak_answer())"
    )
    env = {**os.environ, **sanitizer_env("asan")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(fake_tree.root), FAKE_CDEF, str(fake_cache)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_sanitizer_env_puts_the_runtime_first() -> None:
    assert sanitizer_env("release") == {}
    env = sanitizer_env("asan", base={"LD_PRELOAD": "/x/libfoo.so", "ASAN_OPTIONS": "verbosity=1"})
    first, rest = env["LD_PRELOAD"].split(" ", 1)
    assert "libasan.so" in first
    assert rest == "/x/libfoo.so"
    assert env["ASAN_OPTIONS"] == "detect_leaks=0:verbosity=1"  # the caller's settings win
    assert "libtsan.so" in sanitizer_env("tsan", base={})["LD_PRELOAD"]


# ---- the cdef mirrors hakmem.h ---------------------------------------------


def _header_text() -> str:
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_functions() -> list[str]:
    """Every hak_* function declared in hakmem.h."""
    return sorted(set(re.findall(r"\b(hak_\w+)\s*\(", _header_text())))


def header_constants() -> list[str]:
    """Every HAK_* #define and enum constant of hakmem.h."""
    text = _header_text()
    defines = re.findall(r"#define\s+(HAK_\w+)\s+\S", text)
    enumerators = re.findall(r"\b(HAK_\w+)\s*=", text)
    return sorted(set(defines) | set(enumerators))


def _declared(name: str, text: str) -> bool:
    return re.search(rf"\b{name}\b", text) is not None


def test_every_header_function_is_in_the_cdef() -> None:
    functions = header_functions()
    assert "hak_malloc" in functions
    assert len(functions) >= 20
    missing = [name for name in functions if not _declared(name, CDEF)]
    assert missing == [], f"declare these in native/_cdef.py: {missing}"
    extra = set(re.findall(r"\b(hak_\w+)\s*\(", CDEF)) - set(functions)
    assert extra == set(), f"not in hakmem.h: {sorted(extra)}"


def test_every_header_constant_and_type_is_in_the_cdef() -> None:
    missing = [name for name in header_constants() if not _declared(name, CDEF)]
    assert missing == [], f"declare these in native/_cdef.py: {missing}"
    types = set(re.findall(r"\b(hak_\w+_t)\b", _header_text()))
    assert [t for t in sorted(types) if not _declared(t, CDEF)] == []


def test_loaded_module_has_every_header_name(hak: HakmemModule) -> None:
    names = set(dir(hak.lib))
    assert [n for n in header_functions() + header_constants() if n not in names] == []
    assert len(hak.ffi.new("hak_stats_t *").cls) == hak.lib.HAK_NUM_CLASSES
    assert hak.ffi.sizeof("hak_stats_t") > 0  # layout checked by cffi at load


def test_allocator_round_trip(hak: HakmemModule) -> None:
    lib, ffi = hak.lib, hak.ffi
    ptr = lib.hak_malloc(24)
    assert ptr != ffi.NULL
    where = ffi.new("hak_location_t *")
    lib.hak_locate(ptr, where)
    assert where.owner == lib.HAK_OWNER_TINY
    assert where.class_idx == 2  # 24 bytes -> the 32-byte class
    lib.hak_free(ptr)
    msg = ffi.new("char[]", lib.HAK_CHECK_MSG_MAX)
    assert lib.hak_check(msg, lib.HAK_CHECK_MSG_MAX) == 0, ffi.string(msg).decode()
