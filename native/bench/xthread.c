/* xthread.c — cross-thread and thread-churn workloads, for any allocator
 * through LD_PRELOAD (it calls malloc/free).
 *
 *   xthread prodcons  <seconds> <pairs>    producer/consumer, every free crosses threads
 *   xthread churn     <seconds> <threads>  short-lived threads, cross-thread frees
 *   xthread exitcache <seconds> <threads>  short-lived threads with key destructors
 *
 * prodcons: each of <pairs> producers allocates blocks of mixed sizes
 * (8..1024 bytes, each size class about equally often), writes their first
 * and last byte and hands them, 256 at a time, to its consumer through a
 * bounded queue (at most 4 batches in flight); the consumer reads and frees
 * them.  One operation = one block allocated by one thread and freed by
 * another.
 *
 * churn: <threads> chains run at once (more than the cores: oversubscribed).
 * Each thread of a chain allocates 256 blocks of mixed sizes, swaps them for
 * the 256 blocks parked in a shared slot (chosen round-robin, so the blocks
 * it frees were allocated by another, usually exited, thread), frees those,
 * makes 256 short-lived malloc/free pairs, then starts its successor
 * (detached) and exits.  One operation = one malloc + one free.
 *
 * exitcache: <threads> chains of short-lived threads; each thread puts a
 * block behind a pthread key (freed by the key's destructor, at thread
 * exit), allocates 64 blocks of mixed sizes, frees them, and exits.  Run it
 * with HAKMEM_CACHE_CAP=1024 HAKMEM_REFILL_BATCH=1024: thread set-up and
 * exit with large caches.  One operation = one malloc + one free.
 *
 * Prints "Threads started = N", "Throughput = N operations per second" and
 * "Peak RSS = N kB" (VmHWM of its own address space, as larson does).  With
 * XTHREAD_SHOW_MALLOC=1 it prints "xthread: malloc from <object>" on stderr:
 * the object that defines the malloc it calls (dladdr), the proof of who
 * served the run. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define BATCH 256
#define DEPTH 4
#define SWAP 256
#define PAIRS 256
#define EXIT_BLOCKS 64

static _Atomic int g_stop;
static _Atomic int g_failed;
static _Atomic int g_running;
static _Atomic uint64_t g_ops;
static _Atomic uint64_t g_started;
static pthread_attr_t g_detached;

static inline uint64_t next_rand(uint64_t *s) {
  uint64_t x = *s;  /* xorshift64* */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* 8..1024 bytes, each power-of-two band about equally often. */
static inline size_t mixed_size(uint64_t *s) {
  uint64_t r = next_rand(s);
  size_t hi = (size_t)16 << (r % 7);  /* 16 .. 1024 */
  return hi / 2 + (size_t)((r >> 8) % (hi / 2)) + 1;
}

static char *alloc_touch(size_t n, uint64_t tag) {
  char *p = malloc(n);
  if (p == NULL) {
    fprintf(stderr, "xthread: allocation of %zu bytes failed\n", n);
    atomic_store(&g_failed, 1);
    return NULL;
  }
  p[0] = (char)tag;
  p[n - 1] = (char)tag;
  return p;
}

static volatile char g_sink;

static void show_malloc(void) {
  const char *flag = getenv("XTHREAD_SHOW_MALLOC");
  if (flag == NULL || strcmp(flag, "1") != 0) return;
  void *(*fn)(size_t) = malloc;
  void *addr;
  memcpy(&addr, &fn, sizeof addr);
  Dl_info info;
  const char *where = "?";
  if (dladdr(addr, &info) != 0 && info.dli_fname != NULL) where = info.dli_fname;
  fprintf(stderr, "xthread: malloc from %s\n", where);
}

/* ---- prodcons ---------------------------------------------------------- */
typedef struct {
  _Alignas(64) pthread_mutex_t lock;
  pthread_cond_t not_full, not_empty;
  void *q[DEPTH][BATCH];
  unsigned head, count;
  int done;
  uint64_t seed;
} pair_t;

static pair_t g_pairs[MAX_THREADS];

