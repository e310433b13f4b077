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

/* Map 2 MiB at a 2 MiB boundary: over-map by 2 MiB and trim both ends.
 * Called with the global lock held (counters, fault injection). */
void *_hak_os_map_ss(void) {
  _hak_g.map_attempts++;
  if (_hak_g.cfg.fail_map_at != 0 && _hak_g.map_attempts == _hak_g.cfg.fail_map_at) {
    _hak_g.os_map_failures++;
    errno = ENOMEM;
    return NULL;
  }
  uint8_t *raw = map_bytes(2 * (size_t)HAK_SS_SIZE);
  if (raw == NULL) {
    _hak_g.os_map_failures++;
    return NULL;
  }
  uintptr_t start = ((uintptr_t)raw + HAK_SS_SIZE - 1) & ~(uintptr_t)(HAK_SS_SIZE - 1);
  size_t head = start - (uintptr_t)raw;
  size_t tail = HAK_SS_SIZE - head;
  if (head) munmap(raw, head);
  if (tail) munmap((uint8_t *)start + HAK_SS_SIZE, tail);
  _hak_g.os_maps++;
  return (void *)start;
}

void _hak_os_unmap_ss(void *base) {
  /* asan variant: the next mapping of these addresses must start clean */
  HAK_ASAN(_hak_asan_unpoison(base, HAK_SS_SIZE));
  munmap(base, HAK_SS_SIZE);
  _hak_g.os_unmaps++;
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
