/* driver.c — runs a Program on real pthreads and reports one JSON result.
 *
 *   hakdriver [--allocator hakmem|glibc] FILE|-
 *
 * One pthread per program thread runs that thread's ops in program order.
 * An op on a handle waits until every earlier op (in program order) on the
 * same handle is done, and a `check` waits for every earlier op and holds
 * back every later one, so no program can deadlock; a bounded wait turns a
 * driver bug into an error instead of a hang.  A `thread_exit` really ends
 * the pthread (the allocator's TLS destructor runs) and a new pthread takes
 * over that program thread's remaining ops.
 *
 * Foreign mode (built with -DHAKDRV_FOREIGN as hakdriver-foreign, without
 * hakmem; run under LD_PRELOAD of any allocator):
 *
 *   hakdriver-foreign [--foreign-frees on|off] FILE|-
 *
 * every op goes through the standard names (the preloaded target), the
 * libc_alloc blocks come from glibc's own allocator (foreign.c), and with
 * --foreign-frees on (the default) they are freed and resized by the
 * target: pointers it did not make.  Only allocator-neutral oracles run,
 * plus the target's hakfuzz_* hooks when it exports them.
 *
 * Exit status: 0 clean, 3 an oracle failed, 2 bad input, 4 a wait timed out.
 * Crashes (SIGSEGV, glibc's "free(): invalid pointer" abort) are left to
 * kill the process: the Python side reads the signal and stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "oracles.h"
#ifdef HAKDRV_FOREIGN
#include "foreign.h"
#define HAK_CHECK_MSG_MAX 256
#else
#include "hakmem.h"
#endif

typedef struct {
  void *(*malloc)(size_t);
  void (*free)(void *);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  int (*memalign)(void **, size_t, size_t);
  void *(*aligned_alloc)(size_t, size_t);
  size_t (*usable)(const void *);
  int is_hakmem;
} alloc_vt_t;

extern size_t malloc_usable_size(void *);
static size_t glibc_usable(const void *p) { return malloc_usable_size((void *)p); }
#ifdef HAKDRV_FOREIGN
/* The standard names bind to the preloaded target. */
static alloc_vt_t g_target = {malloc, free, calloc, realloc, posix_memalign, aligned_alloc,
                              glibc_usable, 0};
static alloc_vt_t *A = &g_target;
static int g_foreign_frees = 1;
/* The usable size of a block: glibc's blocks asked of glibc itself. */
static size_t usable_of(const drv_handle_t *h) {
  return h->from_libc ? drv_libc.usable(h->ptr) : A->usable(h->ptr);
}
#else
static alloc_vt_t g_hakmem = {hak_malloc, hak_free, hak_calloc, hak_realloc, hak_posix_memalign,
                              hak_aligned_alloc, hak_usable_size, 1};
static alloc_vt_t g_glibc = {malloc, free, calloc, realloc, posix_memalign, aligned_alloc,
                             glibc_usable, 0};
static alloc_vt_t *A = &g_hakmem;
#endif

static drv_header_t g_hdr;
static drv_op_t *g_ops;
static uint32_t *g_hseq;          /* index of op among the ops on its handle */
static uint32_t *g_checks_before; /* checks earlier in program order */
static drv_handle_t *g_handles;
static int g_fallback_possible, g_null_possible;
static _Atomic uint32_t g_checks_done;
static double g_wait_limit = 30.0;

typedef struct {
  uint32_t tid;
  uint32_t *ops;     /* this thread's op indices */
  uint32_t nops, pos;
  _Atomic uint64_t done;
  uint64_t executed;
  pthread_t *chain;  /* pthreads that ran this program thread, in order */
  _Atomic uint32_t nchain;
  _Atomic int finished;  /* set by the last pthread of the chain */
  char pad[64];
} drv_thread_t;
static drv_thread_t g_threads[DRV_MAX_THREADS];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Spin, then yield; give up after g_wait_limit seconds. */
#define WAIT_UNTIL(cond, what, op)                                                 \
  do {                                                                             \
    unsigned spins_ = 0;                                                           \
    double start_ = 0;                                                             \
    while (!(cond)) {                                                              \
      if (drv_failed()) return -1;                                                 \
      if (++spins_ < 256) { __builtin_ia32_pause(); continue; }                    \
      if (start_ == 0) start_ = now();                                             \
      else if (now() - start_ > g_wait_limit) {                                    \
        fprintf(stderr, "hakdriver: op %u waited over %.0f s for %s\n", (op),     \
                g_wait_limit, (what));                                             \
        exit(4);                                                                   \
      }                                                                            \
      sched_yield();                                                               \
    }                                                                              \
  } while (0)

