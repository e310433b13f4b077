/* larson.c — the larson server benchmark, written for hakfuzz.
 *
 *   larson <seconds> <min_size> <max_size> <chunks_per_thread> <rounds> <seed> <threads>
 *
 * Each of <threads> workers owns a slot array of <chunks_per_thread> blocks.
 * It replaces random slots (free the old block, allocate a new one of a
 * random size in [min_size, max_size]) <rounds> x <chunks_per_thread> times,
 * then hands its whole array to a fresh thread that continues (so blocks
 * allocated by one thread are freed by another: cross-thread frees are the
 * point), until <seconds> have passed.
 *
 * Unlike the classic program, every worker is created detached and every
 * pthread_create is checked: with rounds = 1 the classic one leaks finished
 * threads until vm.max_map_count stops thread creation, silently, and then
 * measures nothing.  Here a failed create is an error (exit 1).
 *
 * Built twice: with -DLARSON_HAKMEM it calls hak_malloc/hak_free directly;
 * without, it calls malloc/free, for any allocator through LD_PRELOAD.
 * Prints "Throughput = N operations per second" (one op = one free + one
 * malloc of a slot), and "Peak RSS = N kB": VmHWM of /proc/self/status, the
 * high-water mark of this program's own address space (getrusage's
 * ru_maxrss would also count the image of the process that exec'ed us).
 *
 * Proof of who served the run, for hakfuzz: with LARSON_SHOW_MALLOC=1 it
 * prints "larson: malloc from <object>" on stderr, where <object> is the
 * shared object (or executable) that defines the allocation function it
 * calls, as the dynamic linker resolved it (dladdr).  The linked build also
 * reads HAKMEM_* options and, with HAKMEM_STATS=1, prints the allocator's
 * counters at exit, like the LD_PRELOAD library. */
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

#ifdef LARSON_HAKMEM
#include "hakmem.h"
#define ALLOC(n) hak_malloc(n)
#define FREE(p) hak_free(p)
#define ALLOC_FN hak_malloc
#else
#define ALLOC(n) malloc(n)
#define FREE(p) free(p)
#define ALLOC_FN malloc
#endif

static void show_malloc(void) {
  const char *flag = getenv("LARSON_SHOW_MALLOC");
  if (flag == NULL || strcmp(flag, "1") != 0) return;
  void *(*fn)(size_t) = ALLOC_FN;
  void *addr;
  memcpy(&addr, &fn, sizeof addr);  /* a function's address as data, without a cast */
  Dl_info info;
  const char *where = "?";
  if (dladdr(addr, &info) != 0 && info.dli_fname != NULL) where = info.dli_fname;
  fprintf(stderr, "larson: malloc from %s\n", where);
}

/* One chain's state, on a cache line of its own: the chains must not share
 * a line, or the benchmark measures where the allocator under test happened
 * to place larson's own control blocks (two 40-byte records in one calloc
 * land on one line, or not, depending on the allocator's alignment).  The
 * random state lives in a local of the worker, written back when it ends. */
typedef struct {
  _Alignas(64) void **slots;
  size_t nslots;
  uint64_t rng;
  uint64_t ops;
  uint64_t threads_started;
} area_t;

#define LARSON_MAX_THREADS 1024
static area_t g_areas[LARSON_MAX_THREADS];

static size_t g_min, g_max;
static long g_rounds;
static _Atomic int g_stop;
static _Atomic int g_failed;
static _Atomic int g_running;  /* chains still running */
static pthread_attr_t g_detached;

