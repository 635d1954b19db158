/* A fake CUDA driver (libcuda.so.1) for the stream-mark tests: just what the meter loads.
 *
 * The "GPU" reaches any point of a stream FAKE_CUDA_DELAY_US microseconds (default 20000)
 * after it was queued. cuLaunchHostFunc runs the host function on a worker thread then,
 * plus FAKE_CUDA_LATE_US more for every FAKE_CUDA_LATE_EVERY-th call (default never), the
 * way a real driver's callback thread is now and then late. Events record the time the GPU
 * reaches them, so cuEventElapsedTime is exact. Stream handle 0xbad is refused with
 * CUDA_ERROR_INVALID_HANDLE (400). FAKE_CUDA_INIT_FAIL=1 makes cuInit fail with
 * CUDA_ERROR_NO_DEVICE (100).
 *
 * Devices: FAKE_CUDA_DEVICES lists the GPUs' UUIDs ("GPU-...", comma separated; default the
 * fake NVML's device 0), in CUDA's order. CUDA_VISIBLE_DEVICES picks among them as the real
 * driver does (indices, UUIDs with or without "GPU-", unique UUID prefixes, "MIG-..." instances;
 * the list stops at the first entry that names nothing), except that the fake reads it at every
 * cuDeviceGetCount, where the real driver reads it once at cuInit.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

static long env_long(const char *name, long fallback) {
  const char *v = getenv(name);
  return v ? atol(v) : fallback;
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct { long long reached_ns; } fake_event;
typedef fake_event *CUevent;

CUresult cuEventCreate(CUevent *event, unsigned int flags) {
  (void)flags;
  *event = calloc(1, sizeof(fake_event));
  return *event ? SUCCESS : INVALID_VALUE;
}

CUresult cuEventRecord(CUevent event, CUstream stream) {
  if ((uintptr_t)stream == 0xbad) return INVALID_HANDLE;
  event->reached_ns = now_ns() + env_long("FAKE_CUDA_DELAY_US", 20000) * 1000;
  return SUCCESS;
}

CUresult cuEventElapsedTime(float *ms, CUevent start, CUevent end) {
  *ms = (float)((end->reached_ns - start->reached_ns) / 1e6);
  return SUCCESS;
}

CUresult cuEventSynchronize(CUevent event) {
  (void)event;
  return SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent event) {
  free(event);
  return SUCCESS;
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
  static long calls = 0;
  struct call *c = malloc(sizeof *c);
  const long every = env_long("FAKE_CUDA_LATE_EVERY", 0);
  c->fn = fn;
  c->user = user;
  c->delay_us = env_long("FAKE_CUDA_DELAY_US", 20000);
  if (every > 0 && ++calls % every == 0) c->delay_us += env_long("FAKE_CUDA_LATE_US", 0);
  pthread_t thread;
  if (pthread_create(&thread, NULL, run_later, c) != 0) { free(c); return INVALID_VALUE; }
  pthread_detach(thread);
  return SUCCESS;
}

/* ---- devices and CUDA_VISIBLE_DEVICES ---- */
#define MAX_DEVICES 16
typedef struct { unsigned char bytes[16]; } CUuuid;
static char visible[MAX_DEVICES][96];
static int nvisible;

static const char *bare(const char *u) { return strncasecmp(u, "GPU-", 4) == 0 ? u + 4 : u; }

static void refresh_devices(void) {
  char all[MAX_DEVICES][96]; int nall = 0;
  const char *list = getenv("FAKE_CUDA_DEVICES");
  if (!list || !*list) list = "GPU-00000000-fa4e-4000-8000-00000000fa4e";
  for (const char *p = list; *p && nall < MAX_DEVICES;) {
    size_t n = strcspn(p, ",");
    snprintf(all[nall++], sizeof all[0], "%.*s", (int)n, p);
    p += n; if (*p == ',') p++;
  }
  const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
  nvisible = 0;
  if (!cvd) { for (int i = 0; i < nall; i++) strcpy(visible[nvisible++], all[i]); return; }
  for (const char *p = cvd; *p && nvisible < MAX_DEVICES;) {
    char entry[96]; size_t n = strcspn(p, ",");
    snprintf(entry, sizeof entry, "%.*s", (int)n, p);
    p += n; if (*p == ',') p++;
    char *e = entry; while (isspace((unsigned char)*e)) e++;
    int found = -1;
    if (*e && strspn(e, "0123456789") == strlen(e)) {
      found = atoi(e) < nall ? atoi(e) : -1;
    } else if (strncmp(e, "MIG-", 4) == 0) {
      strcpy(visible[nvisible++], e); continue;
    } else if (*e) {
      const char *want = bare(e);
      for (int i = 0; i < nall; i++)
        if (strncasecmp(bare(all[i]), want, strlen(want)) == 0) { if (found >= 0) { found = -1; break; } found = i; }
    }
    if (found < 0) return; /* the real driver ignores the rest of the list */
    strcpy(visible[nvisible++], all[found]);
  }
}

CUresult cuDeviceGetCount(int *count) {
  refresh_devices();
  *count = nvisible;
  return SUCCESS;
}

CUresult cuDeviceGet(int *device, int ordinal) {
  if (ordinal < 0 || ordinal >= nvisible) return INVALID_VALUE;
  *device = ordinal;
  return SUCCESS;
}

CUresult cuDeviceGetUuid(CUuuid *uuid, int device) {
  if (device < 0 || device >= nvisible) return INVALID_VALUE;
  const char *p = visible[device] + 4; /* past "GPU-" or "MIG-" */
  int k = 0;
  for (; *p && k < 32; p++) {
    if (!isxdigit((unsigned char)*p)) continue;
    unsigned v; char digit[2] = { *p, 0 }; sscanf(digit, "%x", &v);
    if (k % 2 == 0) uuid->bytes[k / 2] = (unsigned char)(v << 4); else uuid->bytes[k / 2] |= (unsigned char)v;
    k++;
  }
  return k == 32 ? SUCCESS : INVALID_VALUE;
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, int device) { return cuDeviceGetUuid(uuid, device); }
