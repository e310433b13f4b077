/* preloadcalls.c — the allocation calls only a preloaded malloc sees.
 *
 *   preloadcalls SEED ROUNDS
 *
 * Run under LD_PRELOAD=libhakmem.so and under plain glibc: every line it
 * prints states a behaviour the C standard or glibc's manual promises
 * (never an address or a size only one allocator would give), so the two
 * outputs must be equal.  realloc(NULL, n), realloc(p, 0), free(NULL),
 * malloc_usable_size of NULL and of every kind of block, aligned_alloc,
 * memalign, valloc, pvalloc, reallocarray and calloc overflow, and blocks
 * past glibc's mmap threshold handed through realloc.  A broken promise
 * prints "FAIL" and the process exits 1; a crash is a crash. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_failed;

static void check(int ok, const char *what, size_t n) {
  if (!ok) {
    printf("FAIL %s (n=%zu)\n", what, n);
    g_failed = 1;
  }
}

static uint64_t next(uint64_t *state) {
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

static void fill(unsigned char *p, size_t n, unsigned char seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 31);
}

static int same(const unsigned char *p, size_t n, unsigned char seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed + i * 31)) return 0;
  return 1;
}

/* A size: mostly small classes, sometimes past the tiny limit, rarely past
 * glibc's 128 KiB mmap threshold. */
static size_t size_of(uint64_t *state) {
  uint64_t r = next(state) % 100;
  if (r < 70) return (size_t)(next(state) % 1025);
  if (r < 95) return 1025 + (size_t)(next(state) % 60000);
  return (size_t)(128 * 1024 + next(state) % (4u << 20));
}

static void one_round(uint64_t *state) {
  size_t n = size_of(state), m = size_of(state) + 1; /* realloc(p, 0) is tried below */
  unsigned char seed = (unsigned char)next(state);

  free(NULL);
  check(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) == 0", 0);

  unsigned char *p = realloc(NULL, n);
  check(p != NULL, "realloc(NULL, n) allocates", n);
  if (p == NULL) return;
  check(malloc_usable_size(p) >= n, "usable size >= request after realloc(NULL, n)", n);
  fill(p, n, seed);
  unsigned char *q = realloc(p, m);
  check(q != NULL, "realloc grows or shrinks", m);
  if (q == NULL) {
    free(p);
    return;
  }
  check(same(q, n < m ? n : m, seed), "realloc keeps the common prefix", m);
  check(malloc_usable_size(q) >= m, "usable size >= request after realloc", m);
  q = realloc(q, 0); /* glibc frees and returns NULL; either way no leak, no crash */
  free(q);

  size_t align = (size_t)1 << (3 + next(state) % 10); /* 8 .. 4096 */
  size_t rounded = (n + align - 1) / align * align;
  void *a = aligned_alloc(align, rounded ? rounded : align);
  check(a != NULL && (uintptr_t)a % align == 0, "aligned_alloc is aligned", align);
  if (a != NULL) {
    fill(a, rounded, seed);
    unsigned char *b = realloc(a, m);
    check(b != NULL && same(b, rounded < m ? rounded : m, seed), "realloc of aligned keeps data", m);
    free(b);
  }
  void *ma = memalign(align, n);
  check(ma != NULL && (uintptr_t)ma % align == 0, "memalign is aligned", align);
  free(ma);
  void *pm = NULL;
  int rc = posix_memalign(&pm, align, n);
  check(rc == 0 && (uintptr_t)pm % align == 0, "posix_memalign is aligned", align);
  free(pm);
  pm = (void *)1;
  rc = posix_memalign(&pm, 24, n); /* not a power of two */
  check(rc == EINVAL && pm == (void *)1, "posix_memalign(24) is EINVAL and leaves out", n);

  long page = sysconf(_SC_PAGESIZE);
  void *v = valloc(n);
  check(v != NULL && (uintptr_t)v % (uintptr_t)page == 0, "valloc is page-aligned", n);
  free(v);
  void *pv = pvalloc(n);
  check(pv != NULL && (uintptr_t)pv % (uintptr_t)page == 0, "pvalloc is page-aligned", n);
  /* pvalloc(0) is a minimal block in glibc: only a real size must round up */
  check(pv == NULL || n == 0 || malloc_usable_size(pv) >= (size_t)page,
        "pvalloc rounds to a page", n);
  free(pv);

  /* volatile: the compiler must not see (and refuse) the overflow at build time */
  volatile size_t half = SIZE_MAX / 2 + 1, quarter = SIZE_MAX / 4;
  errno = 0;
  void *over = calloc(half, 2);
  check(over == NULL && errno == ENOMEM, "calloc overflow is NULL/ENOMEM", 0);
  errno = 0;
  void *arr = reallocarray(NULL, quarter, 8);
  check(arr == NULL && errno == ENOMEM, "reallocarray overflow is NULL/ENOMEM", 0);
  unsigned char *z = calloc(n ? n : 1, 1);
  check(z != NULL, "calloc allocates", n);
  if (z != NULL) {
    size_t i = 0;
    while (i < n && z[i] == 0) i++;
    check(i == n, "calloc zeroes", n);
    free(z);
  }
}

int main(int argc, char **argv) {
  uint64_t state = argc > 1 ? strtoull(argv[1], NULL, 10) * 2654435761u + 1 : 1;
  long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 200;
  setvbuf(stdout, NULL, _IOLBF, 0); /* what was printed survives a crash */
  for (long r = 0; r < rounds; r++) one_round(&state);
  printf("%ld rounds: %s\n", rounds, g_failed ? "FAILED" : "every promise kept");
  return g_failed;
}
