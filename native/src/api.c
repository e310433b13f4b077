/* api.c — the entry points: routing between size classes and glibc, the OOM
 * policy at the cap, and libc semantics (calloc overflow, realloc across
 * owners, alignment).  free() decides ownership through the registry only. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* glibc's allocator, for large requests and foreign pointers.  The
 * LD_PRELOAD build (-DHAK_PRELOAD) defines malloc itself, so it calls glibc's
 * internal names and reads glibc's usable size from the chunk header (of a
 * pointer already known to be glibc's: this never decides ownership).  Every
 * other build calls the public names, so a sanitizer's allocator, when one
 * is present, sees every foreign block. */
#ifdef HAK_PRELOAD
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
#define LIBC_MALLOC __libc_malloc
#define LIBC_FREE __libc_free
#define LIBC_CALLOC __libc_calloc
#define LIBC_REALLOC __libc_realloc
size_t _hak_libc_usable_size(const void *p) {
  size_t head = ((const size_t *)p)[-1];
  size_t chunk = head & ~(size_t)7;
  return (head & 2) ? chunk - 2 * sizeof(size_t) : chunk - sizeof(size_t);
}
void *_hak_libc_memalign(size_t alignment, size_t size) { return __libc_memalign(alignment, size); }
#else
#include <malloc.h>
#define LIBC_MALLOC malloc
#define LIBC_FREE free
#define LIBC_CALLOC calloc
#define LIBC_REALLOC realloc
size_t _hak_libc_usable_size(const void *p) { return malloc_usable_size((void *)p); }
void *_hak_libc_memalign(size_t alignment, size_t size) {
  void *p = NULL;
  return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}
#endif

enum { OOM_MALLOC = 0, OOM_CALLOC = 1 };

void *hak_libc_malloc(size_t size) { return LIBC_MALLOC(size); }
void hak_libc_free(void *ptr) { LIBC_FREE(ptr); }

void *_hak_oom(unsigned c, size_t size, int kind) {
  hak_class_t *cls = &_hak_classes[c];
  if (_hak_g.cfg.oom_policy == HAK_OOM_LIBC) {
    hak_add_relaxed(&cls->fallback_allocs, 1);
    return kind == OOM_CALLOC ? LIBC_CALLOC(1, size) : LIBC_MALLOC(size);
  }
  hak_add_relaxed(&cls->oom_nulls, 1);
  errno = ENOMEM;
  return NULL;
}

/* Everything but a pop from a non-empty cache: refill, caches off, checked
 * mode, calloc, a thread's first call, the OOM policy.  Out of line, so the
 * fast path below saves no registers and makes no call. */
static inline void *tiny_alloc_served(size_t size, int kind) {
  unsigned c = _hak_class_of(size);
  hak_thread_t *t = _hak_thread();
  void *p = NULL;
  if (HAK_LIKELY(t != NULL)) {
    if (HAK_LIKELY(_hak_g.cfg.cache_cap != 0)) {
      hak_tclass_t *tc = &t->cls[c];
      if (HAK_LIKELY(tc->count != 0)) {
        p = tc->top;
        tc->top = _hak_cache_below_top(t, c, tc->count--);
      } else {
        p = _hak_cache_refill(t, c);
      }
    } else {
      p = _hak_take(t, c);
    }
  }
  if (HAK_UNLIKELY(p == NULL)) return _hak_oom(c, size, kind);
  HAK_ASAN(_hak_asan_handed_out(p, (size_t)HAK_MIN_BLOCK << c));
  if (HAK_UNLIKELY(_hak_g.cfg.checked)) _hak_held_set(_hak_ss_base(p), p);
  if (kind == OOM_CALLOC) memset(p, 0, size);
  return p;
}

__attribute__((noinline)) static void *tiny_alloc_slow(size_t size, int kind) {
  void *p = tiny_alloc_served(size, kind);
  if (HAK_UNLIKELY(_hak_exited)) _hak_exit_again();  /* see tcache.c */
  return p;
}

/* Class of a size <= HAK_MAX_BLOCK, by (size + 7) / 8: one load. */
static const uint8_t g_class_of[HAK_MAX_BLOCK / HAK_MIN_BLOCK + 1] = {
    [0 ... 1] = 0, [2] = 1, [3 ... 4] = 2, [5 ... 8] = 3, [9 ... 16] = 4,
    [17 ... 32] = 5, [33 ... 64] = 6, [65 ... 128] = 7,
};