#ifndef HAKDRV_FOREIGN
static unsigned class_of(size_t n) {
  if (n <= 8) return 0;
  return (unsigned)(64 - __builtin_clzll((unsigned long long)(n - 1))) - 3u;
}
#endif

/* Owner, class and alignment of a fresh block, as the spec allows. */
static void check_new_block(uint32_t i, uint32_t hid, void *p, size_t need, size_t align,
                            int must_be_libc) {
  drv_handle_t *h = &g_handles[hid];
#ifdef HAKDRV_FOREIGN
  (void)need;
  if (align > 1 && ((uintptr_t)p & (align - 1)) != 0)
    drv_fail("alignment", i, hid, "%p is not aligned to %zu", p, align);
  h->extent = h->size ? h->size : 1;
  if (must_be_libc || drv_target_usable) {
    size_t usable = usable_of(h);
    if (usable < h->size)
      drv_fail("usable_size", i, hid, "usable size %zu < requested %u", usable, h->size);
    /* A glibc block's extent stays its request: glibc's usable size may
     * cover its neighbour's header. */
    if (!must_be_libc && usable > h->size) h->extent = (uint32_t)usable;
  }
  if (drv_hook_owns != NULL) {
    int owns = drv_hook_owns(p);
    if (must_be_libc && owns == 1)
      drv_fail("owns", i, hid, "hakfuzz_owns says a glibc block %p is the allocator's own", p);
    else if (!must_be_libc && owns == 0)
      drv_fail("owns", i, hid, "hakfuzz_owns denies the allocator's own fresh block %p", p);
  }
#else
  size_t usable = A->usable(p);
  if (usable < h->size)
    drv_fail("usable_size", i, hid, "usable size %zu < requested %u", usable, h->size);
  if (align > 1 && ((uintptr_t)p & (align - 1)) != 0)
    drv_fail("alignment", i, hid, "%p is not aligned to %zu", p, align);
  h->extent = (uint32_t)(usable > h->size ? usable : h->size);
  if (!A->is_hakmem) return;
  hak_location_t loc;
  hak_locate(p, &loc);
  if (must_be_libc || need > HAK_MAX_BLOCK) {
    if (loc.owner != HAK_OWNER_LIBC)
      drv_fail("owner", i, hid, "expected a glibc pointer, hak_locate says owner %u", loc.owner);
    h->extent = h->size ? h->size : 1; /* glibc's usable size may cover its neighbour's header */
    return;
  }
  if (loc.owner == HAK_OWNER_LIBC) {
    if (!g_fallback_possible)
      drv_fail("owner", i, hid, "a %zu-byte request was served by glibc with no cap set", need);
    h->extent = h->size ? h->size : 1;
    return;
  }
  if (loc.owner != HAK_OWNER_TINY)
    drv_fail("owner", i, hid, "hak_locate says owner %u for a fresh block", loc.owner);
  else if ((unsigned)loc.class_idx != class_of(need))
    drv_fail("class", i, hid, "a %zu-byte request got class %d", need, loc.class_idx);
  else if (((uintptr_t)p & ((8u << loc.class_idx) - 1)) != 0)
    drv_fail("alignment", i, hid, "%p is not aligned to its class size", p);
#endif
}

static void null_result(uint32_t i, uint32_t hid) {
  if (!g_null_possible) drv_fail("null", i, hid, "allocation returned NULL with no cap set");
  g_handles[hid].live = 0;
}

static void verify_or_fail(uint32_t i, uint32_t hid, uint32_t upto, const char *when) {
  uint32_t bad;
  if (drv_verify(&g_handles[hid], hid, upto, &bad))
    drv_fail("pattern", i, hid, "byte %u of handle %u changed %s (block %p)", bad, hid, when,
             g_handles[hid].ptr);
}

