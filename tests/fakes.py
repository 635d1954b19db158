"""Test doubles shared by the test suite: a scripted fake NVML and its power profiles.

The fake (tests/fake_nvml/fake_nvml.c, built as ``libnvidia-ml.so.1``) answers the NVML
calls the meter uses from a piecewise-constant power profile P(t) whose energy is known
exactly, the way a Hopper GPU reports power.

Environment interface (read by the library at the first nvmlInit, i.e. refcount 0 -> 1;
re-read after the last nvmlShutdown):

  FAKE_NVML_T0_NS             CLOCK_MONOTONIC ns (== time.monotonic_ns()) at which profile
                              time t = 0. Default: monotonic time of the process's first init.
  FAKE_NVML_PROFILE           inline profile "t0:w0,t1:w1,..." (seconds:watts, ascending t).
  FAKE_NVML_PROFILE_FILE      file with one "t_s w" pair per line ('#' comments allowed);
                              wins over FAKE_NVML_PROFILE. Default profile: steady 100 W.
  FAKE_NVML_PROFILE_<i>, FAKE_NVML_PROFILE_FILE_<i>
                              profile of device i; device i > 0 without one shares device 0's.
  FAKE_NVML_DEVICES           number of devices (default 1, max 64).
  FAKE_NVML_UPDATE_PERIOD_S   update tick U (default 0.1): instant/average/counter change only
                              at t = k*U.
  FAKE_NVML_SAMPLE_PERIOD_S   driver sample tick S (default 0.02).
  FAKE_NVML_AVERAGE_WINDOW_S  averaging window A of the "average" power (default 1.0).
  FAKE_NVML_RING              driver sample ring size R (default 120).
  FAKE_NVML_COUNTER_COST_US   busy-wait per counter read (default 0), half before the read
                              and half after.
  FAKE_NVML_SAMPLES_GAIN      factor on the driver power samples only (default 1.0): a sensor
                              error the energy counter does not share, so calibration matters.
  FAKE_NVML_UTILIZATION       inline profile "t0:pct0,t1:pct1,..." of GPU busy percent (0..100;
                              the share of time a kernel runs), piecewise constant like a power
                              profile; shared by all devices. Default: 0 % throughout.
  FAKE_NVML_UTILIZATION_PERIOD_S
                              utilization sample tick V (default 1/6 s).
  FAKE_NVML_MIG               "MIG-<uuid>=<parent index>,...": MIG instances NVML knows, found by
                              nvmlDeviceGetHandleByUUID, whose parent GPU is that device.
  FAKE_NVML_INIT_FAIL=1       nvmlInit* returns 9 (DRIVER_NOT_LOADED).
  FAKE_NVML_DISABLE           comma list of samples,instant,average,counter,utilization -> 3
                              (NOT_SUPPORTED).
  FAKE_NVML_FAIL              comma list of source:start_s:end_s -> 999 (UNKNOWN) for calls made
                              at t in [start, end); the sample ring keeps filling meanwhile.
  A malformed variable makes nvmlInit return 999 and print the reason on stderr.

Device i's UUID is fake_uuid(i) ("GPU-<i as 8 hex digits>-fa4e-4000-8000-00000000fa4e").

What each source reports, with tick = latest update tick k*U <= t (see Profile.nvml_*):
  instant  (field 186)                        round(P(tick) * 1000) mW
  average  (nvmlDeviceGetPowerUsage, f. 185)  round(E(tick - A, tick) / A * 1000) mW
  counter  (TotalEnergyConsumption, f. 83)    1e9 + floor(E(0, tick) * 1000) mJ
  samples  (nvmlDeviceGetSamples type 0)      one per tick j*S: (epoch us of T0 + j*S,
                                              round(P(j*S) * gain * 1000) mW)
  utilization (nvmlDeviceGetSamples type 1)   one per tick j*V: (epoch us of T0 + j*V,
                                              round(mean busy % over ((j-1)V, jV])), see
                                              utilization_sample_pct
"""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
import tempfile
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

