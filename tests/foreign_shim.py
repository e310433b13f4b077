"""A tiny LD_PRELOAD allocator for the tests of the foreign paths, built per test session.

It takes its memory from glibc behind a 16-byte header (magic, size, raw
pointer) and exports every ``hakfuzz_*`` hook, so each behaviour a test needs
is one request size or one ``-D`` away:

- ``malloc(4242)`` dies of SIGSEGV, ``malloc(4243)`` never returns,
  ``hakfuzz_owns`` denies a fresh block of 4244 bytes;
- ``hakfuzz_configure`` records every pair; with ``echo=1`` among them
  ``hakfuzz_check`` fails and says what it was given;
- ``hakfuzz_stats`` reports ``live_blocks``; ``-DLEAKY_STATS`` forgets to count
  the free of a 100-byte block;
- a pointer without the header (glibc's) is handed back to glibc, unless
  ``-DGUESS_OWNER``: then, like the allocator of the original crash, it decides ownership
  from the bytes in front of the pointer and aborts with glibc's words;
- ``-DNO_MALLOC``: a library that loads but replaces nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hakfuzz.targets import Target, resolve_target

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef NO_MALLOC
extern void *__libc_malloc(size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
#define MAGIC 0x5348494du
typedef struct { uint32_t magic, size; void *raw; } hdr_t;
static atomic_long live;
static char configured[2048];

static void *wrap(void *raw, size_t align, size_t n) {
  if (raw == NULL) return NULL;
  hdr_t *h = (hdr_t *)((char *)raw + align) - 1;
  h->magic = MAGIC; h->size = (uint32_t)n; h->raw = raw;
  atomic_fetch_add(&live, 1);
  return h + 1;
}
static hdr_t *ours(void *p) {
  hdr_t *h = (hdr_t *)p - 1;
  return h->magic == MAGIC ? h : NULL;
}
void *malloc(size_t n) {
  if (n == 4242) raise(SIGSEGV);
  if (n == 4243) for (;;) pause();
  if (n > SIZE_MAX - 64) { errno = ENOMEM; return NULL; }
  return wrap(__libc_malloc(n + 16), 16, n);
}
void free(void *p) {
  if (p == NULL) return;
  hdr_t *h = ours(p);
  if (h == NULL) {
#ifdef GUESS_OWNER
    fprintf(stderr, "free(): invalid pointer\n");
    abort();
#else
    __libc_free(p);
    return;
#endif
  }
  h->magic = 0;
#ifdef LEAKY_STATS
  if (h->size != 100)
#endif
  atomic_fetch_sub(&live, 1);
  __libc_free(h->raw);
}
void *calloc(size_t k, size_t n) {
  if (n && k > (SIZE_MAX - 64) / n) { errno = ENOMEM; return NULL; }
  void *p = malloc(k * n);
  if (p) memset(p, 0, k * n);
  return p;
}
void *memalign(size_t align, size_t n) {
  if (align < 16) align = 16;
  if (n > SIZE_MAX - 2 * align) { errno = ENOMEM; return NULL; }
  return wrap(__libc_memalign(align, n + align), align, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
  void *p = memalign(align, n);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}
void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
size_t malloc_usable_size(void *p) {
  if (p == NULL) return 0;
  hdr_t *h = ours(p);
  if (h == NULL) {
    size_t (*glibc)(void *) = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    return glibc(p);
  }
  return h->size;
}
void *realloc(void *p, size_t n) {
  if (p == NULL) return malloc(n);
  if (n == 0) { free(p); return NULL; }
  hdr_t *h = ours(p);
  if (h == NULL) {
#ifdef GUESS_OWNER
    fprintf(stderr, "realloc(): invalid pointer\n");
    abort();
#else
    return __libc_realloc(p, n);
#endif
  }
  void *q = malloc(n);
  if (q == NULL) return NULL;
  memcpy(q, p, h->size < n ? h->size : n);
  free(p);
  return q;
}
int hakfuzz_configure(const char *key, const char *value) {
  size_t at = strlen(configured);
  snprintf(configured + at, sizeof configured - at, "%s=%s;", key, value);
  return 0;
}
int hakfuzz_check(char *msg, size_t len) {
  if (strstr(configured, "echo=1;") == NULL) return 0;
  snprintf(msg, len, "configured: %s", configured);
  return 1;
}
int hakfuzz_owns(void *p) {
  hdr_t *h = ours(p);
  if (h == NULL) return -1;
  return h->size == 4244 ? 0 : 1;
}
int hakfuzz_stats(char *buf, size_t len) {
  snprintf(buf, len, "live_blocks=%ld\n", atomic_load(&live));
  return 0;
}
#else
int shim_nothing(void) { return 0; }
#endif
"""


def build(directory: Path, *defines: str) -> Path:
    """``libshim[-defines].so`` in ``directory``; skips the test without a C compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src = directory / "shim.c"
    src.write_text(SOURCE)
    suffix = "".join(f"-{d.lower()}" for d in defines)
    lib = directory / f"libshim{suffix}.so"
    subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", "-pthread", *(f"-D{d}" for d in defines), "-o",
         str(lib), str(src), "-ldl"],
        check=True,
    )
    return lib


def target(directory: Path, *defines: str) -> Target:
    """The shim built with ``defines``, resolved as a target by path."""
    return resolve_target(str(build(directory, *defines)))
