/* serve.h — the driver as a server of programs (serve.c), and the one-program
 * run it forks for each request (driver.c). */
#ifndef HAK_DRV_SERVE_H
#define HAK_DRV_SERVE_H
#include <stdio.h>

/* Loads one program from f, runs it and prints its JSON result on stdout;
 * returns the exit status of a one-shot run.  Call it once per process. */
int drv_run_program(FILE *f, const char *path);

/* Serves programs until stdin ends (returns 0) or cannot be read (2).
 * Request: a little-endian u32 length, then that many bytes of a
 * hakfuzz-driver/1 program.  Each request runs in a child forked for it,
 * killed after timeout_s seconds; the reply is one JSON line. */
int drv_serve(double timeout_s);
#endif