FAKE_NVML_SRC = Path(__file__).resolve().parent / "fake_nvml" / "fake_nvml.c"
FAKE_CUDA_SRC = Path(__file__).resolve().parent / "fake_cuda" / "fake_cuda.c"
LIB_NAME = "libnvidia-ml.so.1"
COUNTER_BASE_MJ = 1_000_000_000
SOURCES = ("samples", "instant", "average", "counter", "utilization")  # the fake's gates
_INLINE_MAX = 4000  # longer profiles go through a file (env strings are capped at 128 KiB)


def build_fake_nvml(out_dir) -> Path:
    """Compile the fake into out_dir/libnvidia-ml.so.1 unless an up-to-date build is there.

    The cache key is the hash of the source and the compile command, stored next to the
    library; the build goes to a temporary file renamed into place, so concurrent test
    processes sharing out_dir never see a half-written library.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / LIB_NAME
    stamp = out_dir / ".fake_nvml.sha256"
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-std=c11", "-O2", "-fPIC", "-shared", "-o", None, str(FAKE_NVML_SRC), "-lm", "-lpthread"]
    key = hashlib.sha256(FAKE_NVML_SRC.read_bytes() + repr(cmd).encode()).hexdigest()
    if lib.exists() and stamp.exists() and stamp.read_text() == key:
        return lib
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        cmd[cmd.index(None)] = tmp
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    stamp.write_text(key)
    return lib


def fake_uuid(index: int) -> str:
    """The UUID the fake NVML gives device ``index`` (hex, as NVML prints real ones)."""
    return f"GPU-{index:08x}-fa4e-4000-8000-00000000fa4e"


def build_fake_cuda(out_dir) -> Path:
    """Compile the fake CUDA driver into out_dir/libcuda.so.1 (see fake_cuda.c)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "libcuda.so.1"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-O2", "-fPIC", "-shared", "-o", tmp,
                        str(FAKE_CUDA_SRC), "-lpthread"], check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def _llround(x: float) -> int:
    """C llround for x >= 0 (half away from zero); Python's round() rounds half to even."""
    f = math.floor(x)
    return int(f) + (1 if x - f >= 0.5 else 0)


def _lead(t_first: float) -> float:
    """Time of a leading 'idle' breakpoint before t_first (the first value holds before it)."""
    return 0.0 if t_first > 0 else t_first - 1.0