static inline uint64_t next_rand(uint64_t *s) {
  uint64_t x = *s;  /* xorshift64* */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static inline size_t rand_size(uint64_t *s) {
  return g_min + (size_t)(next_rand(s) % (g_max - g_min + 1));
}

static void *worker(void *arg) {
  area_t *a = arg;
  long todo = g_rounds * (long)a->nslots;
  uint64_t ops = 0;
  uint64_t rng = a->rng;
  void **slots = a->slots;
  size_t nslots = a->nslots;
  for (long i = 0; i < todo; i++) {
    if ((i & 1023) == 0 && atomic_load_explicit(&g_stop, memory_order_relaxed)) break;
    size_t victim = (size_t)(next_rand(&rng) % nslots);
    FREE(slots[victim]);
    size_t n = rand_size(&rng);
    char *p = ALLOC(n);
    if (p == NULL) {
      fprintf(stderr, "larson: allocation of %zu bytes failed\n", n);
      atomic_store(&g_failed, 1);
      break;
    }
    p[0] = (char)i;
    if (n > 1) p[n - 1] = (char)i;
    slots[victim] = p;
    ops++;
  }
  a->rng = rng;
  a->ops += ops;
  if (atomic_load(&g_stop) || atomic_load(&g_failed)) {
    atomic_fetch_sub(&g_running, 1);
    return NULL;
  }
  /* Hand the live blocks to a new thread, which will free them. */
  pthread_t next;
  a->threads_started++;
  if (pthread_create(&next, &g_detached, worker, a) != 0) {
    fprintf(stderr, "larson: pthread_create failed after %llu threads\n",
            (unsigned long long)a->threads_started);
    atomic_store(&g_failed, 1);
    atomic_fetch_sub(&g_running, 1);
  }
  return NULL;
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

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: larson <seconds> <min_size> <max_size> <chunks_per_thread> "
                    "<rounds> <seed> <threads>\n");
    return 2;
  }
  double seconds = atof(argv[1]);
  g_min = strtoul(argv[2], NULL, 10);
  g_max = strtoul(argv[3], NULL, 10);
  long chunks = atol(argv[4]);
  g_rounds = atol(argv[5]);
  uint64_t seed = strtoull(argv[6], NULL, 10);
  int threads = atoi(argv[7]);
  if (seconds <= 0 || g_min == 0 || g_max < g_min || chunks <= 0 || g_rounds <= 0 || threads <= 0) {
    fprintf(stderr, "larson: invalid arguments\n");
    return 2;
  }
#ifdef LARSON_HAKMEM
  hak_configure_from_env();
#endif
  show_malloc();
  pthread_attr_init(&g_detached);
  pthread_attr_setdetachstate(&g_detached, PTHREAD_CREATE_DETACHED);
  if (threads > LARSON_MAX_THREADS) {
    fprintf(stderr, "larson: at most %d threads\n", LARSON_MAX_THREADS);
    return 2;
  }
  area_t *areas = g_areas;
  for (int t = 0; t < threads; t++) {
    areas[t].nslots = (size_t)chunks;
    areas[t].rng = (seed + 1) * 0x9E3779B97F4A7C15ull + (uint64_t)t * 7919u + 1;
    areas[t].slots = calloc((size_t)chunks, sizeof(void *));
    for (long i = 0; i < chunks; i++) areas[t].slots[i] = ALLOC(rand_size(&areas[t].rng));
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  atomic_store(&g_running, threads);
  for (int t = 0; t < threads; t++) {
    pthread_t th;
    areas[t].threads_started = 1;
    if (pthread_create(&th, &g_detached, worker, &areas[t]) != 0) {
      fprintf(stderr, "larson: pthread_create failed\n");
      return 1;
    }
  }
  struct timespec nap = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&nap, NULL);
  atomic_store(&g_stop, 1);
  while (atomic_load(&g_running) > 0) usleep(1000);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long peak_kb = peak_rss_kb();
  double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  uint64_t ops = 0, started = 0;
  for (int t = 0; t < threads; t++) {
    ops += areas[t].ops;
    started += areas[t].threads_started;
    for (long i = 0; i < chunks; i++) FREE(areas[t].slots[i]);
    free(areas[t].slots);
  }
  printf("Threads started = %llu\n", (unsigned long long)started);
  printf("Throughput = %.0f operations per second\n", (double)ops / elapsed);
  printf("Peak RSS = %ld kB\n", peak_kb);
#ifdef LARSON_HAKMEM
  const char *stats = getenv("HAKMEM_STATS");
  if (stats != NULL && strcmp(stats, "1") == 0) hak_stats_print();
#endif
  return atomic_load(&g_failed) ? 1 : 0;
}
