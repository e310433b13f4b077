/* tcache.c — thread records and per-thread, per-class block caches.
 *
 * A cache is a LIFO array.  Refill takes up to refill_batch blocks with
 * _hak_take (fewer on a thread's first refills of a class: the slow start
 * below) and stacks them so they pop in take order; a push onto a full
 * cache first drains its oldest max(1, cap/2) blocks.  The class record
 * also keeps a copy of the top entry (top: what the next malloc returns,
 * see api.c): a refill ends with _hak_cache_sync_top; a drain keeps the
 * top entry (it takes the oldest) or empties the cache, and a flush
 * empties it, so neither needs to.  Thread records are
 * mapped (never malloc'd: this file runs inside malloc) and recycled; a
 * pthread key's destructor runs the thread-exit path.
 *
 * glibc keeps calling free() after the key destructors have run: a thread
 * that exits frees the TLS blocks of other exited threads' cached stacks
 * (__nptl_free_stacks -> _dl_deallocate_tls), tiny blocks that another
 * thread allocated.  A record taken then would never see a destructor
 * again: it, and every block in its caches, would leak, pinning slabs and
 * SuperSlabs for good.  So after the destructor has run (_hak_exited), each
 * allocator call runs with a fresh identity that exits again when the call
 * returns (_hak_exit_again). */
#include <string.h>

#include "internal.h"

__thread hak_thread_t *_hak_self __attribute__((tls_model("initial-exec")));
__thread int _hak_exited __attribute__((tls_model("initial-exec")));

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void thread_destructor(void *arg) {
  hak_thread_t *t = arg;
  _hak_exited = 1;
  if (t == NULL) return;
  if (t->epoch == hak_load_relaxed(&_hak_g.epoch)) _hak_thread_retire(t);
  else {
    /* stale since hak_reset: nothing of ours to give back */
    pthread_mutex_lock(&_hak_g.lock);
    t->pool_next = _hak_g.thread_pool;
    _hak_g.thread_pool = t;
    pthread_mutex_unlock(&_hak_g.lock);
  }
  if (_hak_self == t) _hak_self = NULL;
}

static void make_key(void) { pthread_key_create(&g_key, thread_destructor); }

static uint32_t fast_cap_of(const hak_thread_t *t) {
  if (t->epoch != hak_load_relaxed(&_hak_g.epoch) || _hak_g.cfg.checked) return 0;
  return _hak_g.cfg.cache_cap;
}

void _hak_threads_refresh(void) {
  for (hak_thread_t *t = _hak_g.all_threads; t != NULL; t = t->all_next)
    t->fast_cap = fast_cap_of(t);
}

static void fresh_state(hak_thread_t *t) {
  memset(t->cls, 0, sizeof t->cls);
  t->epoch = hak_load_relaxed(&_hak_g.epoch);
  t->fast_cap = fast_cap_of(t);
}

hak_thread_t *_hak_thread_slow(void) {
  _hak_init();
  hak_thread_t *t = _hak_self;
  pthread_mutex_lock(&_hak_g.lock);
  if (t == NULL) {
    t = _hak_g.thread_pool;
    if (t != NULL) _hak_g.thread_pool = t->pool_next;
  }
  uint64_t id = ++_hak_g.next_thread_id;
  pthread_mutex_unlock(&_hak_g.lock);
  if (t == NULL) {
    t = _hak_os_map_plain(sizeof(hak_thread_t));
    if (t == NULL) return NULL;
    pthread_mutex_lock(&_hak_g.lock);
    t->all_next = _hak_g.all_threads;
    _hak_g.all_threads = t;
    pthread_mutex_unlock(&_hak_g.lock);
  }
  /* A record that survived hak_reset holds pointers into unmapped memory:
   * forget them, and take a new identity so no slab can claim us. */
  fresh_state(t);
  t->id = id;
  t->pool_next = NULL;
  _hak_self = t;
  pthread_once(&g_key_once, make_key);
  pthread_setspecific(g_key, t);
  return t;
}

hak_thread_t *_hak_thread_current_or_null(void) {
  hak_thread_t *t = _hak_self;
  if (t == NULL || t->epoch != hak_load_relaxed(&_hak_g.epoch)) return NULL;
  return t;
}

