/* servedby.c — which shared object serves this process's malloc.
 *
 *   servedby [LIBRARY]
 *
 * hakfuzz runs it with LD_PRELOAD=LIBRARY (or with nothing preloaded, for
 * glibc) and reads three kinds of line on stdout:
 *
 *   malloc-from <path>    the object that defines malloc as this process
 *                         binds it, by dladdr, then realpath.  The address
 *                         comes from dlsym(RTLD_DEFAULT): the global lookup
 *                         scope, preloaded objects first, the same lookup
 *                         that binds any program's calls to malloc.
 *   load-error <words>    LIBRARY cannot be dlopen'ed; dlerror's reason.
 *   exports-from <path>   where dlsym(LIBRARY, "malloc") lands.  That lookup
 *                         also searches LIBRARY's dependencies, so a library
 *                         that defines no malloc lands in libc (or "-").
 *
 * The dlopen is here because the dynamic linker only warns, and goes on,
 * when a preloaded object cannot be loaded: the warning is easy to miss, and
 * a run would then be served by glibc.  When the preload worked, dlopen
 * returns the object already loaded.
 *
 * Exit 0 when it could answer, 1 on bad usage.  A library whose constructor
 * or malloc crashes kills this program, which is the answer too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print "<key> <real path of the object holding addr>", or "<key> -". */
static void print_object(const char *key, void *addr) {
  Dl_info info;
  if (addr == NULL || dladdr(addr, &info) == 0 || info.dli_fname == NULL ||
      info.dli_fname[0] == '\0') {
    printf("%s -\n", key);
    return;
  }
  char real[PATH_MAX];
  printf("%s %s\n", key, realpath(info.dli_fname, real) != NULL ? real : info.dli_fname);
}

int main(int argc, char **argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: servedby [LIBRARY]\n");
    return 1;
  }
  /* One allocation through the malloc under test: a library that cannot
   * serve even this is caught here, not in the middle of a benchmark. */
  volatile char *block = malloc(24);
  if (block != NULL) block[0] = 'x';
  free((void *)block);

  print_object("malloc-from", dlsym(RTLD_DEFAULT, "malloc"));
  if (argc == 2) {
    void *handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
      const char *why = dlerror();
      printf("load-error %s\n", why != NULL ? why : "unknown reason");
    } else {
      print_object("exports-from", dlsym(handle, "malloc"));
    }
  }
  fflush(stdout);
  return 0;
}
