/* slab.c — taking blocks from a thread's slabs and giving them back.
 *
 * Policy (docs/policy.md, "Taking one block"): the current slab serves from
 * its LIFO freelist; then a partial slab's free blocks come first; only
 * then does the current slab carve fresh blocks or drain its remote stack.
 * When all that fails the thread collects remote frees over every slab it
 * owns, then adopts the latest orphan of the class, then acquires the
 * lowest FREE slab of the lowest-ss_seq SuperSlab, then grows the class. */
#include "internal.h"

/* ---- per-thread lists (no lock: only the owner touches them) ---- */
void _hak_owned_append(hak_thread_t *t, unsigned c, hak_slab_t *slab) {
  hak_tclass_t *tc = &t->cls[c];
  _hak_list_append(&tc->owned_head, &tc->owned_tail, slab, HAK_LINKS_O);
}

static void partial_push(hak_tclass_t *tc, hak_slab_t *slab) {
  HAK_ASSERT(!slab->on_partial, "a slab is on its owner's partial stack at most once");
  slab->on_partial = 1;
  _hak_list_push(&tc->partial, NULL, slab, HAK_LINKS_P);
}

static void partial_remove(hak_tclass_t *tc, hak_slab_t *slab) {
  if (!slab->on_partial) return;
  _hak_list_unlink(&tc->partial, NULL, slab, HAK_LINKS_P);
  slab->on_partial = 0;
}

static inline hak_ss_t *slab_ss(hak_slab_t *slab) { return _hak_ss_base(slab); }
static inline unsigned slab_index(hak_slab_t *slab) {
  return (unsigned)(slab - slab_ss(slab)->slabs);
}

/* A FREE slab again: used == 0 and no remote blocks.  May release the
 * SuperSlab (which may unmap it): the caller must not touch ss afterwards. */
void _hak_slab_detach(hak_thread_t *t, unsigned c, hak_slab_t *slab) {
  hak_tclass_t *tc = &t->cls[c];
  partial_remove(tc, slab);
  _hak_list_unlink(&tc->owned_head, &tc->owned_tail, slab, HAK_LINKS_O);
  if (tc->cur == slab) tc->cur = NULL;
}

void _hak_retire(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab) {
  _hak_retire_as(t, ss, slab, HAK_PAGES_AUTO);
}

void _hak_retire_as(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, int pages) {
  unsigned c = ss->class_idx;
  HAK_ASSERT_OWNED(ss, slab, t->id);
  HAK_ASSERT(slab->used == 0, "a slab is retired only with no block out");
  HAK_ASSERT(hak_load_relaxed(&ss->remote[slab - ss->slabs]) == 0,
             "a slab with no block out has an empty remote stack (remote blocks count as used)");
  _hak_slab_detach(t, c, slab);
  hak_class_t *cls = &_hak_classes[c];
  unsigned idx = slab_index(slab);
  /* The class's first HAK_DIRTY_MAX FREE slabs keep their pages ("dirty"):
   * a slab taken again soon, as under thread churn, costs no syscall, no
   * TLB shootdown and no page faults.  Past that, give the carved pages
   * back now, while no block is out (used == 0, so no remote free is in
   * flight) and the slab is not FREE yet, so no one else touches them.
   * The count is read before the lock: racing retirers may overshoot it
   * by one each. */
  int keep = pages == HAK_PAGES_AUTO ? hak_load_relaxed(&cls->dirty_slabs) < HAK_DIRTY_MAX
                                     : pages == HAK_PAGES_KEEP;
  if (!keep && pages == HAK_PAGES_AUTO)
    _hak_os_discard(_hak_slab_first(ss, idx), (size_t)slab->carved * ss->block_size);
  pthread_mutex_lock(&cls->lock);
  slab->state = HAK_SLAB_FREE;
  slab->freelist = NULL;
  HAK_SET_CARVED(slab, 0);
  hak_store_relaxed(&slab->owner_id, 0);
  ss->inuse &= ~(1u << idx);
  if (keep) {
    ss->dirty |= 1u << idx;
    hak_add_relaxed(&cls->dirty_slabs, 1);
  }
  HAK_ASSERT(cls->slabs_in_use > 0, "slabs_in_use counts OWNED and ORPHAN slabs: never negative");
  ss->free_slabs++;
  cls->slabs_in_use--;
  HAK_ASSERT_MASKS(ss);
  HAK_ASSERT_FREE(ss, slab);
  /* The class's first live SuperSlab (lowest ss_seq: the list's head) is
   * held, not released (docs/policy.md, "Retire and release"), unless a
   * budget is set.  Which one is held does not depend on the order in
   * which the class's SuperSlabs empty (a flush retires in address order). */
  if (ss->free_slabs == HAK_SLABS_PER_SS && _hak_g.cfg.release_empty &&
      (ss != cls->head || _hak_g.cfg.budget_bytes != 0))
    _hak_ss_release(ss);
  pthread_mutex_unlock(&cls->lock);
}