/* Slow start: refill number r (0, 1, ...) of class c by this identity
 * takes at most HAK_REFILL_START << r blocks, and never more than
 * refill_batch or the cap.  A short-lived thread that allocates a few
 * blocks of a class does not carve (and at exit give back) a whole large
 * batch; a thread that keeps allocating reaches the full batch after a few
 * refills.  With the default batch (16) every refill is a full one. */
#define HAK_REFILL_DOUBLINGS 6  /* HAK_REFILL_START << 6 == HAK_CACHE_CAP_MAX */
_Static_assert(HAK_REFILL_START << HAK_REFILL_DOUBLINGS == HAK_CACHE_CAP_MAX,
               "the slow start reaches the largest cap");

void *_hak_cache_refill(hak_thread_t *t, unsigned c) {
  hak_tclass_t *tc = &t->cls[c];
  uint32_t cap = _hak_g.cfg.cache_cap;
  uint32_t batch = _hak_g.cfg.refill_batch;
  if (batch > cap) batch = cap;
  uint32_t ramp = (uint32_t)HAK_REFILL_START << tc->refills;
  if (batch > ramp) batch = ramp;
  if (batch == 0) batch = 1;
  void *taken[HAK_CACHE_CAP_MAX];
  uint32_t k = 0;
  while (k < batch) {
    uint32_t run = _hak_take_run(t, c, taken + k, batch - k);  /* in bulk, same blocks */
    k += run;
    if (run != 0) continue;
    void *p = _hak_take(t, c);
    if (p == NULL) break;
    taken[k++] = p;
  }
  if (k == 0) return NULL;
  if (tc->refills < HAK_REFILL_DOUBLINGS) tc->refills++;
  /* b1 is returned now; b2..bk are stacked so that b2 pops next. */
  HAK_ASSERT(tc->count == 0, "a cache is refilled only when it is empty");
  for (uint32_t i = k; i > 1; i--) *_hak_cache_slot(t, c, tc->count++) = taken[i - 1];
  HAK_ASSERT(tc->count < cap, "a refill leaves the cache below its cap (one block goes out)");
  _hak_cache_sync_top(t, c);
  return taken[0];
}

/* Release cache entry i, and with it the entries after it (up to end) of
 * the same slab when another thread owns that slab: one CAS pushes them all
 * on its remote stack (a consumer freeing a producer's blocks finds them in
 * runs).  Returns how many entries it released (>= 1). */
static uint32_t release_from(hak_thread_t *t, unsigned c, uint32_t i, uint32_t end) {
  void *p = *_hak_cache_slot(t, c, i);
  hak_ss_t *ss = _hak_ss_base(p);
  unsigned idx = _hak_slab_idx(ss, p);
  hak_slab_t *slab = &ss->slabs[idx];
  uint32_t j = i + 1;
  if (hak_load_relaxed(&slab->owner_id) != t->id) {
    while (j < end) {
      void *q = *_hak_cache_slot(t, c, j);
      if (_hak_ss_base(q) != ss || _hak_slab_idx(ss, q) != idx) break;
      j++;
    }
  }
  if (j - i == 1) {
    _hak_release_block(t, ss, p);
    return 1;
  }
  for (uint32_t k = i + 1; k < j; k++)
    _hak_set_next(*_hak_cache_slot(t, c, k), *_hak_cache_slot(t, c, k - 1));
  if (!_hak_remote_push_chain(ss, slab, *_hak_cache_slot(t, c, j - 1), p, j - i))
    for (uint32_t k = i; k < j; k++) _hak_release_block(t, ss, *_hak_cache_slot(t, c, k));
  return j - i;
}

static void drain_oldest(hak_thread_t *t, unsigned c, uint32_t n) {
  hak_tclass_t *tc = &t->cls[c];
  if (n > tc->count) n = tc->count;
  for (uint32_t i = 0; i < n;) i += release_from(t, c, i, n);
  for (uint32_t i = n; i < tc->count; i++) *_hak_cache_slot(t, c, i - n) = *_hak_cache_slot(t, c, i);
  tc->count -= n;
}