class Profile:
    """Piecewise-constant power profile P(t) in watts over profile seconds t.

    Breakpoint (t_i, w_i) means P = w_i on [t_i, t_{i+1}); before the first breakpoint
    the first value holds, after the last the last value holds forever. Repeated times
    are allowed (the last one wins). Integrals use prefix sums with the same floating-point
    operations as the C fake, so expected values match it bit for bit.
    """

    def __init__(self, breakpoints: Iterable[tuple[float, float]]):
        pts = [(float(t), float(w)) for t, w in breakpoints]
        if not pts:
            raise ValueError("profile needs at least one breakpoint")
        t = np.array([p[0] for p in pts], dtype=np.float64)
        w = np.array([p[1] for p in pts], dtype=np.float64)
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(w))):
            raise ValueError("profile values must be finite")
        if np.any(w < 0):
            raise ValueError("power must be >= 0")
        if np.any(np.diff(t) < 0):
            raise ValueError("breakpoint times must be ascending")
        self.t, self.w = t, w
        # cum[i] = integral from t[0] to t[i]; add.accumulate is a sequential sum, like the C loop.
        self.cum = np.concatenate([[0.0], np.add.accumulate(w[:-1] * (t[1:] - t[:-1]))])

    # ---- constructors ----
    @classmethod
    def steady(cls, w: float) -> Profile:
        return cls([(0.0, w)])

    @classmethod
    def step(cls, idle_w: float, load_w: float, t_on: float, t_off: float) -> Profile:
        if not t_off > t_on:
            raise ValueError("t_off must be after t_on")
        return cls([(_lead(t_on), idle_w), (t_on, load_w), (t_off, idle_w)])

    @classmethod
    def square(cls, low_w, high_w, period_s, duty, t_start, t_end) -> Profile:
        """low, then high for duty*period of every period from t_start until t_end, then low."""
        if not (period_s > 0 and 0 < duty < 1 and t_end > t_start):
            raise ValueError("need period > 0, 0 < duty < 1, t_end > t_start")
        pts = [(_lead(t_start), low_w)]
        n = 0
        while (a := t_start + n * period_s) < t_end:
            pts += [(a, high_w), (min(a + duty * period_s, t_end), low_w)]
            n += 1
        return cls(pts)

    @classmethod
    def bursts(cls, idle_w: float, load_w: float, starts: Sequence[float], length_s: float) -> Profile:
        starts = sorted(float(s) for s in starts)
        if not starts or length_s <= 0:
            raise ValueError("need at least one burst of positive length")
        if any(b < a + length_s for a, b in zip(starts, starts[1:])):
            raise ValueError("bursts overlap")
        pts = [(_lead(starts[0]), idle_w)]
        for s in starts:
            pts += [(s, load_w), (s + length_s, idle_w)]
        return cls(pts)

    # ---- queries ----
    @property
    def breakpoints(self) -> list[tuple[float, float]]:
        return list(zip(self.t.tolist(), self.w.tolist()))

    def __len__(self) -> int:
        return len(self.t)

    def _index(self, t: float) -> int:
        return int(np.searchsorted(self.t, t, side="right")) - 1

    def power_w(self, t: float) -> float:
        i = self._index(t)
        return float(self.w[max(i, 0)])

    def _F(self, x: float) -> float:
        """Integral from t[0] to x (negative before t[0]); same operations as prof_F in C."""
        x = float(x)
        i = self._index(x)
        if i < 0:
            return float(self.w[0] * (x - self.t[0]))
        return float(self.cum[i] + self.w[i] * (x - self.t[i]))

    def energy_j(self, t0: float, t1: float) -> float:
        """Exact integral of P over [t0, t1] in joules (negative if t1 < t0)."""
        return self._F(t1) - self._F(t0)

    # ---- what the fake reports at an update tick (mirrors fake_nvml.c) ----
    def nvml_instant_mw(self, tick_s: float) -> int:
        return _llround(self.power_w(tick_s) * 1000.0)

    def nvml_average_mw(self, tick_s: float, window_s: float = 1.0) -> int:
        return _llround((self._F(tick_s) - self._F(tick_s - window_s)) / window_s * 1000.0)

    def nvml_counter_mj(self, tick_s: float) -> int:
        return max(0, COUNTER_BASE_MJ + math.floor((self._F(tick_s) - self._F(0.0)) * 1000.0 + 1e-6))

    # ---- serialisation ----
    def to_env_value(self) -> str:
        """Inline form; repr() gives the shortest string that strtod reads back exactly."""
        return ",".join(f"{t!r}:{w!r}" for t, w in self.breakpoints)

    def write(self, path) -> Path:
        path = Path(path)
        path.write_text("".join(f"{t!r} {w!r}\n" for t, w in self.breakpoints))
        return path

    def __repr__(self) -> str:
        return f"Profile({len(self)} breakpoints)"


def utilization_sample_pct(profile: Profile, j: int, period_s: float = 1 / 6) -> int:
    """The value of utilization tick j: the busy percent of ``profile`` over ((j-1)V, jV]."""
    p_ns = _llround(period_s * 1e9)
    a, b = (j - 1) * p_ns / 1e9, j * p_ns / 1e9
    return _llround(profile.energy_j(a, b) / (b - a))


