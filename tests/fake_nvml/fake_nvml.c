/*
 * fake_nvml.c - a scripted stand-in for libnvidia-ml.so.1 used as test truth.
 *
 * It exports the handful of NVML entry points the meter uses and answers them
 * from a piecewise-constant power profile P(t) whose integral is known exactly,
 * reproducing how a Hopper GPU (H100/H200) reports power:
 *
 *   - the firmware refreshes its power numbers on an update tick every U s
 *     (default 100 ms); between ticks every reader sees the same values;
 *   - field 186 (instant) = P at the latest update tick;
 *   - nvmlDeviceGetPowerUsage and field 185 (average) = mean of P over the
 *     A s (default 1 s) ending at the latest update tick;
 *   - nvmlDeviceGetTotalEnergyConsumption and field 83 (counter) = a large base
 *     plus the integral of P from t=0 to the latest update tick, in mJ;
 *   - the driver keeps its own ring of R (default 120) power samples, one every
 *     S s (default 20 ms), read with nvmlDeviceGetSamples (type 0);
 *   - and a ring of R GPU-utilization samples (type 1), one every V s (default 1/6 s),
 *     each the percent of the V s before it in which a scripted "kernel" ran.
 *
 * Nothing runs in the background: each call derives its answer from the
 * monotonic clock, so results are deterministic functions of (profile, time).
 * Build: cc -std=c11 -O2 -fPIC -shared -o libnvidia-ml.so.1 fake_nvml.c -lm -lpthread
 * The environment interface is documented in tests/fakes.py.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- NVML ABI (no headers available: values copied from nvml.h) ---- */
typedef int nvmlReturn_t;
enum { OK = 0, E_UNINIT = 1, E_INVALID = 2, E_NOT_SUPPORTED = 3, E_NOT_FOUND = 6,
       E_INSUFFICIENT_SIZE = 7, E_DRIVER_NOT_LOADED = 9, E_GPU_LOST = 15, E_UNKNOWN = 999 };
typedef union { double dVal; int siVal; unsigned int uiVal; unsigned long ulVal;
                unsigned long long ullVal; signed long long sllVal; unsigned short usVal; } nvmlValue_t;
typedef struct { unsigned long long timeStamp; nvmlValue_t sampleValue; } nvmlSample_t;
typedef struct { unsigned int fieldId; unsigned int scopeId; long long timestamp; long long latencyUsec;
                 int valueType; nvmlReturn_t nvmlReturn; nvmlValue_t value; } nvmlFieldValue_t;
enum { VT_UINT = 1, VT_ULL = 3 };
enum { FI_COUNTER = 83, FI_AVERAGE = 185, FI_INSTANT = 186 };
#define COUNTER_BASE_MJ 1000000000.0 /* real counters start far from 0 (energy since driver load) */

/* ---- the scripted profile ---- */
/* Breakpoints t[i] (s, non-decreasing) with power w[i] (W) holding on [t[i], t[i+1]).
 * Before t[0] the first value holds; after t[n-1] the last value holds forever.
 * cum[i] = integral of P from t[0] to t[i], so any integral is O(log n). */
typedef struct { double *t, *w, *cum; size_t n; } profile_t;

/* Index of the last breakpoint with t[i] <= x, or -1 if x is before t[0].
 * With repeated times the last duplicate wins (same rule as tests/fakes.py). */
static long seg_index(const profile_t *p, double x) {
    size_t lo = 0, hi = p->n;
    while (lo < hi) { size_t mid = lo + (hi - lo) / 2; if (p->t[mid] <= x) lo = mid + 1; else hi = mid; }
    return (long)lo - 1;
}
static double prof_power(const profile_t *p, double x) {
    long i = seg_index(p, x);
    return p->w[i < 0 ? 0 : i];
}
/* F(x) = integral of P from t[0] to x (negative for x < t[0]); integrals are F(b) - F(a).
 * The arithmetic is the same, operation for operation, as Profile in tests/fakes.py
 * (compiled with -std=c11, so no FMA contraction), so both sides get identical doubles. */
