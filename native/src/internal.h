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

#define HAK_LIKELY(x)   __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_SS_MAGIC    0x48414b4d454d5353ull  /* "HAKMEMSS" */
#define HAK_ORPHAN_BIT  ((uintptr_t)1)         /* in a slab's remote head */

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

/* Slab metadata, in the SuperSlab header.  Fields marked (owner) are written
 * only by the owning thread, or under the class lock while no thread owns
 * the slab.
 *   used == carved - |freelist|          (remote-pending and cached count as used)
 *   FREE  => used == 0, remote head == 0, owner_id == 0
 *   ORPHAN => owner_id == 0, remote head == HAK_ORPHAN_BIT exactly */
struct hak_slab_s {
  void *freelist;               /* (owner) LIFO, linked through the blocks */
  uint16_t carved;              /* (owner) blocks carved so far, <= capacity */
  uint16_t capacity;            /* blocks this slab can hold */
  uint16_t used;                /* (owner) */
  uint8_t state;                /* hak_slab_state_t, changed under the class lock */
  uint8_t on_partial;           /* (owner) on the owner's partial stack */
  _Atomic uint64_t owner_id;    /* thread id of the owner, 0 when none */
  hak_slab_t *p_next, *p_prev;  /* (owner) partial stack links */
  hak_slab_t *o_next, *o_prev;  /* (owner) owned list links */
};

/* SuperSlab header: the first HAK_SS_HEADER_SIZE bytes of slab 0.
 *   active == sum(slabs[i].used)
 *   free_slabs == number of FREE slabs == 32 - popcount(inuse) */
struct hak_ss_s {
  uint64_t magic;
  uint32_t class_idx;
  uint32_t free_slabs;          /* under the class lock */
  uint64_t ss_seq;
  uint32_t inuse;               /* bit i: slab i is not FREE; class lock */
  uint32_t block_size;
  _Atomic int64_t active;
  hak_ss_t *next, *prev;        /* class list, ascending ss_seq; class lock */
  _Atomic uint64_t *held_bits;  /* checked mode: bit per block held by the user */
  _Atomic uintptr_t remote[HAK_SLABS_PER_SS]; /* per-slab remote stacks */
  hak_slab_t slabs[HAK_SLABS_PER_SS];
};
_Static_assert(sizeof(hak_ss_t) <= HAK_SS_HEADER_SIZE, "SuperSlab header too large");

#define HAK_HELD_WORDS_PER_SLAB (HAK_SLAB_SIZE / HAK_MIN_BLOCK / 64)

typedef struct hak_class_s {
  pthread_mutex_t lock;
  hak_ss_t *head, *tail;        /* live SuperSlabs, ascending ss_seq */
  uint64_t ss_live, ss_created, ss_released, slabs_in_use;  /* lock */
  _Atomic int64_t remote_pending;
  _Atomic uint64_t fallback_allocs, oom_nulls;
} hak_class_t;

typedef struct hak_global_s {
  hak_config_t cfg;             /* read-mostly; changed only at quiescence */
  pthread_mutex_t lock;         /* kept stack, counters, thread pool */
  uint64_t ss_seq;              /* last sequence number given */
  uint64_t live_total;          /* live SuperSlabs, all classes */
  hak_ss_t *kept;               /* released, still mapped (linked by next) */
  uint64_t ss_kept, os_maps, os_map_failures, os_unmaps;
  uint64_t map_attempts;        /* OS mapping attempts since configure */
  uint64_t next_thread_id;
  hak_thread_t *thread_pool;    /* recycled thread records */
  _Atomic uint64_t epoch;       /* bumped by hak_reset: thread state is stale */
} hak_global_t;

extern hak_global_t _hak_g;
extern hak_class_t _hak_classes[HAK_NUM_CLASSES];

/* Per thread, per class. */
typedef struct hak_tclass_s {
  uint32_t count;               /* blocks in the cache */
  hak_slab_t *cur;              /* current slab or NULL */
  hak_slab_t *partial;          /* LIFO stack of owned slabs with free blocks */
  hak_slab_t *owned_head, *owned_tail;
} hak_tclass_t;