static void *producer(void *arg) {
  pair_t *pr = arg;
  uint64_t rng = pr->seed;
  void *batch[BATCH];
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed) && !atomic_load(&g_failed)) {
    for (unsigned i = 0; i < BATCH; i++) {
      batch[i] = alloc_touch(mixed_size(&rng), i);
      if (batch[i] == NULL) return NULL;
    }
    pthread_mutex_lock(&pr->lock);
    while (pr->count == DEPTH) pthread_cond_wait(&pr->not_full, &pr->lock);
    memcpy(pr->q[(pr->head + pr->count) % DEPTH], batch, sizeof batch);
    pr->count++;
    pthread_cond_signal(&pr->not_empty);
    pthread_mutex_unlock(&pr->lock);
  }
  pthread_mutex_lock(&pr->lock);
  pr->done = 1;
  pthread_cond_signal(&pr->not_empty);
  pthread_mutex_unlock(&pr->lock);
  return NULL;
}

static void *consumer(void *arg) {
  pair_t *pr = arg;
  void *batch[BATCH];
  uint64_t ops = 0;
  char acc = 0;
  for (;;) {
    pthread_mutex_lock(&pr->lock);
    while (pr->count == 0 && !pr->done) pthread_cond_wait(&pr->not_empty, &pr->lock);
    if (pr->count == 0) {
      pthread_mutex_unlock(&pr->lock);
      break;
    }
    memcpy(batch, pr->q[pr->head], sizeof batch);
    pr->head = (pr->head + 1) % DEPTH;
    pr->count--;
    pthread_cond_signal(&pr->not_full);
    pthread_mutex_unlock(&pr->lock);
    for (unsigned i = 0; i < BATCH; i++) {
      acc ^= *(char *)batch[i];
      free(batch[i]);
    }
    ops += BATCH;
  }
  g_sink = acc;
  atomic_fetch_add(&g_ops, ops);
  return NULL;
}

/* ---- churn ------------------------------------------------------------- */
typedef struct {
  _Alignas(64) pthread_mutex_t lock;
  void *blocks[SWAP];
} park_t;

typedef struct {
  _Alignas(64) uint64_t rng;
  unsigned gen;
  unsigned index;
} chain_t;

static park_t g_parks[MAX_THREADS];
static chain_t g_chains[MAX_THREADS];
static int g_nchains;

static void chain_next(chain_t *c, void *(*fn)(void *)) {
  if (atomic_load_explicit(&g_stop, memory_order_relaxed) || atomic_load(&g_failed)) {
    atomic_fetch_sub(&g_running, 1);
    return;
  }
  pthread_t next;
  atomic_fetch_add_explicit(&g_started, 1, memory_order_relaxed);
  if (pthread_create(&next, &g_detached, fn, c) != 0) {
    fprintf(stderr, "xthread: pthread_create failed\n");
    atomic_store(&g_failed, 1);
    atomic_fetch_sub(&g_running, 1);
  }
}

static void *churn_worker(void *arg) {
  chain_t *c = arg;
  uint64_t rng = c->rng;
  void *mine[SWAP];
  char acc = 0;
  for (unsigned i = 0; i < SWAP; i++) {
    mine[i] = alloc_touch(mixed_size(&rng), i);
    if (mine[i] == NULL) goto out;
  }
  park_t *park = &g_parks[(c->index + c->gen) % (unsigned)g_nchains];
  pthread_mutex_lock(&park->lock);
  for (unsigned i = 0; i < SWAP; i++) {
    void *old = park->blocks[i];
    park->blocks[i] = mine[i];
    mine[i] = old;
  }
  pthread_mutex_unlock(&park->lock);
  for (unsigned i = 0; i < SWAP; i++) {
    if (mine[i] != NULL) acc ^= *(char *)mine[i];
    free(mine[i]);
  }
  for (unsigned i = 0; i < PAIRS; i++) {
    char *p = alloc_touch(mixed_size(&rng), i);
    if (p == NULL) goto out;
    acc ^= p[0];
    free(p);
  }
  atomic_fetch_add_explicit(&g_ops, SWAP + PAIRS, memory_order_relaxed);
out:
  g_sink = acc;
  c->rng = rng;
  c->gen++;
  chain_next(c, churn_worker);
  return NULL;
}

/* ---- exitcache --------------------------------------------------------- */
static pthread_key_t g_key;

static void key_destructor(void *p) { free(p); }

