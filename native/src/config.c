/* config.c — the global state, the options table (defaults and HAKMEM_*
 * environment variables), hak_configure, hak_reset, and fork safety. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "internal.h"

#ifndef HAK_DEFAULT_CHECKED
#define HAK_DEFAULT_CHECKED 0
#endif

hak_global_t _hak_g = {.lock = PTHREAD_MUTEX_INITIALIZER};
hak_class_t _hak_classes[HAK_NUM_CLASSES];

/* Reads the text of an option's HAKMEM_<NAME>: 0 with *out set, or -1 when
 * the text is not a value of that option.  The bounds are checked apart
 * (opt_valid), the same test for the environment and for hak_configure. */
typedef int (*opt_parse_t)(const char *text, uint64_t *out);

/* One row per option: what hak_option_info tells (name, environment
 * variable, type, bounds, default, meaning), the hak_config_t field it
 * sets, how its text is read and, for the warning, what that accepts.
 * This table is the one statement of the options: the Python model, the
 * program validator, `hakfuzz info` and docs/options.md are generated from
 * or checked against it (tests/test_options.py). */
typedef struct {
  hak_option_t info;
  size_t offset, size;           /* the hak_config_t field: 4 or 8 bytes */
  opt_parse_t parse;
  const char *expect;            /* NULL: "a whole number from min to max" */
} option_t;

/* A plain decimal number: no sign and no leading space, which strtoull
 * would take silently ("-1" as 2^64 - 1). */
static int parse_number(const char *text, uint64_t *out) {
  if (*text < '0' || *text > '9') return -1;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0') return -1;
  *out = v;
  return 0;
}

/* The policy's name, or its number as hak_configure takes it. */
static int parse_oom_policy(const char *text, uint64_t *out) {
  if (strcmp(text, "libc") == 0) *out = HAK_OOM_LIBC;
  else if (strcmp(text, "null") == 0) *out = HAK_OOM_NULL;
  else return parse_number(text, out);
  return 0;
}

#define FIELD(f) offsetof(hak_config_t, f), sizeof(((hak_config_t *)0)->f)
#define NUMBER parse_number, NULL
/* {name, env, type, min, max, default, meaning}, field, parse, expect */
static const option_t g_options[] = {
  {{"ss_cap", "HAKMEM_SS_CAP", "u32", 0, UINT32_MAX, 0,
    "max live SuperSlabs per class; 0 = no cap"}, FIELD(ss_cap), NUMBER},
  {{"budget_bytes", "HAKMEM_BUDGET_BYTES", "u64", 0, UINT64_MAX, 0,
    "max bytes of live SuperSlabs over all classes; 0 = no budget"}, FIELD(budget_bytes), NUMBER},
  {{"oom_policy", "HAKMEM_OOM_POLICY", "libc|null", HAK_OOM_LIBC, HAK_OOM_NULL, HAK_OOM_LIBC,
    "at the cap: libc serves the request from glibc, null returns NULL with ENOMEM"},
   FIELD(oom_policy), parse_oom_policy, "libc or null"},
  {{"cache_cap", "HAKMEM_CACHE_CAP", "u32", 0, HAK_CACHE_CAP_MAX, 64,
    "thread cache cap per class; 0 = caches off"}, FIELD(cache_cap), NUMBER},
  {{"refill_batch", "HAKMEM_REFILL_BATCH", "u32", 1, HAK_CACHE_CAP_MAX, 16,
    "most blocks per refill, clamped to cache_cap; first refills take 16, 32, ..."},
   FIELD(refill_batch), NUMBER},
  {{"release_empty", "HAKMEM_RELEASE_EMPTY", "bool", 0, 1, 1,
    "release a SuperSlab when all its slabs are free, but a class's first one if no budget"},
   FIELD(release_empty), NUMBER},
  {{"ss_keep", "HAKMEM_SS_KEEP", "u32", 0, UINT32_MAX, 2,
    "released SuperSlabs kept mapped for reuse"}, FIELD(ss_keep), NUMBER},
  {{"checked", "HAKMEM_CHECKED", "bool", 0, 1, HAK_DEFAULT_CHECKED,
    "detect double and interior frees (on by default in the debug build)"}, FIELD(checked), NUMBER},
  {{"fail_map_at", "HAKMEM_FAIL_MAP_AT", "u32", 0, UINT32_MAX, 0,
    "the Nth OS mapping attempt after configure fails (only that one); 0 = never"},
   FIELD(fail_map_at), NUMBER},
};
#define N_OPTIONS (sizeof g_options / sizeof g_options[0])

static uint64_t opt_get(const hak_config_t *cfg, const option_t *o) {
  const char *base = (const char *)cfg + o->offset;
  if (o->size == sizeof(uint64_t)) return *(const uint64_t *)(const void *)base;
  return *(const uint32_t *)(const void *)base;
}

static void opt_set(hak_config_t *cfg, const option_t *o, uint64_t v) {
  char *base = (char *)cfg + o->offset;
  if (o->size == sizeof(uint64_t)) *(uint64_t *)(void *)base = v;
  else *(uint32_t *)(void *)base = (uint32_t)v;
}

static int opt_valid(const option_t *o, uint64_t v) {
  return v >= o->info.min && v <= o->info.max;
}

size_t hak_option_count(void) { return N_OPTIONS; }

int hak_option_info(size_t i, hak_option_t *out) {
  if (i >= N_OPTIONS) return -1;
  *out = g_options[i].info;
  return 0;
}

void hak_config_default(hak_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < N_OPTIONS; i++) opt_set(cfg, &g_options[i], g_options[i].info.def);
}

void hak_config_get(hak_config_t *cfg) {
  _hak_init();
  *cfg = _hak_g.cfg;
}

