/* remote.c — frees of blocks whose slab another thread owns, and orphans.
 *
 * Each slab has a LIFO remote stack (in the SuperSlab header).  Any thread
 * pushes with a CAS; only the owner takes the whole stack with an exchange,
 * so there is no ABA.  The head word also counts the blocks on the stack
 * (internal.h), so a push writes nothing else shared and a drain onto an
 * empty freelist is one exchange and one store, whatever the number of
 * blocks.  A remote push never changes `used`: the owner does
 * when it drains, so a slab cannot become FREE — and its SuperSlab cannot be
 * released — while a push to it is in flight.
 *
 * When the owner exits with blocks still out, the slab becomes an ORPHAN:
 * its remote head is set to HAK_ORPHAN_BIT in the same exchange that takes
 * the last pushed blocks, so a pusher either landed before (and was taken)
 * or sees the bit.  A thread that frees into an orphan adopts it under the
 * class lock and frees locally.  Orphans are also on their class's orphan
 * list (linked through its o links, which only owned slabs otherwise use),
 * so a thread that needs a slab adopts the latest orphan before it takes a
 * FREE one: a new thread continues where an exited one stopped instead of
 * opening one more slab per class. */
#include "internal.h"

/* Class lock held, slab ORPHAN: off the class's orphan list, OWNED by t,
 * its remote stack open again.  The caller appends it to t's owned list
 * once the lock is dropped. */
void _hak_adopt_locked(hak_thread_t *t, hak_class_t *cls, hak_slab_t *slab) {
  hak_ss_t *ss = _hak_ss_base(slab);
  HAK_ASSERT_ORPHAN(ss, slab);
  _hak_list_unlink(&cls->orphans, NULL, slab, HAK_LINKS_O);
  slab->state = HAK_SLAB_OWNED;
  slab->on_partial = 0;
  hak_store_relaxed(&slab->owner_id, t->id);
  hak_store_release(&ss->remote[slab - ss->slabs], 0);
  HAK_ASSERT_OWNED(ss, slab, t->id);
  HAK_ASSERT_COUNTS(slab);
}

static void adopt_or_retry(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p) {
  hak_class_t *cls = &_hak_classes[ss->class_idx];
  unsigned idx = (unsigned)(slab - ss->slabs);
  pthread_mutex_lock(&cls->lock);
  if (hak_load_acquire(&ss->remote[idx]) == HAK_ORPHAN_BIT) {
    _hak_adopt_locked(t, cls, slab);
    pthread_mutex_unlock(&cls->lock);
    _hak_owned_append(t, ss->class_idx, slab);
    _hak_adopted_free(t, ss, slab, p);
    return;
  }
  pthread_mutex_unlock(&cls->lock);
  _hak_release_block(t, ss, p);  /* someone adopted it first */
}

void _hak_remote_free(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p) {
  unsigned idx = (unsigned)(slab - ss->slabs);
  uintptr_t head = hak_load_relaxed(&ss->remote[idx]);
  for (;;) {
    if (head & HAK_ORPHAN_BIT) {
      adopt_or_retry(t, ss, slab, p);
      return;
    }
    _hak_set_next(p, _hak_remote_top(head));
    uintptr_t pushed = (uintptr_t)p | ((head & ~HAK_REMOTE_PTR_MASK) + HAK_REMOTE_ONE);
    if (atomic_compare_exchange_weak_explicit(&ss->remote[idx], &head, pushed,
                                              memory_order_release, memory_order_relaxed))
      break;
  }
  /* ss may be drained and released from here on: touch nothing of it. */
}

/* Push a chain of n blocks of slab, linked top -> ... -> bottom, with one
 * CAS: the stack ends up as n single pushes, bottom first, would leave it.
 * 0 (nothing pushed) when the slab is an ORPHAN: the caller frees the
 * blocks one by one, which adopts it. */
