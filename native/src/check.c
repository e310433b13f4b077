/* check.c — checked mode (a bit per block held by the user; the test on
 * free, _hak_held_clear, is inline in internal.h) and hak_check, which walks
 * every structure and reports the first broken invariant of internal.h as a
 * sentence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void _hak_held_set(hak_ss_t *ss, const void *p) {
  unsigned slab_idx, block_idx;
  uint64_t mask;
  if (ss->held_bits == NULL || _hak_block_index(ss, p, &slab_idx, &block_idx) != 0) return;
  _Atomic uint64_t *word = _hak_held_word(ss, slab_idx, block_idx, &mask);
  atomic_fetch_or_explicit(word, mask, memory_order_relaxed);
}

#ifdef HAK_DEBUG
/* HAK_ASSERT's report (internal.h).  write(2), not stdio: this runs inside
 * malloc and free, and must not allocate.  The file is named without its
 * directory: mutant and testfault trees are built from copies in the cache. */
void _hak_assert_fail(const char *expr, const char *why, const char *file, int line,
                      const char *func) {
  const char *slash = strrchr(file, '/');
  char msg[768];
  int n = snprintf(msg, sizeof msg,
                   "hakmem: assertion failed: %s (%s:%d in %s)\nhakmem: invariant: %s\n", expr,
                   slash ? slash + 1 : file, line, func, why);
  if (n > 0) {
    ssize_t w = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)w;
  }
  abort();
}
#endif

/* ---- hak_check ---------------------------------------------------------- */

#define FAIL(...) do { snprintf(msg, len, __VA_ARGS__); return 1; } while (0)

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* Walk one chain (freelist or remote stack), marking blocks in seen. */
static int walk_chain(hak_ss_t *ss, unsigned si, void *head, const char *what, uint8_t *seen,
                      uint32_t *count, char *msg, size_t len) {
  hak_slab_t *slab = &ss->slabs[si];
  uint32_t n = 0;
  for (void *b = head; b != NULL; b = _hak_next(b)) {
    unsigned bs, bi;
    if (_hak_ss_base(b) != ss || _hak_block_index(ss, b, &bs, &bi) != 0 || bs != si)
      FAIL("class %u ss_seq %llu slab %u: %s holds %p, not a block of this slab", ss->class_idx,
           (unsigned long long)ss->ss_seq, si, what, b);
    if (bi >= slab->carved)
      FAIL("class %u ss_seq %llu slab %u: %s holds block %u beyond carved %u", ss->class_idx,
           (unsigned long long)ss->ss_seq, si, what, bi, slab->carved);
    if (seen[bi / 8] & (1u << (bi % 8)))
      FAIL("class %u ss_seq %llu slab %u: block %u appears twice in the free lists (%s)",
           ss->class_idx, (unsigned long long)ss->ss_seq, si, bi, what);
    seen[bi / 8] |= (uint8_t)(1u << (bi % 8));
    if (++n > slab->carved) break;
  }
  *count = n;
  return 0;
}

