/* A fake CUDA driver (libcuda.so.1) for the stream-mark tests: just what the meter loads.
 *
 * cuLaunchHostFunc runs the host function on a worker thread after FAKE_CUDA_DELAY_US
 * microseconds (default 20000), the way the driver runs it once the GPU has worked through
 * the stream. Stream handle 0xbad is refused with CUDA_ERROR_INVALID_HANDLE (400), so the
 * meter's error path can be tested. FAKE_CUDA_INIT_FAIL=1 makes cuInit fail with
 * CUDA_ERROR_NO_DEVICE (100).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

typedef int CUresult;
typedef void *CUstream;
typedef void (*CUhostFn)(void *);

enum { SUCCESS = 0, INVALID_VALUE = 1, NO_DEVICE = 100, INVALID_HANDLE = 400 };

CUresult cuInit(unsigned int flags) {
  (void)flags;
  const char *fail = getenv("FAKE_CUDA_INIT_FAIL");
  return (fail && fail[0] == '1') ? NO_DEVICE : SUCCESS;
}

CUresult cuGetErrorName(CUresult error, const char **name) {
  switch (error) {
    case SUCCESS: *name = "CUDA_SUCCESS"; return SUCCESS;
    case INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; return SUCCESS;
    case NO_DEVICE: *name = "CUDA_ERROR_NO_DEVICE"; return SUCCESS;
    case INVALID_HANDLE: *name = "CUDA_ERROR_INVALID_HANDLE"; return SUCCESS;
    default: return INVALID_VALUE;
  }
}

struct call { CUhostFn fn; void *user; long delay_us; };

static void *run_later(void *arg) {
  struct call c = *(struct call *)arg;
  free(arg);
  struct timespec ts = { c.delay_us / 1000000, (c.delay_us % 1000000) * 1000 };
  nanosleep(&ts, NULL);
  c.fn(c.user);
  return NULL;
}

CUresult cuLaunchHostFunc(CUstream stream, CUhostFn fn, void *user) {
  if ((uintptr_t)stream == 0xbad) return INVALID_HANDLE;
  if (!fn) return INVALID_VALUE;
  struct call *c = malloc(sizeof *c);
  const char *delay = getenv("FAKE_CUDA_DELAY_US");
  c->fn = fn;
  c->user = user;
  c->delay_us = delay ? atol(delay) : 20000;
  pthread_t thread;
  if (pthread_create(&thread, NULL, run_later, c) != 0) { free(c); return INVALID_VALUE; }
  pthread_detach(thread);
  return SUCCESS;
}
