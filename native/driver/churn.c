/* churn.c — the churn phase (churn.h): many short thread lifetimes on more
 * pthreads than cores, their blocks traded through a shared exchange.
 *
 * The exchange is an array of atomic words, each empty (0) or one block:
 * its address in the low 48 bits and a 16-bit token in the high ones.  A
 * block carries its own description in its first 8 bytes (the tag: magic,
 * token, glibc bit, size) and a pattern derived from the token after it, so
 * whoever takes it out can check it without any shared table: a block the
 * allocator handed out twice, or wrote over, no longer matches its token.
 * Every hand-over is one atomic exchange (release for the pattern written
 * before, acquire for the checks after), so the driver itself has no race
 * for TSan to see.
 *
 * Each slot of the pool is a chain of pthreads: a lifetime's pthread
 * starts the next lifetime's before it returns (its thread-exit work, the
 * allocator's TLS destructor, then overlaps the next one's allocations) and
 * the next one joins it.  The first pthread of every slot waits at a gate
 * until all are started, so `threads` lifetimes are alive at once at least
 * then; each lifetime yields once halfway to keep them interleaved. */
#define _GNU_SOURCE
#include "churn.h"

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
#include "driver.h"
#include "oracles.h"

#define TAG_MAGIC 0xC5ull
#define ADDR_MASK ((1ull << 48) - 1)
#define NO_HANDLE UINT32_MAX

typedef struct {
  pthread_t prev;   /* the slot's previous pthread, to join; set before creating the next */
  void *prev_stack; /* its stack when the driver owns stacks (drv_thread_start) */
  int has_prev;
  pthread_t last;   /* the slot's final pthread, for main to join */
  void *last_stack;
  void *stack;      /* the stack of the pthread running now */
  _Atomic int finished;
  char pad[64];
} slot_t;

static drv_churn_t S;
static uint32_t g_op;
static int g_null_possible;
static int g_ran;
static _Atomic uint64_t *g_exchange;
static uint32_t g_nslots;
static slot_t g_slots[DRV_MAX_THREADS];
static _Atomic int g_gate;
static _Atomic uint32_t g_arrived;
static double g_deadline, g_started_at, g_seconds;