void _hak_cache_drain(hak_thread_t *t, unsigned c) {
  uint32_t cap = _hak_g.cfg.cache_cap;
  uint32_t n = cap / 2 ? cap / 2 : 1;
  while (t->cls[c].count >= cap && t->cls[c].count > 0) drain_oldest(t, c, n);
  HAK_ASSERT(t->cls[c].count < cap || cap == 0, "a drained cache is below its cap");
}

/* The whole cache back, bottom first, as drain_oldest does, except that a
 * slab of ours whose every used block is in the cache is emptied at once:
 * used 0, active less that many, retired (cur: by the caller, right after).
 * Its freelist would be forgotten by the retire anyway, so its blocks are
 * never linked: with large caches most of them were carved by a refill and
 * never touched, and linking them would fault their pages in just before
 * the retire gives them back.  The end state is the same as one
 * release_block per block: the same slabs retired (in another order, which
 * decides nothing the policy states: the SuperSlab a class holds is its
 * first, whatever empties last), the others' frees in cache order. */
static void flush_cache(hak_thread_t *t, unsigned c) {
  hak_tclass_t *tc = &t->cls[c];
  uint32_t n = tc->count;
  hak_slab_t *mine[HAK_CACHE_CAP_MAX];
  uint32_t nmine = 0;
  for (uint32_t i = 0; i < n; i++) {
    void *p = *_hak_cache_slot(t, c, i);
    hak_ss_t *ss = _hak_ss_base(p);
    hak_slab_t *slab = &ss->slabs[_hak_slab_idx(ss, p)];
    if (hak_load_relaxed(&slab->owner_id) != t->id) continue;
    if (slab->flushing++ == 0) mine[nmine++] = slab;
  }
  /* A slab is whole when flushing == used (its remote stack is then empty:
   * remote blocks count in used, never in our cache).  The others' counts
   * go down with their used, so they never become equal on the way. */
  for (uint32_t i = 0; i < n;) {
    void *p = *_hak_cache_slot(t, c, i);
    hak_ss_t *ss = _hak_ss_base(p);
    hak_slab_t *slab = &ss->slabs[_hak_slab_idx(ss, p)];
    /* (Another thread's slab's scratch is its owner's: never read it.) */
    if (hak_load_relaxed(&slab->owner_id) != t->id) {
      i += release_from(t, c, i, n);
      continue;
    }
    i++;
    if (slab->flushing != 0) {
      if (slab->flushing == slab->used) continue;  /* whole: below */
      slab->flushing--;
    }
    _hak_release_block(t, ss, p);
  }
  tc->count = 0;
  /* The whole slabs, by address (sorted into the front of mine: the rest of
   * it is stale from here on).  The first ones the class has dirty room
   * for keep their pages; the others' pages go now, while they are still
   * ours (used 0, not FREE: no one else touches them), one madvise per run
   * of adjacent slabs instead of one per slab (each is a TLB shootdown). */
  uint32_t nwhole = 0;
  for (uint32_t i = 0; i < nmine; i++) {
    hak_slab_t *slab = mine[i];
    if (slab->flushing == 0) continue;
    uint32_t j = nwhole++;
    for (; j > 0 && mine[j - 1] > slab; j--) mine[j] = mine[j - 1];
    mine[j] = slab;
  }
  uint32_t dirty = hak_load_relaxed(&_hak_classes[c].dirty_slabs);
  uint32_t keep = dirty < HAK_DIRTY_MAX ? HAK_DIRTY_MAX - dirty : 0;
  for (uint32_t i = keep; i < nwhole;) {
    hak_slab_t *slab = mine[i];
    if (slab == tc->cur) {  /* retired by the caller, as _hak_retire decides */
      i++;
      continue;
    }
    hak_ss_t *ss = _hak_ss_base(slab);
    uint32_t j = i + 1;
    while (j < nwhole && mine[j] == mine[j - 1] + 1 && mine[j] != tc->cur) j++;
    uint8_t *from = _hak_slab_first(ss, (unsigned)(slab - ss->slabs));
    hak_slab_t *last = mine[j - 1];
    unsigned last_idx = (unsigned)(last - ss->slabs);
    uint8_t *to = _hak_slab_first(ss, last_idx) + (size_t)last->carved * ss->block_size;
    _hak_os_discard(from, (size_t)(to - from));
    i = j;
  }
  for (uint32_t i = 0; i < nwhole; i++) {
    hak_slab_t *slab = mine[i];
    uint16_t whole = slab->flushing;
    slab->flushing = 0;
    HAK_ASSERT(whole == slab->used, "a slab flushed whole has every used block in the cache");
    hak_ss_t *ss = _hak_ss_base(slab);
    slab->used = 0;
    int64_t active = hak_sub_relaxed(&ss->active, (int64_t)whole) - (int64_t)whole;
    HAK_ASSERT_ACTIVE(active, slab);
    if (slab != tc->cur) _hak_retire_as(t, ss, slab, i < keep ? HAK_PAGES_KEEP : HAK_PAGES_GONE);
  }
  /* (Every other slab's count went back to 0 with its releases.) */
}

