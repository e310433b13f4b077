/* driver.h — the driver's input: a Program flattened to fixed records
 * ("hakfuzz-driver/1"), written by hakfuzz.parallel.wire. */
#ifndef HAK_DRIVER_H
#define HAK_DRIVER_H
#include <stdint.h>

#define DRV_MAGIC "HKDRV01"
#define DRV_MAX_THREADS 64
#define DRV_OVERFLOW_COUNT 0xFFFFFFFFu /* calloc arg: count 2^63 (overflows) */

enum drv_kind {
  DRV_ALLOC = 0, DRV_LIBC_ALLOC = 1, DRV_CALLOC = 2, DRV_MEMALIGN = 3, DRV_REALLOC = 4,
  DRV_FREE = 5, DRV_WRITE = 6, DRV_VERIFY = 7, DRV_FLUSH = 8, DRV_THREAD_EXIT = 9,
  DRV_CHECK = 10, DRV_NUM_KINDS = 11
};

typedef struct drv_header_s {
  char magic[8];
  uint32_t threads;
  uint32_t nops;
  uint32_t nhandles;
  uint32_t flags;            /* reserved, 0 */
  uint64_t cfg[9];           /* hak_config_t fields, in declaration order */
} drv_header_t;

typedef struct drv_op_s {
  uint8_t kind;
  uint8_t thread;
  uint16_t reserved;
  uint32_t handle;
  uint32_t size;
  uint32_t arg;              /* calloc count, memalign alignment, write seed */
} drv_op_t;

_Static_assert(sizeof(drv_header_t) == 96, "header layout");
_Static_assert(sizeof(drv_op_t) == 16, "op layout");
#endif