/* Local free by the owner. */
static void local_free(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p) {
  HAK_ASSERT_OWNED(ss, slab, t->id);
  _hak_set_next(p, slab->freelist);
  slab->freelist = p;
  slab->used--;
  HAK_ASSERT_COUNTS(slab);
  int64_t active = hak_sub_relaxed(&ss->active, 1) - 1;
  HAK_ASSERT_ACTIVE(active, slab);
  hak_tclass_t *tc = &t->cls[ss->class_idx];
  if (slab == tc->cur) return;
  if (slab->used == 0) _hak_retire(t, ss, slab);
  else if (!slab->on_partial) partial_push(tc, slab);
}

void _hak_release_block(hak_thread_t *t, hak_ss_t *ss, void *p) {
  hak_slab_t *slab = &ss->slabs[_hak_slab_idx(ss, p)];
  if (hak_load_relaxed(&slab->owner_id) == t->id) local_free(t, ss, slab, p);
  else _hak_remote_free(t, ss, slab, p);
}

/* Called from remote.c once an orphan has been adopted by t. */
void _hak_adopted_free(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p) {
  local_free(t, ss, slab, p);
}

static inline void *slab_pop(hak_ss_t *ss, hak_slab_t *slab, unsigned slab_idx) {
  void *p = slab->freelist;
  if (p != NULL) {
    slab->freelist = _hak_next(p);
  } else if (hak_load_relaxed(&ss->remote[slab_idx]) != 0 && _hak_remote_drain(ss, slab) != 0) {
    /* Blocks other threads gave back before fresh memory: a producer whose
     * consumer frees its blocks reuses them instead of carving (and
     * touching) the whole slab first. */
    p = slab->freelist;
    slab->freelist = _hak_next(p);
  } else if (slab->carved < slab->capacity) {
    p = _hak_slab_first(ss, slab_idx) + (size_t)slab->carved * ss->block_size;
    HAK_SET_CARVED(slab, slab->carved + 1);
  } else {
    return NULL;
  }
  slab->used++;
  HAK_ASSERT_COUNTS(slab);
  int64_t active = hak_add_relaxed(&ss->active, 1) + 1;
  HAK_ASSERT_ACTIVE(active, slab);
  return p;
}

/* Drain every owned slab's remote stack; retire the empty ones and stack
 * the ones with free blocks (on the freelist or not carved yet: a former
 * cur left for a partial slab) on partial (docs/policy.md step 2b). */
static void collect(hak_thread_t *t, unsigned c) {
  hak_tclass_t *tc = &t->cls[c];
  for (hak_slab_t *s = tc->owned_head; s != NULL; s = s->o.next) _hak_remote_drain(slab_ss(s), s);
  for (hak_slab_t *s = tc->owned_head, *next; s != NULL; s = next) {
    next = s->o.next;
    if (s == tc->cur) continue;
    if (s->used == 0) _hak_retire(t, slab_ss(s), s);
    else if ((s->freelist != NULL || s->carved < s->capacity) && !s->on_partial)
      partial_push(tc, s);
  }
}