/* Usable size: at least the size asked, a tiny block's class size exactly, and
 * the same answer every time while the block lives (glibc's included). */
static void check_usable(uint32_t i, uint32_t hid) {
  drv_handle_t *h = &g_handles[hid];
#ifdef HAKDRV_FOREIGN
  if (!h->from_libc && !drv_target_usable) return;
  size_t usable = usable_of(h);
#else
  size_t usable = A->usable(h->ptr);
#endif
  if (usable < h->size)
    drv_fail("usable_size", i, hid, "usable size %zu < requested %u", usable, h->size);
#ifndef HAKDRV_FOREIGN
  if (A->is_hakmem) {
    hak_location_t loc;
    hak_locate(h->ptr, &loc);
    if (loc.owner == HAK_OWNER_TINY && usable != (size_t)8 << loc.class_idx)
      drv_fail("usable_size", i, hid, "usable size %zu of a class-%d block", usable,
               loc.class_idx);
  }
#endif
  if (!h->usable_known) {
    h->usable = usable;
    h->usable_known = 1;
  } else if (usable != h->usable) {
    drv_fail("usable_size", i, hid, "usable size changed from %zu to %zu for the same block",
             h->usable, usable);
  }
}

/* free(NULL) must do nothing: with one thread nothing else moves the counters,
 * so they must read the same after it. */
static void free_null(uint32_t i) {
#ifdef HAKDRV_FOREIGN
  (void)i;
  A->free(NULL);
#else
  if (!A->is_hakmem || g_hdr.threads != 1) {
    A->free(NULL);
    return;
  }
  hak_stats_t before, after;
  hak_stats(&before);
  hak_free(NULL);
  hak_stats(&after);
  if (memcmp(&before, &after, sizeof before) != 0)
    drv_fail("free_null", i, -1, "free(NULL) changed the allocator's counters");
#endif
}

static int run_check(uint32_t i) {
  if (drv_check_overlap(g_handles, g_hdr.nhandles, i)) return 0;
  char msg[HAK_CHECK_MSG_MAX];
#ifdef HAKDRV_FOREIGN
  /* The target's own heap check; every thread is held at this check. */
  if (drv_hook_check != NULL) {
    msg[0] = '\0';
    if (drv_hook_check(msg, sizeof msg)) {
      msg[sizeof msg - 1] = '\0';
      drv_fail("hakfuzz_check", i, -1, "%s", msg);
    }
  }
#else
  if (!A->is_hakmem) return 0;
  if (hak_check(msg, sizeof msg)) drv_fail("hak_check", i, -1, "%s", msg);
#endif
  return 0;
}

#ifdef HAKDRV_FOREIGN
/* A glibc block goes back through the target (a foreign free) or glibc. */
static void free_block(uint32_t i, uint32_t hid) {
  drv_handle_t *h = &g_handles[hid];
  if (!h->from_libc) A->free(h->ptr);
  else if (!g_foreign_frees) drv_libc.free(h->ptr);
  else {
    drv_foreign_enter("free()", i, hid);
    A->free(h->ptr);
    drv_foreign_leave();
  }
}

static void *realloc_block(uint32_t i, uint32_t hid, size_t size) {
  drv_handle_t *h = &g_handles[hid];
  if (!h->from_libc) return A->realloc(h->ptr, size);
  if (!g_foreign_frees) return drv_libc.realloc(h->ptr, size);
  drv_foreign_enter("realloc()", i, hid);
  void *p = A->realloc(h->ptr, size);
  drv_foreign_leave();
  return p;
}
#else
static void free_block(uint32_t i, uint32_t hid) {
  (void)i;
  if (A->is_hakmem) hak_free(g_handles[hid].ptr); else free(g_handles[hid].ptr);
}

static void *realloc_block(uint32_t i, uint32_t hid, size_t size) {
  (void)i;
  drv_handle_t *h = &g_handles[hid];
  return h->from_libc && A->is_hakmem ? hak_realloc(h->ptr, size) : A->realloc(h->ptr, size);
}
#endif

