/* backend_hakmem.c — the driver's allocator in hakdriver: hakmem, linked in
 * statically, or glibc (--allocator glibc) as a reference that must pass the
 * same neutral oracles.  hakmem alone is also checked from inside: owner and
 * class by hak_locate, counters by hak_stats, invariants by hak_check. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "hakmem.h"

extern size_t malloc_usable_size(void *);
static size_t glibc_usable(const void *p) { return malloc_usable_size((void *)p); }

typedef struct {
  drv_alloc_t alloc;
  size_t (*usable)(const void *);
  int is_hakmem;
} vt_t;

static const vt_t g_hakmem = {
    {hak_malloc, hak_calloc, hak_realloc, hak_posix_memalign, hak_aligned_alloc, hak_libc_malloc},
    hak_usable_size, 1};
static const vt_t g_glibc = {{malloc, calloc, realloc, posix_memalign, aligned_alloc, malloc},
                             glibc_usable, 0};
static const vt_t *A = &g_hakmem;
const drv_alloc_t *drv_alloc = &g_hakmem.alloc;
static int g_fallback_possible; /* a capped hakmem may hand a request to glibc */

int drv_be_option(const char *flag, const char *value) {
  if (strcmp(flag, "--allocator") != 0) return 0;
  if (strcmp(value, "glibc") == 0) A = &g_glibc;
  else if (strcmp(value, "hakmem") != 0) {
    fprintf(stderr, "hakdriver: unknown allocator %s\n", value);
    return -1;
  }
  drv_alloc = &A->alloc;
  return 1;
}

int drv_be_init(void) { return 0; }

int drv_be_configure(const uint64_t v[9], int *null_possible) {
  if (!A->is_hakmem) return 0;
  hak_config_t cfg;
  cfg.ss_cap = (uint32_t)v[0]; cfg.budget_bytes = v[1]; cfg.oom_policy = (uint32_t)v[2];
  cfg.cache_cap = (uint32_t)v[3]; cfg.refill_batch = (uint32_t)v[4];
  cfg.release_empty = (uint32_t)v[5]; cfg.ss_keep = (uint32_t)v[6]; cfg.checked = (uint32_t)v[7];
  cfg.fail_map_at = (uint32_t)v[8];
  hak_reset();
  if (hak_configure(&cfg) != 0) { fprintf(stderr, "hakdriver: invalid allocator config\n"); return 2; }
  int limited = cfg.ss_cap != 0 || cfg.budget_bytes != 0 || cfg.fail_map_at != 0;
  g_fallback_possible = limited && cfg.oom_policy == HAK_OOM_LIBC;
  *null_possible = limited && cfg.oom_policy == HAK_OOM_NULL;
  return 0;
}

static unsigned class_of(size_t n) {
  if (n <= 8) return 0;
  return (unsigned)(64 - __builtin_clzll((unsigned long long)(n - 1))) - 3u;
}

void drv_be_check_new_block(uint32_t i, uint32_t hid, drv_handle_t *h, void *p, size_t need,
                            size_t align, int must_be_libc) {
  size_t usable = A->usable(p);
  if (usable < h->size)
    drv_fail("usable_size", i, hid, "usable size %zu < requested %u", usable, h->size);
  if (align > 1 && ((uintptr_t)p & (align - 1)) != 0)
    drv_fail("alignment", i, hid, "%p is not aligned to %zu", p, align);
  h->extent = (uint32_t)(usable > h->size ? usable : h->size);
  if (!A->is_hakmem) return;
  hak_location_t loc;
  hak_locate(p, &loc);
  if (must_be_libc || need > HAK_MAX_BLOCK) {
    if (loc.owner != HAK_OWNER_LIBC)
      drv_fail("owner", i, hid, "expected a glibc pointer, hak_locate says owner %u", loc.owner);
    h->extent = h->size ? h->size : 1; /* glibc's usable size may cover its neighbour's header */
    return;
  }
  if (loc.owner == HAK_OWNER_LIBC) {
    if (!g_fallback_possible)
      drv_fail("owner", i, hid, "a %zu-byte request was served by glibc with no cap set", need);
    h->extent = h->size ? h->size : 1;
    return;
  }
  if (loc.owner != HAK_OWNER_TINY)
    drv_fail("owner", i, hid, "hak_locate says owner %u for a fresh block", loc.owner);
  else if ((unsigned)loc.class_idx != class_of(need))
    drv_fail("class", i, hid, "a %zu-byte request got class %d", need, loc.class_idx);
  else if (((uintptr_t)p & ((8u << loc.class_idx) - 1)) != 0)
    drv_fail("alignment", i, hid, "%p is not aligned to its class size", p);
}

int drv_be_usable(const drv_handle_t *h, size_t *usable) {
  *usable = A->usable(h->ptr);
  return 1;
}

