/* asan.c — AddressSanitizer support, compiled in only by the asan variant.
 *
 * ASan knows nothing of blocks carved out of a SuperSlab, so the allocator
 * poisons them itself: a SuperSlab's block area is poisoned when it is
 * given to a class, a block is unpoisoned when it is handed to the user and
 * poisoned again when the user frees it (cached or on a free list).  A
 * use-after-free or overflow inside a SuperSlab is then an ASan report.
 * Free lists are linked through the blocks: the two accessors of those links
 * (_hak_next, _hak_set_next) are exempt from instrumentation.
 *
 * ASan shows allocation and free stacks only for its own heap, so every
 * block handed out or freed is also recorded, with its stack, in a ring of
 * recent events; ASan's error-report callback looks the faulting address up
 * there and prints the stacks that allocated and freed that block. */
#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)

#include <execinfo.h>
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RING 65536u
#define FRAMES 12

typedef struct {
  uintptr_t block;
  uint32_t size;
  uint8_t freed;   /* 0: handed out, 1: freed */
  uint8_t depth;
  void *frames[FRAMES];
} event_t;

static event_t *g_ring;
static _Atomic uint64_t g_next;

static void record(void *p, size_t size, int freed) {
  if (g_ring == NULL) return;
  uint64_t i = atomic_fetch_add_explicit(&g_next, 1, memory_order_relaxed) % RING;
  event_t *e = &g_ring[i];
  e->block = (uintptr_t)p;
  e->size = (uint32_t)size;
  e->freed = (uint8_t)freed;
  e->depth = (uint8_t)backtrace(e->frames, FRAMES);
}

static void print_event(const char *what, const event_t *e) {
  char line[160];
  int n = snprintf(line, sizeof line, "hakmem: tiny block %#lx (%u bytes) %s by:\n",
                   (unsigned long)e->block, e->size, what);
  if (n > 0 && write(2, line, (size_t)n) < 0) return;
  /* frame 0 is record(), frame 1 the hook: skip both */
  if (e->depth > 2) backtrace_symbols_fd((void *const *)&e->frames[2], e->depth - 2, 2);
}

static void on_report(const char *report) {
  (void)report;
  uintptr_t addr = (uintptr_t)__asan_get_report_address();
  if (g_ring == NULL || addr == 0) return;
  uint64_t end = atomic_load(&g_next), start = end > RING ? end - RING : 0;
  const event_t *freed = NULL, *allocated = NULL;
  for (uint64_t k = end; k-- > start;) {
    const event_t *e = &g_ring[k % RING];
    if (addr < e->block || addr >= e->block + e->size) continue;
    if (freed == NULL && allocated == NULL && e->freed) freed = e;
    else if (!e->freed) { allocated = e; break; }
  }
  if (allocated == NULL && freed == NULL) return;
  if (freed != NULL) print_event("freed", freed);
  if (allocated != NULL) print_event("allocated", allocated);
}

void _hak_asan_init(void) {
  g_ring = _hak_os_map_plain(RING * sizeof(event_t));
  __asan_set_error_report_callback(on_report);
}

void _hak_asan_poison(void *p, size_t size) { ASAN_POISON_MEMORY_REGION(p, size); }

void _hak_asan_unpoison(void *p, size_t size) { ASAN_UNPOISON_MEMORY_REGION(p, size); }

void _hak_asan_handed_out(void *p, size_t size) {
  ASAN_UNPOISON_MEMORY_REGION(p, size);
  record(p, size, 0);
}

void _hak_asan_freed(void *p, size_t size) {
  record(p, size, 1);
  ASAN_POISON_MEMORY_REGION(p, size);
}
#else
typedef int hak_asan_unused_t; /* ISO C wants a translation unit to declare something */
#endif