struct hak_thread_s {
  uint64_t id;
  uint64_t epoch;
  hak_thread_t *pool_next;
  hak_tclass_t cls[HAK_NUM_CLASSES];
  void *cache[HAK_NUM_CLASSES][HAK_CACHE_CAP_MAX];
};

/* ---- inline helpers ---------------------------------------------------- */
static inline unsigned _hak_class_of(size_t size) {
  if (size <= HAK_MIN_BLOCK) return 0;
  return (unsigned)(64 - __builtin_clzll((unsigned long long)(size - 1))) - 3u;
}
static inline hak_ss_t *_hak_ss_base(const void *p) {
  return (hak_ss_t *)((uintptr_t)p & ~(uintptr_t)(HAK_SS_SIZE - 1));
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
static inline void *_hak_next(void *block) { return *(void **)block; }
static inline void _hak_set_next(void *block, void *next) { *(void **)block = next; }

/* ---- os.c: mappings and fault injection ---- */
void *_hak_os_map_ss(void);              /* counted, may be failed on purpose */
void _hak_os_unmap_ss(void *base);
void *_hak_os_map_plain(size_t bytes);   /* uncounted, for metadata */
void _hak_os_unmap_plain(void *p, size_t bytes);

/* ---- registry.c: 2 MiB base -> SuperSlab, lock-free readers ---- */
hak_ss_t *_hak_registry_lookup(const void *p);
int _hak_registry_add(hak_ss_t *ss);     /* 0, or -1 when out of memory */
void _hak_registry_remove(hak_ss_t *ss);
void _hak_registry_clear(void);
int _hak_registry_check(char *msg, size_t len);

/* ---- superslab.c: grow, release, kept stack (class lock held) ---- */
hak_ss_t *_hak_ss_grow(unsigned class_idx);
void _hak_ss_release(hak_ss_t *ss);
void _hak_ss_unmap_all(void);            /* hak_reset */

/* ---- slab.c: taking and returning blocks ---- */
void *_hak_take(hak_thread_t *t, unsigned class_idx);
void _hak_release_block(hak_thread_t *t, hak_ss_t *ss, void *p);
void _hak_retire(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab);
void _hak_owned_append(hak_thread_t *t, unsigned c, hak_slab_t *slab);
void _hak_slab_detach(hak_thread_t *t, unsigned c, hak_slab_t *slab);  /* off lists, not cur */
void _hak_adopted_free(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p);

/* ---- remote.c: cross-thread frees ---- */
void _hak_remote_free(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab, void *p);
uint32_t _hak_remote_drain(hak_ss_t *ss, hak_slab_t *slab);
void _hak_orphan(hak_thread_t *t, hak_ss_t *ss, hak_slab_t *slab);

/* ---- tcache.c: thread records and caches ---- */
hak_thread_t *_hak_thread_slow(void);
void *_hak_cache_refill(hak_thread_t *t, unsigned class_idx);
void _hak_cache_drain(hak_thread_t *t, unsigned class_idx);
void _hak_thread_flush(hak_thread_t *t);
void _hak_thread_retire(hak_thread_t *t);  /* thread exit */
hak_thread_t *_hak_thread_current_or_null(void);

extern __thread hak_thread_t *_hak_self __attribute__((tls_model("initial-exec")));

static inline hak_thread_t *_hak_thread(void) {
  hak_thread_t *t = _hak_self;
  if (HAK_LIKELY(t != NULL && t->epoch == hak_load_relaxed(&_hak_g.epoch))) return t;
  return _hak_thread_slow();
}

/* ---- config.c ---- */
void _hak_init(void);                    /* idempotent, once per process */
void _hak_lock_all(void);                /* class locks then global, for fork */
void _hak_unlock_all(void);

/* ---- check.c: checked mode ---- */
void _hak_held_set(hak_ss_t *ss, const void *p);
int _hak_held_clear(hak_ss_t *ss, const void *p);  /* HAK_FREE_* */
int _hak_block_index(hak_ss_t *ss, const void *p, unsigned *slab_idx, unsigned *block_idx);

/* ---- api.c ---- */
void *_hak_oom(unsigned class_idx, size_t size, int kind);  /* policy at the cap */
void *_hak_libc_memalign(size_t alignment, size_t size);
size_t _hak_libc_usable_size(const void *p);

#endif /* HAK_INTERNAL_H */