static double prof_F(const profile_t *p, double x) {
    long i = seg_index(p, x);
    if (i < 0) return p->w[0] * (x - p->t[0]);
    return p->cum[i] + p->w[i] * (x - p->t[i]);
}
static void prof_free(profile_t *p) { if (p) { free(p->t); free(p->w); free(p->cum); free(p); } }

static int prof_push(profile_t *p, size_t *cap, double t, double w) {
    if (!isfinite(t) || !isfinite(w) || w < 0) return -1;
    if (p->n > 0 && t < p->t[p->n - 1]) return -1; /* must be ascending */
    if (p->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        double *nt = realloc(p->t, nc * sizeof *nt); if (!nt) return -1; p->t = nt;
        double *nw = realloc(p->w, nc * sizeof *nw); if (!nw) return -1; p->w = nw;
        *cap = nc;
    }
    p->t[p->n] = t; p->w[p->n] = w; p->n++;
    return 0;
}
static profile_t *prof_finish(profile_t *p) {
    if (!p || p->n == 0 || !(p->cum = malloc(p->n * sizeof *p->cum))) { prof_free(p); return NULL; }
    p->cum[0] = 0.0;
    for (size_t i = 1; i < p->n; i++) p->cum[i] = p->cum[i - 1] + p->w[i - 1] * (p->t[i] - p->t[i - 1]);
    return p;
}
/* Inline form "t0:w0,t1:w1,...". strtod parses exactly what Python's repr() wrote. */
static profile_t *prof_parse_inline(const char *s) {
    profile_t *p = calloc(1, sizeof *p); size_t cap = 0; char *end;
    if (!p) return NULL;
    for (;;) {
        double t = strtod(s, &end); if (end == s || *end != ':') goto bad;
        s = end + 1;
        double w = strtod(s, &end); if (end == s) goto bad;
        if (prof_push(p, &cap, t, w)) goto bad;
        s = end; while (*s == ' ') s++;
        if (*s == '\0') break;
        if (*s++ != ',') goto bad;
    }
    return prof_finish(p);
bad: prof_free(p); return NULL;
}
/* File form: one "t_s w" pair per line; blank lines and '#' comments are ignored. */
static profile_t *prof_parse_file(const char *path) {
    FILE *f = fopen(path, "r"); if (!f) return NULL;
    profile_t *p = calloc(1, sizeof *p); size_t cap = 0, len = 0; char *line = NULL, *end, *s;
    if (!p) { fclose(f); return NULL; }
    while (getline(&line, &len, f) >= 0) {
        for (s = line; *s == ' ' || *s == '\t'; s++) {}
        if (*s == '#' || *s == '\n' || *s == '\r' || *s == '\0') continue;
        double t = strtod(s, &end); if (end == s) goto bad;
        s = end;
        double w = strtod(s, &end); if (end == s) goto bad;
        for (s = end; *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'; s++) {}
        if (*s != '\0' || prof_push(p, &cap, t, w)) goto bad;
    }
    free(line); fclose(f);
    return prof_finish(p);
bad: free(line); fclose(f); prof_free(p); return NULL;
}

/* ---- global state: written only under g.lock in init/shutdown, read-only while initialised ---- */
enum { SRC_SAMPLES, SRC_INSTANT, SRC_AVERAGE, SRC_COUNTER, SRC_UTILIZATION, NSRC };
static const char *const src_names[NSRC] = { "samples", "instant", "average", "counter", "utilization" };
struct fake_device { unsigned index; const profile_t *prof; };
typedef struct fake_device *nvmlDevice_t;
#define MAX_DEVICES 64
#define MAX_FAILS 32
#define MAX_MIG 8

static struct {
    pthread_mutex_t lock;
    atomic_int refcount;           /* NVML-style: every init needs a matching shutdown */
    int have_process_t0; int64_t process_t0_ns, epoch_off_ns; /* fixed at the first init of the process */
    int64_t t0_ns, update_ns, sample_ns, util_ns;
    double avg_window_s;
    double samples_gain;           /* sensor error of the driver samples only (the counter is exact) */
    profile_t *util;               /* busy percent over time, shared by every device */
    unsigned ring, ndev;
    long cost_us;
    unsigned disabled;             /* bit per SRC_* */
    int nfail; struct { int src; double a, b; } fail[MAX_FAILS];
    struct fake_device dev[MAX_DEVICES];
    int nmig; char mig_uuid[MAX_MIG][96]; struct fake_device mig[MAX_MIG]; /* mig[i].index = parent */
    profile_t *owned[MAX_DEVICES]; /* device i's own profile, NULL when it shares device 0's */
} g = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int64_t clock_ns(clockid_t c) {
    struct timespec ts; clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
static int64_t floor_div(int64_t a, int64_t b) { /* b > 0; rounds toward -inf so t < 0 works */
    int64_t q = a / b; return (a % b != 0 && a < 0) ? q - 1 : q;
}
/* Monotonic ns -> wall-clock epoch us, through the offset measured once per process. */
static unsigned long long epoch_us(int64_t mono_ns) {
    return (unsigned long long)floor_div(mono_ns + g.epoch_off_ns, 1000);
}
static double now_t(int64_t mono) { return (double)(mono - g.t0_ns) / 1e9; }
/* Latest update tick at or before mono, in profile seconds. Ticks are computed in integer ns
 * (k * U_ns) so tick 10 at U=0.1 is exactly 1.0, not 10*0.1. */
static double update_tick_t(int64_t mono) {
    return (double)(floor_div(mono - g.t0_ns, g.update_ns) * g.update_ns) / 1e9;
}
static int failing(int src, double t) {
    for (int i = 0; i < g.nfail; i++)
        if (g.fail[i].src == src && t >= g.fail[i].a && t < g.fail[i].b) return 1;
    return 0;
}
/* Common gate of every per-source call: disabled -> NOT_SUPPORTED, fault window -> UNKNOWN. */
static nvmlReturn_t gate(int src, int64_t mono) {
    if (g.disabled & (1u << src)) return E_NOT_SUPPORTED;
    return failing(src, now_t(mono)) ? E_UNKNOWN : OK;
}
static int valid_dev(nvmlDevice_t d) { return d >= g.dev && d < g.dev + g.ndev; }
static void busy_wait_us(double us) { /* spin, like the real counter read burns CPU */
    if (us <= 0) return;
    int64_t end = clock_ns(CLOCK_MONOTONIC) + (int64_t)(us * 1000.0);
    while (clock_ns(CLOCK_MONOTONIC) < end) {}
}

/* Values at the latest update tick. */
static unsigned instant_mw(const profile_t *p, int64_t mono) {
    return (unsigned)llround(prof_power(p, update_tick_t(mono)) * 1000.0);
}
static unsigned average_mw(const profile_t *p, int64_t mono) {
    double tk = update_tick_t(mono);
    return (unsigned)llround((prof_F(p, tk) - prof_F(p, tk - g.avg_window_s)) / g.avg_window_s * 1000.0);
}
static unsigned long long counter_mj(const profile_t *p, int64_t mono) {
    /* Integral from 0 to the tick (negative when the tick is before 0). The 1e-6 mJ nudge keeps
     * floating-point dust (29999.9999999 for an exact 30 J) from costing a whole mJ. */
    double mj = COUNTER_BASE_MJ + floor((prof_F(p, update_tick_t(mono)) - prof_F(p, 0.0)) * 1000.0 + 1e-6);
    return mj <= 0 ? 0ULL : (unsigned long long)mj;
}

/* ---- configuration from the environment, read at the 0 -> 1 init ---- */
static int cfg_error(const char *what, const char *val) {
    fprintf(stderr, "fake_nvml: bad %s: '%s'\n", what, val ? val : "(null)");
    return -1;
}
static int env_num(const char *name, double def, double *out) {
    const char *v = getenv(name); char *end;
    if (!v || !*v) { *out = def; return 0; }
    *out = strtod(v, &end);
    return (end == v || *end || !isfinite(*out)) ? cfg_error(name, v) : 0;
}
static int src_by_name(const char *s, size_t n) {
    for (int i = 0; i < NSRC; i++) if (strlen(src_names[i]) == n && !strncmp(s, src_names[i], n)) return i;
    return -1;
}
/* Device i's profile: FAKE_NVML_PROFILE_FILE_<i> > FAKE_NVML_PROFILE_<i>; device 0 also falls back
 * to FAKE_NVML_PROFILE_FILE > FAKE_NVML_PROFILE > steady 100 W. *none = 1: share device 0's. */
static profile_t *load_profile(unsigned i, int *none) {
    char fn[64], in[64]; const char *f, *s;
    snprintf(fn, sizeof fn, "FAKE_NVML_PROFILE_FILE_%u", i); snprintf(in, sizeof in, "FAKE_NVML_PROFILE_%u", i);
    f = getenv(fn); s = getenv(in);
    if (i == 0 && !f && !s) { f = getenv("FAKE_NVML_PROFILE_FILE"); s = getenv("FAKE_NVML_PROFILE"); }
    *none = 0;
    profile_t *p = NULL;
    if (f && *f) { if (!(p = prof_parse_file(f))) cfg_error("profile file", f); }
    else if (s && *s) { if (!(p = prof_parse_inline(s))) cfg_error("inline profile", s); }
    else if (i == 0) p = prof_parse_inline("0:100");
    else *none = 1;
    return p;
}
static void free_config(void) {
    for (unsigned i = 0; i < MAX_DEVICES; i++) { prof_free(g.owned[i]); g.owned[i] = NULL; }
    prof_free(g.util); g.util = NULL;
    g.ndev = 0;
}
static int load_config(void) {
    double u, s, a, r, c, nd, up, gain; const char *v;
    if (env_num("FAKE_NVML_UPDATE_PERIOD_S", 0.1, &u) || env_num("FAKE_NVML_SAMPLE_PERIOD_S", 0.02, &s) ||
        env_num("FAKE_NVML_AVERAGE_WINDOW_S", 1.0, &a) || env_num("FAKE_NVML_RING", 120, &r) ||
        env_num("FAKE_NVML_COUNTER_COST_US", 0, &c) || env_num("FAKE_NVML_DEVICES", 1, &nd) ||
        env_num("FAKE_NVML_UTILIZATION_PERIOD_S", 1.0 / 6.0, &up) ||
        env_num("FAKE_NVML_SAMPLES_GAIN", 1.0, &gain)) return -1;
    if (u < 1e-6 || s < 1e-6 || a <= 0 || r < 1 || r > 1e6 || c < 0 || nd < 1 || nd > MAX_DEVICES ||
        up < 1e-6 || gain <= 0)
        return cfg_error("period/window/ring/cost/devices/gain", "out of range");
    g.update_ns = llround(u * 1e9); g.sample_ns = llround(s * 1e9); g.util_ns = llround(up * 1e9);
    g.samples_gain = gain;
    v = getenv("FAKE_NVML_UTILIZATION");
    if (!(g.util = prof_parse_inline(v && *v ? v : "0:0"))) return cfg_error("FAKE_NVML_UTILIZATION", v);
    g.avg_window_s = a; g.ring = (unsigned)r; g.cost_us = (long)c; g.ndev = (unsigned)nd;

    g.t0_ns = g.process_t0_ns;
    if ((v = getenv("FAKE_NVML_T0_NS")) && *v) {
        char *end; g.t0_ns = strtoll(v, &end, 10);
        if (end == v || *end) return cfg_error("FAKE_NVML_T0_NS", v);
    }
    g.disabled = 0;
    if ((v = getenv("FAKE_NVML_DISABLE")))             /* "samples,counter" */
        for (const char *p = v; *p;) {
            size_t n = strcspn(p, ",");
            int src = src_by_name(p, n);
            if (n && src < 0) return cfg_error("FAKE_NVML_DISABLE", v);
            if (n) g.disabled |= 1u << src;
            p += n; if (*p == ',') p++;
        }
    g.nfail = 0;
    if ((v = getenv("FAKE_NVML_FAIL")))                /* "samples:1.0:4.0,counter:2:3" */
        for (const char *p = v; *p;) {
            size_t n = strcspn(p, ":");
            int src = src_by_name(p, n); char *end;
            if (src < 0 || p[n] != ':' || g.nfail == MAX_FAILS) return cfg_error("FAKE_NVML_FAIL", v);
            p += n + 1;
            double fa = strtod(p, &end); if (end == p || *end != ':') return cfg_error("FAKE_NVML_FAIL", v);
            p = end + 1;
            double fb = strtod(p, &end); if (end == p || (*end && *end != ',')) return cfg_error("FAKE_NVML_FAIL", v);
            g.fail[g.nfail].src = src; g.fail[g.nfail].a = fa; g.fail[g.nfail].b = fb; g.nfail++;
            p = *end ? end + 1 : end;
        }
    g.nmig = 0;
    if ((v = getenv("FAKE_NVML_MIG")))                 /* "MIG-<uuid>=<parent index>,..." */
        for (const char *p = v; *p;) {
            size_t n = strcspn(p, "="); char *end;
            if (p[n] != '=' || n == 0 || n >= sizeof g.mig_uuid[0] || g.nmig == MAX_MIG)
                return cfg_error("FAKE_NVML_MIG", v);
            memcpy(g.mig_uuid[g.nmig], p, n); g.mig_uuid[g.nmig][n] = '\0';
            p += n + 1;
            long parent = strtol(p, &end, 10);
            if (end == p || (*end && *end != ',') || parent < 0 || parent >= (long)g.ndev)
                return cfg_error("FAKE_NVML_MIG", v);
            g.mig[g.nmig].index = (unsigned)parent; g.mig[g.nmig].prof = NULL; g.nmig++;
            p = *end ? end + 1 : end;
        }
    for (unsigned i = 0; i < g.ndev; i++) {
        int none;
        g.owned[i] = load_profile(i, &none);
        if (!g.owned[i] && !none) return -1;
        g.dev[i].index = i;
        g.dev[i].prof = g.owned[i] ? g.owned[i] : g.owned[0];
    }
    return 0;
}

/* ---- exported API ---- */
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    const char *f = getenv("FAKE_NVML_INIT_FAIL");
    if (f && !strcmp(f, "1")) return E_DRIVER_NOT_LOADED;
    nvmlReturn_t rc = OK;
    pthread_mutex_lock(&g.lock);
    if (!g.have_process_t0) { /* default T0 and the epoch offset: first init of the process */
        g.process_t0_ns = clock_ns(CLOCK_MONOTONIC);
        g.epoch_off_ns = clock_ns(CLOCK_REALTIME) - g.process_t0_ns;
        g.have_process_t0 = 1;
    }
    if (atomic_load(&g.refcount) == 0 && load_config() != 0) { free_config(); rc = E_UNKNOWN; }
    else atomic_fetch_add(&g.refcount, 1);
    pthread_mutex_unlock(&g.lock);
    return rc;
}
EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    nvmlReturn_t rc = OK;
    pthread_mutex_lock(&g.lock);
    if (atomic_load(&g.refcount) == 0) rc = E_UNINIT;
    else if (atomic_fetch_sub(&g.refcount, 1) == 1) free_config(); /* env is re-read at next init */
    pthread_mutex_unlock(&g.lock);
    return rc;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case OK: return "Success";
    case E_UNINIT: return "Uninitialized";
    case E_INVALID: return "Invalid Argument";
    case E_NOT_SUPPORTED: return "Not Supported";
    case E_NOT_FOUND: return "Not Found";
    case E_INSUFFICIENT_SIZE: return "Insufficient Size";
    case E_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case E_GPU_LOST: return "GPU is lost";
    case E_UNKNOWN: return "Unknown Error";
    default: return "Unknown Error (fake_nvml)";
    }
}