/* The fast path: this thread's cache for the class is not empty, and
 * fast_cap says caches are on, the record is current and checked mode off
 * (n - 1 < fast_cap: 1 <= n <= fast_cap).  It returns the copy of the top
 * entry the class record keeps (top), not the entry itself: the block is
 * one load after the class, not two (count, then the entry at count), and
 * the caller's first store into it waits on that.  The entry below is
 * loaded for the next pop, off the caller's way.  (larson with five
 * classes mixed, 1-4 threads: 15-18 % more operations per second.) */
static inline void *tiny_alloc(size_t size, int kind) {
  hak_thread_t *t = _hak_self;
  if (HAK_LIKELY(kind == OOM_MALLOC && t != NULL)) {
    unsigned c = g_class_of[(size + HAK_MIN_BLOCK - 1) / HAK_MIN_BLOCK];
    hak_tclass_t *tc = &t->cls[c];
    uint32_t n = tc->count;
    if (HAK_LIKELY(n - 1 < t->fast_cap)) {
      tc->count = n - 1;
      void *p = tc->top;
      tc->top = _hak_cache_below_top(t, c, n);
      HAK_ASAN(_hak_asan_handed_out(p, (size_t)HAK_MIN_BLOCK << c));
      return p;
    }
  }
  return tiny_alloc_slow(size, kind);
}

void *hak_malloc(size_t size) {
  if (HAK_LIKELY(size <= HAK_MAX_BLOCK)) return tiny_alloc(size, OOM_MALLOC);
  return LIBC_MALLOC(size);
}

/* A full cache (drain first), caches off, a thread's first call. */
static inline void tiny_free_served(hak_ss_t *ss, void *p) {
  unsigned c = ss->class_idx;
  hak_thread_t *t = _hak_thread();
  if (HAK_UNLIKELY(t == NULL)) {  /* no record: mapping one failed */
    _hak_free_without_record(ss, p);
    return;
  }
  uint32_t cap = _hak_g.cfg.cache_cap;
  if (HAK_LIKELY(cap != 0)) {
    hak_tclass_t *tc = &t->cls[c];
    if (HAK_UNLIKELY(tc->count >= cap)) _hak_cache_drain(t, c);
    HAK_ASSERT(tc->count < cap && cap <= HAK_CACHE_CAP_MAX,
               "a cache holds fewer than cap blocks before a push");
    *_hak_cache_slot(t, c, tc->count++) = p;
    tc->top = p;
    return;
  }
  _hak_release_block(t, ss, p);
}

__attribute__((noinline)) static void tiny_free_slow(hak_ss_t *ss, void *p) {
  tiny_free_served(ss, p);
  if (HAK_UNLIKELY(_hak_exited)) _hak_exit_again();  /* see tcache.c */
}

/* The fast path: a push on this thread's cache, which has room.  The
 * caller passes the class (see hak_free for where it reads it). */
static inline void tiny_free(hak_ss_t *ss, unsigned c, void *p) {
  hak_thread_t *t = _hak_self;
  if (HAK_LIKELY(t != NULL)) {
    hak_tclass_t *tc = &t->cls[c];
    uint32_t n = tc->count;
    if (HAK_LIKELY(n < t->fast_cap)) {  /* room; caches on, record current */
      tc->count = n + 1;
      *_hak_cache_slot(t, c, n) = p;
      tc->top = p;
      return;
    }
  }
  tiny_free_slow(ss, p);
}

__attribute__((noinline, cold)) static void report_bad_free(int code, hak_ss_t *ss, const void *p) {
  char msg[200];
  int n = snprintf(msg, sizeof msg, "hakmem: %s of %p (class %u, ss_seq %llu)\n",
                   code == HAK_FREE_DOUBLE ? "double free of a tiny block" :
                                             "free of an interior pointer",
                   p, ss->class_idx, (unsigned long long)ss->ss_seq);
  if (n > 0) {
    ssize_t w = write(2, msg, (size_t)n);
    (void)w;
  }
}

/* The checked-mode diagnosis, the same for hak_free and hak_free_checked:
 * not a carved block start -> INTERIOR; a block whose held bit is clear ->
 * DOUBLE.  Clears the held bit of a good free. */
static int diagnose_free(hak_ss_t *ss, const void *ptr) {
  unsigned slab_idx, block_idx;
  if (_hak_block_index(ss, ptr, &slab_idx, &block_idx) != 0 ||
      block_idx >= HAK_CARVED(&ss->slabs[slab_idx]))
    return HAK_FREE_INTERIOR;
  return ss->held_bits != NULL ? _hak_held_clear(ss, ptr) : HAK_FREE_OK;
}

