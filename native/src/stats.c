/* stats.c — hak_locate and hak_stats: what the oracles observe.
 * Exact at quiescence; a racing thread may make a figure momentarily stale. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void hak_locate(const void *ptr, hak_location_t *out) {
  memset(out, 0, sizeof *out);
  out->class_idx = -1;
  out->slab_idx = -1;
  out->block_idx = -1;
  if (ptr == NULL) return;
  hak_ss_t *ss = _hak_registry_lookup(ptr);
  if (ss == NULL) {
    out->owner = HAK_OWNER_LIBC;
    return;
  }
  unsigned slab_idx, block_idx;
  int bad = _hak_block_index(ss, ptr, &slab_idx, &block_idx);
  out->owner = bad ? HAK_OWNER_UNKNOWN : HAK_OWNER_TINY;
  out->class_idx = (int32_t)ss->class_idx;
  out->ss_seq = ss->ss_seq;
  out->slab_idx = (int32_t)slab_idx;
  out->block_idx = bad ? -1 : (int32_t)block_idx;
}

void hak_stats(hak_stats_t *out) {
  _hak_init();
  memset(out, 0, sizeof *out);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    hak_class_t *cls = &_hak_classes[c];
    hak_class_stats_t *st = &out->cls[c];
    pthread_mutex_lock(&cls->lock);
    st->ss_live = cls->ss_live;
    st->ss_created = cls->ss_created;
    st->ss_released = cls->ss_released;
    st->slabs_in_use = cls->slabs_in_use;
    int64_t active = 0, remote = 0;
    for (hak_ss_t *ss = cls->head; ss != NULL; ss = ss->next) {
      active += hak_load_relaxed(&ss->active);
      /* Blocks on remote stacks: the count in each head (a FREE slab's is 0). */
      for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++)
        remote += _hak_remote_count(hak_load_relaxed(&ss->remote[i]));
    }
    st->active_blocks = (uint64_t)active;
    st->remote_pending = remote;
    pthread_mutex_unlock(&cls->lock);
    st->fallback_allocs = hak_load_relaxed(&cls->fallback_allocs);
    st->oom_nulls = hak_load_relaxed(&cls->oom_nulls);
  }
  pthread_mutex_lock(&_hak_g.lock);
  out->ss_mapped = _hak_g.live_total + _hak_g.ss_kept;
  out->ss_kept = _hak_g.ss_kept;
  out->os_maps = _hak_g.os_maps;
  out->os_map_failures = _hak_g.os_map_failures;
  out->os_unmaps = _hak_g.os_unmaps;
  pthread_mutex_unlock(&_hak_g.lock);
}

void hak_stats_print(void) { _hak_stats_print_fd(2); }

void _hak_stats_print_fd(int fd) {
  hak_stats_t st;
  hak_stats(&st);
  char line[256];
  int n = snprintf(line, sizeof line, "hakmem stats: ss_mapped=%llu os_maps=%llu os_unmaps=%llu\n",
                   (unsigned long long)st.ss_mapped, (unsigned long long)st.os_maps,
                   (unsigned long long)st.os_unmaps);
  if (n > 0 && write(fd, line, (size_t)n) < 0) return;
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    const hak_class_stats_t *s = &st.cls[c];
    n = snprintf(line, sizeof line,
                 "hakmem class %u (%u B): ss_created=%llu ss_live=%llu active=%llu "
                 "fallback=%llu remote_pending=%lld\n",
                 c, HAK_MIN_BLOCK << c, (unsigned long long)s->ss_created,
                 (unsigned long long)s->ss_live, (unsigned long long)s->active_blocks,
                 (unsigned long long)s->fallback_allocs, (long long)s->remote_pending);
    if (n > 0 && write(fd, line, (size_t)n) < 0) return;
  }
}
