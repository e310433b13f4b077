/* churn.h — the driver's churn phase: thread lifetimes at scale.
 *
 * A program's ops run on at most 16 program threads in program order.  The
 * churn phase, run after them when the program has a churn section (a
 * drv_churn_t record after the ops, header flag DRV_FLAG_CHURN), runs
 * `lifetimes` short thread lifetimes on a pool of `threads` concurrent
 * pthreads: each allocates `blocks` blocks (a share of them from glibc
 * itself), swaps them through a shared exchange so most frees cross
 * threads and mix glibc's pointers with the allocator's, frees some, and
 * exits with blocks still in the exchange (orphaned slabs, remote frees to
 * exited threads' slabs).  It stops at `lifetimes` or after `millis`,
 * whichever comes first, then checks and frees what the exchange holds. */
#ifndef HAK_DRV_CHURN_H
#define HAK_DRV_CHURN_H
#include <stdint.h>

#define DRV_CHURN_MAX_BLOCKS 256

typedef struct drv_churn_s {
  uint32_t threads;        /* concurrent pthreads, 1..DRV_MAX_THREADS */
  uint32_t lifetimes;      /* thread lifetimes in all, at least 1 */
  uint32_t millis;         /* wall-time bound */
  uint32_t seed;
  uint32_t blocks;         /* blocks per lifetime, 1..DRV_CHURN_MAX_BLOCKS */
  uint32_t libc_permille;  /* share of blocks glibc makes, 0..1000 */
  uint32_t reserved[2];
} drv_churn_t;
_Static_assert(sizeof(drv_churn_t) == 32, "churn record layout");

/* NULL when the record is fine, else what is wrong with it. */
const char *drv_churn_invalid(const drv_churn_t *spec, uint32_t max_threads);

/* Runs the phase; a failed oracle is reported with op index `op` (the end
 * of the program).  `null_possible`: the config lets an allocation fail. */
void drv_churn_run(const drv_churn_t *spec, uint32_t op, int null_possible);

/* The result's "churn" member followed by ", " (nothing when no phase ran). */
void drv_churn_print(void);
#endif
