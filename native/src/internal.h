/* internal.h — types and functions shared between the allocator's .c files.
 * Grouped by the file that defines them.  Everything here is `_hak_` or
 * static inline; nothing in this header is part of the public API. */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hakmem.h"

#define HAK_HIDDEN      __attribute__((visibility("hidden")))  /* no GOT load */
#define HAK_LIKELY(x)   __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_SS_MAGIC    0x48414b4d454d5353ull  /* "HAKMEMSS" */
/* carved: written by the owner only, read by any thread's checked free: a
 * relaxed atomic store keeps that read well defined (the value it needs was
 * published by the hand-off that gave the freeing thread the block). */
#define HAK_SET_CARVED(slab, v) __atomic_store_n(&(slab)->carved, (uint16_t)(v), __ATOMIC_RELAXED)
#define HAK_CARVED(slab) __atomic_load_n(&(slab)->carved, __ATOMIC_RELAXED)

#define HAK_SS_SHIFT    21                     /* log2(HAK_SS_SIZE): address -> 2 MiB page */
#define HAK_MIN_SHIFT   3                      /* log2(HAK_MIN_BLOCK): class 0's block */
#define HAK_HELD_BITS   64                     /* blocks per checked-mode held word */
#define HAK_ORPHAN_BIT  ((uintptr_t)1)         /* in a slab's remote head */
/* A remote head is one word: the top block's address (bits 3..47: blocks
 * are 8-byte aligned, user addresses below 2^47 as the registry assumes),
 * the number of blocks on the stack (bits 48..63: a slab holds at most
 * 8192), and HAK_ORPHAN_BIT.  The count rides in the word the push CASes
 * anyway: a remote free writes no other shared counter, and the owner
 * learns how many blocks it took without walking them. */
#define HAK_REMOTE_PTR_MASK     ((uintptr_t)0x0000fffffffffff8ull)
#define HAK_REMOTE_COUNT_SHIFT  48
#define HAK_REMOTE_ONE          ((uintptr_t)1 << HAK_REMOTE_COUNT_SHIFT)
#define HAK_CACHE_LINE  64
/* HAK_DIRTY_MAX (hakmem.h): FREE slabs per class that keep their pages. */
/* Starts a new cache line: fields written by different threads, or often
 * written next to fields read on every call, must not share one. */
#define HAK_LINE        _Alignas(HAK_CACHE_LINE)
_Static_assert((1u << HAK_SS_SHIFT) == HAK_SS_SIZE, "HAK_SS_SHIFT is not log2(HAK_SS_SIZE)");
_Static_assert((1u << HAK_MIN_SHIFT) == HAK_MIN_BLOCK, "HAK_MIN_SHIFT is not log2(HAK_MIN_BLOCK)");

/* ---- HAK_ASSERT: the invariants written next to the fields below --------
 * The debug variant (-DHAK_DEBUG) checks each one where a call changes the
 * fields it is about, so a broken invariant stops the program inside the
 * call that broke it, not ops later in hak_check: stderr gets
 *   hakmem: assertion failed: <expr> (<file>:<line> in <func>)
 *   hakmem: invariant: <why, in words>
 * and the process aborts.  Every other build keeps the expression only
 * inside sizeof, which never evaluates it: no code on any path (the release
 * objects do not change), and a value read only by a check is still "used".
 * The checks are O(1); hak_check is the whole-heap walk. */
#ifdef HAK_DEBUG
HAK_HIDDEN __attribute__((noreturn, cold)) void _hak_assert_fail(const char *expr, const char *why,
                                                       const char *file, int line,
                                                       const char *func);
