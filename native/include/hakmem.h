/* hakmem.h — the public interface of the hakmem small-object allocator.
 *
 * Requests of 0..1024 bytes are served from size classes C0..C7
 * (8, 16, 32, 64, 128, 256, 512, 1024 bytes).  Each class owns 2 MiB-aligned
 * SuperSlabs of 32 slabs of 64 KiB; the SuperSlab header lives at the start
 * of slab 0, so slab 0 holds fewer blocks.  Larger requests, and every
 * pointer the allocator does not own, go to glibc (__libc_malloc family):
 * mixed pointers exist by design.
 *
 * Ownership is decided only through the registry (2 MiB base -> SuperSlab),
 * never by reading bytes in front of a pointer.
 *
 * Every block of class c is aligned to its class size (8 << c).
 *
 * Introspection (hak_locate, hak_stats, hak_check) is exact when the
 * allocator is quiescent (no other thread inside an allocator call).
 * hak_configure and hak_reset must only be called at quiescence.
 *
 * The full placement policy, which the Python model mirrors, is written in
 * docs/policy.md.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits (mirrored by hakfuzz.model.limits; a test checks they agree) */
#define HAK_NUM_CLASSES        8
#define HAK_MIN_BLOCK          8
#define HAK_MAX_BLOCK          1024
#define HAK_SLAB_SIZE          65536u            /* 64 KiB */
#define HAK_SLABS_PER_SS       32
#define HAK_SS_SIZE            2097152u          /* 2 MiB = 32 x 64 KiB */
#define HAK_SS_HEADER_SIZE     4096u             /* at the start of slab 0 */
#define HAK_CACHE_CAP_MAX      1024              /* largest thread cache cap */
/* FREE slabs per class that keep their pages for reuse (a retired slab past
 * them gives its pages back): enough for eight producers whose consumers
 * empty a few slabs per collect, or a class shared by eight short-lived
 * threads at a time (each owning a slab of it, retired at its exit), to
 * take them back without a madvise and a page fault per page; at most
 * 16 x 64 KiB per class. */
#define HAK_DIRTY_MAX          16
#define HAK_REFILL_START       16                /* most blocks of a thread's first refill of a
                                                  * class; each later one may take twice the
                                                  * last, up to refill_batch */
#define HAK_CHECK_MSG_MAX      256               /* hak_check message buffer */

/* ---- configuration -------------------------------------------------- */
typedef enum hak_oom_policy_e {
  HAK_OOM_LIBC = 0,   /* at the cap, serve the request from glibc */
  HAK_OOM_NULL = 1    /* at the cap, return NULL with errno = ENOMEM */
} hak_oom_policy_t;

typedef struct hak_config_s {
  uint32_t ss_cap;          /* max live SuperSlabs per class; 0 = no cap */
  uint64_t budget_bytes;    /* max bytes of live SuperSlabs, all classes; 0 = none */
  uint32_t oom_policy;      /* hak_oom_policy_t */
  uint32_t cache_cap;       /* thread cache cap per class, 0 = caches off */
  uint32_t refill_batch;    /* blocks per cache refill, 1..cache_cap */
  uint32_t release_empty;   /* 1: release SuperSlabs whose slabs are all free (but a class's
                             * first live one while no budget is set) */
  uint32_t ss_keep;         /* released SuperSlabs kept mapped for reuse (K) */
  uint32_t checked;         /* 1: detect double and interior frees */
  uint32_t fail_map_at;     /* fail the Nth OS mapping from now on; 0 = off */
} hak_config_t;

/* Defaults; also what HAKMEM_<NAME> environment variables override. */
void hak_config_default(hak_config_t *cfg);
/* Current configuration. */
void hak_config_get(hak_config_t *cfg);
/* Validate and apply.  Returns 0, or EINVAL naming nothing applied.  Must be
 * called at quiescence; caches already filled keep their blocks. */
int hak_configure(const hak_config_t *cfg);
/* Apply HAKMEM_* environment variables over the current configuration.
 * Invalid values are reported on stderr by name and ignored. */
void hak_configure_from_env(void);

/* ---- the options table ---------------------------------------------- */
/* One row per hak_config_t field, in struct order: the one statement of
 * each option's name, environment variable, type, bounds and default, read
 * by hak_configure (the bounds), hak_config_default and
 * hak_configure_from_env, and by hakfuzz (model, validator, docs). */
typedef struct hak_option_s {
  const char *name;     /* the hak_config_t field, e.g. "refill_batch" */
  const char *env;      /* its environment variable, e.g. "HAKMEM_REFILL_BATCH" */
  const char *type;     /* "u32", "u64", "bool", or names by value: "libc|null" */
  uint64_t min, max;    /* the values hak_configure accepts, inclusive */
  uint64_t def;         /* the default of this build */
  const char *doc;      /* what it means, in one line */
} hak_option_t;