static int check_slab(hak_ss_t *ss, unsigned si, void **cached, size_t ncached, int64_t *used_sum,
                      char *msg, size_t len) {
  hak_slab_t *slab = &ss->slabs[si];
  unsigned long long seq = (unsigned long long)ss->ss_seq;
  unsigned c = ss->class_idx;
  uintptr_t rhead = hak_load_acquire(&ss->remote[si]);
  uint64_t owner = hak_load_relaxed(&slab->owner_id);
  int inuse = (ss->inuse >> si) & 1;
  if (slab->capacity != _hak_slab_capacity(ss->block_size, si))
    FAIL("class %u ss_seq %llu slab %u: capacity %u, expected %u", c, seq, si, slab->capacity,
         _hak_slab_capacity(ss->block_size, si));
  if (slab->state == HAK_SLAB_FREE) {
    if (inuse) FAIL("class %u ss_seq %llu slab %u: FREE but marked in use", c, seq, si);
    if (slab->used != 0 || rhead != 0 || owner != 0)
      FAIL("class %u ss_seq %llu slab %u: FREE but used %u, remote %#lx, owner %llu", c, seq, si,
           slab->used, (unsigned long)rhead, (unsigned long long)owner);
    return 0;
  }
  if (!inuse) FAIL("class %u ss_seq %llu slab %u: in use but not marked", c, seq, si);
  if (slab->state == HAK_SLAB_ORPHAN && (owner != 0 || rhead != HAK_ORPHAN_BIT))
    FAIL("class %u ss_seq %llu slab %u: ORPHAN with owner %llu and remote head %#lx", c, seq, si,
         (unsigned long long)owner, (unsigned long)rhead);
  if (slab->state == HAK_SLAB_OWNED && (owner == 0 || (rhead & HAK_ORPHAN_BIT)))
    FAIL("class %u ss_seq %llu slab %u: OWNED but owner %llu, remote head %#lx", c, seq, si,
         (unsigned long long)owner, (unsigned long)rhead);
  uint8_t seen[HAK_SLAB_SIZE / HAK_MIN_BLOCK / 8];
  memset(seen, 0, sizeof seen);
  uint32_t nfree = 0, nremote = 0;
  if (walk_chain(ss, si, slab->freelist, "freelist", seen, &nfree, msg, len)) return 1;
  if (walk_chain(ss, si, _hak_remote_top(rhead), "remote stack", seen, &nremote, msg, len))
    return 1;
  if (nremote != _hak_remote_count(rhead))
    FAIL("class %u ss_seq %llu slab %u: remote head counts %u blocks, the stack holds %u", c, seq,
         si, _hak_remote_count(rhead), nremote);
  if (slab->used != slab->carved - nfree)
    FAIL("class %u ss_seq %llu slab %u: used %u != carved %u - freelist %u", c, seq, si,
         slab->used, slab->carved, nfree);
  if (nremote > slab->used)
    FAIL("class %u ss_seq %llu slab %u: %u remote blocks but only %u used", c, seq, si, nremote,
         slab->used);
  for (size_t i = 0; i < ncached; i++) {
    unsigned bs, bi;
    if (_hak_ss_base(cached[i]) != ss) continue;
    if (_hak_block_index(ss, cached[i], &bs, &bi) != 0 || bs != si) continue;
    if (seen[bi / 8] & (1u << (bi % 8)))
      FAIL("class %u ss_seq %llu slab %u: block %u is both cached and free", c, seq, si, bi);
    if (bi >= slab->carved)
      FAIL("class %u ss_seq %llu slab %u: cached block %u beyond carved", c, seq, si, bi);
  }
  *used_sum += slab->used;
  return 0;
}