void hak_free(void *ptr) {
  if (ptr == NULL) return;
  uintptr_t entry = _hak_registry_entry(ptr);
  if (entry == 0) {
    LIBC_FREE(ptr);
    return;
  }
  hak_ss_t *ss = _hak_ss_base(ptr);  /* the entry's base: masked from ptr, no wait on the entry */
  if (HAK_UNLIKELY(_hak_g.cfg.checked)) {
    int code = diagnose_free(ss, ptr);
    if (code != HAK_FREE_OK) {
      report_bad_free(code, ss, ptr);
      abort();
    }
    HAK_ASAN(_hak_asan_freed(ptr, ss->block_size));
    tiny_free_slow(ss, ptr);  /* a path of its own: the fast one below saves no register */
    return;
  }
  HAK_ASAN(_hak_asan_freed(ptr, ss->block_size));
  /* The class from ptr's address bits (_hak_addr_class), checked against
   * the SuperSlab header, the truth.  The push's store addresses (count,
   * slot) depend on the class, and the next malloc's loads wait on those
   * stores: taken from the address, the class is ready at once, while the
   * check is a predicted branch nothing waits on.  (Read from the header,
   * larson with five classes mixed ran 2-12 % slower at 1-4 threads; read
   * from the registry entry, the second of two dependent loads, slower
   * still.)  A reused mapping whose address names another class frees
   * through the slow path, which reads the header.  The header is read
   * only after the registry said the pointer is ours, so it never reads a
   * foreign page (a speculative read past the branch is squashed). */
  unsigned c = _hak_addr_class(ptr);
  if (HAK_LIKELY(ss->class_idx == c)) tiny_free(ss, c, ptr);
  else tiny_free_slow(ss, ptr);
}

int hak_free_checked(void *ptr) {
  if (ptr == NULL) return HAK_FREE_OK;
  uintptr_t entry = _hak_registry_entry(ptr);
  if (entry == 0) {
    LIBC_FREE(ptr);
    return HAK_FREE_OK;
  }
  hak_ss_t *ss = (hak_ss_t *)(entry & ~HAK_REG_CLASS_MASK);
  int code = diagnose_free(ss, ptr);
  if (code != HAK_FREE_OK) {
    report_bad_free(code, ss, ptr);
    return code;
  }
  HAK_ASAN(_hak_asan_freed(ptr, ss->block_size));
  tiny_free(ss, (unsigned)(entry & HAK_REG_CLASS_MASK), ptr);
  return HAK_FREE_OK;
}

void *hak_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  if (total <= HAK_MAX_BLOCK) return tiny_alloc(total, OOM_CALLOC);
  return LIBC_CALLOC(count, size);
}

size_t hak_usable_size(const void *ptr) {
  if (ptr == NULL) return 0;
  hak_ss_t *ss = _hak_registry_lookup(ptr);
  if (ss == NULL) return _hak_libc_usable_size(ptr);
  return ss->block_size;
}

void *hak_realloc(void *ptr, size_t size) {
  if (ptr == NULL) return hak_malloc(size);
  if (size == 0) {
    hak_free(ptr);
    return NULL;
  }
  hak_ss_t *ss = _hak_registry_lookup(ptr);
  if (ss != NULL) {
    size_t old = ss->block_size;
    if (size <= old && _hak_class_of(size) == ss->class_idx) return ptr;
    void *q = hak_malloc(size);
    if (q == NULL) return NULL;
    memcpy(q, ptr, size < old ? size : old);
    hak_free(ptr);
    return q;
  }
  if (size > HAK_MAX_BLOCK) return LIBC_REALLOC(ptr, size);
  void *q = hak_malloc(size);
  if (q == NULL) return NULL;
  size_t old = _hak_libc_usable_size(ptr);
  memcpy(q, ptr, size < old ? size : old);
  LIBC_FREE(ptr);
  return q;
}

static int is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

static void *aligned_tiny_or_libc(size_t alignment, size_t size) {
  size_t need = size > alignment ? size : alignment;
  if (need <= HAK_MAX_BLOCK) {
    void *p = tiny_alloc(need, OOM_MALLOC);
    /* A fallback at the cap must still honour the alignment. */
    if (p != NULL && ((uintptr_t)p & (alignment - 1)) != 0) {
      LIBC_FREE(p);
      p = _hak_libc_memalign(alignment, size);
    }
    return p;
  }
  return _hak_libc_memalign(alignment, size);
}

int hak_posix_memalign(void **out, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
  int saved = errno;
  void *p = aligned_tiny_or_libc(alignment, size);
  if (p == NULL) {
    errno = saved;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

void *hak_aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  if (alignment < sizeof(void *)) alignment = sizeof(void *);
  return aligned_tiny_or_libc(alignment, size);
}
