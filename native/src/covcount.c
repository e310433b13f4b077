/* covcount.c — how many of the allocator's own code edges have run, when it
 * is built with clang's sanitizer coverage (the `coverage` variant).  The
 * compiler places one 8-bit counter per edge in the __sancov_cntrs section;
 * the linker brackets it with __start_/__stop_ symbols, declared weak so that
 * every other build links and reports -1.  libFuzzer clears the counters
 * before each input, so each call folds them into a cumulative map. */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>

#include "hakmem.h"

extern uint8_t __start___sancov_cntrs[] __attribute__((weak, visibility("hidden")));
extern uint8_t __stop___sancov_cntrs[] __attribute__((weak, visibility("hidden")));

static uint8_t *g_seen;  /* one byte per edge: ever hit */
static int64_t g_hit;

int64_t hak_cov_edges(int64_t *total) {
  uint8_t *start = __start___sancov_cntrs, *stop = __stop___sancov_cntrs;
  if (start == NULL || stop == NULL || stop <= start) {
    if (total) *total = 0;
    return -1;
  }
  size_t n = (size_t)(stop - start);
  if (g_seen == NULL) {
    void *map = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return -1;
    g_seen = map;
  }
  for (size_t i = 0; i < n; i++) {
    if (start[i] && !g_seen[i]) {
      g_seen[i] = 1;
      g_hit++;
    }
  }
  if (total) *total = (int64_t)n;
  return g_hit;
}
