/* backend_foreign.c — the driver's allocator in hakdriver-foreign: whatever
 * LD_PRELOAD put under the standard names.  Only allocator-neutral oracles
 * run, plus the target's hakfuzz_* hooks when it exports them (foreign.c
 * finds them).  libc_alloc blocks come from glibc itself, and with
 * --foreign-frees on (the default) the target frees and resizes them:
 * pointers it did not make. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "foreign.h"

/* hakmem.h's bound, which this build does not include. */
#define DRV_CHECK_MSG_MAX 256

static void *libc_malloc(size_t size) { return drv_libc.malloc(size); }

/* The standard names bind to the preloaded target. */
static const drv_alloc_t g_target = {malloc, calloc, realloc, posix_memalign, aligned_alloc,
                                     libc_malloc};
const drv_alloc_t *drv_alloc = &g_target;
static int g_foreign_frees = 1;

int drv_be_option(const char *flag, const char *value) {
  if (strcmp(flag, "--foreign-frees") == 0) {
    if (strcmp(value, "on") == 0) g_foreign_frees = 1;
    else if (strcmp(value, "off") == 0) g_foreign_frees = 0;
    else { fprintf(stderr, "hakdriver: --foreign-frees %s: expected on or off\n", value); return -1; }
    return 1;
  }
  if (strcmp(flag, "--allocator") == 0) {
    if (strcmp(value, "target") != 0) {
      fprintf(stderr, "hakdriver: the foreign driver runs the preloaded target (--allocator target), not %s\n", value);
      return -1;
    }
    return 1;
  }
  return 0;
}

int drv_be_init(void) { return drv_foreign_init(); }

/* The program's config, through the target's hakfuzz_configure when it has
 * one (our libhakmem.so does); a target without it runs as it is. */
int drv_be_configure(const uint64_t cfg[9], int *null_possible) {
  if (drv_hook_configure == NULL) return 0;
  static const char *const keys[9] = {"ss_cap", "budget_bytes", "oom_policy", "cache_cap",
                                      "refill_batch", "release_empty", "ss_keep", "checked",
                                      "fail_map_at"};
  char value[32];
  for (unsigned k = 0; k < 9; k++) {
    snprintf(value, sizeof value, "%llu", (unsigned long long)cfg[k]);
    if (drv_hook_configure(keys[k], value) != 0) {
      fprintf(stderr, "hakdriver: hakfuzz_configure(%s, %s) refused\n", keys[k], value);
      return 2;
    }
  }
  int limited = cfg[0] != 0 || cfg[1] != 0 || cfg[8] != 0;
  *null_possible = limited && cfg[2] == 1;
  return 0;
}

/* The usable size of a block: glibc's blocks asked of glibc itself. */
static size_t usable_of(const drv_handle_t *h) {
  return h->from_libc ? drv_libc.usable(h->ptr) : malloc_usable_size(h->ptr);
}

void drv_be_check_new_block(uint32_t i, uint32_t hid, drv_handle_t *h, void *p, size_t need,
                            size_t align, int must_be_libc) {
  (void)need;
  if (align > 1 && ((uintptr_t)p & (align - 1)) != 0)
    drv_fail("alignment", i, hid, "%p is not aligned to %zu", p, align);
  h->extent = h->size ? h->size : 1;
  if (must_be_libc || drv_target_usable) {
    size_t usable = usable_of(h);
    if (usable < h->size)
      drv_fail("usable_size", i, hid, "usable size %zu < requested %u", usable, h->size);
    /* A glibc block's extent stays its request: glibc's usable size may
     * cover its neighbour's header. */
    if (!must_be_libc && usable > h->size) h->extent = (uint32_t)usable;
  }
  if (drv_hook_owns != NULL) {
    int owns = drv_hook_owns(p);
    if (must_be_libc && owns == 1)
      drv_fail("owns", i, hid, "hakfuzz_owns says a glibc block %p is the allocator's own", p);
    else if (!must_be_libc && owns == 0)
      drv_fail("owns", i, hid, "hakfuzz_owns denies the allocator's own fresh block %p", p);
  }
}

/* A target without its own malloc_usable_size leaves glibc's, which must
 * never see the target's pointers. */
int drv_be_usable(const drv_handle_t *h, size_t *usable) {
  if (!h->from_libc && !drv_target_usable) return 0;
  *usable = usable_of(h);
  return 1;
}

void drv_be_check_usable(uint32_t i, uint32_t hid, const drv_handle_t *h, size_t usable) {
  (void)i, (void)hid, (void)h, (void)usable;
}

int drv_be_usable_null(size_t *usable) {
  if (!drv_target_usable) return 0;
  *usable = malloc_usable_size(NULL);
  return 1;
}

/* A glibc block goes back through the target (a foreign free) or glibc. */
void drv_be_free_block(uint32_t i, uint32_t hid, drv_handle_t *h) {
  if (!h->from_libc) free(h->ptr);
  else if (!g_foreign_frees) drv_libc.free(h->ptr);
  else {
    drv_foreign_enter("free()", i, hid);
    free(h->ptr);
    drv_foreign_leave();
  }
}

void *drv_be_realloc_block(uint32_t i, uint32_t hid, drv_handle_t *h, size_t size) {
  if (!h->from_libc) return realloc(h->ptr, size);
  if (!g_foreign_frees) return drv_libc.realloc(h->ptr, size);
  drv_foreign_enter("realloc()", i, hid);
  void *p = realloc(h->ptr, size);
  drv_foreign_leave();
  return p;
}

/* C leaves realloc(p, 0) to the implementation: NULL (p freed) or a block
 * of size 0, which then lives on like any other. */
int drv_be_realloc_zero_freed(const void *result) { return result == NULL; }

/* glibc's realloc keeps a glibc block glibc's. */
int drv_be_realloc_keeps_libc(const drv_handle_t *h) { return h->from_libc && !g_foreign_frees; }

/* Counters are hakmem's alone: here free(NULL) need only not crash. */
void drv_be_free_null(uint32_t i, uint32_t threads) {
  (void)i, (void)threads;
  free(NULL);
}

void drv_be_flush(void) {}

/* The target's own heap check; every thread is held at this check. */
void drv_be_check(uint32_t i) {
  if (drv_hook_check == NULL) return;
  char msg[DRV_CHECK_MSG_MAX];
  msg[0] = '\0';
  if (drv_hook_check(msg, sizeof msg)) {
    msg[sizeof msg - 1] = '\0';
    drv_fail("hakfuzz_check", i, -1, "%s", msg);
  }
}

/* Everything freed: the target's own check at quiescence. */
void drv_be_final_checks(uint32_t last) { drv_be_check(last); }

void drv_be_print_identity(void) {
  printf("\"allocator\": \"target\", \"malloc_from\": ");
  drv_print_json_string(drv_malloc_from);
  printf(", \"foreign_frees\": %s, \"usable_size\": %s, \"hooks\": [", g_foreign_frees ? "true" : "false",
         drv_target_usable ? "true" : "false");
  int first = 1;
  if (drv_hook_check) printf("%s\"check\"", first ? "" : ", "), first = 0;
  if (drv_hook_owns) printf("%s\"owns\"", first ? "" : ", "), first = 0;
  if (drv_hook_configure) printf("%s\"configure\"", first ? "" : ", "), first = 0;
  printf("], ");
}

void drv_be_print_stats(void) {}