/* One line on stderr; write(2), not stdio: the preload runs this before
 * the program's own set-up, and inside malloc. */
static void say(const char *line, int n) {
  if (n <= 0) return;
  ssize_t w = write(2, line, (size_t)n);
  (void)w;
}

/* A rejected HAKMEM_<NAME>: named, with its text and what it should be. */
static void warn_rejected(const option_t *o, const char *text) {
  char line[256];
  int n;
  if (o->expect != NULL)
    n = snprintf(line, sizeof line, "hakmem: ignoring %s=%.64s (expected %s)\n", o->info.env,
                 text, o->expect);
  else
    n = snprintf(line, sizeof line,
                 "hakmem: ignoring %s=%.64s (expected a whole number from %llu to %llu)\n",
                 o->info.env, text, (unsigned long long)o->info.min,
                 (unsigned long long)o->info.max);
  say(line, n < (int)sizeof line ? n : (int)sizeof line - 1);
}

int hak_configure(const hak_config_t *cfg) {
  _hak_init();
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (!opt_valid(&g_options[i], opt_get(cfg, &g_options[i]))) return EINVAL;
  /* Blocks cached under the old cap must not outlive it. */
  hak_thread_t *t = _hak_thread_current_or_null();
  if (t != NULL) _hak_thread_flush(t);
  _hak_lock_all();
  /* Held bits are exact only while checked mode stays on: a block handed out
   * with it off has no bit.  So a change forgets every SuperSlab's bits; only
   * SuperSlabs created from now on (while checked) get new ones. */
  if (cfg->checked != _hak_g.cfg.checked) _hak_ss_forget_held_bits();
  _hak_g.cfg = *cfg;
  _hak_g.map_attempts = 0;
  _hak_threads_refresh();
  _hak_unlock_all();
  return 0;
}

/* Each HAKMEM_<NAME> that is set is read by its option's parse hook and
 * checked by opt_valid, hak_configure's own test: a rejected one is named on
 * stderr and the option keeps its value; the rest are applied together. */
void hak_configure_from_env(void) {
  hak_config_t cfg;
  hak_config_get(&cfg);
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const option_t *o = &g_options[i];
    const char *text = getenv(o->info.env);
    if (text == NULL || *text == '\0') continue;
    uint64_t v;
    if (o->parse(text, &v) != 0 || !opt_valid(o, v)) {
      warn_rejected(o, text);
      continue;
    }
    opt_set(&cfg, o, v);
  }
  /* Every value passed opt_valid, all hak_configure tests, so it cannot
   * refuse; should that ever change, say so rather than drop them all. */
  int rc = hak_configure(&cfg);
  HAK_ASSERT(rc == 0, "values that pass the option table are a valid configuration");
  if (rc != 0) {
    static const char msg[] = "hakmem: HAKMEM_* settings refused by hak_configure; none applied\n";
    say(msg, (int)sizeof msg - 1);
  }
}

int _hak_option_set(const char *key, const char *text) {
  if (key == NULL || text == NULL) return EINVAL;
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const option_t *o = &g_options[i];
    if (strcasecmp(key, o->info.name) != 0 && strcasecmp(key, o->info.env) != 0) continue;
    uint64_t v;
    if (o->parse(text, &v) != 0 || !opt_valid(o, v)) return EINVAL;
    hak_config_t cfg;
    hak_config_get(&cfg);
    opt_set(&cfg, o, v);
    return hak_configure(&cfg);
  }
  return EINVAL;
}

/* The lock order: the spare record's, every class's, the global one. */
void _hak_lock_all(void) {
  pthread_mutex_lock(&_hak_spare_lock);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) pthread_mutex_lock(&_hak_classes[c].lock);
  pthread_mutex_lock(&_hak_g.lock);
}

void _hak_unlock_all(void) {
  pthread_mutex_unlock(&_hak_g.lock);
  for (unsigned c = HAK_NUM_CLASSES; c-- > 0;) pthread_mutex_unlock(&_hak_classes[c].lock);
  pthread_mutex_unlock(&_hak_spare_lock);
}

static void child_after_fork(void) {
  /* Only the forking thread exists in the child; its locks were held. */
  pthread_mutex_init(&_hak_spare_lock, NULL);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) pthread_mutex_init(&_hak_classes[c].lock, NULL);
  pthread_mutex_init(&_hak_g.lock, NULL);
}

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;

static void init_once(void) {
  HAK_ASAN(_hak_asan_init());
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) pthread_mutex_init(&_hak_classes[c].lock, NULL);
  hak_config_default(&_hak_g.cfg);
  pthread_atfork(_hak_lock_all, _hak_unlock_all, child_after_fork);
}

void _hak_init(void) { pthread_once(&g_init_once, init_once); }

void hak_reset(void) {
  _hak_init();
  _hak_lock_all();
  _hak_ss_unmap_all();
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    hak_class_t *cls = &_hak_classes[c];
    cls->orphans = NULL;
    hak_store_relaxed(&cls->dirty_slabs, 0);
    cls->ss_live = cls->ss_created = cls->ss_released = cls->slabs_in_use = 0;
    hak_store_relaxed(&cls->fallback_allocs, 0);
    hak_store_relaxed(&cls->oom_nulls, 0);
  }
  _hak_g.ss_seq = 0;
  _hak_g.live_total = 0;
  _hak_g.ss_kept = _hak_g.os_maps = _hak_g.os_map_failures = _hak_g.os_unmaps = 0;
  _hak_g.map_attempts = 0;
  hak_config_default(&_hak_g.cfg);
  atomic_fetch_add_explicit(&_hak_g.epoch, 1, memory_order_release);
  _hak_threads_refresh();
  _hak_unlock_all();
}