static uint64_t ops_done_total(void) {
  uint64_t sum = 0;
  for (uint32_t t = 0; t < g_hdr.threads; t++) sum += atomic_load_explicit(&g_threads[t].done, memory_order_acquire);
  return sum;
}

static void exec_op(uint32_t i) {
  drv_op_t *op = &g_ops[i];
  uint32_t hid = op->handle;
  drv_handle_t *h = hid < g_hdr.nhandles ? &g_handles[hid] : NULL;
  void *p;
  switch (op->kind) {
  case DRV_ALLOC:
  case DRV_LIBC_ALLOC:
  case DRV_CALLOC:
  case DRV_MEMALIGN:
  case DRV_ALIGNED_ALLOC:
  case DRV_REALLOC_NULL: {
    size_t need = op->size, align = 1;
    int rc = 0;
    if (op->kind == DRV_ALLOC) p = A->malloc(op->size);
    else if (op->kind == DRV_REALLOC_NULL) p = A->realloc(NULL, op->size);  /* = malloc */
    else if (op->kind == DRV_ALIGNED_ALLOC) {
      align = op->arg;
      p = A->aligned_alloc(align, op->size);
      if (need < align) need = align;
    }
#ifdef HAKDRV_FOREIGN
    else if (op->kind == DRV_LIBC_ALLOC) p = drv_libc.malloc(op->size);
#else
    else if (op->kind == DRV_LIBC_ALLOC) p = A->is_hakmem ? hak_libc_malloc(op->size) : malloc(op->size);
#endif
    else if (op->kind == DRV_CALLOC && op->arg == DRV_OVERFLOW_COUNT) {
      /* count * size overflows size_t: must be NULL with ENOMEM, never a block */
      errno = 0;
      p = A->calloc((size_t)1 << 63, op->size);
      h->live = 0;
      if (p != NULL) drv_fail("calloc_overflow", i, hid, "calloc(2^63, %u) returned a block", op->size);
      else if (errno != ENOMEM) drv_fail("calloc_overflow", i, hid, "errno %d, expected ENOMEM", errno);
      break;
    } else if (op->kind == DRV_CALLOC) {
      p = A->calloc(op->arg, op->size);
      need = (size_t)op->arg * op->size;
    } else {
      align = op->arg;
      rc = A->memalign(&p, align, op->size);
      if (rc != 0) p = NULL;
      if (need < align) need = align;
    }
    h->size = (uint32_t)(op->kind == DRV_CALLOC ? need : op->size);
    h->seed = 0;
    h->zeroed = op->kind == DRV_CALLOC;
    h->from_libc = op->kind == DRV_LIBC_ALLOC;
    h->usable_known = 0;
    if (p == NULL) {
      if (need == 0 && op->kind == DRV_LIBC_ALLOC) { h->live = 0; break; }
      null_result(i, hid);
      break;
    }
    h->ptr = p;
    h->live = 1;
    check_new_block(i, hid, p, need == 0 ? 1 : need, align, op->kind == DRV_LIBC_ALLOC);
    if (h->zeroed) verify_or_fail(i, hid, h->size, "after calloc (not zero)");
    else drv_fill(h, hid, 0, h->size);
    break;
  }
  case DRV_REALLOC: {
    if (!h->live) break;
    verify_or_fail(i, hid, h->size, "before realloc");
    uint32_t old = h->size;
    p = realloc_block(i, hid, op->size);
#ifdef HAKDRV_FOREIGN
    /* C leaves realloc(p, 0) to the implementation: NULL (p freed) or a
     * block of size 0, which then lives on like any other. */
    int freed_by_zero = op->size == 0 && p == NULL;
#else
    int freed_by_zero = op->size == 0;
#endif
    if (freed_by_zero) {
      /* realloc(p, 0) frees p and returns NULL (docs/policy.md; glibc does the same) */
      h->live = 0;
      if (p != NULL) drv_fail("realloc_zero", i, hid, "realloc(p, 0) returned %p, not NULL", p);
      break;
    }
    if (p == NULL) { if (!g_null_possible) drv_fail("null", i, hid, "realloc returned NULL"); break; }
    h->ptr = p;
    h->size = op->size;
#ifdef HAKDRV_FOREIGN
    /* glibc's realloc keeps a glibc block glibc's */
    h->from_libc = h->from_libc && !g_foreign_frees;
#else
    h->from_libc = 0;
#endif
    h->usable_known = 0;  /* another block, or this one resized: its usable size may change */
    verify_or_fail(i, hid, old < op->size ? old : op->size, "across realloc");
    check_new_block(i, hid, p, op->size ? op->size : 1, 1, h->from_libc);
    if (!h->zeroed) drv_fill(h, hid, 0, h->size);
    else h->zeroed = 0, drv_fill(h, hid, 0, h->size);
    break;
  }
  case DRV_FREE:
    if (!h->live) break;
    verify_or_fail(i, hid, h->size, "before free");
    free_block(i, hid);
    h->live = 0;
    break;
  case DRV_WRITE:
    if (!h->live) break;
    h->seed = (uint8_t)op->arg;
    h->zeroed = 0;
    drv_fill(h, hid, 0, h->size);
    break;
  case DRV_VERIFY:
    if (h->live) verify_or_fail(i, hid, h->size, "at verify");
    break;
  case DRV_FREE_NULL:
    free_null(i);
    break;
  case DRV_USABLE_SIZE:
    if (h->live) check_usable(i, hid);
    break;
  case DRV_USABLE_SIZE_NULL: {
#ifdef HAKDRV_FOREIGN
    if (!drv_target_usable) break;
#endif
    size_t usable = A->usable(NULL);
    if (usable != 0) drv_fail("usable_size", i, -1, "usable size of NULL is %zu, not 0", usable);
    break;
  }
  case DRV_FLUSH:
#ifndef HAKDRV_FOREIGN
    if (A->is_hakmem) hak_flush();
#endif
    break;
  case DRV_CHECK:
    run_check(i);
    break;
  default:
    break;
  }
}

