/* foreign.h — the driver's foreign mode (built as hakdriver-foreign, without
 * hakmem): the target allocator comes from LD_PRELOAD under the standard
 * names, glibc's own allocator from dlopen("libc.so.6"), and the optional
 * hakfuzz_* hooks from the target when it exports them. */
#ifndef HAK_DRV_FOREIGN_H
#define HAK_DRV_FOREIGN_H
#include <stddef.h>
#include <stdint.h>

/* glibc's allocator itself.  dlsym on libc's own handle, not __libc_malloc:
 * several allocators define __libc_malloc as an alias of their malloc. */
typedef struct {
  void *(*malloc)(size_t);
  void (*free)(void *);
  void *(*realloc)(void *, size_t);
  size_t (*usable)(void *);
} drv_libc_t;
extern drv_libc_t drv_libc;

/* The target's hooks; NULL when it does not export them.
 *   hakfuzz_check(msg, len): its own heap check at quiescence, nonzero = broken
 *   hakfuzz_owns(p): 1 its own block, 0 not its memory, -1 cannot tell
 *   hakfuzz_configure(key, value): 0 when the option was applied
 *   hakfuzz_stats(buf, len): 0 after writing "key=value" counters (decimal,
 *     separated by newlines or spaces) that are back where they started once
 *     every block is freed and every thread gone */
extern int (*drv_hook_check)(char *, size_t);
extern int (*drv_hook_stats)(char *, size_t);
extern int (*drv_hook_owns)(void *);
extern int (*drv_hook_configure)(const char *, const char *);
extern int drv_target_usable; /* the target's malloc_usable_size is its own */
extern char drv_malloc_from[4096];

/* 0, or 2 with a message on stderr. */
int drv_foreign_init(void);

/* Brackets a call that hands the target a pointer glibc made: a crash in
 * between says so on stderr before the process dies. */
void drv_foreign_enter(const char *what, uint32_t op, uint32_t handle);
void drv_foreign_leave(void);
#endif
