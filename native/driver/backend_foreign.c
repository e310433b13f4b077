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

/* --configure KEY=VALUE: free-form options for the target's
 * hakfuzz_configure, applied after the program's config fields. */
#define MAX_PAIRS 32
static const char *g_pairs[MAX_PAIRS];
static unsigned g_npairs;

/* hakfuzz_stats before the program ran: every counter must be back there at
 * the end.  The driver's own blocks (the program, its handles) are live at
 * both readings, so a counter of live blocks need not read 0 to pass. */
#define MAX_COUNTERS 64
#define STATS_BUF 4096
typedef struct { char key[48]; long long value; } counter_t;
static counter_t g_baseline[MAX_COUNTERS];
static unsigned g_nbaseline;
static int g_have_baseline;

int drv_be_option(const char *flag, const char *value) {
  if (strcmp(flag, "--foreign-frees") == 0) {
    if (strcmp(value, "on") == 0) g_foreign_frees = 1;
    else if (strcmp(value, "off") == 0) g_foreign_frees = 0;
    else { fprintf(stderr, "hakdriver: --foreign-frees %s: expected on or off\n", value); return -1; }
    return 1;
  }
  if (strcmp(flag, "--configure") == 0) {
    if (strchr(value, '=') == NULL || value[0] == '=') {
      fprintf(stderr, "hakdriver: --configure %s: expected KEY=VALUE\n", value);
      return -1;
    }
    if (g_npairs == MAX_PAIRS) {
      fprintf(stderr, "hakdriver: more than %d --configure options\n", MAX_PAIRS);
      return -1;
    }
    g_pairs[g_npairs++] = value;
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
static int configure_pairs(void) {
  for (unsigned k = 0; k < g_npairs; k++) {
    char key[128];
    const char *eq = strchr(g_pairs[k], '=');
    size_t n = (size_t)(eq - g_pairs[k]);
    if (n >= sizeof key) n = sizeof key - 1;
    memcpy(key, g_pairs[k], n);
    key[n] = '\0';
    if (drv_hook_configure(key, eq + 1) != 0) {
      fprintf(stderr, "hakdriver: hakfuzz_configure(%s, %s) refused\n", key, eq + 1);
      return 2;
    }
  }
  return 0;
}

/* Parses "k=v k=v" (or one per line) into out; how many, or -1 when malformed. */
static int parse_counters(const char *text, counter_t *out, unsigned cap) {
  unsigned n = 0;
  const char *p = text;
  while (*p) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == ',') p++;
    if (!*p) break;
    const char *eq = p;
    while (*eq && *eq != '=' && *eq != ' ' && *eq != '\n') eq++;
    if (*eq != '=' || eq == p || n == cap) return -1;
    size_t klen = (size_t)(eq - p);
    if (klen >= sizeof out[n].key) klen = sizeof out[n].key - 1;
    memcpy(out[n].key, p, klen);
    out[n].key[klen] = '\0';
    char *end;
    out[n].value = strtoll(eq + 1, &end, 10);
    if (end == eq + 1) return -1;
    n++;
    p = end;
  }
  return (int)n;
}

static int read_counters(counter_t *out, unsigned *n, char *why, size_t why_len) {
  char buf[STATS_BUF];
  buf[0] = '\0';
  if (drv_hook_stats(buf, sizeof buf) != 0) {
    snprintf(why, why_len, "hakfuzz_stats returned nonzero");
    return -1;
  }
  buf[sizeof buf - 1] = '\0';
  int got = parse_counters(buf, out, MAX_COUNTERS);
  if (got < 0) {
    snprintf(why, why_len, "hakfuzz_stats wrote %.200s, not key=value pairs", buf);
    return -1;
  }
  *n = (unsigned)got;
  return 0;
}

/* The baseline, once the config is applied and before any thread starts. */
static int stats_baseline(void) {
  if (drv_hook_stats == NULL) return 0;
  char why[300];
  if (read_counters(g_baseline, &g_nbaseline, why, sizeof why) != 0) {
    fprintf(stderr, "hakdriver: %s\n", why);
    return 2;
  }
  g_have_baseline = 1;
  return 0;
}

/* At quiescence: each counter where it was before the program ran. */
static void stats_final(uint32_t last) {
  if (!g_have_baseline) return;
  counter_t now[MAX_COUNTERS];
  unsigned n;
  char why[300];
  if (read_counters(now, &n, why, sizeof why) != 0) {
    drv_fail("stats", last, -1, "%s", why);
    return;
  }
  for (unsigned i = 0; i < n; i++) {
    long long before = 0;
    for (unsigned j = 0; j < g_nbaseline; j++)
      if (strcmp(g_baseline[j].key, now[i].key) == 0) before = g_baseline[j].value;
    if (now[i].value != before) {
      drv_fail("stats", last, -1,
               "hakfuzz_stats: %s is %lld after every free and thread exit, %lld before the program ran",
               now[i].key, now[i].value, before);
      return;
    }
  }
}

int drv_be_configure(const uint64_t cfg[9], int *null_possible) {
  if (drv_hook_configure == NULL) return stats_baseline();
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
  int rc = configure_pairs();
  return rc != 0 ? rc : stats_baseline();
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

/* Everything freed and every thread gone: the target's own check, and its
 * counters back where they started. */
void drv_be_final_checks(uint32_t last) {
  drv_be_check(last);
  if (!drv_failed()) stats_final(last);
}

/* Only the hakfuzz_stats comparison needs glibc's thread bookkeeping out of
 * the way; other targets keep glibc's own stacks (and a target whose calloc
 * leaves garbage is judged by the calloc oracle, not by glibc freeing the
 * garbage at a join). */
int drv_be_own_stacks(void) { return drv_hook_stats != NULL; }

void drv_be_print_identity(void) {
  printf("\"allocator\": \"target\", \"malloc_from\": ");
  drv_print_json_string(drv_malloc_from);
  printf(", \"foreign_frees\": %s, \"usable_size\": %s, \"hooks\": [", g_foreign_frees ? "true" : "false",
         drv_target_usable ? "true" : "false");
  int first = 1;
  if (drv_hook_check) printf("%s\"check\"", first ? "" : ", "), first = 0;
  if (drv_hook_owns) printf("%s\"owns\"", first ? "" : ", "), first = 0;
  if (drv_hook_configure) printf("%s\"configure\"", first ? "" : ", "), first = 0;
  if (drv_hook_stats) printf("%s\"stats\"", first ? "" : ", "), first = 0;
  printf("], ");
}

void drv_be_print_stats(void) {}
