/* oracles.h — the checks the driver applies while a program runs. */
#ifndef HAK_DRV_ORACLES_H
#define HAK_DRV_ORACLES_H
#include <stddef.h>
#include <stdint.h>

typedef struct drv_handle_s {
  void *ptr;
  uint32_t size;             /* requested bytes */
  uint32_t extent;           /* bytes the block covers, for the overlap check */
  uint8_t seed;
  uint8_t live;
  uint8_t zeroed;            /* calloc'd, not yet written */
  uint8_t from_libc;         /* made by libc_alloc */
  uint8_t usable_known;      /* usable_size asked since the block was made */
  size_t usable;             /* what it said: must not change while the block lives */
  _Atomic uint32_t done;     /* ops on this handle completed */
} drv_handle_t;

/* Record the first failure; later ones are counted only. */
void drv_fail(const char *oracle, long op_index, long handle, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int drv_failed(void);
void drv_print_failure_json(void);
void drv_print_json_string(const char *s);

void drv_fill(drv_handle_t *h, uint32_t handle_id, uint32_t from, uint32_t to);
/* 0 when bytes [0, upto) hold the pattern (or zeros when zeroed). */
int drv_verify(const drv_handle_t *h, uint32_t handle_id, uint32_t upto, uint32_t *bad_at);

/* Live blocks must not overlap: sort by address and compare neighbours. */
int drv_check_overlap(drv_handle_t *handles, uint32_t n, long op_index);
#endif