/* A tiny block's usable size is its class size exactly. */
void drv_be_check_usable(uint32_t i, uint32_t hid, const drv_handle_t *h, size_t usable) {
  if (!A->is_hakmem) return;
  hak_location_t loc;
  hak_locate(h->ptr, &loc);
  if (loc.owner == HAK_OWNER_TINY && usable != (size_t)8 << loc.class_idx)
    drv_fail("usable_size", i, hid, "usable size %zu of a class-%d block", usable, loc.class_idx);
}

int drv_be_usable_null(size_t *usable) {
  *usable = A->usable(NULL);
  return 1;
}

void drv_be_free_block(uint32_t i, uint32_t hid, drv_handle_t *h) {
  (void)i, (void)hid;
  if (A->is_hakmem) hak_free(h->ptr); else free(h->ptr);
}

/* hak_realloc also takes the glibc blocks hak_libc_malloc made. */
void *drv_be_realloc_block(uint32_t i, uint32_t hid, drv_handle_t *h, size_t size) {
  (void)i, (void)hid;
  return h->from_libc && A->is_hakmem ? hak_realloc(h->ptr, size) : A->alloc.realloc(h->ptr, size);
}

/* realloc(p, 0) frees p and returns NULL (docs/policy.md; glibc does the
 * same), so a block it returns is itself the failure. */
int drv_be_realloc_zero_freed(const void *result) {
  (void)result;
  return 1;
}

int drv_be_realloc_keeps_libc(const drv_handle_t *h) {
  (void)h;
  return 0;
}

/* free(NULL) must do nothing: with one thread nothing else moves the
 * counters, so they must read the same after it. */
void drv_be_free_null(uint32_t i, uint32_t threads) {
  if (!A->is_hakmem || threads != 1) {
    if (A->is_hakmem) hak_free(NULL); else free(NULL);
    return;
  }
  hak_stats_t before, after;
  hak_stats(&before);
  hak_free(NULL);
  hak_stats(&after);
  if (memcmp(&before, &after, sizeof before) != 0)
    drv_fail("free_null", i, -1, "free(NULL) changed the allocator's counters");
}

void drv_be_flush(void) {
  if (A->is_hakmem) hak_flush();
}

void drv_be_check(uint32_t i) {
  if (!A->is_hakmem) return;
  char msg[HAK_CHECK_MSG_MAX];
  if (hak_check(msg, sizeof msg)) drv_fail("hak_check", i, -1, "%s", msg);
}

/* Everything freed and every thread gone: every counter back to zero and
 * hak_check clean. */
void drv_be_final_checks(uint32_t last) {
  if (!A->is_hakmem) return;
  hak_flush();
  hak_stats_t st;
  hak_stats(&st);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    if (st.cls[c].active_blocks != 0 || st.cls[c].remote_pending != 0 || st.cls[c].slabs_in_use != 0)
      drv_fail("quiescence", last, -1,
               "class %u after every free and thread exit: active %llu, remote_pending %lld, slabs_in_use %llu",
               c, (unsigned long long)st.cls[c].active_blocks, (long long)st.cls[c].remote_pending,
               (unsigned long long)st.cls[c].slabs_in_use);
  }
  char msg[HAK_CHECK_MSG_MAX];
  if (hak_check(msg, sizeof msg)) drv_fail("hak_check", last, -1, "at the end: %s", msg);
}

/* hakdriver links hakmem directly: glibc's pthread bookkeeping never
 * allocates through it. */
int drv_be_own_stacks(void) { return 0; }

void drv_be_print_identity(void) {
  printf("\"allocator\": \"%s\", ", A->is_hakmem ? "hakmem" : "glibc");
}

void drv_be_print_stats(void) {
  if (!A->is_hakmem) return;
  hak_stats_t st;
  hak_stats(&st);
  printf("\"stats\": {\"classes\": [");
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    const hak_class_stats_t *s = &st.cls[c];
    printf("%s[%llu, %llu, %llu, %llu, %llu, %lld, %llu, %llu]", c ? ", " : "",
           (unsigned long long)s->ss_live, (unsigned long long)s->ss_created,
           (unsigned long long)s->ss_released, (unsigned long long)s->slabs_in_use,
           (unsigned long long)s->active_blocks, (long long)s->remote_pending,
           (unsigned long long)s->fallback_allocs, (unsigned long long)s->oom_nulls);
  }
  printf("], \"ss_mapped\": %llu, \"ss_kept\": %llu, \"os_maps\": %llu, \"os_map_failures\": %llu, "
         "\"os_unmaps\": %llu}, ",
         (unsigned long long)st.ss_mapped, (unsigned long long)st.ss_kept,
         (unsigned long long)st.os_maps, (unsigned long long)st.os_map_failures,
         (unsigned long long)st.os_unmaps);
}