/* How many options there are. */
size_t hak_option_count(void);
/* Row i of the table into *out: 0, or -1 when i >= hak_option_count(). */
int hak_option_info(size_t i, hak_option_t *out);

/* ---- allocation API (libc semantics) --------------------------------- */
void  *hak_malloc(size_t size);
void   hak_free(void *ptr);
void  *hak_calloc(size_t count, size_t size);      /* overflow -> NULL/ENOMEM */
void  *hak_realloc(void *ptr, size_t size);        /* across owners, both ways */
int    hak_posix_memalign(void **out, size_t alignment, size_t size);
void  *hak_aligned_alloc(size_t alignment, size_t size);
size_t hak_usable_size(const void *ptr);

/* glibc's own allocator, as used for large requests and the OOM fallback. */
void  *hak_libc_malloc(size_t size);
void   hak_libc_free(void *ptr);

/* Checked free: returns HAK_FREE_OK, or an error code without touching the
 * allocator's state when the pointer is not a live block start. */
#define HAK_FREE_OK           0
#define HAK_FREE_DOUBLE       1   /* tiny block that is already free */
#define HAK_FREE_INTERIOR     2   /* inside a SuperSlab, not a block start */
int hak_free_checked(void *ptr);

/* ---- threads ----------------------------------------------------------- */
/* Return every block in the calling thread's caches to its slab, drain the
 * remote frees of the slabs it owns, and retire its empty slabs. */
void hak_flush(void);
/* Do what thread exit does (flush, then orphan the slabs still in use) and
 * give the calling thread a fresh identity for later calls.  The TLS
 * destructor runs this automatically when a thread ends. */
void hak_thread_exit(void);

/* ---- introspection --------------------------------------------------- */
typedef enum hak_owner_e {
  HAK_OWNER_UNKNOWN = 0,  /* NULL, or inside a SuperSlab but not a block */
  HAK_OWNER_TINY = 1,     /* a block of one of our SuperSlabs */
  HAK_OWNER_LIBC = 2      /* not in the registry: glibc's */
} hak_owner_t;

typedef struct hak_location_s {
  uint32_t owner;         /* hak_owner_t */
  int32_t  class_idx;     /* -1 unless tiny */
  uint64_t ss_seq;        /* SuperSlab sequence number, 1-based */
  int32_t  slab_idx;
  int32_t  block_idx;     /* index from the slab's first block */
} hak_location_t;

void hak_locate(const void *ptr, hak_location_t *out);

typedef struct hak_class_stats_s {
  uint64_t ss_live;         /* registered SuperSlabs of this class */
  uint64_t ss_created;      /* SuperSlabs ever given to this class */
  uint64_t ss_released;     /* SuperSlabs of this class released when empty */
  uint64_t slabs_in_use;    /* slabs owned by a thread or orphaned */
  uint64_t active_blocks;   /* sum of slab.used: user-held + cached + remote */
  int64_t  remote_pending;  /* blocks on remote stacks not yet drained */
  uint64_t fallback_allocs; /* requests served by glibc at the cap */
  uint64_t oom_nulls;       /* requests answered NULL at the cap */
} hak_class_stats_t;

typedef struct hak_stats_s {
  hak_class_stats_t cls[HAK_NUM_CLASSES];
  uint64_t ss_mapped;       /* SuperSlabs currently mapped (live + kept) */
  uint64_t ss_kept;         /* released SuperSlabs kept for reuse */
  uint64_t os_maps;         /* successful OS mappings */
  uint64_t os_map_failures; /* failed (or injected) OS mappings */
  uint64_t os_unmaps;
} hak_stats_t;

void hak_stats(hak_stats_t *out);

/* Walk every structure.  Returns 0 when consistent; otherwise 1, with the
 * first inconsistency written to msg as a sentence. */
int hak_check(char *msg, size_t msg_len);

/* Release every SuperSlab, forget every thread's caches, zero the stats and
 * the ss_seq counter, and restore the default configuration.  Every tiny
 * pointer handed out before becomes invalid. */
void hak_reset(void);

/* Coverage builds (clang -fsanitize=fuzzer-no-link): how many of the
 * allocator's edge counters are non-zero; *total receives how many exist.
 * Other builds return -1. */
int64_t hak_cov_edges(int64_t *total);

/* Print stats to stderr (used at exit by the preload with HAKMEM_STATS=1). */
void hak_stats_print(void);

#ifdef __cplusplus
}
#endif
#endif /* HAKMEM_H */