static hak_slab_t *acquire_free_slab(hak_thread_t *t, unsigned c) {
  hak_class_t *cls = &_hak_classes[c];
  pthread_mutex_lock(&cls->lock);
  hak_slab_t *o = cls->orphans;  /* the latest orphan first (docs/policy.md 2c) */
  if (o != NULL) {
    _hak_adopt_locked(t, cls, o);
    pthread_mutex_unlock(&cls->lock);
    _hak_owned_append(t, c, o);
    return o;
  }
  hak_ss_t *ss = cls->head;
  while (ss != NULL && ss->free_slabs == 0) ss = ss->next;
  if (ss == NULL) ss = _hak_ss_grow(c);
  if (ss == NULL) {
    pthread_mutex_unlock(&cls->lock);
    return NULL;
  }
  unsigned idx = (unsigned)__builtin_ctz(~ss->inuse);
  hak_slab_t *slab = &ss->slabs[idx];
  HAK_ASSERT_FREE(ss, slab);
  ss->inuse |= 1u << idx;
  if (ss->dirty & (1u << idx)) {
    ss->dirty &= ~(1u << idx);
    uint32_t dirty_before = hak_sub_relaxed(&cls->dirty_slabs, 1);
    HAK_ASSERT(dirty_before > 0, "dirty_slabs counts the class's dirty FREE slabs: never negative");
  }
  ss->free_slabs--;
  cls->slabs_in_use++;
  HAK_ASSERT_MASKS(ss);
  slab->state = HAK_SLAB_OWNED;
  slab->freelist = NULL;
  HAK_SET_CARVED(slab, 0);
  slab->used = 0;
  slab->on_partial = 0;
  hak_store_relaxed(&slab->owner_id, t->id);
  HAK_ASSERT_OWNED(ss, slab, t->id);
  pthread_mutex_unlock(&cls->lock);
  _hak_owned_append(t, c, slab);
  return slab;
}

/* What repeated calls of _hak_take would hand out while they stay in step 1
 * without a drain: cur's freelist, then (only when partial is empty and
 * cur's remote stack is: a drain comes before carving) cur's carve room,
 * in one go: used and active are updated once for the run.  Returns how
 * many of n it took (0 when _hak_take must decide). */
uint32_t _hak_take_run(hak_thread_t *t, unsigned c, void **out, uint32_t n) {
  hak_tclass_t *tc = &t->cls[c];
  hak_slab_t *cur = tc->cur;
  if (cur == NULL) return 0;
  uint32_t k = 0;
  while (k < n && cur->freelist != NULL) {
    void *p = cur->freelist;
    cur->freelist = _hak_next(p);
    out[k++] = p;
  }
  if (k < n && tc->partial == NULL && cur->carved < cur->capacity &&
      hak_load_relaxed(&slab_ss(cur)->remote[slab_index(cur)]) == 0) {
    hak_ss_t *ss = slab_ss(cur);
    uint32_t m = (uint32_t)(cur->capacity - cur->carved);
    if (m > n - k) m = n - k;
    size_t size = ss->block_size;
    uint8_t *p = _hak_slab_first(ss, slab_index(cur)) + (size_t)cur->carved * size;
    for (uint32_t i = 0; i < m; i++, p += size) out[k++] = p;
    HAK_SET_CARVED(cur, cur->carved + m);
  }
  if (k == 0) return 0;
  cur->used = (uint16_t)(cur->used + k);
  HAK_ASSERT_COUNTS(cur);
  int64_t active = hak_add_relaxed(&slab_ss(cur)->active, (int64_t)k) + (int64_t)k;
  HAK_ASSERT_ACTIVE(active, cur);
  return k;
}

void *_hak_take(hak_thread_t *t, unsigned c) {
  hak_tclass_t *tc = &t->cls[c];
  for (;;) {
    hak_slab_t *cur = tc->cur;
    /* Holes before fresh memory: drain or carve cur only when no partial
     * slab has free blocks to hand out first. */
    if (cur != NULL && (cur->freelist != NULL || tc->partial == NULL)) {
      void *p = slab_pop(slab_ss(cur), cur, slab_index(cur));
      if (p != NULL) return p;
    }
    if (tc->partial == NULL) collect(t, c);
    if (tc->partial != NULL) {
      hak_slab_t *s = tc->partial;
      partial_remove(tc, s);
      tc->cur = s;
      continue;
    }
    hak_slab_t *fresh = acquire_free_slab(t, c);
    if (fresh == NULL) return NULL;
    tc->cur = fresh;
  }
}