static void *exit_worker(void *arg) {
  chain_t *c = arg;
  uint64_t rng = c->rng;
  void *mine[EXIT_BLOCKS];
  char acc = 0;
  pthread_setspecific(g_key, alloc_touch(mixed_size(&rng), 1));
  for (unsigned i = 0; i < EXIT_BLOCKS; i++) {
    mine[i] = alloc_touch(mixed_size(&rng), i);
    if (mine[i] == NULL) goto out;
  }
  for (unsigned i = 0; i < EXIT_BLOCKS; i++) {
    acc ^= *(char *)mine[i];
    free(mine[i]);
  }
  atomic_fetch_add_explicit(&g_ops, EXIT_BLOCKS + 1, memory_order_relaxed);
out:
  g_sink = acc;
  c->rng = rng;
  chain_next(c, exit_worker);
  return NULL;
}

static int start_chains(int threads, void *(*fn)(void *)) {
  g_nchains = threads;
  atomic_store(&g_running, threads);
  for (int i = 0; i < threads; i++) {
    pthread_mutex_init(&g_parks[i].lock, NULL);
    g_chains[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1) + 7;
    g_chains[i].index = (unsigned)i;
    pthread_t th;
    atomic_fetch_add(&g_started, 1);
    if (pthread_create(&th, &g_detached, fn, &g_chains[i]) != 0) {
      fprintf(stderr, "xthread: pthread_create failed\n");
      return 1;
    }
  }
  return 0;
}

/* VmHWM in kB, or -1 where /proc is not mounted. */
static long peak_rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: xthread prodcons|churn|exitcache <seconds> <threads>\n");
    return 2;
  }
  const char *mode = argv[1];
  double seconds = atof(argv[2]);
  int threads = atoi(argv[3]);
  if (seconds <= 0 || threads <= 0 || threads > MAX_THREADS) {
    fprintf(stderr, "xthread: invalid arguments (seconds > 0, 1 <= threads <= %d)\n", MAX_THREADS);
    return 2;
  }
  int prodcons = strcmp(mode, "prodcons") == 0;
  void *(*fn)(void *) = NULL;
  if (strcmp(mode, "churn") == 0) fn = churn_worker;
  else if (strcmp(mode, "exitcache") == 0) fn = exit_worker;
  else if (!prodcons) {
    fprintf(stderr, "xthread: unknown workload %s (prodcons, churn, exitcache)\n", mode);
    return 2;
  }
  show_malloc();
  pthread_attr_init(&g_detached);
  pthread_attr_setdetachstate(&g_detached, PTHREAD_CREATE_DETACHED);
  pthread_key_create(&g_key, key_destructor);
  pthread_t pc[2 * MAX_THREADS];
  double t0 = now();
  if (prodcons) {
    for (int i = 0; i < threads; i++) {
      pair_t *pr = &g_pairs[i];
      pthread_mutex_init(&pr->lock, NULL);
      pthread_cond_init(&pr->not_full, NULL);
      pthread_cond_init(&pr->not_empty, NULL);
      pr->seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1) + 1;
      if (pthread_create(&pc[2 * i], NULL, producer, pr) != 0 ||
          pthread_create(&pc[2 * i + 1], NULL, consumer, pr) != 0) {
        fprintf(stderr, "xthread: pthread_create failed\n");
        return 1;
      }
    }
    atomic_store(&g_started, (uint64_t)(2 * threads));
  } else if (start_chains(threads, fn) != 0) {
    return 1;
  }
  struct timespec nap = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&nap, NULL);
  atomic_store(&g_stop, 1);
  if (prodcons) {
    for (int i = 0; i < 2 * threads; i++) pthread_join(pc[i], NULL);
  } else {
    while (atomic_load(&g_running) > 0) usleep(1000);
  }
  double elapsed = now() - t0;
  long peak_kb = peak_rss_kb();
  for (int i = 0; i < g_nchains; i++)
    for (unsigned j = 0; j < SWAP; j++) free(g_parks[i].blocks[j]);
  printf("Threads started = %llu\n", (unsigned long long)atomic_load(&g_started));
  printf("Throughput = %.0f operations per second\n", (double)atomic_load(&g_ops) / elapsed);
  printf("Peak RSS = %ld kB\n", peak_kb);
  return atomic_load(&g_failed) ? 1 : 0;
}
