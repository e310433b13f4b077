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
 * The allocator is a backend (backend.h), linked in per build: hakdriver
 * runs hakmem (or glibc by --allocator glibc) with hakmem's own oracles;
 *
 *   hakdriver-foreign [--foreign-frees on|off] FILE|-
 *
 * runs any LD_PRELOAD target with the allocator-neutral ones.
 *
 * A program with a churn section (churn.h) runs its churn phase once the
 * ops are done, before the end checks.
 *
 *   hakdriver[-foreign] [options] --serve [--timeout S]
 *
 * serves programs instead (serve.c): each one, read from stdin, runs in a
 * child forked for it, and its result is one JSON line on stdout.
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
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "churn.h"
#include "driver.h"
#include "oracles.h"
#include "serve.h"

static drv_header_t g_hdr;
static drv_op_t *g_ops;
static uint32_t *g_hseq;          /* index of op among the ops on its handle */
static uint32_t *g_checks_before; /* checks earlier in program order */
static drv_handle_t *g_handles;
static int g_null_possible;  /* an allocation may fail to NULL under this config */
static _Atomic uint32_t g_checks_done;
static uint32_t g_checks_total;     /* check ops in the program */
static _Atomic int g_all_spawned;   /* main has started every thread of the program */
static double g_wait_limit = 30.0;
static drv_churn_t g_churn;  /* valid when g_hdr.flags has DRV_FLAG_CHURN */

typedef struct {
  uint32_t tid;
  uint32_t *ops;     /* this thread's op indices */
  uint32_t nops, pos;
  _Atomic uint64_t done;
  uint64_t executed;
  pthread_t *chain;  /* pthreads that ran this program thread, in order */
  void **stacks;     /* their stacks (spawn) */
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
  size_t usable;
  if (!drv_be_usable(h, &usable)) return;
  if (usable < h->size)
    drv_fail("usable_size", i, hid, "usable size %zu < requested %u", usable, h->size);
  drv_be_check_usable(i, hid, h, usable);
  if (!h->usable_known) {
    h->usable = usable;
    h->usable_known = 1;
  } else if (usable != h->usable) {
    drv_fail("usable_size", i, hid, "usable size changed from %zu to %zu for the same block",
             h->usable, usable);
  }
}

static int run_check(uint32_t i) {
  if (drv_check_overlap(g_handles, g_hdr.nhandles, i)) return 0;
  drv_be_check(i);
  return 0;
}

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
    if (op->kind == DRV_ALLOC) p = drv_alloc->malloc(op->size);
    else if (op->kind == DRV_REALLOC_NULL) p = drv_alloc->realloc(NULL, op->size);  /* = malloc */
    else if (op->kind == DRV_ALIGNED_ALLOC) {
      align = op->arg;
      p = drv_alloc->aligned_alloc(align, op->size);
      if (need < align) need = align;
    }
    else if (op->kind == DRV_LIBC_ALLOC) p = drv_alloc->libc_malloc(op->size);
    else if (op->kind == DRV_CALLOC && op->arg == DRV_OVERFLOW_COUNT) {
      /* count * size overflows size_t: must be NULL with ENOMEM, never a block */
      errno = 0;
      p = drv_alloc->calloc((size_t)1 << 63, op->size);
      h->live = 0;
      if (p != NULL) drv_fail("calloc_overflow", i, hid, "calloc(2^63, %u) returned a block", op->size);
      else if (errno != ENOMEM) drv_fail("calloc_overflow", i, hid, "errno %d, expected ENOMEM", errno);
      break;
    } else if (op->kind == DRV_CALLOC) {
      p = drv_alloc->calloc(op->arg, op->size);
      need = (size_t)op->arg * op->size;
    } else {
      align = op->arg;
      rc = drv_alloc->memalign(&p, align, op->size);
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
    drv_be_check_new_block(i, hid, h, p, need == 0 ? 1 : need, align, op->kind == DRV_LIBC_ALLOC);
    if (h->zeroed) verify_or_fail(i, hid, h->size, "after calloc (not zero)");
    else drv_fill(h, hid, 0, h->size);
    break;
  }
  case DRV_REALLOC: {
    if (!h->live) break;
    verify_or_fail(i, hid, h->size, "before realloc");
    uint32_t old = h->size;
    p = drv_be_realloc_block(i, hid, h, op->size);
    int freed_by_zero = op->size == 0 && drv_be_realloc_zero_freed(p);
    if (freed_by_zero) {
      /* realloc(p, 0) freed p: a block it also returned is a failure */
      h->live = 0;
      if (p != NULL) drv_fail("realloc_zero", i, hid, "realloc(p, 0) returned %p, not NULL", p);
      break;
    }
    if (p == NULL) { if (!g_null_possible) drv_fail("null", i, hid, "realloc returned NULL"); break; }
    h->ptr = p;
    h->size = op->size;
    h->from_libc = drv_be_realloc_keeps_libc(h);
    h->usable_known = 0;  /* another block, or this one resized: its usable size may change */
    verify_or_fail(i, hid, old < op->size ? old : op->size, "across realloc");
    drv_be_check_new_block(i, hid, h, p, op->size ? op->size : 1, 1, h->from_libc);
    if (!h->zeroed) drv_fill(h, hid, 0, h->size);
    else h->zeroed = 0, drv_fill(h, hid, 0, h->size);
    break;
  }
  case DRV_FREE:
    if (!h->live) break;
    verify_or_fail(i, hid, h->size, "before free");
    drv_be_free_block(i, hid, h);
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
    drv_be_free_null(i, g_hdr.threads);
    break;
  case DRV_USABLE_SIZE:
    if (h->live) check_usable(i, hid);
    break;
  case DRV_USABLE_SIZE_NULL: {
    size_t usable;
    if (drv_be_usable_null(&usable) && usable != 0)
      drv_fail("usable_size", i, -1, "usable size of NULL is %zu, not 0", usable);
    break;
  }
  case DRV_FLUSH:
    drv_be_flush();
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