int _hak_remote_push_chain(hak_ss_t *ss, hak_slab_t *slab, void *top, void *bottom, uint32_t n) {
  unsigned idx = (unsigned)(slab - ss->slabs);
  uintptr_t head = hak_load_relaxed(&ss->remote[idx]);
  for (;;) {
    if (head & HAK_ORPHAN_BIT) return 0;
    _hak_set_next(bottom, _hak_remote_top(head));
    uintptr_t pushed = (uintptr_t)top | ((head & ~HAK_REMOTE_PTR_MASK) + n * HAK_REMOTE_ONE);
    if (atomic_compare_exchange_weak_explicit(&ss->remote[idx], &head, pushed,
                                              memory_order_release, memory_order_relaxed))
      return 1;
  }
}

/* Owner only: move the remote stack in front of the freelist. */
uint32_t _hak_remote_drain(hak_ss_t *ss, hak_slab_t *slab) {
  unsigned idx = (unsigned)(slab - ss->slabs);
  if (hak_load_relaxed(&ss->remote[idx]) == 0) return 0;
  uintptr_t head = atomic_exchange_explicit(&ss->remote[idx], 0, memory_order_acquire);
  if (head == 0) return 0;
  HAK_ASSERT(slab->state == HAK_SLAB_OWNED && !(head & HAK_ORPHAN_BIT),
             "only the owner of an OWNED slab drains its remote stack");
  uint32_t n = _hak_remote_count(head);
  void *top = _hak_remote_top(head);
  HAK_ASSERT(n > 0 && top != NULL, "a non-empty remote head counts its blocks");
  if (slab->freelist != NULL) {  /* splice in front: find the bottom block */
    void *tail = top;
    while (_hak_next(tail) != NULL) tail = _hak_next(tail);
    _hak_set_next(tail, slab->freelist);
  }
  slab->freelist = top;
  HAK_ASSERT(n <= slab->used, "every block on a remote stack is counted in its slab's used");
  slab->used = (uint16_t)(slab->used - n);
  HAK_ASSERT_COUNTS(slab);
  int64_t active = hak_sub_relaxed(&ss->active, (int64_t)n) - (int64_t)n;
  HAK_ASSERT_ACTIVE(active, slab);
  return n;
}

/* Thread exit, after flush: give up a slab that still has blocks out. */
void _hak_orphan(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab) {
  unsigned idx = (unsigned)(slab - ss->slabs);
  hak_class_t *cls = &_hak_classes[ss->class_idx];
  pthread_mutex_lock(&cls->lock);
  HAK_ASSERT_OWNED(ss, slab, t->id);
  uintptr_t head = atomic_exchange_explicit(&ss->remote[idx], HAK_ORPHAN_BIT, memory_order_acq_rel);
  uint32_t n = 0;
  for (void *b = _hak_remote_top(head), *next; b != NULL; b = next) {
    next = _hak_next(b);
    _hak_set_next(b, slab->freelist);
    slab->freelist = b;
    n++;
  }
  HAK_ASSERT(n == _hak_remote_count(head), "a remote head counts the blocks on its stack");
  if (n) {
    HAK_ASSERT(n <= slab->used, "every block on a remote stack is counted in its slab's used");
    slab->used = (uint16_t)(slab->used - n);
    HAK_ASSERT_COUNTS(slab);
    int64_t active = hak_sub_relaxed(&ss->active, (int64_t)n) - (int64_t)n;
    HAK_ASSERT_ACTIVE(active, slab);
  }
  if (slab->used == 0) {
    /* The last blocks came back in the exchange: retire instead. */
    hak_store_release(&ss->remote[idx], 0);
    pthread_mutex_unlock(&cls->lock);
    _hak_retire(t, ss, slab);
    return;
  }
  /* Off our lists before the lock is dropped: from then on an adopter may
   * link the slab into its own lists. */
  _hak_slab_detach(t, ss->class_idx, slab);
  slab->state = HAK_SLAB_ORPHAN;
  hak_store_relaxed(&slab->owner_id, 0);
  _hak_list_push(&cls->orphans, NULL, slab, HAK_LINKS_O);
  HAK_ASSERT_ORPHAN(ss, slab);
  pthread_mutex_unlock(&cls->lock);
}
