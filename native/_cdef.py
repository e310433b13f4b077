"""The cffi declarations of ``native/include/hakmem.h``, written by hand.

cffi cannot parse the real header (it includes system headers), so this text
mirrors it.  Drift is caught twice: ``tests/test_build.py`` checks that every
``hak_`` function and ``HAK_`` constant of the header is declared here, and in
API mode cffi checks struct layouts and enum values against the real header
when the module is compiled and loaded.

Integer ``#define``s are declared as ``#define NAME ...``, so their values come
from the C compiler, never from a copy.
"""

CDEF = r"""
/* ---- limits */
#define HAK_NUM_CLASSES ...
#define HAK_MIN_BLOCK ...
#define HAK_MAX_BLOCK ...
#define HAK_SLAB_SIZE ...
#define HAK_SLABS_PER_SS ...
#define HAK_SS_SIZE ...
#define HAK_SS_HEADER_SIZE ...
#define HAK_CACHE_CAP_MAX ...
#define HAK_DIRTY_MAX ...
#define HAK_REFILL_START ...
#define HAK_CHECK_MSG_MAX ...

/* ---- configuration */
typedef enum hak_oom_policy_e {
  HAK_OOM_LIBC = 0,
  HAK_OOM_NULL = 1
} hak_oom_policy_t;

typedef struct hak_config_s {
  uint32_t ss_cap;
  uint64_t budget_bytes;
  uint32_t oom_policy;
  uint32_t cache_cap;
  uint32_t refill_batch;
  uint32_t release_empty;
  uint32_t ss_keep;
  uint32_t checked;
  uint32_t fail_map_at;
} hak_config_t;

void hak_config_default(hak_config_t *cfg);
void hak_config_get(hak_config_t *cfg);
int hak_configure(const hak_config_t *cfg);
void hak_configure_from_env(void);

typedef struct hak_option_s {
  const char *name;
  const char *env;
  const char *type;
  uint64_t min, max;
  uint64_t def;
  const char *doc;
} hak_option_t;

size_t hak_option_count(void);
int hak_option_info(size_t i, hak_option_t *out);

/* ---- allocation API */
void  *hak_malloc(size_t size);
void   hak_free(void *ptr);
void  *hak_calloc(size_t count, size_t size);
void  *hak_realloc(void *ptr, size_t size);
int    hak_posix_memalign(void **out, size_t alignment, size_t size);
void  *hak_aligned_alloc(size_t alignment, size_t size);
size_t hak_usable_size(const void *ptr);

void  *hak_libc_malloc(size_t size);
void   hak_libc_free(void *ptr);

#define HAK_FREE_OK ...
#define HAK_FREE_DOUBLE ...
#define HAK_FREE_INTERIOR ...
int hak_free_checked(void *ptr);

/* ---- threads */
void hak_flush(void);
void hak_thread_exit(void);

/* ---- introspection */
typedef enum hak_owner_e {
  HAK_OWNER_UNKNOWN = 0,
  HAK_OWNER_TINY = 1,
  HAK_OWNER_LIBC = 2
} hak_owner_t;

typedef struct hak_location_s {
  uint32_t owner;
  int32_t  class_idx;
  uint64_t ss_seq;
  int32_t  slab_idx;
  int32_t  block_idx;
} hak_location_t;

void hak_locate(const void *ptr, hak_location_t *out);

typedef struct hak_class_stats_s {
  uint64_t ss_live;
  uint64_t ss_created;
  uint64_t ss_released;
  uint64_t slabs_in_use;
  uint64_t active_blocks;
  int64_t  remote_pending;
  uint64_t fallback_allocs;
  uint64_t oom_nulls;
} hak_class_stats_t;

typedef struct hak_stats_s {
  hak_class_stats_t cls[...];
  uint64_t ss_mapped;
  uint64_t ss_kept;
  uint64_t os_maps;
  uint64_t os_map_failures;
  uint64_t os_unmaps;
} hak_stats_t;

void hak_stats(hak_stats_t *out);
int hak_check(char *msg, size_t msg_len);
void hak_reset(void);
int64_t hak_cov_edges(int64_t *total);
void hak_stats_print(void);
"""
"""cffi ``cdef`` text for hakmem.h (API mode)."""

PREAMBLE = '#include "hakmem.h"\n'
"""The C source of the cffi wrapper: just the public header."""