static void *run_thread(void *arg);

/* When the backend asks (drv_be_own_stacks), each pthread runs on a stack of
 * ours, unmapped once it is joined: glibc caches the stacks it makes, with
 * the TLS vector it allocated through the allocator under test, and a
 * cached one would read as a block the program never freed when the
 * allocator's counters are compared at the end. */
#define DRV_STACK_SIZE ((size_t)1 << 20)
int drv_thread_start(pthread_t *th, void *(*fn)(void *), void *arg, void **stack) {
  *stack = NULL;
  if (!drv_be_own_stacks()) return pthread_create(th, NULL, fn, arg);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *map = mmap(NULL, DRV_STACK_SIZE + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (map == MAP_FAILED) return -1;
  mprotect(map, page, PROT_NONE);  /* a guard page below the stack */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, map + page, DRV_STACK_SIZE);
  int rc = pthread_create(th, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  if (rc != 0) munmap(map, DRV_STACK_SIZE + page);
  else *stack = map;
  return rc;
}

void drv_thread_reap(pthread_t th, void *stack) {
  pthread_join(th, NULL);
  if (stack != NULL) munmap(stack, DRV_STACK_SIZE + (size_t)sysconf(_SC_PAGESIZE));
}

static int spawn(drv_thread_t *t, uint32_t k) {
  return drv_thread_start(&t->chain[k], run_thread, t, &t->stacks[k]);
}

static void reap(drv_thread_t *t, uint32_t k) {
  drv_thread_reap(t->chain[k], t->stacks[k]);
  t->stacks[k] = NULL;
}

static void *run_thread(void *arg) {
  drv_thread_t *t = arg;
  uint32_t k = atomic_load_explicit(&t->nchain, memory_order_acquire) - 1;
  /* No op before every thread is started: pthread_create allocates (the new
   * thread's TLS vector) through the allocator under test, in main, and a
   * check at the first ops must not run during that. */
  while (!atomic_load_explicit(&g_all_spawned, memory_order_acquire)) usleep(20);
  if (k > 0) {
    /* The predecessor's TLS destructor (the allocator's thread exit) has
     * run once it is joined: only then is its thread_exit op done. */
    reap(t, k - 1);
    complete(t, t->ops[t->pos - 1]);
  }
  while (t->pos < t->nops && !drv_failed()) {
    uint32_t i = t->ops[t->pos++];
    if (step(t, i) != 0) break;
    if (g_ops[i].kind != DRV_THREAD_EXIT) continue;
    /* Even when nothing follows: a successor reaps this pthread and only
     * then completes the op, so no later check runs during its exit. */
    atomic_store_explicit(&t->nchain, k + 2, memory_order_release);
    if (spawn(t, k + 1) != 0) {
      drv_fail("driver", i, -1, "pthread_create failed after thread_exit");
      atomic_store_explicit(&t->nchain, k + 1, memory_order_release);
      break;
    }
    return NULL;  /* this pthread ends; the allocator's TLS destructor runs */
  }
  /* A heap check is exact only while no thread is inside the allocator, and
   * a pthread that returns is: its TLS destructors (the allocator's thread
   * exit) run, and glibc may allocate and free for it after them.  So a
   * pthread out of ops stays until every check of the program has run (the
   * checks hold every other op already); the final join covers its exit. */
  while (atomic_load_explicit(&g_checks_done, memory_order_acquire) < g_checks_total &&
         !drv_failed())
    usleep(50);
  atomic_store_explicit(&t->finished, 1, memory_order_release);
  return NULL;
}

static int load(FILE *f, const char *path) {
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
  if (g_hdr.flags & ~DRV_FLAG_CHURN) {
    fprintf(stderr, "hakdriver: %s: unknown header flags %#x\n", path, g_hdr.flags);
    return 2;
  }
  if (g_hdr.flags & DRV_FLAG_CHURN) {
    const char *bad = fread(&g_churn, sizeof g_churn, 1, f) != 1 ? "truncated"
                                                                 : drv_churn_invalid(&g_churn, DRV_MAX_THREADS);
    if (bad != NULL) {
      fprintf(stderr, "hakdriver: %s: churn record: %s\n", path, bad);
      return 2;
    }
  }
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
  g_checks_total = checks;
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    g_threads[t].tid = t;
    g_threads[t].ops = malloc((count[t] ? count[t] : 1) * sizeof(uint32_t));
    g_threads[t].chain = calloc(exits[t] + 1, sizeof(pthread_t));
    g_threads[t].stacks = calloc(exits[t] + 1, sizeof(void *));
    if (g_threads[t].ops == NULL || g_threads[t].chain == NULL || g_threads[t].stacks == NULL)
      return 2;
  }
  for (uint32_t i = 0; i < g_hdr.nops; i++) {
    drv_thread_t *t = &g_threads[g_ops[i].thread];
    t->ops[t->nops++] = i;
  }
  return 0;
}