/* Mark op i complete: later ops on its handle, later checks, may go. */
static void complete(drv_thread_t *t, uint32_t i) {
  drv_op_t *op = &g_ops[i];
  if (op->handle < g_hdr.nhandles)
    atomic_store_explicit(&g_handles[op->handle].done, g_hseq[i] + 1, memory_order_release);
  if (op->kind == DRV_CHECK) atomic_fetch_add_explicit(&g_checks_done, 1, memory_order_release);
  t->executed++;
  atomic_store_explicit(&t->done, atomic_load_explicit(&t->done, memory_order_relaxed) + 1,
                        memory_order_release);
}

static int step(drv_thread_t *t, uint32_t i) {
  drv_op_t *op = &g_ops[i];
  WAIT_UNTIL(atomic_load_explicit(&g_checks_done, memory_order_acquire) >= g_checks_before[i],
             "an earlier check", i);
  if (op->kind == DRV_CHECK) {
    WAIT_UNTIL(ops_done_total() == i, "every earlier op", i);
  } else if (op->handle < g_hdr.nhandles) {
    WAIT_UNTIL(atomic_load_explicit(&g_handles[op->handle].done, memory_order_acquire) == g_hseq[i],
               "an earlier op on its handle", i);
  }
  if (op->kind == DRV_THREAD_EXIT) return 0;  /* completed by the successor */
  exec_op(i);
  complete(t, i);
  return 0;
}

static void *run_thread(void *arg) {
  drv_thread_t *t = arg;
  uint32_t k = atomic_load_explicit(&t->nchain, memory_order_acquire) - 1;
  if (k > 0) {
    /* The predecessor's TLS destructor (the allocator's thread exit) has
     * run once it is joined: only then is its thread_exit op done. */
    pthread_join(t->chain[k - 1], NULL);
    complete(t, t->ops[t->pos - 1]);
  }
  while (t->pos < t->nops && !drv_failed()) {
    uint32_t i = t->ops[t->pos++];
    if (step(t, i) != 0) break;
    if (g_ops[i].kind != DRV_THREAD_EXIT) continue;
    if (t->pos == t->nops) {
      complete(t, i);  /* nothing follows: the final join covers the exit */
      break;
    }
    atomic_store_explicit(&t->nchain, k + 2, memory_order_release);
    if (pthread_create(&t->chain[k + 1], NULL, run_thread, t) != 0) {
      drv_fail("driver", i, -1, "pthread_create failed after thread_exit");
      atomic_store_explicit(&t->nchain, k + 1, memory_order_release);
      break;
    }
    return NULL;  /* this pthread ends; the allocator's TLS destructor runs */
  }
  atomic_store_explicit(&t->finished, 1, memory_order_release);
  return NULL;
}

