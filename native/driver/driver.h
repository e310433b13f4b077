/* driver.h — the driver's input: a Program flattened to fixed records
 * ("hakfuzz-driver/1"), written by hakfuzz.differential.wire.  Kinds are
 * hakfuzz.program.OpKind's values; 11..15 are the ops of hakfuzz-program/2. */
#ifndef HAK_DRIVER_H
#define HAK_DRIVER_H
#include <stdint.h>

#define DRV_MAGIC "HKDRV01"
#define DRV_MAX_THREADS 64
#define DRV_FLAG_CHURN 1u /* a drv_churn_t record (churn.h) follows the ops */
#define DRV_OVERFLOW_COUNT 0xFFFFFFFFu /* calloc arg: count 2^63 (overflows) */

enum drv_kind {
  DRV_ALLOC = 0, DRV_LIBC_ALLOC = 1, DRV_CALLOC = 2, DRV_MEMALIGN = 3, DRV_REALLOC = 4,
  DRV_FREE = 5, DRV_WRITE = 6, DRV_VERIFY = 7, DRV_FLUSH = 8, DRV_THREAD_EXIT = 9,
  DRV_CHECK = 10, DRV_ALIGNED_ALLOC = 11, DRV_REALLOC_NULL = 12, DRV_FREE_NULL = 13,
  DRV_USABLE_SIZE = 14, DRV_USABLE_SIZE_NULL = 15, DRV_NUM_KINDS = 16
};

/* Kinds whose handle field names a handle (creating it, or live). */
static inline int drv_names_handle(unsigned kind) {
  return kind <= 7 || kind == DRV_ALIGNED_ALLOC || kind == DRV_REALLOC_NULL ||
         kind == DRV_USABLE_SIZE;
}

typedef struct drv_header_s {
  char magic[8];
  uint32_t threads;
  uint32_t nops;
  uint32_t nhandles;
  uint32_t flags;            /* DRV_FLAG_*; other bits 0 */
  uint64_t cfg[9];           /* hak_config_t fields, in declaration order */
} drv_header_t;

typedef struct drv_op_s {
  uint8_t kind;
  uint8_t thread;
  uint16_t reserved;
  uint32_t handle;
  uint32_t size;
  uint32_t arg;              /* calloc count, memalign/aligned_alloc alignment, write seed */
} drv_op_t;

/* Start a pthread (on a stack of the driver's own when the backend asks,
 * see drv_be_own_stacks) and join it, unmapping that stack. */
#include <pthread.h>
int drv_thread_start(pthread_t *th, void *(*fn)(void *), void *arg, void **stack);
void drv_thread_reap(pthread_t th, void *stack);

_Static_assert(sizeof(drv_header_t) == 96, "header layout");
_Static_assert(sizeof(drv_op_t) == 16, "op layout");
#endif
