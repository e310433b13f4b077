/* superslab.c — giving a class a new SuperSlab (growth under the cap and the
 * budget), releasing an empty one (kept for reuse up to ss_keep, else
 * unmapped), and tearing everything down for hak_reset.
 * Callers hold the class lock; this file takes the global lock inside. */
#include <string.h>

#include "internal.h"

#define HELD_BYTES ((size_t)HAK_SLABS_PER_SS * HAK_HELD_WORDS_PER_SLAB * sizeof(uint64_t))

static void ss_init(hak_ss_t *ss, unsigned class_idx, uint64_t seq) {
  memset(ss, 0, sizeof *ss);
  ss->magic = HAK_SS_MAGIC;
  ss->class_idx = class_idx;
  ss->ss_seq = seq;
  ss->free_slabs = HAK_SLABS_PER_SS;
  ss->block_size = (uint32_t)HAK_MIN_BLOCK << class_idx;
  /* asan variant: nothing past the header is the user's until handed out */
  HAK_ASAN(_hak_asan_poison((uint8_t *)ss + HAK_SS_HEADER_SIZE, HAK_SS_SIZE - HAK_SS_HEADER_SIZE));
  for (unsigned i = 0; i < HAK_SLABS_PER_SS; i++)
    ss->slabs[i].capacity = _hak_slab_capacity(ss->block_size, i);
}

static int growth_allowed(hak_class_t *cls) {
  const hak_config_t *cfg = &_hak_g.cfg;
  if (cfg->ss_cap != 0 && cls->ss_live >= cfg->ss_cap) return 0;
  if (cfg->budget_bytes != 0 &&
      (_hak_g.live_total + 1) * (uint64_t)HAK_SS_SIZE > cfg->budget_bytes)
    return 0;
  return 1;
}

hak_ss_t *_hak_ss_grow(unsigned class_idx) {
  hak_class_t *cls = &_hak_classes[class_idx];
  pthread_mutex_lock(&_hak_g.lock);
  if (!growth_allowed(cls)) {
    pthread_mutex_unlock(&_hak_g.lock);
    return NULL;
  }
  /* A kept SuperSlab whose address names this class first (os.c), else
   * the latest kept: which one is not policy, that one is taken is. */
  hak_ss_t *ss = _hak_ss_pop_for(&_hak_g.kept, class_idx);
  uint32_t dirty = 0;
  if (ss != NULL) {
    _hak_g.ss_kept--;
    dirty = ss->dirty;  /* slabs whose pages it kept (see _hak_ss_release) */
  } else {
    ss = _hak_os_map_ss(&dirty, class_idx);
    if (ss == NULL) {
      pthread_mutex_unlock(&_hak_g.lock);
      return NULL;
    }
  }
  ss_init(ss, class_idx, ++_hak_g.ss_seq);
  HAK_ASSERT_MASKS(ss);
  if (_hak_g.cfg.checked) ss->held_bits = _hak_os_map_plain(HELD_BYTES);
  if (_hak_registry_add(ss) != 0) {
    _hak_os_unmap_plain((void *)ss->held_bits, HELD_BYTES);
    _hak_os_unmap_ss(ss);
    _hak_g.ss_seq--;
    pthread_mutex_unlock(&_hak_g.lock);
    return NULL;
  }
  _hak_g.live_total++;
  pthread_mutex_unlock(&_hak_g.lock);
  /* Still resident from its last life: dirty FREE slabs of this class now
   * (a dirty slab is only "its pages are in memory", whatever the class). */
  ss->dirty = dirty;
  hak_add_relaxed(&cls->dirty_slabs, (uint32_t)__builtin_popcount(dirty));
  HAK_ASSERT_MASKS(ss);

  ss->prev = cls->tail;
  if (cls->tail) cls->tail->next = ss; else cls->head = ss;
  cls->tail = ss;
  cls->ss_live++;
  cls->ss_created++;
  return ss;
}

void _hak_ss_release(hak_ss_t *ss) {
  hak_class_t *cls = &_hak_classes[ss->class_idx];
  HAK_ASSERT(ss->free_slabs == HAK_SLABS_PER_SS && ss->inuse == 0,
             "a SuperSlab is released only when all its slabs are FREE");
  HAK_ASSERT(hak_load_relaxed(&ss->active) == 0,
             "a SuperSlab with every slab FREE has no block out (active == sum of used == 0)");
  HAK_ASSERT(cls->ss_live > 0, "ss_live counts the class's registered SuperSlabs: never negative");
  _hak_registry_remove(ss);
  if (ss->prev) ss->prev->next = ss->next; else cls->head = ss->next;
  if (ss->next) ss->next->prev = ss->prev; else cls->tail = ss->prev;
  cls->ss_live--;
  cls->ss_released++;
  uint32_t dirty = (uint32_t)__builtin_popcount(ss->dirty);
  uint32_t dirty_before = hak_sub_relaxed(&cls->dirty_slabs, dirty);
  HAK_ASSERT(dirty_before >= dirty,
             "dirty_slabs is the sum of the class's dirty masks: never below one of them");
  /* The registry entry is gone: a racing lookup sees "not ours" from here
   * on, so the discard below (or the unmap) touches nothing anyone uses. */
  _hak_os_unmap_plain((void *)ss->held_bits, HELD_BYTES);
  ss->magic = 0;
  pthread_mutex_lock(&_hak_g.lock);
  HAK_ASSERT(_hak_g.live_total > 0, "live_total counts live SuperSlabs: never negative");
  _hak_g.live_total--;
  if (_hak_g.ss_kept < _hak_g.cfg.ss_keep) {
    /* Kept mapped, and its dirty slabs keep their pages (at most the
     * class's HAK_DIRTY_MAX, times ss_keep SuperSlabs): under thread churn
     * the class that grows next takes it back without faulting them in
     * again.  Every other page was given back when its slab retired. */
    ss->next = _hak_g.kept;
    _hak_g.kept = ss;
    _hak_g.ss_kept++;
  } else {
    _hak_os_unmap_ss(ss);
  }
  pthread_mutex_unlock(&_hak_g.lock);
}

/* hak_configure, checked mode switched: every lock is held by the caller. */
void _hak_ss_forget_held_bits(void) {
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    for (hak_ss_t *ss = _hak_classes[c].head; ss != NULL; ss = ss->next) {
      _hak_os_unmap_plain((void *)ss->held_bits, HELD_BYTES);
      ss->held_bits = NULL;
    }
  }
}

/* hak_reset: every class and the global lock are held by the caller. */
void _hak_ss_unmap_all(void) {
  _hak_registry_clear();
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    hak_class_t *cls = &_hak_classes[c];
    for (hak_ss_t *ss = cls->head, *next; ss != NULL; ss = next) {
      next = ss->next;
      _hak_os_unmap_plain((void *)ss->held_bits, HELD_BYTES);
      _hak_os_unmap_ss(ss);
    }
    cls->head = cls->tail = NULL;
  }
  for (hak_ss_t *ss = _hak_g.kept, *next; ss != NULL; ss = next) {
    next = ss->next;
    _hak_os_unmap_ss(ss);
  }
  _hak_g.kept = NULL;
  _hak_os_drop_reserve();
}