#define REQUIRE_INIT() do { if (atomic_load(&g.refcount) == 0) return E_UNINIT; } while (0)
#define REQUIRE_DEV(d) do { REQUIRE_INIT(); if (!valid_dev(d)) return E_INVALID; } while (0)

static nvmlReturn_t put_str(char *buf, unsigned len, const char *s) {
    if (!buf) return E_INVALID;
    if (strlen(s) + 1 > len) return E_INSUFFICIENT_SIZE;
    memcpy(buf, s, strlen(s) + 1);
    return OK;
}
EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *b, unsigned len) { REQUIRE_INIT(); return put_str(b, len, "999.0-fake"); }
EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *b, unsigned len) { REQUIRE_INIT(); return put_str(b, len, "12.999.0-fake"); }

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *n) {
    REQUIRE_INIT(); if (!n) return E_INVALID; *n = g.ndev; return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned *n) { return nvmlDeviceGetCount_v2(n); }
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d) {
    REQUIRE_INIT(); if (!d || i >= g.ndev) return E_INVALID; *d = &g.dev[i]; return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned i, nvmlDevice_t *d) { return nvmlDeviceGetHandleByIndex_v2(i, d); }
EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned *i) {
    REQUIRE_DEV(d); if (!i) return E_INVALID; *i = d->index; return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *b, unsigned len) {
    REQUIRE_DEV(d); return put_str(b, len, "Fake H200 (scripted)");
}
/* Device i's UUID, in NVML's form (hex, so the fake CUDA driver can hand back the same bytes). */
static void uuid_of(unsigned i, char *u, size_t n) { snprintf(u, n, "GPU-%08x-fa4e-4000-8000-00000000fa4e", i); }
EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *b, unsigned len) {
    REQUIRE_DEV(d); char u[64]; uuid_of(d->index, u, sizeof u); return put_str(b, len, u);
}
/* GPUs by their UUID, and the MIG instances of FAKE_NVML_MIG (whose handles serve only to find
 * their parent). */
EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *d) {
    REQUIRE_INIT(); if (!uuid || !d) return E_INVALID;
    char u[64];
    for (unsigned i = 0; i < g.ndev; i++) { uuid_of(i, u, sizeof u); if (!strcmp(u, uuid)) { *d = &g.dev[i]; return OK; } }
    for (int i = 0; i < g.nmig; i++) if (!strcmp(g.mig_uuid[i], uuid)) { *d = &g.mig[i]; return OK; }
    return E_NOT_FOUND;
}
EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig, nvmlDevice_t *d) {
    REQUIRE_INIT(); if (!d || mig < g.mig || mig >= g.mig + g.nmig) return E_INVALID;
    *d = &g.dev[mig->index]; return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t d, unsigned *arch) {
    REQUIRE_DEV(d); if (!arch) return E_INVALID; *arch = 9; /* NVML_DEVICE_ARCH_HOPPER */ return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw) {
    REQUIRE_DEV(d); if (!mw) return E_INVALID;
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    nvmlReturn_t rc = gate(SRC_AVERAGE, now); if (rc) return rc;
    *mw = average_mw(d->prof, now); /* on Hopper this call returns the 1 s average, not instant */
    return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    REQUIRE_DEV(d); if (!mj) return E_INVALID;
    nvmlReturn_t rc = gate(SRC_COUNTER, clock_ns(CLOCK_MONOTONIC)); if (rc) return rc;
    /* The optional cost is split around the read so the value belongs to the middle of the call. */
    busy_wait_us(g.cost_us / 2.0);
    *mj = counter_mj(d->prof, clock_ns(CLOCK_MONOTONIC));
    busy_wait_us(g.cost_us / 2.0);
    return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t *v) {
    REQUIRE_DEV(d); if (count < 0 || (count > 0 && !v)) return E_INVALID;
    int has_counter = 0;
    for (int i = 0; i < count; i++) has_counter |= v[i].fieldId == FI_COUNTER;
    int64_t entry = clock_ns(CLOCK_MONOTONIC);
    if (has_counter) busy_wait_us(g.cost_us / 2.0);
    int64_t now = clock_ns(CLOCK_MONOTONIC); /* one instant for all entries of the call */
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *f = &v[i];
        f->timestamp = (long long)epoch_us(now); /* real NVML stamps the query time, not the update */
        f->latencyUsec = 0;
        memset(&f->value, 0, sizeof f->value);
        int src = f->fieldId == FI_INSTANT ? SRC_INSTANT : f->fieldId == FI_AVERAGE ? SRC_AVERAGE
                : f->fieldId == FI_COUNTER ? SRC_COUNTER : -1;
        if (src < 0) { f->nvmlReturn = E_NOT_SUPPORTED; continue; }
        if ((f->nvmlReturn = gate(src, entry)) != OK) continue;
        if (src == SRC_COUNTER) { f->valueType = VT_ULL; f->value.ullVal = counter_mj(d->prof, now); }
        else { f->valueType = VT_UINT;
               f->value.uiVal = src == SRC_INSTANT ? instant_mw(d->prof, now) : average_mw(d->prof, now); }
    }
    if (has_counter) busy_wait_us(g.cost_us / 2.0);
    return OK;
}