static int load(const char *path) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL) { fprintf(stderr, "hakdriver: %s: %s\n", path, strerror(errno)); return 2; }
  if (fread(&g_hdr, sizeof g_hdr, 1, f) != 1 || memcmp(g_hdr.magic, DRV_MAGIC, 8) != 0) {
    fprintf(stderr, "hakdriver: %s: not a hakfuzz-driver/1 file\n", path);
    return 2;
  }
  if (g_hdr.threads == 0 || g_hdr.threads > DRV_MAX_THREADS) {
    fprintf(stderr, "hakdriver: %s: threads %u out of range 1..%d\n", path, g_hdr.threads, DRV_MAX_THREADS);
    return 2;
  }
  g_ops = calloc(g_hdr.nops ? g_hdr.nops : 1, sizeof *g_ops);
  g_hseq = calloc(g_hdr.nops ? g_hdr.nops : 1, sizeof *g_hseq);
  g_checks_before = calloc(g_hdr.nops ? g_hdr.nops : 1, sizeof *g_checks_before);
  g_handles = calloc(g_hdr.nhandles ? g_hdr.nhandles : 1, sizeof *g_handles);
  uint32_t *per_handle = calloc(g_hdr.nhandles ? g_hdr.nhandles : 1, sizeof *per_handle);
  if (!g_ops || !g_hseq || !g_checks_before || !g_handles || !per_handle) return 2;
  if (g_hdr.nops && fread(g_ops, sizeof *g_ops, g_hdr.nops, f) != g_hdr.nops) {
    fprintf(stderr, "hakdriver: %s: truncated: expected %u ops\n", path, g_hdr.nops);
    return 2;
  }
  if (f != stdin) fclose(f);
  uint32_t checks = 0, count[DRV_MAX_THREADS] = {0}, exits[DRV_MAX_THREADS] = {0};
  for (uint32_t i = 0; i < g_hdr.nops; i++) {
    drv_op_t *op = &g_ops[i];
    int needs_handle = drv_names_handle(op->kind);
    if (op->kind >= DRV_NUM_KINDS || op->thread >= g_hdr.threads ||
        (needs_handle && op->handle >= g_hdr.nhandles)) {
      fprintf(stderr, "hakdriver: %s: op %u: bad kind, thread or handle\n", path, i);
      return 2;
    }
    if (!needs_handle) op->handle = UINT32_MAX;
    else g_hseq[i] = per_handle[op->handle]++;
    g_checks_before[i] = checks;
    if (op->kind == DRV_CHECK) checks++;
    count[op->thread]++;
    if (op->kind == DRV_THREAD_EXIT) exits[op->thread]++;
  }
  free(per_handle);
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    g_threads[t].tid = t;
    g_threads[t].ops = malloc((count[t] ? count[t] : 1) * sizeof(uint32_t));
    g_threads[t].chain = calloc(exits[t] + 1, sizeof(pthread_t));
    if (g_threads[t].ops == NULL || g_threads[t].chain == NULL) return 2;
  }
  for (uint32_t i = 0; i < g_hdr.nops; i++) {
    drv_thread_t *t = &g_threads[g_ops[i].thread];
    t->ops[t->nops++] = i;
  }
  return 0;
}

#ifdef HAKDRV_FOREIGN
/* The program's config, through the target's hakfuzz_configure when it has
 * one (our libhakmem.so does); a target without it runs as it is. */