void _hak_thread_flush(hak_thread_t *t) {
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    hak_tclass_t *tc = &t->cls[c];
    flush_cache(t, c);
    HAK_ASSERT(tc->count == 0, "a flushed cache is empty");
    for (hak_slab_t *s = tc->owned_head; s != NULL; s = s->o.next)
      _hak_remote_drain(_hak_ss_base(s), s);
    for (hak_slab_t *s = tc->owned_head, *next; s != NULL; s = next) {
      next = s->o.next;
      if (s->used == 0) _hak_retire(t, _hak_ss_base(s), s);
    }
  }
}

/* Flush, then orphan every slab still owned: the record owns nothing after. */
static void give_back(hak_thread_t *t) {
  _hak_thread_flush(t);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    hak_tclass_t *tc = &t->cls[c];
    while (tc->owned_head != NULL) _hak_orphan(t, _hak_ss_base(tc->owned_head), tc->owned_head);
    tc->cur = NULL;
    tc->partial = NULL;
    HAK_ASSERT(tc->count == 0 && tc->owned_tail == NULL,
               "an exited thread keeps no cached block and owns no slab");
  }
}

void _hak_thread_retire(hak_thread_t *t) {
  give_back(t);
  pthread_mutex_lock(&_hak_g.lock);
  t->pool_next = _hak_g.thread_pool;
  _hak_g.thread_pool = t;
  pthread_mutex_unlock(&_hak_g.lock);
}

/* A free by a thread that has no record (mapping one failed) must still
 * give the block back: such frees take turns with the spare record below,
 * each under a fresh identity (so no slab counts it as its owner: the block
 * goes to its owner's remote stack) and each ending as a thread exit does,
 * so the spare owns nothing between turns (a free into an orphan adopts it,
 * and gives it up again, retired or orphaned).  A malloc without a record
 * is answered by the OOM policy (counted in fallback_allocs or oom_nulls). */
static hak_thread_t g_spare;
pthread_mutex_t _hak_spare_lock = PTHREAD_MUTEX_INITIALIZER;

void _hak_free_without_record(hak_ss_t *ss, void *p) {
  pthread_mutex_lock(&_hak_spare_lock);
  hak_thread_t *t = &g_spare;
  fresh_state(t);
  pthread_mutex_lock(&_hak_g.lock);
  t->id = ++_hak_g.next_thread_id;
  pthread_mutex_unlock(&_hak_g.lock);
  _hak_release_block(t, ss, p);
  give_back(t);
  pthread_mutex_unlock(&_hak_spare_lock);
}

void hak_flush(void) {
  hak_thread_t *t = _hak_thread_current_or_null();
  if (t != NULL) _hak_thread_flush(t);
}

void _hak_exit_again(void) {
  if (_hak_self != NULL) hak_thread_exit();
}

void hak_thread_exit(void) {
  hak_thread_t *t = _hak_thread_current_or_null();
  if (t == NULL) return;
  _hak_thread_retire(t);
  _hak_self = NULL;
  pthread_once(&g_key_once, make_key);
  pthread_setspecific(g_key, NULL);
}
