/* serve.c — hakdriver --serve: programs in on stdin, one JSON line out each.
 *
 * The server is started once (under LD_PRELOAD of the target, for
 * hakdriver-foreign) and forks a child per program: the child runs the
 * program exactly as a one-shot driver would, so each program starts from
 * the heap the server had before any program ran, and a crash, an abort
 * or a hang costs one child, not the server.  The server itself allocates
 * nothing per request through the target: the request lives in an mmap,
 * the child's output in static buffers.
 *
 * First line, at start:
 *   {"format": "hakfuzz-serve/1", "pid": N, <the backend's identity>, "timeout": S}
 * then, per request:
 *   {"format": "hakfuzz-serve-result/1", "request": N, "status": "exit"|"signal"|"timeout",
 *    "code": exit status or signal number, "seconds": wall time,
 *    "stdout": the child's stdout (its driver result), "stderr": its stderr,
 *    "stderr_truncated": bool}
 * Bytes outside printable ASCII are escaped as \u00XX, so every line is JSON
 * whatever the child printed.  Each child dies with the server
 * (PR_SET_PDEATHSIG), and the server with its own parent. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"

#define MAX_REQUEST ((uint32_t)256 << 20)
#define OUT_CAP ((size_t)4 << 20)
#define ERR_CAP ((size_t)256 << 10)

static char g_out[OUT_CAP], g_err[ERR_CAP];

static double seconds_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1 read, 0 end of input before the first byte, -1 error or a short read. */
static int read_full(int fd, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, (char *)buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 && got == 0 ? 0 : -1;
    got += (size_t)n;
  }
  return 1;
}

static void json_bytes(const char *s, size_t len) {
  putchar('"');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c == '\n') fputs("\\n", stdout);
    else if (c < 0x20 || c >= 0x7f) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

/* In the child: the program's output to the pipes, then the one-shot run. */
static void run_child(pid_t server, int out_fd, int err_fd, const char *program, size_t len) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != server) _exit(1);  /* the server died before prctl */
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  close(out_fd);
  close(err_fd);
  close(0);
  FILE *f = fmemopen((void *)program, len, "rb");
  if (f == NULL) {
    fprintf(stderr, "hakdriver: fmemopen: %s\n", strerror(errno));
    _exit(2);
  }
  int rc = drv_run_program(f, "<request>");
  fflush(stdout);
  exit(rc);
}

/* Reads the child's stdout and stderr until both close or the deadline;
 * 1 when the deadline passed (the child is then killed). */
static int collect(pid_t child, int out_fd, int err_fd, double deadline, size_t *out_len,
                   size_t *err_len, int *err_truncated) {
  struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_fds = 2, timed_out = 0;
  char scratch[4096];
  while (open_fds > 0) {
    double left = deadline - seconds_now();
    if (!timed_out && left <= 0) {
      kill(child, SIGKILL);
      timed_out = 1;
    }
    int wait_ms = timed_out ? 1000 : (int)(left * 1000) + 1;
    int n = poll(fds, 2, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int k = 0; k < 2; k++) {
      if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char *buf = k == 0 ? g_out : g_err;
      size_t cap = k == 0 ? OUT_CAP : ERR_CAP, *len = k == 0 ? out_len : err_len;
      size_t room = cap - *len;
      ssize_t got = read(fds[k].fd, room ? buf + *len : scratch, room ? room : sizeof scratch);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        close(fds[k].fd);
        fds[k].fd = -1;
        open_fds--;
        continue;
      }
      if (room) *len += (size_t)got;
      else if (k == 1) *err_truncated = 1;
    }
  }
  return timed_out;
}

static int serve_one(uint32_t request, double timeout_s) {
  uint32_t len;
  int got = read_full(0, &len, sizeof len);
  if (got == 0) return 0;
  if (got < 0) { fprintf(stderr, "hakdriver --serve: a truncated request length\n"); return 2; }
  if (len > MAX_REQUEST) { fprintf(stderr, "hakdriver --serve: a request of %u bytes\n", len); return 2; }
  size_t map_len = len ? len : 1;
  char *program = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (program == MAP_FAILED) { fprintf(stderr, "hakdriver --serve: mmap: %s\n", strerror(errno)); return 2; }
  if (len && read_full(0, program, len) != 1) {
    fprintf(stderr, "hakdriver --serve: a truncated request (%u bytes announced)\n", len);
    return 2;
  }
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    fprintf(stderr, "hakdriver --serve: pipe: %s\n", strerror(errno));
    return 2;
  }
  fflush(stdout);  /* the child inherits an empty buffer */
  double start = seconds_now();
  pid_t server = getpid(), child = fork();
  if (child < 0) { fprintf(stderr, "hakdriver --serve: fork: %s\n", strerror(errno)); return 2; }
  if (child == 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    run_child(server, out_pipe[1], err_pipe[1], program, len);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  size_t out_len = 0, err_len = 0;
  int err_truncated = 0;
  int timed_out = collect(child, out_pipe[0], err_pipe[0], start + timeout_s, &out_len, &err_len,
                          &err_truncated);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
  munmap(program, map_len);
  const char *how = timed_out ? "timeout" : WIFSIGNALED(status) ? "signal" : "exit";
  int code = WIFSIGNALED(status) ? WTERMSIG(status) : WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  printf("{\"format\": \"hakfuzz-serve-result/1\", \"request\": %u, \"status\": \"%s\", "
         "\"code\": %d, \"seconds\": %.6f, \"stdout\": ",
         request, how, code, seconds_now() - start);
  json_bytes(g_out, out_len);
  printf(", \"stderr\": ");
  json_bytes(g_err, err_len);
  printf(", \"stderr_truncated\": %s}\n", err_truncated ? "true" : "false");
  fflush(stdout);
  return -1;  /* served; go on */
}

int drv_serve(double timeout_s) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGPIPE, SIG_DFL);
  printf("{\"format\": \"hakfuzz-serve/1\", \"pid\": %d, ", (int)getpid());
  drv_be_print_identity();
  printf("\"timeout\": %.3f}\n", timeout_s);
  fflush(stdout);
  for (uint32_t request = 0;; request++) {
    int rc = serve_one(request, timeout_s);
    if (rc >= 0) return rc;
  }
}