static int configure(void) {
  if (drv_hook_configure == NULL) return 0;
  static const char *const keys[9] = {"ss_cap", "budget_bytes", "oom_policy", "cache_cap",
                                      "refill_batch", "release_empty", "ss_keep", "checked",
                                      "fail_map_at"};
  char value[32];
  for (unsigned k = 0; k < 9; k++) {
    snprintf(value, sizeof value, "%llu", (unsigned long long)g_hdr.cfg[k]);
    if (drv_hook_configure(keys[k], value) != 0) {
      fprintf(stderr, "hakdriver: hakfuzz_configure(%s, %s) refused\n", keys[k], value);
      return 2;
    }
  }
  int limited = g_hdr.cfg[0] != 0 || g_hdr.cfg[1] != 0 || g_hdr.cfg[8] != 0;
  g_null_possible = limited && g_hdr.cfg[2] == 1;
  g_fallback_possible = limited && g_hdr.cfg[2] == 0;
  return 0;
}
#else
static int configure(void) {
  if (!A->is_hakmem) return 0;
  hak_config_t cfg;
  uint64_t *v = g_hdr.cfg;
  cfg.ss_cap = (uint32_t)v[0]; cfg.budget_bytes = v[1]; cfg.oom_policy = (uint32_t)v[2];
  cfg.cache_cap = (uint32_t)v[3]; cfg.refill_batch = (uint32_t)v[4];
  cfg.release_empty = (uint32_t)v[5]; cfg.ss_keep = (uint32_t)v[6]; cfg.checked = (uint32_t)v[7];
  cfg.fail_map_at = (uint32_t)v[8];
  hak_reset();
  if (hak_configure(&cfg) != 0) { fprintf(stderr, "hakdriver: invalid allocator config\n"); return 2; }
  int limited = cfg.ss_cap != 0 || cfg.budget_bytes != 0 || cfg.fail_map_at != 0;
  g_fallback_possible = limited && cfg.oom_policy == HAK_OOM_LIBC;
  g_null_possible = limited && cfg.oom_policy == HAK_OOM_NULL;
  return 0;
}
#endif

static void final_checks(void) {
  /* Everything still live is verified and freed from this thread; then
   * every counter must be back to zero and hak_check clean. */
  uint32_t last = g_hdr.nops;
  run_check(last);
  for (uint32_t hid = 0; hid < g_hdr.nhandles; hid++) {
    drv_handle_t *h = &g_handles[hid];
    if (!h->live) continue;
    verify_or_fail(last, hid, h->size, "at the end");
    free_block(last, hid);
    h->live = 0;
  }
#ifdef HAKDRV_FOREIGN
  run_check(last);  /* everything freed: the target's own check at quiescence */
#else
  if (!A->is_hakmem) return;
  hak_flush();
  hak_stats_t st;
  hak_stats(&st);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    if (st.cls[c].active_blocks != 0 || st.cls[c].remote_pending != 0 || st.cls[c].slabs_in_use != 0)
      drv_fail("quiescence", last, -1,
               "class %u after every free and thread exit: active %llu, remote_pending %lld, slabs_in_use %llu",
               c, (unsigned long long)st.cls[c].active_blocks, (long long)st.cls[c].remote_pending,
               (unsigned long long)st.cls[c].slabs_in_use);
  }
  char msg[HAK_CHECK_MSG_MAX];
  if (hak_check(msg, sizeof msg)) drv_fail("hak_check", last, -1, "at the end: %s", msg);
#endif
}

static void print_result(double seconds) {
#ifdef HAKDRV_FOREIGN
  printf("{\"format\": \"hakfuzz-driver-result/1\", \"ok\": %s, \"allocator\": \"target\", ",
         drv_failed() ? "false" : "true");
  printf("\"malloc_from\": ");
  drv_print_json_string(drv_malloc_from);
  printf(", \"foreign_frees\": %s, \"usable_size\": %s, \"hooks\": [", g_foreign_frees ? "true" : "false",
         drv_target_usable ? "true" : "false");
  int first = 1;
  if (drv_hook_check) printf("%s\"check\"", first ? "" : ", "), first = 0;
  if (drv_hook_owns) printf("%s\"owns\"", first ? "" : ", "), first = 0;
  if (drv_hook_configure) printf("%s\"configure\"", first ? "" : ", "), first = 0;
  printf("], ");
#else
  printf("{\"format\": \"hakfuzz-driver-result/1\", \"ok\": %s, \"allocator\": \"%s\", ",
         drv_failed() ? "false" : "true", A->is_hakmem ? "hakmem" : "glibc");
#endif
  uint64_t total = 0;
  printf("\"threads\": %u, \"ops_per_thread\": [", g_hdr.threads);
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    printf("%s%llu", t ? ", " : "", (unsigned long long)g_threads[t].executed);
    total += g_threads[t].executed;
  }
  printf("], \"ops\": %llu, \"seconds\": %.6f, \"ops_per_sec\": %.1f, ", (unsigned long long)total,
         seconds, seconds > 0 ? (double)total / seconds : 0.0);