/* Driver sample rings. Power tick j is at monotonic T0 + j*S and carries P(j*S) times the gain;
 * utilization tick j is at T0 + j*V and carries the mean busy percent over ((j-1)V, jV]. Each
 * ring holds ticks j_now-R+1 .. j_now. Semantics of the real H200 (see the brief / nvml_probe.py). */
static unsigned sample_value(const struct fake_device *d, int type, int64_t j) {
    if (type == 0) return (unsigned)llround(prof_power(d->prof, (double)(j * g.sample_ns) / 1e9) * g.samples_gain * 1000.0);
    double a = (double)((j - 1) * g.util_ns) / 1e9, b = (double)(j * g.util_ns) / 1e9;
    return (unsigned)llround((prof_F(g.util, b) - prof_F(g.util, a)) / (b - a));
}
EXPORT nvmlReturn_t nvmlDeviceGetSamples(nvmlDevice_t d, int type, unsigned long long lastSeen,
                                         int *valType, unsigned *count, nvmlSample_t *out) {
    REQUIRE_DEV(d);
    if (type != 0 && type != 1) return E_NOT_SUPPORTED; /* total power and GPU utilization only */
    if (!count) return E_INVALID;
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    nvmlReturn_t rc = gate(type == 0 ? SRC_SAMPLES : SRC_UTILIZATION, now); if (rc) return rc;
    if (!out) { *count = g.ring; if (valType) *valType = VT_UINT; return OK; } /* size query */
    const int64_t period_ns = type == 0 ? g.sample_ns : g.util_ns;
    int64_t jnow = floor_div(now - g.t0_ns, period_ns);
    unsigned n = 0, cap = *count;
    for (int64_t j = jnow - (int64_t)g.ring + 1; j <= jnow; j++) { /* oldest first */
        int64_t mono = g.t0_ns + j * period_ns;
        unsigned long long ts = epoch_us(mono);
        if (ts <= lastSeen) continue;
        if (n == cap) break; /* more are newer than fit: the caller gets the oldest `cap` */
        out[n].timeStamp = ts;
        out[n].sampleValue.ullVal = 0;
        out[n].sampleValue.uiVal = sample_value(d, type, j);
        n++;
    }
    if (n == 0) {
        /* Nothing newer: NOT_FOUND, count untouched. Newer samples but cap == 0 is a choice
         * (not measured on hardware): INSUFFICIENT_SIZE. */
        if (cap == 0 && epoch_us(g.t0_ns + jnow * period_ns) > lastSeen) return E_INSUFFICIENT_SIZE;
        return E_NOT_FOUND;
    }
    *count = n;
    if (valType) *valType = VT_UINT;
    return OK;
}
