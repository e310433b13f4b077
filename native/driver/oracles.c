/* oracles.c — fill patterns, first-failure reporting and the overlap check
 * of the multi-threaded driver. */
#include "oracles.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int g_failed;
static char g_oracle[64];
static char g_message[512];
static long g_op = -1, g_handle = -1;
static long g_count;

void drv_fail(const char *oracle, long op_index, long handle, const char *fmt, ...) {
  pthread_mutex_lock(&g_fail_lock);
  g_count++;
  if (!atomic_load(&g_failed)) {
    snprintf(g_oracle, sizeof g_oracle, "%s", oracle);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_message, sizeof g_message, fmt, ap);
    va_end(ap);
    g_op = op_index;
    g_handle = handle;
    atomic_store(&g_failed, 1);
  }
  pthread_mutex_unlock(&g_fail_lock);
}

int drv_failed(void) { return atomic_load_explicit(&g_failed, memory_order_relaxed); }

static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
    else putchar(*s);
  }
  putchar('"');
}

void drv_print_json_string(const char *s) { json_string(s); }

void drv_print_failure_json(void) {
  printf("{\"oracle\": ");
  json_string(g_oracle);
  printf(", \"op_index\": %ld, \"handle\": %ld, \"message\": ", g_op, g_handle);
  json_string(g_message);
  printf(", \"count\": %ld}", g_count);
}

static inline uint8_t pattern_byte(uint32_t handle_id, uint8_t seed, uint32_t i) {
  return (uint8_t)(handle_id * 0x9Eu + seed * 0x3Bu + i + (i >> 8) + 1u);
}

void drv_fill(drv_handle_t *h, uint32_t handle_id, uint32_t from, uint32_t to) {
  uint8_t *p = h->ptr;
  for (uint32_t i = from; i < to; i++) p[i] = pattern_byte(handle_id, h->seed, i);
}

int drv_verify(const drv_handle_t *h, uint32_t handle_id, uint32_t upto, uint32_t *bad_at) {
  const uint8_t *p = h->ptr;
  for (uint32_t i = 0; i < upto; i++) {
    uint8_t want = h->zeroed ? 0 : pattern_byte(handle_id, h->seed, i);
    if (p[i] != want) {
      *bad_at = i;
      return 1;
    }
  }
  return 0;
}

typedef struct { uintptr_t start, end; uint32_t id; } span_t;

static int cmp_span(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

int drv_check_overlap(drv_handle_t *handles, uint32_t n, long op_index) {
  span_t *spans = malloc((size_t)(n ? n : 1) * sizeof *spans);
  if (spans == NULL) return 0;
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (!handles[i].live) continue;
    uintptr_t s = (uintptr_t)handles[i].ptr;
    uint32_t ext = handles[i].extent ? handles[i].extent : 1;
    spans[k++] = (span_t){s, s + ext, i};
  }
  qsort(spans, k, sizeof *spans, cmp_span);
  int bad = 0;
  for (uint32_t i = 1; i < k && !bad; i++) {
    if (spans[i].start < spans[i - 1].end) {
      drv_fail("overlap", op_index, (long)spans[i].id,
               "live handles %u and %u overlap (%#lx..%#lx and %#lx)", spans[i - 1].id,
               spans[i].id, (unsigned long)spans[i - 1].start, (unsigned long)spans[i - 1].end,
               (unsigned long)spans[i].start);
      bad = 1;
    }
  }
  free(spans);
  return bad;
}