#ifndef HAKDRV_FOREIGN
  if (A->is_hakmem) {
    hak_stats_t st;
    hak_stats(&st);
    printf("\"stats\": {\"classes\": [");
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
      const hak_class_stats_t *s = &st.cls[c];
      printf("%s[%llu, %llu, %llu, %llu, %llu, %lld, %llu, %llu]", c ? ", " : "",
             (unsigned long long)s->ss_live, (unsigned long long)s->ss_created,
             (unsigned long long)s->ss_released, (unsigned long long)s->slabs_in_use,
             (unsigned long long)s->active_blocks, (long long)s->remote_pending,
             (unsigned long long)s->fallback_allocs, (unsigned long long)s->oom_nulls);
    }
    printf("], \"ss_mapped\": %llu, \"ss_kept\": %llu, \"os_maps\": %llu, \"os_map_failures\": %llu, "
           "\"os_unmaps\": %llu}, ",
           (unsigned long long)st.ss_mapped, (unsigned long long)st.ss_kept,
           (unsigned long long)st.os_maps, (unsigned long long)st.os_map_failures,
           (unsigned long long)st.os_unmaps);
  }
#endif
  printf("\"failure\": ");
  if (drv_failed()) drv_print_failure_json(); else printf("null");
  printf("}\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
#ifdef HAKDRV_FOREIGN
    if (strcmp(argv[i], "--foreign-frees") == 0 && i + 1 < argc) {
      const char *v = argv[++i];
      if (strcmp(v, "on") == 0) g_foreign_frees = 1;
      else if (strcmp(v, "off") == 0) g_foreign_frees = 0;
      else { fprintf(stderr, "hakdriver: --foreign-frees %s: expected on or off\n", v); return 2; }
    } else if (strcmp(argv[i], "--allocator") == 0 && i + 1 < argc) {
      const char *name = argv[++i];
      if (strcmp(name, "target") != 0) { fprintf(stderr, "hakdriver: the foreign driver runs the preloaded target (--allocator target), not %s\n", name); return 2; }
    } else
#else
    if (strcmp(argv[i], "--allocator") == 0 && i + 1 < argc) {
      const char *name = argv[++i];
      if (strcmp(name, "glibc") == 0) A = &g_glibc;
      else if (strcmp(name, "hakmem") != 0) { fprintf(stderr, "hakdriver: unknown allocator %s\n", name); return 2; }
    } else
#endif
    if (strcmp(argv[i], "--wait-limit") == 0 && i + 1 < argc) {
      g_wait_limit = atof(argv[++i]);
    } else path = argv[i];
  }
  if (path == NULL) { fprintf(stderr, "usage: hakdriver [--allocator hakmem|glibc] FILE|-\n"); return 2; }
  int rc = 0;
#ifdef HAKDRV_FOREIGN
  rc = drv_foreign_init();
#endif
  if (rc == 0) rc = load(path);
  if (rc == 0) rc = configure();
  if (rc != 0) return rc;
  double start = now();
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    atomic_store(&g_threads[t].nchain, 1);  /* before the thread can read it */
    if (pthread_create(&g_threads[t].chain[0], NULL, run_thread, &g_threads[t]) != 0) {
      fprintf(stderr, "hakdriver: pthread_create failed\n");
      return 4;
    }
  }
  /* Each pthread of a chain joins its predecessor; main joins the last. */
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    while (!atomic_load_explicit(&g_threads[t].finished, memory_order_acquire)) usleep(50);
    pthread_join(g_threads[t].chain[atomic_load(&g_threads[t].nchain) - 1], NULL);
  }
  double seconds = now() - start;
  if (!drv_failed()) final_checks();
  print_result(seconds);
  return drv_failed() ? 3 : 0;
}
