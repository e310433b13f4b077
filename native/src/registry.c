/* registry.c — ownership: which 2 MiB bases are SuperSlabs.
 *
 * A two-level radix table over the 47-bit user address space (26 bits of
 * 2 MiB page number: 13 + 13; the lookup is inline in internal.h).  Readers
 * never lock: two acquire loads.
 * Leaves are mapped on first use and never unmapped, so a reader holding a
 * stale leaf pointer still reads valid memory; a removed entry reads NULL.
 * free() decides ownership here and nowhere else. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

_Atomic(hak_reg_slot_t *) _hak_reg_top[1u << HAK_REG_BITS_TOP];
static pthread_mutex_t g_reg_lock = PTHREAD_MUTEX_INITIALIZER;

static hak_reg_slot_t *leaf_for(uintptr_t page, int create) {
  hak_reg_slot_t *leaf = hak_load_acquire(&_hak_reg_top[page >> HAK_REG_BITS_LEAF]);
  if (leaf != NULL || !create) return leaf;
  pthread_mutex_lock(&g_reg_lock);
  leaf = hak_load_acquire(&_hak_reg_top[page >> HAK_REG_BITS_LEAF]);
  if (leaf == NULL) {
    leaf = _hak_os_map_plain(HAK_REG_LEAF_LEN * sizeof(hak_reg_slot_t));
    if (leaf != NULL) hak_store_release(&_hak_reg_top[page >> HAK_REG_BITS_LEAF], leaf);
  }
  pthread_mutex_unlock(&g_reg_lock);
  return leaf;
}

int _hak_registry_add(hak_ss_t *ss) {
  HAK_ASSERT(((uintptr_t)ss & (HAK_SS_SIZE - 1)) == 0 && ss->class_idx < HAK_NUM_CLASSES,
             "a registry entry is a 2 MiB-aligned base | its class index");
  uintptr_t page = (uintptr_t)ss >> HAK_SS_SHIFT;
  hak_reg_slot_t *leaf = leaf_for(page, 1);
  if (leaf == NULL) return -1;
  hak_store_release(&leaf[page & (HAK_REG_LEAF_LEN - 1)], (uintptr_t)ss | ss->class_idx);
  return 0;
}

void _hak_registry_remove(hak_ss_t *ss) {
  uintptr_t page = (uintptr_t)ss >> HAK_SS_SHIFT;
  hak_reg_slot_t *leaf = leaf_for(page, 0);
  if (leaf != NULL) hak_store_release(&leaf[page & (HAK_REG_LEAF_LEN - 1)], 0);
}

void _hak_registry_clear(void) {
  for (size_t i = 0; i < (1u << HAK_REG_BITS_TOP); i++) {
    hak_reg_slot_t *leaf = hak_load_acquire(&_hak_reg_top[i]);
    if (leaf == NULL) continue;
    for (size_t j = 0; j < HAK_REG_LEAF_LEN; j++) hak_store_release(&leaf[j], 0);
  }
}

/* Every registered base must be a live SuperSlab of its class list whose
 * header names the same base. */
int _hak_registry_check(char *msg, size_t len) {
  uint64_t registered = 0, live = 0;
  for (size_t i = 0; i < (1u << HAK_REG_BITS_TOP); i++) {
    hak_reg_slot_t *leaf = hak_load_acquire(&_hak_reg_top[i]);
    if (leaf == NULL) continue;
    for (size_t j = 0; j < HAK_REG_LEAF_LEN; j++) {
      uintptr_t entry = hak_load_acquire(&leaf[j]);
      if (entry == 0) continue;
      registered++;
      hak_ss_t *ss = (hak_ss_t *)(entry & ~HAK_REG_CLASS_MASK);
      uintptr_t base = ((uintptr_t)i << (HAK_REG_BITS_LEAF + HAK_SS_SHIFT)) |
                       ((uintptr_t)j << HAK_SS_SHIFT);
      if ((uintptr_t)ss != base || ss->magic != HAK_SS_MAGIC) {
        snprintf(msg, len, "registry entry for base %#lx does not point to a SuperSlab at that base",
                 (unsigned long)base);
        return 1;
      }
      if ((entry & HAK_REG_CLASS_MASK) != ss->class_idx) {
        snprintf(msg, len, "registry entry for base %#lx says class %u, the SuperSlab class %u",
                 (unsigned long)base, (unsigned)(entry & HAK_REG_CLASS_MASK), ss->class_idx);
        return 1;
      }
    }
  }
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) live += _hak_classes[c].ss_live;
  if (registered != live) {
    snprintf(msg, len, "registry holds %llu SuperSlabs but the classes list %llu live",
             (unsigned long long)registered, (unsigned long long)live);
    return 1;
  }
  return 0;
}
