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
 * malloc of a slot). */
#define _GNU_SOURCE
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
#else
#define ALLOC(n) malloc(n)
#define FREE(p) free(p)
#endif

typedef struct {
  void **slots;
  size_t nslots;
  uint64_t rng;
  uint64_t ops;
  uint64_t threads_started;
} area_t;

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
  for (long i = 0; i < todo; i++) {
    if ((i & 1023) == 0 && atomic_load_explicit(&g_stop, memory_order_relaxed)) break;
    size_t victim = (size_t)(next_rand(&a->rng) % a->nslots);
    FREE(a->slots[victim]);
    size_t n = rand_size(&a->rng);
    char *p = ALLOC(n);
    if (p == NULL) {
      fprintf(stderr, "larson: allocation of %zu bytes failed\n", n);
      atomic_store(&g_failed, 1);
      break;
    }
    p[0] = (char)i;
    if (n > 1) p[n - 1] = (char)i;
    a->slots[victim] = p;
    ops++;
  }
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

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: larson <seconds> <min_size> <max_size> <chunks_per_thread> <rounds> <seed> <threads>\n");
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
  pthread_attr_init(&g_detached);
  pthread_attr_setdetachstate(&g_detached, PTHREAD_CREATE_DETACHED);
  area_t *areas = calloc((size_t)threads, sizeof *areas);
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
  double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  uint64_t ops = 0, started = 0;
  for (int t = 0; t < threads; t++) {
    ops += areas[t].ops;
    started += areas[t].threads_started;
    for (long i = 0; i < chunks; i++) FREE(areas[t].slots[i]);
    free(areas[t].slots);
  }
  free(areas);
  printf("Threads started = %llu\n", (unsigned long long)started);
  printf("Throughput = %.0f operations per second\n", (double)ops / elapsed);
  return atomic_load(&g_failed) ? 1 : 0;
}