static int check_class(unsigned c, char *msg, size_t len) {
  hak_class_t *cls = &_hak_classes[c];
  hak_thread_t *t = _hak_thread_current_or_null();
  void *cached[HAK_CACHE_CAP_MAX];
  size_t ncached = 0;
  if (t != NULL) {
    ncached = t->cls[c].count;
    if (ncached > 0 && t->cls[c].top != *_hak_cache_slot(t, c, (uint32_t)ncached - 1))
      FAIL("class %u: the thread cache's top copy is %p, its top entry %p", c, t->cls[c].top,
           *_hak_cache_slot(t, c, (uint32_t)ncached - 1));
    for (size_t i = 0; i < ncached; i++) cached[i] = *_hak_cache_slot(t, c, (uint32_t)i);
    qsort(cached, ncached, sizeof(void *), cmp_ptr);
    for (size_t i = 0; i < ncached; i++) {
      hak_ss_t *ss = _hak_registry_lookup(cached[i]);
      if (ss == NULL || ss->class_idx != c)
        FAIL("class %u: the thread cache holds %p, not a block of this class", c, cached[i]);
      if (i > 0 && cached[i] == cached[i - 1])
        FAIL("class %u: the thread cache holds %p twice", c, cached[i]);
    }
  }
  uint64_t n = 0, prev_seq = 0, in_use = 0, orphans = 0, listed = 0, dirty = 0;
  for (hak_slab_t *o = cls->orphans, *prev = NULL; o != NULL; prev = o, o = o->o.next) {
    hak_ss_t *oss = _hak_ss_base(o);
    if (_hak_registry_lookup(oss) != oss || oss->class_idx != c || o->state != HAK_SLAB_ORPHAN)
      FAIL("class %u: the orphan list holds slab %p, not an ORPHAN slab of this class", c,
           (void *)o);
    if (o->o.prev != prev) FAIL("class %u: orphan list links broken at slab %p", c, (void *)o);
    if (++listed > (uint64_t)cls->ss_live * HAK_SLABS_PER_SS)
      FAIL("class %u: the orphan list loops", c);
  }
  for (hak_ss_t *ss = cls->head; ss != NULL; ss = ss->next, n++) {
    unsigned long long seq = (unsigned long long)ss->ss_seq;
    if (ss->magic != HAK_SS_MAGIC) FAIL("class %u: SuperSlab %p has a bad magic", c, (void *)ss);
    if (ss->class_idx != c) FAIL("class %u: ss_seq %llu says class %u", c, seq, ss->class_idx);
    if (_hak_registry_lookup(ss) != ss) FAIL("class %u: ss_seq %llu is not registered", c, seq);
    if (ss->ss_seq <= prev_seq) FAIL("class %u: ss_seq %llu after %llu", c, seq,
                                     (unsigned long long)prev_seq);
    prev_seq = ss->ss_seq;
    if (ss->free_slabs != HAK_SLABS_PER_SS - (unsigned)__builtin_popcount(ss->inuse))
      FAIL("class %u ss_seq %llu: free_slabs %u disagrees with the in-use mask", c, seq,
           ss->free_slabs);
    int64_t used_sum = 0;
    for (unsigned si = 0; si < HAK_SLABS_PER_SS; si++)
      if (check_slab(ss, si, cached, ncached, &used_sum, msg, len)) return 1;
    int64_t active = hak_load_relaxed(&ss->active);
    if (active != used_sum)
      FAIL("class %u ss_seq %llu: active %lld != sum of slab used %lld", c, seq, (long long)active,
           (long long)used_sum);
    in_use += HAK_SLABS_PER_SS - ss->free_slabs;
    if (ss->dirty & ss->inuse)
      FAIL("class %u ss_seq %llu: a slab in use is marked dirty (%#x)", c, seq,
           ss->dirty & ss->inuse);
    dirty += (uint64_t)__builtin_popcount(ss->dirty);
    for (unsigned si = 0; si < HAK_SLABS_PER_SS; si++)
      orphans += ss->slabs[si].state == HAK_SLAB_ORPHAN;
  }
  if (dirty != hak_load_relaxed(&cls->dirty_slabs))
    FAIL("class %u: %llu dirty FREE slabs, the counter says %u", c, (unsigned long long)dirty,
         hak_load_relaxed(&cls->dirty_slabs));
  if (orphans != listed)
    FAIL("class %u: %llu ORPHAN slabs, %llu on the orphan list", c, (unsigned long long)orphans,
         (unsigned long long)listed);
  if (n != cls->ss_live) FAIL("class %u: %llu SuperSlabs listed, ss_live says %llu", c,
                              (unsigned long long)n, (unsigned long long)cls->ss_live);
  if (in_use != cls->slabs_in_use)
    FAIL("class %u: %llu slabs in use, the counter says %llu", c, (unsigned long long)in_use,
         (unsigned long long)cls->slabs_in_use);
  return 0;
}

int hak_check(char *msg, size_t len) {
  _hak_init();
  int bad = 0;
  if (msg != NULL && len > 0) msg[0] = '\0';
  char scratch[HAK_CHECK_MSG_MAX];
  if (msg == NULL || len == 0) {
    msg = scratch;
    len = sizeof scratch;
  }
  _hak_lock_all();
  for (unsigned c = 0; c < HAK_NUM_CLASSES && !bad; c++) bad = check_class(c, msg, len);
  if (!bad) bad = _hak_registry_check(msg, len);
  _hak_unlock_all();
  return bad;
}