#define HAK_ASSERT(expr, why) \
  (HAK_LIKELY(expr) ? (void)0 : _hak_assert_fail(#expr, (why), __FILE__, __LINE__, __func__))
#else
#define HAK_ASSERT(expr, why) ((void)sizeof((expr) ? 1 : 0))
#endif

/* ---- atomics: the only memory orders the allocator uses -------------- */
#define hak_load_relaxed(p)      atomic_load_explicit((p), memory_order_relaxed)
#define hak_load_acquire(p)      atomic_load_explicit((p), memory_order_acquire)
#define hak_store_relaxed(p, v)  atomic_store_explicit((p), (v), memory_order_relaxed)
#define hak_store_release(p, v)  atomic_store_explicit((p), (v), memory_order_release)
#define hak_add_relaxed(p, v)    atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define hak_sub_relaxed(p, v)    atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)

typedef enum { HAK_SLAB_FREE = 0, HAK_SLAB_OWNED = 1, HAK_SLAB_ORPHAN = 2 } hak_slab_state_t;

typedef struct hak_thread_s hak_thread_t;
typedef struct hak_slab_s hak_slab_t;
typedef struct hak_ss_s hak_ss_t;

/* One link pair of an intrusive, doubly linked list of slabs. */
typedef struct hak_link_s { hak_slab_t *next, *prev; } hak_link_t;

/* Slab metadata, in the SuperSlab header.  Fields marked (owner) are written
 * only by the owning thread, or under the class lock while no thread owns
 * the slab.
 *   used == carved - |freelist|          (remote-pending and cached count as used)
 *   used <= carved <= capacity
 *   FREE  => used == 0, remote head == 0, owner_id == 0
 *   OWNED => owner_id != 0, no HAK_ORPHAN_BIT in the remote head
 *   ORPHAN => owner_id == 0, remote head == HAK_ORPHAN_BIT exactly, used > 0
 * One cache line per slab: two threads owning neighbouring slabs never
 * write the same line. */
struct hak_slab_s {
  HAK_LINE void *freelist;      /* (owner) LIFO, linked through the blocks */
  uint16_t carved;              /* (owner) blocks carved so far, <= capacity; the owner stores
                                 * it with HAK_SET_CARVED, since a checked free on any thread
                                 * reads it (diagnose_free) */
  uint16_t capacity;            /* blocks this slab can hold */
  uint16_t used;                /* (owner) */
  uint8_t state;                /* hak_slab_state_t, changed under the class lock */
  uint8_t on_partial;           /* (owner) on the owner's partial stack */
  uint16_t flushing;            /* (owner) scratch of _hak_thread_flush, else 0 */
  _Atomic uint64_t owner_id;    /* thread id of the owner, 0 when none */
  hak_link_t p;                 /* (owner) partial stack links */
  hak_link_t o;                 /* (owner) owned list links; an ORPHAN's are
                                 * its class's orphan list (class lock) */
};

/* SuperSlab header: the first HAK_SS_HEADER_SIZE bytes of slab 0.
 *   active == sum(slabs[i].used), so active >= the used of any one slab
 *     (exact at quiescence; an owner's own slab is always counted in full
 *     once its update is done, the others' counts never below zero)
 *   free_slabs == number of FREE slabs == 32 - popcount(inuse)
 *   dirty & inuse == 0 */
struct hak_ss_s {
  /* Set at creation, then only read (every free reads class_idx): a line
   * of its own, never invalidated by the writes below. */
  uint64_t magic;
  uint32_t class_idx;
  uint32_t block_size;
  uint64_t ss_seq;
  _Atomic uint64_t *held_bits;  /* checked mode: bit per block held by the user */
  HAK_LINE uint32_t free_slabs; /* under the class lock */
  uint32_t inuse;               /* bit i: slab i is not FREE; class lock */
  uint32_t dirty;               /* bit i: FREE slab i kept its pages; class lock */
  hak_ss_t *next, *prev;        /* class list, ascending ss_seq; class lock */
  HAK_LINE _Atomic int64_t active;  /* every owner's refills and drains */
  HAK_LINE _Atomic uintptr_t remote[HAK_SLABS_PER_SS]; /* per-slab remote stacks */
  hak_slab_t slabs[HAK_SLABS_PER_SS];
};
_Static_assert(sizeof(hak_ss_t) <= HAK_SS_HEADER_SIZE, "SuperSlab header too large");
_Static_assert(sizeof(hak_slab_t) == HAK_CACHE_LINE, "one cache line per slab");

/* The invariants above as named checks, for the points that change their
 * fields.  Macros, not functions: a failure names the caller's line. */
#define HAK_ASSERT_COUNTS(slab)                                                   \
  do {                                                                            \
    HAK_ASSERT((slab)->used <= (slab)->carved,                                    \
               "a slab never has more blocks out (used) than it has carved");    \
    HAK_ASSERT((slab)->carved <= (slab)->capacity,                                \
               "a slab never carves past its capacity");                         \
  } while (0)
/* After an update of ss->active that returned `now`, by the owner of slab. */
#define HAK_ASSERT_ACTIVE(now, slab)                                              \
  HAK_ASSERT((now) >= (int64_t)(slab)->used,                                      \
             "a SuperSlab's active count is the sum of its slabs' used counts: "  \
             "never below the used count of the slab just updated, never negative")
#define HAK_ASSERT_FREE(ss, slab)                                                 \
  do {                                                                            \
    HAK_ASSERT((slab)->state == HAK_SLAB_FREE, "the slab is FREE here");         \
    HAK_ASSERT((slab)->used == 0 && (slab)->carved == 0 && (slab)->freelist == NULL, \
               "a FREE slab has no block out, none carved, an empty freelist");  \
    HAK_ASSERT(hak_load_relaxed(&(ss)->remote[(slab) - (ss)->slabs]) == 0,        \
               "a FREE slab has an empty remote stack");                         \
    HAK_ASSERT(hak_load_relaxed(&(slab)->owner_id) == 0, "a FREE slab has no owner"); \
    HAK_ASSERT(!((ss)->inuse >> ((slab) - (ss)->slabs) & 1),                     \
               "a FREE slab's bit in the in-use mask is clear");                 \
  } while (0)
#define HAK_ASSERT_ORPHAN(ss, slab)                                               \
  do {                                                                            \
    HAK_ASSERT((slab)->state == HAK_SLAB_ORPHAN, "the slab is an ORPHAN here");  \
    HAK_ASSERT(hak_load_relaxed(&(slab)->owner_id) == 0, "an ORPHAN has no owner"); \
    HAK_ASSERT(hak_load_relaxed(&(ss)->remote[(slab) - (ss)->slabs]) == HAK_ORPHAN_BIT, \
               "an ORPHAN's remote head is HAK_ORPHAN_BIT exactly");             \
    HAK_ASSERT((slab)->used > 0, "an ORPHAN has blocks out (else it is retired)"); \
  } while (0)
#define HAK_ASSERT_OWNED(ss, slab, id)                                            \
  do {                                                                            \
    HAK_ASSERT((slab)->state == HAK_SLAB_OWNED, "the slab is OWNED here");       \
    HAK_ASSERT(hak_load_relaxed(&(slab)->owner_id) == (id),                      \
               "an OWNED slab's owner_id is its owner's thread id");             \
    HAK_ASSERT(!(hak_load_relaxed(&(ss)->remote[(slab) - (ss)->slabs]) & HAK_ORPHAN_BIT), \
               "an OWNED slab's remote head has no HAK_ORPHAN_BIT");             \
  } while (0)
/* Class lock held, after a change of inuse, free_slabs or dirty. */
#define HAK_ASSERT_MASKS(ss)                                                      \
  do {                                                                            \
    HAK_ASSERT((ss)->free_slabs ==                                                \
                   HAK_SLABS_PER_SS - (unsigned)__builtin_popcount((ss)->inuse),  \
               "free_slabs is the number of FREE slabs: 32 - popcount(inuse)");  \
    HAK_ASSERT(((ss)->dirty & (ss)->inuse) == 0,                                  \
               "only FREE slabs are marked dirty");                              \
  } while (0)

#define HAK_HELD_WORDS_PER_SLAB (HAK_SLAB_SIZE / HAK_MIN_BLOCK / HAK_HELD_BITS)

typedef struct hak_class_s {
  HAK_LINE pthread_mutex_t lock;
  hak_ss_t *head, *tail;        /* live SuperSlabs, ascending ss_seq */
  hak_slab_t *orphans;          /* ORPHAN slabs, latest first, by their o links; lock */
  _Atomic uint32_t dirty_slabs; /* sum of popcount(ss->dirty); changed under the lock,
                                 * read without it by _hak_retire */
  uint64_t ss_live, ss_created, ss_released, slabs_in_use;  /* lock */
  /* (remote_pending is no counter: hak_stats sums the counts in the remote
   * heads, so a remote free touches no process-wide line.) */
  HAK_LINE _Atomic uint64_t fallback_allocs, oom_nulls;
} hak_class_t;

typedef struct hak_global_s {
  /* Read on every call: kept apart from the lock and the counters, which
   * thread creation and growth write. */
  hak_config_t cfg;             /* read-mostly; changed only at quiescence */
  _Atomic uint64_t epoch;       /* bumped by hak_reset: thread state is stale */
  HAK_LINE pthread_mutex_t lock;  /* kept stack, counters, thread pool */
  uint64_t ss_seq;              /* last sequence number given */
  uint64_t live_total;          /* live SuperSlabs, all classes */
  hak_ss_t *kept;               /* released, still mapped (linked by next) */
  uint64_t ss_kept, os_maps, os_map_failures, os_unmaps;
  uint64_t map_attempts;        /* OS mapping attempts since configure */
  uint64_t next_thread_id;
  hak_thread_t *thread_pool;    /* recycled thread records */
  hak_thread_t *all_threads;    /* every record ever mapped (never unmapped) */
} hak_global_t;

extern HAK_HIDDEN hak_global_t _hak_g;
extern HAK_HIDDEN hak_class_t _hak_classes[HAK_NUM_CLASSES];

/* Per thread, per class. */
typedef struct hak_tclass_s {
  void *top;                    /* a copy of the cache's top entry, when count > 0
                                 * (stale when 0): malloc's fast path returns it */
  uint32_t count;               /* blocks in the cache, <= HAK_CACHE_CAP_MAX; < the
                                 * cap after a drain (a record may keep more than a
                                 * cap lowered by hak_configure until its next drain) */
  hak_slab_t *cur;              /* current slab or NULL */
  hak_slab_t *partial;          /* LIFO stack of owned slabs with free blocks */
  hak_slab_t *owned_head, *owned_tail;
  uint32_t refills;             /* refills that returned a block, this identity (saturates
                                 * once HAK_REFILL_START << refills reaches the largest cap) */
} hak_tclass_t;

struct hak_thread_s {
  uint64_t id;
  uint64_t epoch;
  /* The fast paths' only test: the cache cap while this record is current
   * (epoch == the global one) and checked mode is off, else 0, which sends
   * every call to the slow path (where a stale record is refreshed).  Set
   * by fresh_state, and by hak_configure and hak_reset (at quiescence) for
   * every record through _hak_threads_refresh. */
  uint32_t fast_cap;
  hak_thread_t *pool_next;
  hak_thread_t *all_next;       /* every record ever mapped; global lock */
  hak_tclass_t cls[HAK_NUM_CLASSES];
  /* Entry i of every class's cache side by side (slot [i][c], not [c][i]):
   * with the default cap of 64 all eight caches fit in one 4 KiB page, not
   * one page per class, which is most of a record's resident memory. */
  void *cache[HAK_CACHE_CAP_MAX][HAK_NUM_CLASSES];
};

/* Entry i of thread t's cache for class c (0 is the bottom, the oldest). */
static inline void **_hak_cache_slot(hak_thread_t *t, unsigned c, uint32_t i) {
  return &t->cache[i][c];
}

/* The entry under the top one of a cache holding count >= 1 entries: the
 * next top after a pop.  With one entry the cache is empty after the pop,
 * its top a don't-care: entry 0 is read (a select, no branch). */
static inline void *_hak_cache_below_top(hak_thread_t *t, unsigned c, uint32_t count) {
  return t->cache[count >= 2 ? count - 2 : 0][c];
}

/* After a slow path changed the cache: top is again a copy of the top entry
 * (a don't-care when the cache is empty). */
static inline void _hak_cache_sync_top(hak_thread_t *t, unsigned c) {
  uint32_t n = t->cls[c].count;
  t->cls[c].top = t->cache[n != 0 ? n - 1 : 0][c];
}

/* ---- inline helpers ---------------------------------------------------- */
static inline unsigned _hak_class_of(size_t size) {
  if (size <= HAK_MIN_BLOCK) return 0;
  return (unsigned)(64 - __builtin_clzll((unsigned long long)(size - 1))) - HAK_MIN_SHIFT;
}

/* ---- slab lists: the one push, append and unlink of every list ----------
 * Which link pair a list uses: a partial stack the p links; an owned list,
 * and the class's orphan list (an ORPHAN is on no owned list), the o links.
 * A list is its head and, when it keeps one, its tail (NULL when not). */
typedef enum { HAK_LINKS_P, HAK_LINKS_O } hak_links_t;

static inline hak_link_t *_hak_links(hak_slab_t *s, hak_links_t which) {
  return which == HAK_LINKS_P ? &s->p : &s->o;
}

static inline void _hak_list_push(hak_slab_t **head, hak_slab_t **tail, hak_slab_t *s,
                                  hak_links_t which) {
  hak_link_t *l = _hak_links(s, which);
  l->prev = NULL;
  l->next = *head;
  if (*head) _hak_links(*head, which)->prev = s; else if (tail) *tail = s;
  *head = s;
}

static inline void _hak_list_append(hak_slab_t **head, hak_slab_t **tail, hak_slab_t *s,
                                    hak_links_t which) {
  hak_link_t *l = _hak_links(s, which);
  l->next = NULL;
  l->prev = *tail;
  if (*tail) _hak_links(*tail, which)->next = s; else *head = s;
  *tail = s;
}

static inline void _hak_list_unlink(hak_slab_t **head, hak_slab_t **tail, hak_slab_t *s,
                                    hak_links_t which) {
  hak_link_t *l = _hak_links(s, which);
  hak_slab_t *next = l->next, *prev = l->prev;
  HAK_ASSERT(prev != NULL || *head == s, "a slab with no predecessor heads its list");
  if (prev) _hak_links(prev, which)->next = next; else *head = next;
  if (next) _hak_links(next, which)->prev = prev; else if (tail) *tail = prev;
  l->next = l->prev = NULL;
}
static inline hak_ss_t *_hak_ss_base(const void *p) {
  return (hak_ss_t *)((uintptr_t)p & ~(uintptr_t)(HAK_SS_SIZE - 1));
}
/* The class a SuperSlab's address names: bits 21..23 of its base.  New
 * mappings are placed so that it is their class (os.c), so free() finds the
 * class without a load; a reused mapping may name another class, so the
 * header's class_idx stays the truth and free() checks the two agree. */
_Static_assert((HAK_NUM_CLASSES & (HAK_NUM_CLASSES - 1)) == 0, "the class count is a power of two");
static inline unsigned _hak_addr_class(const void *p) {
  return (unsigned)((uintptr_t)p >> HAK_SS_SHIFT) & (HAK_NUM_CLASSES - 1);
}
/* Take a SuperSlab off a stack linked through next (the kept ones, the
 * reserve): among the top 2 x HAK_NUM_CLASSES (ss_keep may make the kept
 * stack long; this runs under the global lock), the first whose address
 * names class_idx, else the top; NULL when the stack is empty. */
static inline hak_ss_t *_hak_ss_pop_for(hak_ss_t **top, unsigned class_idx) {
  hak_ss_t **link = top;
  for (unsigned i = 1; i < 2 * HAK_NUM_CLASSES && *link != NULL; i++) {
    if (_hak_addr_class(*link) == class_idx) break;
    link = &(*link)->next;
  }
  if (*link == NULL || _hak_addr_class(*link) != class_idx) link = top;
  hak_ss_t *ss = *link;
  if (ss != NULL) *link = ss->next;
  return ss;
}
static inline unsigned _hak_slab_idx(const hak_ss_t *ss, const void *p) {
  return (unsigned)(((uintptr_t)p - (uintptr_t)ss) / HAK_SLAB_SIZE);
}
static inline uint8_t *_hak_slab_first(hak_ss_t *ss, unsigned slab_idx) {
  return (uint8_t *)ss + (size_t)slab_idx * HAK_SLAB_SIZE +
         (slab_idx == 0 ? HAK_SS_HEADER_SIZE : 0);
}
static inline uint16_t _hak_slab_capacity(unsigned block_size, unsigned slab_idx) {
  return (uint16_t)((HAK_SLAB_SIZE - (slab_idx == 0 ? HAK_SS_HEADER_SIZE : 0)) / block_size);
}
/* The parts of a remote head (see HAK_REMOTE_PTR_MASK). */
static inline void *_hak_remote_top(uintptr_t head) {
  return (void *)(head & HAK_REMOTE_PTR_MASK);
}
static inline uint32_t _hak_remote_count(uintptr_t head) {
  return (uint32_t)(head >> HAK_REMOTE_COUNT_SHIFT);
}
_Static_assert(HAK_SLAB_SIZE / HAK_MIN_BLOCK < (1u << (64 - HAK_REMOTE_COUNT_SHIFT)),
               "a remote head counts up to a slab's capacity");

/* ---- asan.c: the asan variant poisons free blocks (one switch, here) ---- */
#if defined(__SANITIZE_ADDRESS__)
#define HAK_NO_ASAN __attribute__((no_sanitize_address))
#define HAK_ASAN(call) call
void _hak_asan_init(void);
void _hak_asan_poison(void *p, size_t size);
void _hak_asan_unpoison(void *p, size_t size);
void _hak_asan_handed_out(void *p, size_t size);  /* unpoison, remember the stack */
void _hak_asan_freed(void *p, size_t size);       /* remember the stack, poison */
#else
#define HAK_NO_ASAN
#define HAK_ASAN(call) ((void)0)
#endif

/* Free blocks are linked through their first word: the allocator's only
 * reads and writes of memory it does not hand out (exempt from ASan). */
HAK_NO_ASAN static inline void *_hak_next(void *block) { return *(void **)block; }
HAK_NO_ASAN static inline void _hak_set_next(void *block, void *next) { *(void **)block = next; }

/* ---- os.c: mappings and fault injection ---- */
void *_hak_os_map_ss(uint32_t *dirty, unsigned class_idx);  /* counted, may be failed on purpose */
void _hak_os_unmap_ss(void *base);      /* counted; held in reserve or unmapped */
void _hak_os_drop_reserve(void);          /* hak_reset: unmap the reserve */
void *_hak_os_map_plain(size_t bytes);   /* uncounted, for metadata */
void _hak_os_discard(void *p, size_t bytes);  /* RSS back to the OS, stays mapped */
void _hak_os_unmap_plain(void *p, size_t bytes);

/* ---- registry.c: 2 MiB base -> SuperSlab, lock-free readers ----
 * A two-level radix table over the 47-bit user address space (26 bits of
 * 2 MiB page number: 13 + 13).  The lookup is here, inline: every free
 * makes one. */
#define HAK_REG_BITS_TOP  13
#define HAK_REG_BITS_LEAF 13
#define HAK_REG_LEAF_LEN  (1u << HAK_REG_BITS_LEAF)
/* An entry is the SuperSlab's base | its class index (the base is 2 MiB
 * aligned; hak_check compares the class with the header's).  hak_free
 * reads the class from the pointer's address bits instead (see there). */
typedef _Atomic(uintptr_t) hak_reg_slot_t;
extern HAK_HIDDEN _Atomic(hak_reg_slot_t *) _hak_reg_top[1u << HAK_REG_BITS_TOP];
#define HAK_REG_CLASS_MASK ((uintptr_t)(HAK_SS_SIZE - 1))

_Static_assert(HAK_SS_SHIFT + HAK_REG_BITS_TOP + HAK_REG_BITS_LEAF == 47,
               "the registry covers the 47-bit user address space");

static inline uintptr_t _hak_registry_entry(const void *p) {
  uintptr_t page = (uintptr_t)p >> HAK_SS_SHIFT;
  if (HAK_UNLIKELY(page >> (HAK_REG_BITS_TOP + HAK_REG_BITS_LEAF))) return 0;
  hak_reg_slot_t *leaf = hak_load_acquire(&_hak_reg_top[page >> HAK_REG_BITS_LEAF]);
  if (leaf == NULL) return 0;
  return hak_load_acquire(&leaf[page & (HAK_REG_LEAF_LEN - 1)]);
}

static inline hak_ss_t *_hak_registry_lookup(const void *p) {
  return (hak_ss_t *)(_hak_registry_entry(p) & ~HAK_REG_CLASS_MASK);
}
int _hak_registry_add(hak_ss_t *ss);     /* 0, or -1 when out of memory */
void _hak_registry_remove(hak_ss_t *ss);
void _hak_registry_clear(void);
int _hak_registry_check(char *msg, size_t len);

/* ---- superslab.c: grow, release, kept stack (class lock held) ---- */
hak_ss_t *_hak_ss_grow(unsigned class_idx);
void _hak_ss_release(hak_ss_t *ss);
void _hak_ss_unmap_all(void);            /* hak_reset */
void _hak_ss_forget_held_bits(void);     /* checked mode switched */

/* ---- slab.c: taking and returning blocks ---- */
void *_hak_take(hak_thread_t *t, unsigned class_idx);
uint32_t _hak_take_run(hak_thread_t *t, unsigned class_idx, void **out, uint32_t n);
void _hak_release_block(hak_thread_t *t, hak_ss_t *ss, void *p);
void _hak_retire(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab);
/* _hak_retire with the pages decided by the caller: AUTO as _hak_retire
 * (dirty while the class has room, else discarded here); KEEP: dirty; GONE:
 * the caller has already given the pages back (no discard here). */
enum { HAK_PAGES_AUTO = 0, HAK_PAGES_KEEP = 1, HAK_PAGES_GONE = 2 };
void _hak_retire_as(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, int pages);
void _hak_owned_append(hak_thread_t *t, unsigned c, hak_slab_t *slab);
void _hak_slab_detach(hak_thread_t *t, unsigned c, hak_slab_t *slab);  /* off lists, not cur */
void _hak_adopted_free(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p);

/* ---- remote.c: cross-thread frees ---- */
void _hak_remote_free(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p);
uint32_t _hak_remote_drain(hak_ss_t *ss, hak_slab_t *slab);
int _hak_remote_push_chain(hak_ss_t *ss, hak_slab_t *slab, void *top, void *bottom, uint32_t n);
void _hak_orphan(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab);
void _hak_adopt_locked(hak_thread_t *t, hak_class_t *cls, hak_slab_t *slab);

/* ---- tcache.c: thread records and caches ---- */
hak_thread_t *_hak_thread_slow(void);
void *_hak_cache_refill(hak_thread_t *t, unsigned class_idx);
void _hak_cache_drain(hak_thread_t *t, unsigned class_idx);
void _hak_thread_flush(hak_thread_t *t);
void _hak_thread_retire(hak_thread_t *t);  /* thread exit */
hak_thread_t *_hak_thread_current_or_null(void);
void _hak_free_without_record(hak_ss_t *ss, void *p);  /* see tcache.c */
/* Taken first by _hak_lock_all: a fork never copies the spare mid-free. */
extern HAK_HIDDEN pthread_mutex_t _hak_spare_lock;
void _hak_threads_refresh(void);         /* every fast_cap; global lock held */

extern HAK_HIDDEN __thread hak_thread_t *_hak_self __attribute__((tls_model("initial-exec")));
/* Set once the thread's TLS destructor has run (see tcache.c). */
extern HAK_HIDDEN __thread int _hak_exited __attribute__((tls_model("initial-exec")));
void _hak_exit_again(void);              /* end of a call made after exit */

static inline hak_thread_t *_hak_thread(void) {
  hak_thread_t *t = _hak_self;
  if (HAK_LIKELY(t != NULL && t->epoch == hak_load_relaxed(&_hak_g.epoch))) return t;
  return _hak_thread_slow();
}

/* ---- config.c ---- */
void _hak_init(void);                    /* idempotent, once per process */
void _hak_lock_all(void);                /* class locks then global, for fork */
void _hak_unlock_all(void);
/* One option by name (its field or HAKMEM_<NAME>, any case) from its text, read
 * and bounded as HAKMEM_<NAME> is: 0 applied, EINVAL refused (nothing changed). */
int _hak_option_set(const char *key, const char *text);

/* ---- check.c: checked mode ---- */
void _hak_held_set(hak_ss_t *ss, const void *p);

/* 0 when p is a block start inside a slab of ss, with its indices. */
static inline int _hak_block_index(hak_ss_t *ss, const void *p, unsigned *slab_idx,
                                   unsigned *block_idx) {
  unsigned s = _hak_slab_idx(ss, p);
  uintptr_t first = (uintptr_t)_hak_slab_first(ss, s);
  *slab_idx = s;
  *block_idx = 0;
  if ((uintptr_t)p < first) return -1;
  uintptr_t off = (uintptr_t)p - first;
  if (off % ss->block_size != 0) return -1;
  uintptr_t idx = off / ss->block_size;
  if (idx >= _hak_slab_capacity(ss->block_size, s)) return -1;
  *block_idx = (unsigned)idx;
  return 0;
}

static inline _Atomic uint64_t *_hak_held_word(hak_ss_t *ss, unsigned slab_idx,
                                               unsigned block_idx, uint64_t *mask) {
  *mask = 1ull << (block_idx % HAK_HELD_BITS);
  return &ss->held_bits[slab_idx * HAK_HELD_WORDS_PER_SLAB + block_idx / HAK_HELD_BITS];
}

/* Checked free: HAK_FREE_*.  Inline, so hak_free makes no call before its
 * fast path and keeps no register across one. */
static inline int _hak_held_clear(hak_ss_t *ss, const void *p) {
  unsigned slab_idx, block_idx;
  uint64_t mask;
  if (_hak_block_index(ss, p, &slab_idx, &block_idx) != 0) return HAK_FREE_INTERIOR;
  if (ss->held_bits == NULL) return HAK_FREE_OK;
  _Atomic uint64_t *word = _hak_held_word(ss, slab_idx, block_idx, &mask);
  uint64_t old = atomic_fetch_and_explicit(word, ~mask, memory_order_relaxed);
  return (old & mask) ? HAK_FREE_OK : HAK_FREE_DOUBLE;
}

/* ---- stats.c ---- */
void _hak_stats_print_fd(int fd);        /* hak_stats_print to any descriptor */

/* ---- api.c ---- */
void *_hak_oom(unsigned class_idx, size_t size, int kind);  /* policy at the cap */
void *_hak_libc_memalign(size_t alignment, size_t size);
size_t _hak_libc_usable_size(const void *p);

#endif /* HAK_INTERNAL_H */
