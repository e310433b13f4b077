/* covcount.c — how many of the allocator's own code edges have run, when it
 * is built with clang's -fsanitize=fuzzer-no-link (the `coverage` variant).
 * The compiler places one 8-bit counter per edge in the __sancov_cntrs
 * section; the linker brackets it with __start_/__stop_ symbols, declared
 * weak so that every other build links and reports -1. */
#include <stdint.h>

#include "hakmem.h"

extern uint8_t __start___sancov_cntrs[] __attribute__((weak, visibility("hidden")));
extern uint8_t __stop___sancov_cntrs[] __attribute__((weak, visibility("hidden")));

int64_t hak_cov_edges(int64_t *total) {
  if (__start___sancov_cntrs == 0 || __stop___sancov_cntrs == 0) {
    if (total) *total = 0;
    return -1;
  }
  int64_t hit = 0;
  for (const uint8_t *c = __start___sancov_cntrs; c < __stop___sancov_cntrs; c++) hit += *c != 0;
  if (total) *total = (int64_t)(__stop___sancov_cntrs - __start___sancov_cntrs);
  return hit;
}
