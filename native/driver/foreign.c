/* foreign.c — glibc's allocator by dlopen, the target's optional hooks, and
 * the note a crash inside a foreign free leaves on stderr. */
#define _GNU_SOURCE
#include "foreign.h"

#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

drv_libc_t drv_libc;
int (*drv_hook_check)(char *, size_t);
int (*drv_hook_stats)(char *, size_t);
int (*drv_hook_owns)(void *);
int (*drv_hook_configure)(const char *, const char *);
int drv_target_usable;
char drv_malloc_from[4096];

/* Set by the thread inside a foreign call; read by its own signal handler. */
static __thread const char *t_what;
static __thread uint32_t t_op, t_handle;

static const char *object_of(void *addr, char *out, size_t len) {
  Dl_info info;
  if (addr == NULL || dladdr(addr, &info) == 0 || info.dli_fname == NULL ||
      info.dli_fname[0] == '\0')
    return "-";
  char real[PATH_MAX];
  snprintf(out, len, "%s", realpath(info.dli_fname, real) != NULL ? real : info.dli_fname);
  return out;
}

/* Appends s to buf at *at (async-signal-safe: no stdio). */
static void put(char *buf, size_t len, size_t *at, const char *s) {
  while (*s && *at + 1 < len) buf[(*at)++] = *s++;
}

static void put_u32(char *buf, size_t len, size_t *at, uint32_t v) {
  char digits[16];
  int i = (int)sizeof digits;
  digits[--i] = '\0';
  do digits[--i] = (char)('0' + v % 10); while ((v /= 10) != 0 && i > 0);
  put(buf, len, at, digits + i);
}

/* One write(2) for the whole line, so threads crashing at once do not mix
 * their lines.  SA_RESETHAND restored the default action, so re-raising
 * kills the process by the same signal. */
static void on_crash(int sig) {
  const char *what = t_what;
  if (what != NULL) {
    char line[160];
    size_t at = 0;
    put(line, sizeof line, &at, "hakdriver: crashed in a foreign free: ");
    put(line, sizeof line, &at, what);
    put(line, sizeof line, &at, " of a pointer glibc allocated, handle ");
    put_u32(line, sizeof line, &at, t_handle);
    put(line, sizeof line, &at, ", op ");
    put_u32(line, sizeof line, &at, t_op);
    put(line, sizeof line, &at, "\n");
    ssize_t w = write(2, line, at);
    (void)w;
  }
  raise(sig);
}

void drv_foreign_enter(const char *what, uint32_t op, uint32_t handle) {
  t_op = op;
  t_handle = handle;
  __atomic_store_n(&t_what, what, __ATOMIC_RELAXED);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void drv_foreign_leave(void) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  t_what = NULL;
}

int drv_foreign_init(void) {
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (libc == NULL) libc = dlopen("libc.so.6", RTLD_NOW);
  if (libc == NULL) {
    fprintf(stderr, "hakdriver: cannot dlopen libc.so.6: %s\n", dlerror());
    return 2;
  }
  drv_libc.malloc = (void *(*)(size_t))dlsym(libc, "malloc");
  drv_libc.free = (void (*)(void *))dlsym(libc, "free");
  drv_libc.realloc = (void *(*)(void *, size_t))dlsym(libc, "realloc");
  drv_libc.usable = (size_t(*)(void *))dlsym(libc, "malloc_usable_size");
  if (!drv_libc.malloc || !drv_libc.free || !drv_libc.realloc || !drv_libc.usable) {
    fprintf(stderr, "hakdriver: libc.so.6 lacks malloc, free, realloc or malloc_usable_size\n");
    return 2;
  }
  char from[4096], usable_from[4096];
  void *target_malloc = dlsym(RTLD_DEFAULT, "malloc");
  snprintf(drv_malloc_from, sizeof drv_malloc_from, "%s",
           object_of(target_malloc, from, sizeof from));
  /* A target without malloc_usable_size leaves glibc's, which must never
   * see the target's pointers. */
  drv_target_usable =
      strcmp(object_of(dlsym(RTLD_DEFAULT, "malloc_usable_size"), usable_from,
                       sizeof usable_from),
             drv_malloc_from) == 0;
  /* The hooks count only when they live in the object that serves malloc.
   * HAKFUZZ_NO_HOOKS=1 ignores them, to judge a target as one without hooks. */
  char where[4096];
  void *sym;
  const char *no_hooks = getenv("HAKFUZZ_NO_HOOKS");
  if (no_hooks != NULL && strcmp(no_hooks, "1") == 0) goto hooks_done;
  if ((sym = dlsym(RTLD_DEFAULT, "hakfuzz_check")) != NULL &&
      strcmp(object_of(sym, where, sizeof where), drv_malloc_from) == 0)
    drv_hook_check = (int (*)(char *, size_t))sym;
  if ((sym = dlsym(RTLD_DEFAULT, "hakfuzz_stats")) != NULL &&
      strcmp(object_of(sym, where, sizeof where), drv_malloc_from) == 0)
    drv_hook_stats = (int (*)(char *, size_t))sym;
  if ((sym = dlsym(RTLD_DEFAULT, "hakfuzz_owns")) != NULL &&
      strcmp(object_of(sym, where, sizeof where), drv_malloc_from) == 0)
    drv_hook_owns = (int (*)(void *))sym;
  if ((sym = dlsym(RTLD_DEFAULT, "hakfuzz_configure")) != NULL &&
      strcmp(object_of(sym, where, sizeof where), drv_malloc_from) == 0)
    drv_hook_configure = (int (*)(const char *, const char *))sym;
hooks_done:;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGTRAP};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  return 0;
}