def tick_time_s(mono_ns: int, t0_ns: int, period_s: float) -> float:
    """Profile time of the latest tick of period_s at or before monotonic time mono_ns."""
    p_ns = _llround(period_s * 1e9)
    return ((mono_ns - t0_ns) // p_ns) * p_ns / 1e9


def _profile_vars(profile: Profile, lib_dir: Path, suffix: str) -> dict[str, str]:
    inline = profile.to_env_value()
    if len(inline) <= _INLINE_MAX:
        return {f"FAKE_NVML_PROFILE{suffix}": inline}
    path = lib_dir / f"profile-{hashlib.sha256(inline.encode()).hexdigest()[:16]}.txt"
    if not path.exists():  # content-addressed, so an existing file is the same profile
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        profile.write(tmp)
        os.replace(tmp, path)
    return {f"FAKE_NVML_PROFILE_FILE{suffix}": str(path)}


_OPTIONS = {
    "update_period_s": "FAKE_NVML_UPDATE_PERIOD_S",
    "sample_period_s": "FAKE_NVML_SAMPLE_PERIOD_S",
    "average_window_s": "FAKE_NVML_AVERAGE_WINDOW_S",
    "ring": "FAKE_NVML_RING",
    "counter_cost_us": "FAKE_NVML_COUNTER_COST_US",
    "devices": "FAKE_NVML_DEVICES",
    "utilization_period_s": "FAKE_NVML_UTILIZATION_PERIOD_S",
    "samples_gain": "FAKE_NVML_SAMPLES_GAIN",
}


def fake_env(lib_dir, profile: Profile | None, t0_ns: int | None, *, disable: Iterable[str] | str = (),
             fail: Iterable[tuple[str, float, float]] | str = (), init_fail: bool = False,
             device_profiles: Mapping[int, Profile] | None = None,
             utilization: Profile | None = None, **options) -> dict[str, str]:
    """Environment variables configuring the fake (see the module docstring).

    profile None -> the fake's default (steady 100 W); t0_ns None -> t = 0 at first init.
    Options: update_period_s, sample_period_s, average_window_s, ring, counter_cost_us, devices,
    utilization_period_s, samples_gain. utilization: a Profile of busy percent (inline only).
    disable: source names; fail: (source, start_s, end_s) triples; device_profiles: {i: Profile}.
    Also sets ECOMEASURE_NVML_LIBRARY (the meter's core dlopens that path) and LD_LIBRARY_PATH
    with lib_dir first, so dlopen("libnvidia-ml.so.1") and pynvml find the fake too.
    Merge into a copy of os.environ with clean_environ().
    """
    lib_dir = Path(lib_dir)
    env: dict[str, str] = {}
    if profile is not None:
        env.update(_profile_vars(profile, lib_dir, ""))
    for i, p in (device_profiles or {}).items():
        env.update(_profile_vars(p, lib_dir, f"_{int(i)}"))
    if utilization is not None:
        env["FAKE_NVML_UTILIZATION"] = utilization.to_env_value()
    if t0_ns is not None:
        env["FAKE_NVML_T0_NS"] = str(int(t0_ns))
    for key, value in options.items():
        if key not in _OPTIONS:
            raise TypeError(f"unknown fake_env option {key!r}")
        env[_OPTIONS[key]] = repr(value) if isinstance(value, float) else str(value)
    names = [disable] if isinstance(disable, str) else list(disable)
    names = [n for part in names for n in part.split(",") if n]
    if any(n not in SOURCES for n in names):
        raise ValueError(f"disable: sources are {SOURCES}")
    if names:
        env["FAKE_NVML_DISABLE"] = ",".join(names)
    if isinstance(fail, str):
        fail_str = fail
    else:
        triples = list(fail)
        if any(src not in SOURCES for src, _, _ in triples):
            raise ValueError(f"fail: sources are {SOURCES}")
        fail_str = ",".join(f"{src}:{float(a)!r}:{float(b)!r}" for src, a, b in triples)
    if fail_str:
        env["FAKE_NVML_FAIL"] = fail_str
    if init_fail:
        env["FAKE_NVML_INIT_FAIL"] = "1"
    env["ECOMEASURE_NVML_LIBRARY"] = str(lib_dir / LIB_NAME)
    old = os.environ.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = str(lib_dir) + (os.pathsep + old if old else "")
    return env


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without any inherited FAKE_NVML_* variable or CUDA_VISIBLE_DEVICES (so the
    GPUs a meter picks never depend on the host), updated with extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FAKE_NVML_") and k != "CUDA_VISIBLE_DEVICES"}
    env.update(extra or {})
    return env
