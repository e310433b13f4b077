/* pairs.c — single-thread malloc+free pairs per second, hakmem vs glibc in
 * one process, and the memory returned to the OS after everything is freed.
 *
 *   pairs <seconds> <size> <batch>   throughput: hakmem and glibc, interleaved
 *   pairs rss <megabytes>            RSS before, at peak and after freeing all
 *
 * Throughput: each iteration allocates <batch> blocks of <size> bytes, writes
 * one byte of each, then frees them newest first; one pair = one malloc + one
 * free.  The run is cut into PAIRS_SLICES slices per allocator, alternating
 * hakmem, glibc, hakmem, ... so both see the same machine noise, and each
 * allocator's figure is the median of its slices:
 *
 *   hakmem pairs/s = N
 *   glibc pairs/s = N
 *
 * Both allocators are called through volatile function pointers, so the
 * compiler can neither inline one side nor elide a malloc/free pair.
 *
 * rss: allocates <megabytes> MiB of blocks of mixed sizes (8..1024 bytes),
 * frees every one and, for hakmem, flushes the thread cache (what thread exit
 * does); prints "<allocator> rss_kb before=N peak=N after=N" for hakmem, then
 * glibc, in one process.  hakmem releases a SuperSlab whose slabs are all
 * free, so "after" should come back close to "before". */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

#define PAIRS_SLICES 7
#define PAIRS_MAX_BATCH 65536

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);

typedef struct {
  const char *name;
  malloc_fn alloc;
  free_fn release;
} allocator_t;

static void *glibc_malloc(size_t n) { return malloc(n); }
static void glibc_free(void *p) { free(p); }

static volatile unsigned char g_sink;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Pairs per second of one allocator over about `seconds`. */
static double slice(const allocator_t *a, double seconds, size_t size, size_t batch, void **slots) {
  malloc_fn volatile alloc = a->alloc;
  free_fn volatile release = a->release;
  uint64_t pairs = 0;
  unsigned char acc = 0;
  double start = now(), end = start + seconds, t = start;
  while (t < end) {
    for (int rep = 0; rep < 64; rep++) {
      for (size_t i = 0; i < batch; i++) {
        unsigned char *p = alloc(size);
        if (p == NULL) {
          fprintf(stderr, "pairs: %s: allocation of %zu bytes failed\n", a->name, size);
          exit(1);
        }
        p[0] = (unsigned char)i;
        slots[i] = p;
      }
      for (size_t i = batch; i-- > 0;) {
        acc ^= *(unsigned char *)slots[i];
        release(slots[i]);
      }
      pairs += batch;
    }
    t = now();
  }
  g_sink = acc;
  return (double)pairs / (t - start);
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static int throughput(double seconds, size_t size, size_t batch) {
  const allocator_t allocators[2] = {
      {"hakmem", hak_malloc, hak_free},
      {"glibc", glibc_malloc, glibc_free},
  };
  void **slots = calloc(batch, sizeof(void *));
  if (slots == NULL) return 1;
  double rates[2][PAIRS_SLICES];
  double per_slice = seconds / (2.0 * PAIRS_SLICES);
  /* Warm-up: first touches and refills outside the measured slices. */
  for (int a = 0; a < 2; a++) slice(&allocators[a], per_slice / 4, size, batch, slots);
  for (int s = 0; s < PAIRS_SLICES; s++)
    for (int a = 0; a < 2; a++) rates[a][s] = slice(&allocators[a], per_slice, size, batch, slots);
  for (int a = 0; a < 2; a++) {
    qsort(rates[a], PAIRS_SLICES, sizeof(double), cmp_double);
    printf("%s pairs/s = %.0f\n", allocators[a].name, rates[a][PAIRS_SLICES / 2]);
  }
  free(slots);
  return 0;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f == NULL) return -1;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int rss(const allocator_t *a, size_t megabytes, void (*flush)(void)) {
  size_t count = megabytes * 1024 * 1024 / 516;  /* mean block size of 8..1024 */
  void **slots = malloc(count * sizeof(void *));  /* glibc's: above 1024 bytes */
  if (slots == NULL) return 1;
  memset(slots, 0, count * sizeof(void *));
  long before = rss_kb();
  uint64_t rng = 88172645463325252ull;
  for (size_t i = 0; i < count; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    size_t n = 8 + (size_t)(rng % 1017);
    unsigned char *p = a->alloc(n);
    if (p == NULL) return 1;
    memset(p, 1, n);
    slots[i] = p;
  }
  long peak = rss_kb();
  for (size_t i = 0; i < count; i++) a->release(slots[i]);
  if (flush != NULL) flush();
  long after = rss_kb();
  free(slots);
  printf("%s rss_kb before=%ld peak=%ld after=%ld\n", a->name, before, peak, after);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "rss") == 0) {
    long mb = atol(argv[2]);
    if (mb <= 0) {
      fprintf(stderr, "pairs: rss needs a positive number of megabytes\n");
      return 2;
    }
    const allocator_t hak = {"hakmem", hak_malloc, hak_free};
    const allocator_t libc = {"glibc", glibc_malloc, glibc_free};
    return rss(&hak, (size_t)mb, hak_flush) || rss(&libc, (size_t)mb, NULL);
  }
  if (argc != 4) {
    fprintf(stderr, "usage: pairs <seconds> <size> <batch> | pairs rss <megabytes>\n");
    return 2;
  }
  double seconds = atof(argv[1]);
  long size = atol(argv[2]);
  long batch = atol(argv[3]);
  if (seconds <= 0 || size < 0 || batch <= 0 || batch > PAIRS_MAX_BATCH) {
    fprintf(stderr, "pairs: invalid arguments (seconds > 0, size >= 0, 1 <= batch <= %d)\n",
            PAIRS_MAX_BATCH);
    return 2;
  }
  hak_configure_from_env();
  return throughput(seconds, (size_t)size, (size_t)batch);
}
