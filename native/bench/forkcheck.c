/* forkcheck.c — can a child allocate after fork() in a threaded parent?
 *
 *   forkcheck <children> <threads>
 *
 * <threads> workers allocate and free blocks of 8..2048 bytes (tiny and
 * glibc-sized) without pause, so a fork lands while some of them are inside
 * the allocator, holding its locks.  Meanwhile the main thread forks
 * <children> times.  Each child, where only the forking thread survives,
 * frees blocks the parent allocated before the fork (some owned by slabs of
 * threads that do not exist in the child), allocates and frees a few
 * thousand blocks of every class, starts a thread that does the same, and
 * exits 0.  A child that deadlocks is killed by alarm() after 10 s and
 * counts as a failure, like a crash.
 *
 * Built as a plain program: run it with LD_PRELOAD=libhakmem.so.  Prints
 * "forkcheck: N/N children ok" and exits 0 only when every child did. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PARENT_BLOCKS 512
#define CHILD_ROUNDS 4000

static _Atomic int g_stop;
static _Atomic uint64_t g_worker_ops;

static size_t size_at(uint64_t *rng) {
  *rng ^= *rng << 13;
  *rng ^= *rng >> 7;
  *rng ^= *rng << 17;
  return 8 + (size_t)(*rng % 2041);
}

static void *worker(void *arg) {
  uint64_t rng = (uintptr_t)arg * 2654435761u + 1;
  void *held[64] = {0};
  uint64_t ops = 0;
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
    size_t slot = (size_t)(rng % 64);
    free(held[slot]);
    held[slot] = malloc(size_at(&rng));
    if (held[slot] != NULL) *(char *)held[slot] = 1;
    ops++;
  }
  for (size_t i = 0; i < 64; i++) free(held[i]);
  atomic_fetch_add(&g_worker_ops, ops);
  return NULL;
}

/* Allocate, touch and free every size once per round; 0 when all went well. */
static int churn(uint64_t seed) {
  void *held[32] = {0};
  for (int round = 0; round < CHILD_ROUNDS; round++) {
    size_t slot = (size_t)round % 32;
    free(held[slot]);
    size_t n = size_at(&seed);
    held[slot] = malloc(n);
    if (held[slot] == NULL) return 1;
    memset(held[slot], 0xab, n);
  }
  for (size_t i = 0; i < 32; i++) free(held[i]);
  return 0;
}

static void *child_thread(void *arg) {
  return (void *)(intptr_t)churn((uintptr_t)arg);
}

static int child_main(void **parent_blocks, int index) {
  alarm(10);
  for (int i = 0; i < PARENT_BLOCKS; i++) free(parent_blocks[i]);
  if (churn((uint64_t)index + 7) != 0) return 3;
  pthread_t th;
  if (pthread_create(&th, NULL, child_thread, (void *)(uintptr_t)(index + 99)) != 0) return 4;
  void *status = NULL;
  pthread_join(th, &status);
  return status == NULL ? 0 : 5;
}

int main(int argc, char **argv) {
  if (argc != 3 || atoi(argv[1]) <= 0 || atoi(argv[2]) < 0) {
    fprintf(stderr, "usage: forkcheck <children> <threads>\n");
    return 2;
  }
  int children = atoi(argv[1]), threads = atoi(argv[2]);
  pthread_t *workers = calloc((size_t)threads + 1, sizeof(pthread_t));
  for (int t = 0; t < threads; t++)
    if (pthread_create(&workers[t], NULL, worker, (void *)(uintptr_t)(t + 1)) != 0) {
      fprintf(stderr, "forkcheck: pthread_create failed\n");
      return 1;
    }
  int ok = 0;
  uint64_t rng = 12345;
  for (int c = 0; c < children; c++) {
    void *blocks[PARENT_BLOCKS];
    for (int i = 0; i < PARENT_BLOCKS; i++) blocks[i] = malloc(size_at(&rng));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
      perror("forkcheck: fork");
      break;
    }
    if (pid == 0) _exit(child_main(blocks, c));
    for (int i = 0; i < PARENT_BLOCKS; i++) free(blocks[i]);
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) {
      perror("forkcheck: waitpid");
      break;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else if (WIFSIGNALED(status))
      fprintf(stderr, "forkcheck: child %d killed by signal %d%s\n", c, WTERMSIG(status),
              WTERMSIG(status) == SIGALRM ? " (deadlocked: alarm after 10 s)" : "");
    else
      fprintf(stderr, "forkcheck: child %d exited %d\n", c, WEXITSTATUS(status));
  }
  atomic_store(&g_stop, 1);
  for (int t = 0; t < threads; t++) pthread_join(workers[t], NULL);
  free(workers);
  printf("forkcheck: %d/%d children ok (workers did %llu ops)\n", ok, children,
         (unsigned long long)atomic_load(&g_worker_ops));
  return ok == children ? 0 : 1;
}