static _Atomic uint32_t g_next_lifetime, g_lifetimes_done, g_live, g_peak;
static _Atomic uint64_t g_blocks, g_libc_blocks, g_exchange_frees, g_own_frees, g_nulls;
static _Atomic uint32_t g_create_failures, g_stopped_by_time;
static uint64_t g_drained;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *state) { /* splitmix64 */
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Every class, its edges, and above 1024 now and then (glibc's in hakmem);
 * at least 8 bytes so the tag fits. */
static uint32_t pick_size(uint64_t *rng) {
  uint32_t roll = (uint32_t)(next_rand(rng) % 100);
  if (roll < 10) return 1025 + (uint32_t)(next_rand(rng) % 3072);
  unsigned c = (unsigned)(next_rand(rng) % 8);
  uint32_t top = 8u << c;
  if (roll < 20 || c == 0) return top;
  return top / 2 + 1 + (uint32_t)(next_rand(rng) % (top / 2));
}

static inline uint8_t pattern_byte(uint16_t token, uint32_t i) {
  return (uint8_t)((token ^ (token >> 8)) * 0x9Du + i * 0x3Bu + (i >> 8) + 1u);
}

static void fill(uint8_t *p, uint16_t token, uint32_t size, int libc) {
  uint64_t tag = TAG_MAGIC << 56 | (uint64_t)token << 32 | (uint64_t)(libc != 0) << 24 | size;
  memcpy(p, &tag, sizeof tag);
  for (uint32_t i = 8; i < size; i++) p[i] = pattern_byte(token, i);
}

/* The block of word `w`, checked; 0 (and a failure recorded) when it does
 * not hold what its maker wrote. */
static int take(uint64_t w, drv_handle_t *h, const char *when) {
  uint8_t *p = (uint8_t *)(uintptr_t)(w & ADDR_MASK);
  uint16_t token = (uint16_t)(w >> 48);
  uint64_t tag;
  memcpy(&tag, p, sizeof tag);
  if (tag >> 56 != TAG_MAGIC || (uint16_t)(tag >> 32) != token) {
    drv_fail("pattern", g_op, -1,
             "churn: the tag of block %p changed %s (token %04x, tag %016llx): the allocator "
             "handed it out twice or wrote over it", (void *)p, when, token,
             (unsigned long long)tag);
    return 0;
  }
  uint32_t size = (uint32_t)(tag & 0xFFFFFF);
  for (uint32_t i = 8; i < size; i++) {
    if (p[i] != pattern_byte(token, i)) {
      drv_fail("pattern", g_op, -1, "churn: byte %u of block %p (%u bytes) changed %s", i,
               (void *)p, size, when);
      return 0;
    }
  }
  memset(h, 0, sizeof *h);
  h->ptr = p;
  h->size = size;
  h->extent = size;
  h->from_libc = (uint8_t)((tag >> 24) & 1);
  h->live = 1;
  return 1;
}

static void release(uint64_t w, const char *when, _Atomic uint64_t *counter) {
  drv_handle_t h;
  if (!take(w, &h, when)) return;  /* a broken block is not freed: that would hide the cause */
  drv_be_free_block(g_op, NO_HANDLE, &h);
  atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* Put w in a random slot; free whatever it pushed out (most likely another
 * lifetime's block: a free from another thread). */
static void trade(uint64_t w, uint64_t *rng) {
  uint32_t slot = (uint32_t)(next_rand(rng) % g_nslots);
  uint64_t old = atomic_exchange_explicit(&g_exchange[slot], w, memory_order_acq_rel);
  if (old != 0) release(old, "in the exchange", &g_exchange_frees);
}

static void lifetime(uint32_t n) {
  uint64_t rng = ((uint64_t)S.seed << 32) ^ ((uint64_t)n * 0xD1B54A32D192ED03ull);
  uint64_t held[DRV_CHURN_MAX_BLOCKS];
  uint32_t nheld = 0;
  for (uint32_t k = 0; k < S.blocks && !drv_failed(); k++) {
    if (k == S.blocks / 2) sched_yield();
    uint32_t size = pick_size(&rng);
    int libc = (uint32_t)(next_rand(&rng) % 1000) < S.libc_permille;
    uint8_t *p = libc ? drv_alloc->libc_malloc(size) : drv_alloc->malloc(size);
    if (p == NULL) {
      if (!g_null_possible || libc)
        drv_fail("null", g_op, -1, "churn: a %u-byte %s returned NULL with no cap set", size,
                 libc ? "glibc malloc" : "malloc");
      atomic_fetch_add_explicit(&g_nulls, 1, memory_order_relaxed);
      continue;
    }
    if ((uintptr_t)p > ADDR_MASK) {
      drv_fail("driver", g_op, -1, "churn: address %p does not fit in 48 bits", (void *)p);
      return;
    }
    drv_handle_t h;
    memset(&h, 0, sizeof h);
    h.ptr = p;
    h.size = size;
    h.from_libc = (uint8_t)libc;
    drv_be_check_new_block(g_op, NO_HANDLE, &h, p, size, 1, libc);
    uint16_t token = (uint16_t)(next_rand(&rng) | 1);
    fill(p, token, size, libc);
    atomic_fetch_add_explicit(&g_blocks, 1, memory_order_relaxed);
    if (libc) atomic_fetch_add_explicit(&g_libc_blocks, 1, memory_order_relaxed);
    uint64_t w = (uint64_t)(uintptr_t)p | (uint64_t)token << 48;
    uint32_t roll = (uint32_t)(next_rand(&rng) % 4);
    if (roll < 2) trade(w, &rng);
    else if (roll == 2) release(w, "before its maker freed it", &g_own_frees);
    else held[nheld++] = w;
  }
  /* Exit with blocks out: half of what is held goes to the exchange (to be
   * freed by some later lifetime, after this thread is gone). */
  for (uint32_t k = 0; k < nheld; k++) {
    if (drv_failed()) return;
    if (next_rand(&rng) % 2) trade(held[k], &rng);
    else release(held[k], "before its maker freed it", &g_own_frees);
  }
}

static void note_live(void) {
  uint32_t live = atomic_fetch_add_explicit(&g_live, 1, memory_order_relaxed) + 1;
  uint32_t peak = atomic_load_explicit(&g_peak, memory_order_relaxed);
  while (live > peak && !atomic_compare_exchange_weak_explicit(&g_peak, &peak, live,
                                                               memory_order_relaxed,
                                                               memory_order_relaxed)) {
  }
}

static void *slot_main(void *arg) {
  slot_t *s = arg;
  if (s->has_prev) drv_thread_reap(s->prev, s->prev_stack);
  note_live();
  if (!s->has_prev) {  /* the first of its slot: wait until every slot has started */
    atomic_fetch_add_explicit(&g_arrived, 1, memory_order_release);
    while (!atomic_load_explicit(&g_gate, memory_order_acquire)) sched_yield();
  }
  uint32_t n = atomic_fetch_add_explicit(&g_next_lifetime, 1, memory_order_relaxed);
  int run = n < S.lifetimes && !drv_failed();
  if (run && now() > g_deadline) {
    atomic_store_explicit(&g_stopped_by_time, 1, memory_order_relaxed);
    run = 0;
  }
  if (run) lifetime(n);
  atomic_fetch_sub_explicit(&g_live, 1, memory_order_relaxed);
  if (run) {
    atomic_fetch_add_explicit(&g_lifetimes_done, 1, memory_order_relaxed);
    s->prev = pthread_self();
    s->prev_stack = s->stack;
    s->has_prev = 1;
    pthread_t next;
    if (drv_thread_start(&next, slot_main, s, &s->stack) == 0)
      return NULL;  /* this lifetime ends; the allocator's thread exit runs */
    s->stack = s->prev_stack;
    s->has_prev = 0;
    atomic_fetch_add_explicit(&g_create_failures, 1, memory_order_relaxed);
  }
  s->last = pthread_self();
  s->last_stack = s->stack;
  atomic_store_explicit(&s->finished, 1, memory_order_release);
  return NULL;
}

const char *drv_churn_invalid(const drv_churn_t *spec, uint32_t max_threads) {
  if (spec->threads == 0 || spec->threads > max_threads) return "threads out of range";
  if (spec->lifetimes == 0) return "lifetimes must be at least 1";
  if (spec->millis == 0) return "the time bound must be at least 1 ms";
  if (spec->blocks == 0 || spec->blocks > DRV_CHURN_MAX_BLOCKS) return "blocks out of range";
  if (spec->libc_permille > 1000) return "libc share over 1000 per mille";
  return NULL;
}

/* Everything still in the exchange: no two blocks overlap, each holds its
 * pattern, and each is freed (from this thread, every lifetime gone). */
static void drain(void) {
  drv_handle_t *live = calloc(g_nslots, sizeof *live);
  if (live == NULL) {
    drv_fail("driver", g_op, -1, "churn: no memory to drain the exchange");
    return;
  }
  uint32_t n = 0;
  for (uint32_t i = 0; i < g_nslots; i++) {
    uint64_t w = atomic_exchange_explicit(&g_exchange[i], 0, memory_order_acquire);
    if (w != 0 && take(w, &live[n], "before the end")) n++;
  }
  if (!drv_failed()) drv_check_overlap(live, n, g_op);
  for (uint32_t i = 0; i < n; i++) drv_be_free_block(g_op, NO_HANDLE, &live[i]);
  g_drained = n;
  free(live);
}

void drv_churn_run(const drv_churn_t *spec, uint32_t op, int null_possible) {
  S = *spec;
  g_op = op;
  g_null_possible = null_possible;
  g_ran = 1;
  /* A few blocks per thread stay in the exchange between lifetimes. */
  uint64_t want = (uint64_t)S.threads * S.blocks / 2;
  g_nslots = (uint32_t)(want < 64 ? 64 : want > 4096 ? 4096 : want);
  /* The exchange is the driver's, not the allocator's: mapped directly. */
  void *mem = mmap(NULL, (size_t)g_nslots * sizeof *g_exchange, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    drv_fail("driver", op, -1, "churn: cannot map the exchange");
    return;
  }
  g_exchange = mem;
  for (uint32_t i = 0; i < g_nslots; i++) atomic_init(&g_exchange[i], 0);
  g_started_at = now();
  g_deadline = g_started_at + S.millis / 1000.0;
  uint32_t started = 0;
  for (uint32_t t = 0; t < S.threads; t++) {
    pthread_t first;
    g_slots[t].has_prev = 0;
    if (drv_thread_start(&first, slot_main, &g_slots[t], &g_slots[t].stack) != 0) {
      atomic_fetch_add_explicit(&g_create_failures, 1, memory_order_relaxed);
      break;
    }
    started++;
  }
  /* Every first pthread is alive before any lifetime runs. */
  while (atomic_load_explicit(&g_arrived, memory_order_acquire) < started) sched_yield();
  atomic_store_explicit(&g_gate, 1, memory_order_release);
  if (started == 0) drv_fail("driver", op, -1, "churn: pthread_create failed for every slot");
  for (uint32_t t = 0; t < started; t++) {
    while (!atomic_load_explicit(&g_slots[t].finished, memory_order_acquire)) usleep(100);
    drv_thread_reap(g_slots[t].last, g_slots[t].last_stack);
  }
  g_seconds = now() - g_started_at;
  drain();
  munmap(mem, (size_t)g_nslots * sizeof *g_exchange);
  g_exchange = NULL;
}

void drv_churn_print(void) {
  if (!g_ran) return;
  uint32_t done = atomic_load(&g_lifetimes_done);
  const char *stopped = drv_failed()                      ? "failure"
                        : done >= S.lifetimes             ? "lifetimes"
                        : atomic_load(&g_stopped_by_time) ? "seconds"
                                                          : "pthread_create";
  printf("\"churn\": {\"threads\": %u, \"lifetimes\": %u, \"lifetimes_asked\": %u, "
         "\"peak_threads\": %u, \"blocks\": %llu, \"libc_blocks\": %llu, \"exchange_frees\": %llu, "
         "\"own_frees\": %llu, \"null_blocks\": %llu, \"drained\": %llu, \"exchange_slots\": %u, "
         "\"create_failures\": %u, \"stopped_by\": \"%s\", \"seconds\": %.6f}, ",
         S.threads, done, S.lifetimes, atomic_load(&g_peak),
         (unsigned long long)atomic_load(&g_blocks), (unsigned long long)atomic_load(&g_libc_blocks),
         (unsigned long long)atomic_load(&g_exchange_frees),
         (unsigned long long)atomic_load(&g_own_frees), (unsigned long long)atomic_load(&g_nulls),
         (unsigned long long)g_drained, g_nslots, atomic_load(&g_create_failures), stopped,
         g_seconds);
}
