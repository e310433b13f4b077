/* backend.h — what the driver asks of the allocator under test.
 *
 * driver.c loads the program, schedules its threads, runs its ops and prints
 * the JSON result without knowing which allocator it drives.  Everything that
 * does know lives behind this interface, implemented once per build:
 * backend_hakmem.c (hakdriver: hakmem linked in, or glibc by --allocator, with
 * hak_locate and hak_stats as oracles) and backend_foreign.c
 * (hakdriver-foreign: any LD_PRELOAD target, allocator-neutral oracles and the
 * target's hakfuzz_* hooks).  A variant is which file is linked, not an
 * #ifdef in the driver. */
#ifndef HAK_DRV_BACKEND_H
#define HAK_DRV_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#include "oracles.h"

/* The allocation entry points an op calls directly.  libc_malloc makes the
 * block of a libc_alloc op: one the allocator under test did not make. */
typedef struct {
  void *(*malloc)(size_t);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  int (*memalign)(void **, size_t, size_t);
  void *(*aligned_alloc)(size_t, size_t);
  void *(*libc_malloc)(size_t);
} drv_alloc_t;
extern const drv_alloc_t *drv_alloc;

/* Command line: 1 when flag (with its value) is the backend's, 0 when not,
 * -1 after printing why the value is refused. */
int drv_be_option(const char *flag, const char *value);
/* 0, or an exit status after printing why. */
int drv_be_init(void);
/* Applies the program's config (hak_config_t fields in declaration order);
 * says whether an allocation may then fail to NULL. */
int drv_be_configure(const uint64_t cfg[9], int *null_possible);

/* Owner, class, alignment and usable size of a fresh block h at p; sets
 * h->extent, the bytes the overlap check takes it to cover. */
void drv_be_check_new_block(uint32_t op, uint32_t hid, drv_handle_t *h, void *p, size_t need,
                            size_t align, int must_be_libc);
/* The usable size of a live block into *usable; 0 when it cannot be asked. */
int drv_be_usable(const drv_handle_t *h, size_t *usable);
/* Allocator-specific rules on that answer (e.g. a class's exact size). */
void drv_be_check_usable(uint32_t op, uint32_t hid, const drv_handle_t *h, size_t usable);
/* malloc_usable_size(NULL) into *usable; 0 when it cannot be asked. */
int drv_be_usable_null(size_t *usable);

void drv_be_free_block(uint32_t op, uint32_t hid, drv_handle_t *h);
void *drv_be_realloc_block(uint32_t op, uint32_t hid, drv_handle_t *h, size_t size);
/* Whether realloc(p, 0) returning result freed p. */
int drv_be_realloc_zero_freed(const void *result);
/* Whether a libc block h stays glibc's after a successful realloc. */
int drv_be_realloc_keeps_libc(const drv_handle_t *h);

void drv_be_free_null(uint32_t op, uint32_t threads);
void drv_be_flush(void);
/* The allocator's own heap check at a `check` op (every thread held). */
void drv_be_check(uint32_t op);
/* After every live block was freed and every thread joined. */
void drv_be_final_checks(uint32_t op);

/* Whether the driver's pthreads must run on stacks the driver maps and
 * unmaps itself (glibc's stack cache would otherwise keep blocks of the
 * allocator's alive past the end: only a counter check at the end cares). */
int drv_be_own_stacks(void);

/* JSON members of the result, each ending in ", ": which allocator ran,
 * and (after the op counts) its counters, when it has any. */
void drv_be_print_identity(void);
void drv_be_print_stats(void);
#endif
