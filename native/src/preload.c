/* preload.c — the standard allocation names, for LD_PRELOAD=libhakmem.so.
 *
 * Initialisation is lazy and allocation-free (options come from getenv, the
 * thread record from mmap), so glibc or the loader may call malloc before
 * or during our set-up without recursing.  Fork safety comes from the
 * atfork handlers installed by _hak_init.  HAKMEM_STATS=1 prints the
 * allocator's counters at exit, which proves the preload served the calls.
 * They go to a duplicate of stderr taken at start-up: many programs (every
 * coreutils one) close stderr in their own atexit handler, which runs before
 * ours. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define EXPORT __attribute__((visibility("default")))

static int g_stats_fd = -1;

static void print_stats_at_exit(void) { _hak_stats_print_fd(g_stats_fd); }

__attribute__((constructor)) static void preload_init(void) {
  _hak_init();
  hak_configure_from_env();
  const char *stats = getenv("HAKMEM_STATS");
  if (stats != NULL && strcmp(stats, "1") == 0) {
    g_stats_fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
    if (g_stats_fd < 0) g_stats_fd = 2;
    atexit(print_stats_at_exit);
  }
}

EXPORT void *malloc(size_t size) { return hak_malloc(size); }
EXPORT void free(void *ptr) { hak_free(ptr); }
EXPORT void cfree(void *ptr) { hak_free(ptr); }
EXPORT void *calloc(size_t count, size_t size) { return hak_calloc(count, size); }
EXPORT void *realloc(void *ptr, size_t size) { return hak_realloc(ptr, size); }
EXPORT int posix_memalign(void **out, size_t alignment, size_t size) {
  return hak_posix_memalign(out, alignment, size);
}
EXPORT void *aligned_alloc(size_t alignment, size_t size) { return hak_aligned_alloc(alignment, size); }
EXPORT void *memalign(size_t alignment, size_t size) {
  /* glibc's memalign rounds a non-power-of-two alignment up. */
  size_t a = sizeof(void *);
  while (a < alignment) a <<= 1;
  return hak_aligned_alloc(a, size);
}
EXPORT void *valloc(size_t size) {
  return hak_aligned_alloc((size_t)sysconf(_SC_PAGESIZE), size);
}
EXPORT void *pvalloc(size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t rounded = (size + page - 1) & ~(page - 1);
  if (rounded < size) {
    errno = ENOMEM;
    return NULL;
  }
  return hak_aligned_alloc(page, rounded ? rounded : page);
}
EXPORT size_t malloc_usable_size(void *ptr) { return hak_usable_size(ptr); }

/* ---- hakfuzz hooks: looked up by hakfuzz's foreign driver with dlsym ---- */

/* Our own heap check (hak_check); nonzero with the reason in msg when broken. */
EXPORT int hakfuzz_check(char *msg, size_t len) { return hak_check(msg, len); }

/* 1: a block of one of our SuperSlabs; 0: inside our memory but not a block
 * (a fresh block must never be that); -1: not ours to tell, a glibc pointer
 * (we hand requests above HAK_MAX_BLOCK and capped ones to glibc ourselves). */
EXPORT int hakfuzz_owns(void *ptr) {
  hak_location_t loc;
  hak_locate(ptr, &loc);
  if (loc.owner == HAK_OWNER_TINY) return 1;
  return loc.owner == HAK_OWNER_LIBC ? -1 : 0;
}

/* One option by its hak_config_t field name (or HAKMEM_<NAME> spelling),
 * value as HAKMEM_<NAME> takes it (decimal; oom_policy also "libc" or
 * "null"): 0 applied, EINVAL refused (nothing changed). */
EXPORT int hakfuzz_configure(const char *key, const char *value) {
  return _hak_option_set(key, value);
}

/* Counters that are back to where they started once every block is freed
 * and every thread has exited: blocks and bytes held in our SuperSlabs (by
 * the program or a cache), blocks pending on remote stacks, and the slabs
 * in use.  The calling thread's cache is returned to its slabs first (the
 * other threads' caches were drained when they exited), so the counters
 * are those of blocks really held.  "key=value" lines; 0, or ERANGE when
 * len is too small. */
EXPORT int hakfuzz_stats(char *buf, size_t len) {
  hak_flush();
  hak_stats_t st;
  hak_stats(&st);
  unsigned long long blocks = 0, bytes = 0, slabs = 0;
  long long remote = 0;
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    blocks += st.cls[c].active_blocks;
    bytes += st.cls[c].active_blocks * ((unsigned long long)HAK_MIN_BLOCK << c);
    remote += st.cls[c].remote_pending;
    slabs += st.cls[c].slabs_in_use;
  }
  int n = snprintf(buf, len, "live_blocks=%llu\nlive_bytes=%llu\nremote_pending=%lld\nslabs_in_use=%llu\n",
                   blocks, bytes, remote, slabs);
  return n < 0 || (size_t)n >= len ? ERANGE : 0;
}
