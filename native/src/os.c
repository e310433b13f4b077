/* os.c — the allocator's only contact with the kernel: 2 MiB-aligned
 * SuperSlab mappings (counted, and failable on purpose for fault injection),
 * plain metadata mappings (uncounted), and giving the pages of a retired
 * slab back (still mapped, zero-filled on the next touch). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static void *map_bytes(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* SuperSlab mappings given back (os_unmaps counted them) are held here, up
 * to HAK_SS_RESERVE, instead of munmap'ed: the next SuperSlab mapping takes
 * one without a syscall.  Under thread churn a class empties at every
 * thread exit and grows again at the next thread's first malloc; each
 * munmap and 2 MiB-aligned mmap (three calls) takes the address-space lock
 * that thread creation also needs, and shoots down TLBs.  A reserved
 * mapping is nobody's: unregistered, its pages out of memory except its
 * header page and the pages of its dirty slabs (at most HAK_DIRTY_MAX slabs
 * over the whole reserve; past that, all its pages are given back).  Linked
 * through the header's next field; global lock. */
#define HAK_SS_RESERVE 8
static hak_ss_t *g_reserve;
static unsigned g_reserved, g_reserved_dirty;

/* The first 2 MiB boundary in [raw, raw + bytes) whose address names
 * class_idx (_hak_addr_class), or the first boundary when any will do. */
static uintptr_t placed(const uint8_t *raw, size_t bytes, unsigned class_idx, int any) {
  uintptr_t start = ((uintptr_t)raw + HAK_SS_SIZE - 1) & ~(uintptr_t)(HAK_SS_SIZE - 1);
  while (!any && _hak_addr_class((void *)start) != class_idx) start += HAK_SS_SIZE;
  HAK_ASSERT(start + HAK_SS_SIZE <= (uintptr_t)raw + bytes, "the placed SuperSlab lies in the mapping");
  return start;
}

/* Map 2 MiB at a 2 MiB boundary whose address names class_idx: over-map by
 * HAK_NUM_CLASSES x 2 MiB, keep the boundary of that class, trim both ends
 * (still three calls).  Should the larger mapping fail, any boundary will
 * do (over-map by 2 MiB): free() then takes its slower path for this
 * SuperSlab.  A reserved mapping of the class is taken first, then any.
 * Called with the global lock held (counters, fault injection).  *dirty:
 * the slabs whose pages are still in memory (a reserved mapping's). */
void *_hak_os_map_ss(uint32_t *dirty, unsigned class_idx) {
  *dirty = 0;
  _hak_g.map_attempts++;
  if (_hak_g.cfg.fail_map_at != 0 && _hak_g.map_attempts == _hak_g.cfg.fail_map_at) {
    _hak_g.os_map_failures++;
    errno = ENOMEM;
    return NULL;
  }
  hak_ss_t *ss = _hak_ss_pop_for(&g_reserve, class_idx);
  if (ss != NULL) {
    g_reserved--;
    *dirty = ss->dirty;
    g_reserved_dirty -= (unsigned)__builtin_popcount(ss->dirty);
    _hak_g.os_maps++;
    return ss;
  }
  size_t bytes = (HAK_NUM_CLASSES + 1) * (size_t)HAK_SS_SIZE;
  int saved_errno = errno;
  uint8_t *raw = map_bytes(bytes);
  int any = raw == NULL;
  if (any) {
    bytes = 2 * (size_t)HAK_SS_SIZE;
    raw = map_bytes(bytes);
    if (raw != NULL) errno = saved_errno;  /* the first attempt's ENOMEM is no failure */
  }
  if (raw == NULL) {
    _hak_g.os_map_failures++;
    return NULL;
  }
  uintptr_t start = placed(raw, bytes, class_idx, any);
  size_t head = start - (uintptr_t)raw;
  size_t tail = bytes - HAK_SS_SIZE - head;
  if (head) munmap(raw, head);
  if (tail) munmap((uint8_t *)start + HAK_SS_SIZE, tail);
  _hak_g.os_maps++;
  return (void *)start;
}

/* Global lock held.  The caller has unregistered base (or never did). */
void _hak_os_unmap_ss(void *base) {
  /* asan variant: the next mapping of these addresses must start clean */
  HAK_ASAN(_hak_asan_unpoison(base, HAK_SS_SIZE));
  _hak_g.os_unmaps++;
  hak_ss_t *ss = base;
  if (g_reserved >= HAK_SS_RESERVE) {
    munmap(base, HAK_SS_SIZE);
    return;
  }
  unsigned dirty = (unsigned)__builtin_popcount(ss->dirty);
  if (g_reserved_dirty + dirty > HAK_DIRTY_MAX) {
    /* Past the header page, which holds the reserve's link. */
    if (ss->dirty)
      _hak_os_discard((uint8_t *)ss + HAK_SS_HEADER_SIZE, HAK_SS_SIZE - HAK_SS_HEADER_SIZE);
    ss->dirty = 0;
    dirty = 0;
  }
  ss->magic = 0;
  ss->next = g_reserve;
  g_reserve = ss;
  g_reserved++;
  g_reserved_dirty += dirty;
}

/* hak_reset (every lock held): the reserve goes back to the OS too, so a
 * reset process maps afresh, as a new one would. */
void _hak_os_drop_reserve(void) {
  while (g_reserve != NULL) {
    hak_ss_t *ss = g_reserve;
    g_reserve = ss->next;
    munmap(ss, HAK_SS_SIZE);
  }
  g_reserved = g_reserved_dirty = 0;
}

void *_hak_os_map_plain(size_t bytes) { return map_bytes(bytes); }

void _hak_os_discard(void *p, size_t bytes) {
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)p + bytes + page - 1) & ~(page - 1);
  if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}

void _hak_os_unmap_plain(void *p, size_t bytes) {
  if (p) munmap(p, bytes);
}