static void final_checks(void) {
  /* Everything still live is verified and freed from this thread; then
   * the allocator must be back to empty by its own account. */
  uint32_t last = g_hdr.nops;
  run_check(last);
  for (uint32_t hid = 0; hid < g_hdr.nhandles; hid++) {
    drv_handle_t *h = &g_handles[hid];
    if (!h->live) continue;
    verify_or_fail(last, hid, h->size, "at the end");
    drv_be_free_block(last, hid, h);
    h->live = 0;
  }
  drv_be_final_checks(last);
}

static void print_result(double seconds) {
  printf("{\"format\": \"hakfuzz-driver-result/1\", \"ok\": %s, ", drv_failed() ? "false" : "true");
  drv_be_print_identity();
  uint64_t total = 0;
  printf("\"threads\": %u, \"ops_per_thread\": [", g_hdr.threads);
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    printf("%s%llu", t ? ", " : "", (unsigned long long)g_threads[t].executed);
    total += g_threads[t].executed;
  }
  printf("], \"ops\": %llu, \"seconds\": %.6f, \"ops_per_sec\": %.1f, ", (unsigned long long)total,
         seconds, seconds > 0 ? (double)total / seconds : 0.0);
  drv_be_print_stats();
  drv_churn_print();
  printf("\"failure\": ");
  if (drv_failed()) drv_print_failure_json(); else printf("null");
  printf("}\n");
  fflush(stdout);
}

/* Loads one program from f, runs it and prints its result: the exit status
 * of a one-shot run (0 clean, 3 an oracle failed, 2 bad input, 4 no thread
 * could start). */
int drv_run_program(FILE *f, const char *path) {
  int rc = load(f, path);
  if (rc == 0) rc = drv_be_configure(g_hdr.cfg, &g_null_possible);
  if (rc != 0) return rc;
  double start = now();
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    atomic_store(&g_threads[t].nchain, 1);  /* before the thread can read it */
    if (spawn(&g_threads[t], 0) != 0) {
      fprintf(stderr, "hakdriver: pthread_create failed\n");
      return 4;
    }
  }
  atomic_store_explicit(&g_all_spawned, 1, memory_order_release);
  /* Each pthread of a chain joins its predecessor; main joins the last. */
  for (uint32_t t = 0; t < g_hdr.threads; t++) {
    while (!atomic_load_explicit(&g_threads[t].finished, memory_order_acquire)) usleep(50);
    reap(&g_threads[t], atomic_load(&g_threads[t].nchain) - 1);
  }
  if ((g_hdr.flags & DRV_FLAG_CHURN) && !drv_failed())
    drv_churn_run(&g_churn, g_hdr.nops, g_null_possible);
  double seconds = now() - start;
  if (!drv_failed()) final_checks();
  print_result(seconds);
  return drv_failed() ? 3 : 0;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int serve = 0;
  double serve_timeout = 60.0;
  for (int i = 1; i < argc; i++) {
    int mine = i + 1 < argc ? drv_be_option(argv[i], argv[i + 1]) : 0;
    if (mine < 0) return 2;
    if (mine > 0) {
      i++;
    } else if (strcmp(argv[i], "--wait-limit") == 0 && i + 1 < argc) {
      g_wait_limit = atof(argv[++i]);
    } else if (strcmp(argv[i], "--serve") == 0) {
      serve = 1;
    } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
      serve_timeout = atof(argv[++i]);
      if (serve_timeout <= 0) { fprintf(stderr, "hakdriver: --timeout must be > 0\n"); return 2; }
    } else path = argv[i];
  }
  if (!serve && path == NULL) {
    fprintf(stderr, "usage: hakdriver [--allocator hakmem|glibc] FILE|-\n"
                    "       hakdriver --serve [--timeout S] (programs on stdin, results on stdout)\n");
    return 2;
  }
  int rc = drv_be_init();
  if (rc != 0) return rc;
  if (serve) return drv_serve(serve_timeout);
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL) { fprintf(stderr, "hakdriver: %s: %s\n", path, strerror(errno)); return 2; }
  return drv_run_program(f, path);
}
