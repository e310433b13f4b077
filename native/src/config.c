/* config.c — the global state, the options table (defaults and HAKMEM_*
 * environment variables), hak_configure, hak_reset, and fork safety. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifndef HAK_DEFAULT_CHECKED
#define HAK_DEFAULT_CHECKED 0
#endif

hak_global_t _hak_g = {.lock = PTHREAD_MUTEX_INITIALIZER};
hak_class_t _hak_classes[HAK_NUM_CLASSES];

/* One row per option: name (env var HAKMEM_<NAME>), default, bounds. */
typedef struct {
  const char *name;
  size_t offset;
  int is_u64;
  uint64_t def, min, max;
} option_t;

#define OPT32(field, NAME, def, lo, hi) {NAME, offsetof(hak_config_t, field), 0, def, lo, hi}
static const option_t g_options[] = {
  OPT32(ss_cap, "SS_CAP", 0, 0, UINT32_MAX),
  {"BUDGET_BYTES", offsetof(hak_config_t, budget_bytes), 1, 0, 0, UINT64_MAX},
  OPT32(oom_policy, "OOM_POLICY", HAK_OOM_LIBC, 0, 1),
  OPT32(cache_cap, "CACHE_CAP", 64, 0, HAK_CACHE_CAP_MAX),
  OPT32(refill_batch, "REFILL_BATCH", 16, 1, HAK_CACHE_CAP_MAX),
  OPT32(release_empty, "RELEASE_EMPTY", 1, 0, 1),
  OPT32(ss_keep, "SS_KEEP", 2, 0, UINT32_MAX),
  OPT32(checked, "CHECKED", HAK_DEFAULT_CHECKED, 0, 1),
  OPT32(fail_map_at, "FAIL_MAP_AT", 0, 0, UINT32_MAX),
};
#define N_OPTIONS (sizeof g_options / sizeof g_options[0])

static uint64_t opt_get(const hak_config_t *cfg, const option_t *o) {
  const char *base = (const char *)cfg + o->offset;
  if (o->is_u64) return *(const uint64_t *)(const void *)base;
  return *(const uint32_t *)(const void *)base;
}

static void opt_set(hak_config_t *cfg, const option_t *o, uint64_t v) {
  char *base = (char *)cfg + o->offset;
  if (o->is_u64) *(uint64_t *)(void *)base = v;
  else *(uint32_t *)(void *)base = (uint32_t)v;
}

void hak_config_default(hak_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < N_OPTIONS; i++) opt_set(cfg, &g_options[i], g_options[i].def);
}

void hak_config_get(hak_config_t *cfg) {
  _hak_init();
  *cfg = _hak_g.cfg;
}

static void say(const char *a, const char *b, const char *c) {
  char line[256];
  int n = snprintf(line, sizeof line, "hakmem: %s%s%s\n", a, b, c);
  if (n > 0 && write(2, line, (size_t)n) < 0) return;
}

int hak_configure(const hak_config_t *cfg) {
  _hak_init();
  for (size_t i = 0; i < N_OPTIONS; i++) {
    uint64_t v = opt_get(cfg, &g_options[i]);
    if (v < g_options[i].min || v > g_options[i].max) return EINVAL;
  }
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

void hak_configure_from_env(void) {
  hak_config_t cfg;
  hak_config_get(&cfg);
  char name[64];
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const option_t *o = &g_options[i];
    snprintf(name, sizeof name, "HAKMEM_%s", o->name);
    const char *text = getenv(name);
    if (text == NULL || *text == '\0') continue;
    uint64_t v;
    char *end = NULL;
    if (strcmp(o->name, "OOM_POLICY") == 0 && strcmp(text, "libc") == 0) v = HAK_OOM_LIBC;
    else if (strcmp(o->name, "OOM_POLICY") == 0 && strcmp(text, "null") == 0) v = HAK_OOM_NULL;
    else {
      errno = 0;
      v = strtoull(text, &end, 10);
      if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < o->min || v > o->max) {
        say("ignoring invalid ", name, strcmp(o->name, "OOM_POLICY") == 0
                                           ? " (expected libc or null)"
                                           : " (expected a whole number in range)");
        continue;
      }
    }
    opt_set(&cfg, o, v);
  }
  if (cfg.refill_batch > cfg.cache_cap && cfg.cache_cap > 0) cfg.refill_batch = cfg.cache_cap;
  hak_configure(&cfg);
}

void _hak_lock_all(void) {
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) pthread_mutex_lock(&_hak_classes[c].lock);
  pthread_mutex_lock(&_hak_g.lock);
}

void _hak_unlock_all(void) {
  pthread_mutex_unlock(&_hak_g.lock);
  for (unsigned c = HAK_NUM_CLASSES; c-- > 0;) pthread_mutex_unlock(&_hak_classes[c].lock);
}

static void child_after_fork(void) {
  /* Only the forking thread exists in the child; its locks were held. */
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
    hak_store_relaxed(&cls->remote_pending, 0);
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
