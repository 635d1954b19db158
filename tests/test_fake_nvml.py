"""Tests of the scripted fake NVML itself: it is the truth other tests measure against.

The library is driven through ctypes in this process (env vars are read at nvmlInit, so each
test sets them, inits, and shuts down) and through pynvml in a subprocess. Most checks
"time-travel" by choosing FAKE_NVML_T0_NS so that now falls anywhere in the profile; a few
watch real ticks go by. Every expected value comes from fakes.Profile, never from the fake.
"""
import ctypes
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import (COUNTER_BASE_MJ, Profile, build_fake_nvml, clean_environ,  # noqa: E402
                   fake_env, tick_time_s, utilization_sample_pct)

U_NS, S_NS = 100_000_000, 20_000_000
NOT_SUPPORTED, NOT_FOUND, UNKNOWN = 3, 6, 999


class Value(ctypes.Union):
    _fields_ = [("dVal", ctypes.c_double), ("siVal", ctypes.c_int), ("uiVal", ctypes.c_uint),
                ("ulVal", ctypes.c_ulong), ("ullVal", ctypes.c_ulonglong),
                ("sllVal", ctypes.c_longlong), ("usVal", ctypes.c_ushort)]


class Sample(ctypes.Structure):
    _fields_ = [("timeStamp", ctypes.c_ulonglong), ("sampleValue", Value)]


class Field(ctypes.Structure):
    _fields_ = [("fieldId", ctypes.c_uint), ("scopeId", ctypes.c_uint), ("timestamp", ctypes.c_longlong),
                ("latencyUsec", ctypes.c_longlong), ("valueType", ctypes.c_int),
                ("nvmlReturn", ctypes.c_int), ("value", Value)]


@pytest.fixture(scope="session")
def lib_path(tmp_path_factory):
    return build_fake_nvml(tmp_path_factory.mktemp("fake_nvml"))


class Fake:
    """The fake loaded in-process, with small wrappers returning (rc, value)."""

    def __init__(self, path):
        self.dir = path.parent
        self.lib = ctypes.CDLL(str(path))
        self.lib.nvmlErrorString.restype = ctypes.c_char_p
        self.inits = 0

    def init(self, profile=None, t0_ns=None, **kw):
        env = fake_env(self.dir, profile, t0_ns, **kw)
        env.pop("LD_LIBRARY_PATH"), env.pop("ECOMEASURE_NVML_LIBRARY")
        for k in [k for k in os.environ if k.startswith("FAKE_NVML_")]:
            del os.environ[k]
        os.environ.update(env)  # putenv: visible to getenv() inside the library
        rc = self.lib.nvmlInit_v2()
        self.inits += rc == 0
        return rc

    def shutdown_all(self):
        while self.inits:
            assert self.lib.nvmlShutdown() == 0
            self.inits -= 1
        for k in [k for k in os.environ if k.startswith("FAKE_NVML_")]:
            del os.environ[k]

    def handle(self, i=0):
        h = ctypes.c_void_p()
        assert self.lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h)) == 0
        return h

    def counter(self, h):
        v = ctypes.c_ulonglong()
        return self.lib.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(v)), v.value

    def power(self, h):
        v = ctypes.c_uint()
        return self.lib.nvmlDeviceGetPowerUsage(h, ctypes.byref(v)), v.value

    def fields(self, h, ids):
        arr = (Field * len(ids))()
        for f, i in zip(arr, ids):
            f.fieldId = i
        return self.lib.nvmlDeviceGetFieldValues(h, len(ids), arr), list(arr)

    def samples(self, h, last_seen=0, cap=200, typ=0, count_init=None):
        """Returns (rc, [(stamp, mW)], count after the call, valType)."""
        buf = (Sample * max(cap, 1))()
        n = ctypes.c_uint(cap if count_init is None else count_init)
        vt = ctypes.c_int(-1)
        rc = self.lib.nvmlDeviceGetSamples(h, typ, ctypes.c_ulonglong(last_seen), ctypes.byref(vt),
                                           ctypes.byref(n), buf)
        got = [(s.timeStamp, s.sampleValue.uiVal) for s in buf[:n.value]] if rc == 0 else []
        return rc, got, n.value, vt.value


@pytest.fixture
def fake(lib_path):
    f = Fake(lib_path)
    yield f
    f.shutdown_all()


def bracketed(fn, t0_ns, period_ns):
    """Call fn() until the call starts and ends inside one tick; return (tick index, result)."""
    for _ in range(1000):
        a = time.monotonic_ns()
        r = fn()
        b = time.monotonic_ns()
        if (a - t0_ns) // period_ns == (b - t0_ns) // period_ns:
            return (a - t0_ns) // period_ns, r
    raise AssertionError("could not fit a call inside one tick")


def wait_until_t(t0_ns, t_s):
    while (time.monotonic_ns() - t0_ns) / 1e9 < t_s:
        time.sleep(0.002)


# A profile whose value changes every 30 ms: every 100 ms tick sees a different integral.
RAMP = Profile([(-1.0 + 0.03 * i, 50.0 + (37 * i) % 613 + 0.25 * (i % 3)) for i in range(400)])


# ---------------------------------------------------------------- Profile (pure Python)

def test_profile_constructors_and_energy():
    p = Profile.step(100, 400, 2.0, 5.0)
    assert p.breakpoints == [(0.0, 100.0), (2.0, 400.0), (5.0, 100.0)]
    assert p.power_w(-3) == 100 and p.power_w(2.0) == 400 and p.power_w(4.999) == 400 and p.power_w(5) == 100
    assert p.energy_j(0, 10) == pytest.approx(100 * 7 + 400 * 3)
    assert p.energy_j(-2, 0) == pytest.approx(200) and p.energy_j(3, 1) == pytest.approx(-(100 + 400))
    assert Profile.steady(250).energy_j(-1.5, 2.5) == pytest.approx(1000)
    sq = Profile.square(100, 300, 0.5, 0.4, 1.0, 3.0)  # 4 periods: 0.2 s high each
    assert sq.energy_j(0, 5) == pytest.approx(100 * 5 + 200 * 0.8)
    assert sq.power_w(1.1) == 300 and sq.power_w(1.3) == 100 and sq.power_w(2.9) == 100
    b = Profile.bursts(60, 700, [1.0, 3.0, 4.5], 0.25)
    assert b.energy_j(0, 6) == pytest.approx(60 * 6 + 640 * 0.75)
    for bad in ([], [(1, 5), (0, 5)], [(0, -1)], [(0, math.nan)]):
        with pytest.raises(ValueError):
            Profile(bad)


def test_profile_serialisation_roundtrip(tmp_path):
    p = Profile([(-0.1, 1 / 3), (0.1 + 0.2, 123.456789012345), (7, 0)])
    back = Profile([tuple(map(float, kv.split(":"))) for kv in p.to_env_value().split(",")])
    assert back.breakpoints == p.breakpoints
    lines = p.write(tmp_path / "p.txt").read_text().splitlines()
    assert Profile([tuple(map(float, ln.split())) for ln in lines]).breakpoints == p.breakpoints


# ---------------------------------------------------------------- library basics

def test_build_is_cached(tmp_path):
    lib = build_fake_nvml(tmp_path)
    assert lib.name == "libnvidia-ml.so.1"
    mtime = lib.stat().st_mtime_ns
    assert build_fake_nvml(tmp_path) == lib and lib.stat().st_mtime_ns == mtime


def test_uninitialised_and_refcount(fake):
    L = fake.lib
    n = ctypes.c_uint()
    assert L.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 1
    assert L.nvmlShutdown() == 1
    assert fake.init() == 0 and L.nvmlInitWithFlags(0) == 0
    assert L.nvmlShutdown() == 0  # one reference left
    assert L.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0 and n.value == 1
    assert L.nvmlShutdown() == 0
    fake.inits = 0
    assert L.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 1 and L.nvmlShutdown() == 1
    assert L.nvmlErrorString(999) == b"Unknown Error"


def test_identity_and_strings(fake):
    L = fake.lib
    assert fake.init(devices=2) == 0
    buf = ctypes.create_string_buffer(96)
    assert L.nvmlSystemGetDriverVersion(buf, 96) == 0 and buf.value == b"999.0-fake"
    assert L.nvmlSystemGetNVMLVersion(buf, 96) == 0
    h1 = fake.handle(1)
    assert L.nvmlDeviceGetName(h1, buf, 96) == 0 and buf.value == b"Fake H200 (scripted)"
    assert L.nvmlDeviceGetUUID(h1, buf, 96) == 0 and buf.value == b"GPU-00000001-fa4e-4000-8000-00000000fa4e"
    assert L.nvmlDeviceGetName(h1, buf, 5) == 7  # INSUFFICIENT_SIZE
    u = ctypes.c_uint()
    assert L.nvmlDeviceGetArchitecture(h1, ctypes.byref(u)) == 0 and u.value == 9
    assert L.nvmlDeviceGetIndex(h1, ctypes.byref(u)) == 0 and u.value == 1
    h = ctypes.c_void_p()
    assert L.nvmlDeviceGetHandleByIndex_v2(2, ctypes.byref(h)) == 2
    assert L.nvmlDeviceGetIndex(ctypes.c_void_p(16), ctypes.byref(u)) == 2  # not a handle


def test_bad_config_fails_init(fake):
    os.environ["FAKE_NVML_PROFILE"] = "0:100,garbage"
    assert fake.lib.nvmlInit_v2() == UNKNOWN
    del os.environ["FAKE_NVML_PROFILE"]
    os.environ["FAKE_NVML_DISABLE"] = "counter,bogus"
    assert fake.lib.nvmlInit_v2() == UNKNOWN
    os.environ["FAKE_NVML_DISABLE"] = ""
    os.environ["FAKE_NVML_PROFILE"] = "1:5,0:5"  # descending
    assert fake.lib.nvmlInit_v2() == UNKNOWN


def test_init_fail(fake):
    assert fake.init(init_fail=True) == 9
    assert fake.lib.nvmlInitWithFlags(0) == 9
    assert fake.counter(ctypes.c_void_p(1))[0] == 1  # still uninitialised


# ---------------------------------------------------------------- power and energy values

def read_all(fake, h):
    rc_c, c = fake.counter(h)
    rc_p, p = fake.power(h)
    rc_f, fv = fake.fields(h, [83, 185, 186])
    assert (rc_c, rc_p, rc_f) == (0, 0, 0) and [f.nvmlReturn for f in fv] == [0, 0, 0]
    return c, p, fv[0].value.ullVal, fv[1].value.uiVal, fv[2].value.uiVal


def check_values_at(fake, profile, offset_s, window=1.0):
    """Init with now at profile time ~offset_s and check every source against the profile."""
    t0 = time.monotonic_ns() - int(offset_s * 1e9)
    assert fake.init(profile, t0, average_window_s=window) == 0
    h = fake.handle()
    k, (c, p, c83, p185, p186) = bracketed(lambda: read_all(fake, h), t0, U_NS)
    tick = k * U_NS / 1e9
    assert c == c83 == profile.nvml_counter_mj(tick)
    assert p == p185 == profile.nvml_average_mw(tick, window)
    assert p186 == profile.nvml_instant_mw(tick)
    fake.shutdown_all()
    return tick, c


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(st.floats(-3, 6, allow_nan=False), min_size=1, max_size=40),
       watts=st.lists(st.floats(0, 1000, allow_nan=False), min_size=40, max_size=40),
       offset=st.floats(-2.5, 7.0), window=st.sampled_from([1.0, 0.5, 0.3]))
def test_values_match_profile_anywhere(fake, times, watts, offset, window):
    profile = Profile(zip(sorted(times), watts))
    check_values_at(fake, profile, offset, window)


def test_counter_exact_on_known_numbers(fake):
    # 100 W until 2 s, 400 W until 5 s: at t in [5.3, 5.4) the counter holds tick 5.3.
    p = Profile.step(100, 400, 2.0, 5.0)
    tick, c = check_values_at(fake, p, 5.35)
    assert tick == pytest.approx(5.3) and c == COUNTER_BASE_MJ + 200_000 + 1_200_000 + 30_000
    tick, c = check_values_at(fake, p, -0.65)  # before t=0: integral from 0 back to -0.7 s
    assert tick == pytest.approx(-0.7) and c == COUNTER_BASE_MJ - 70_000
    tick, _ = check_values_at(fake, Profile.steady(321.5), 3.0)


def test_live_ticks_counter_increments_and_average(fake):
    """Watch ~6 real update ticks: values change only at ticks, by the exact integral."""
    t0 = time.monotonic_ns() - 2_050_000_000
    assert fake.init(RAMP, t0) == 0
    h = fake.handle()
    seen = {}
    end = time.monotonic_ns() + 650_000_000
    while time.monotonic_ns() < end:
        k, vals = bracketed(lambda: read_all(fake, h), t0, U_NS)
        assert seen.setdefault(k, vals) == vals  # constant within a tick
        time.sleep(0.003)
    ks = sorted(seen)
    assert len(ks) >= 6 and ks == list(range(ks[0], ks[-1] + 1))
    for a, b in zip(ks, ks[1:]):
        ta, tb = a * U_NS / 1e9, b * U_NS / 1e9
        inc = seen[b][0] - seen[a][0]
        assert abs(inc - RAMP.energy_j(ta, tb) * 1000) < 1.0
        assert abs(seen[b][1] - RAMP.energy_j(tb - 1.0, tb) * 1000) <= 0.5  # 1 s mean, mW
        assert seen[b][4] == RAMP.power_w(tb) * 1000


def test_many_breakpoints_via_file_and_devices(fake, lib_path):
    big = Profile([(0.001 * i, 100 + (i * 7919) % 500) for i in range(-2000, 200_000)])
    other = Profile.steady(42.0)
    env = fake_env(lib_path.parent, big, 0, device_profiles={1: other})
    assert "FAKE_NVML_PROFILE_FILE" in env and env["FAKE_NVML_PROFILE_1"] == "0.0:42.0"
    t0 = time.monotonic_ns() - 150_000_000_000
    assert fake.init(big, t0, devices=3, device_profiles={1: other}) == 0
    for dev, prof in [(0, big), (1, other), (2, big)]:
        h = fake.handle(dev)
        k, (c, p, _, _, i) = bracketed(lambda h=h: read_all(fake, h), t0, U_NS)
        tick = k * U_NS / 1e9
        assert (c, p, i) == (prof.nvml_counter_mj(tick), prof.nvml_average_mw(tick), prof.nvml_instant_mw(tick))


def test_fields_details(fake):
    assert fake.init(Profile.steady(250)) == 0
    h = fake.handle()
    before = time.time_ns() // 1000
    rc, fv = fake.fields(h, [186, 1, 83, 185])
    after = time.time_ns() // 1000
    assert rc == 0
    assert [f.nvmlReturn for f in fv] == [0, NOT_SUPPORTED, 0, 0]
    assert [f.valueType for f in (fv[0], fv[2], fv[3])] == [1, 3, 1]
    assert fv[0].value.uiVal == fv[3].value.uiVal == 250_000
    for f in fv:  # query time in epoch us (offset measured once, so allow a little drift)
        assert f.latencyUsec == 0 and before - 2000 <= f.timestamp <= after + 2000
    assert fake.fields(h, [])[0] == 0


def test_counter_cost(fake):
    assert fake.init(counter_cost_us=3000) == 0
    h = fake.handle()
    a = time.perf_counter()
    fake.counter(h)
    fake.fields(h, [83])
    assert time.perf_counter() - a >= 0.006
    a = time.perf_counter()
    fake.fields(h, [186, 185])
    fake.power(h)
    assert time.perf_counter() - a < 0.005  # the cost is charged to counter reads only


# ---------------------------------------------------------------- driver sample ring

def test_samples_semantics(fake):
    sp = Profile([(-4.0 + 0.01 * i, 30.0 + (13 * i) % 701) for i in range(1000)])
    t0 = time.monotonic_ns() - 3_000_000_000
    assert fake.init(sp, t0) == 0
    h = fake.handle()
    n, vt = ctypes.c_uint(0), ctypes.c_int(-1)
    for last in (0, 2**64 - 1):  # size query: ring size whatever lastSeen
        assert fake.lib.nvmlDeviceGetSamples(h, 0, ctypes.c_ulonglong(last), ctypes.byref(vt),
                                             ctypes.byref(n), None) == 0 and n.value == 120
    assert fake.samples(h, typ=2)[0] == NOT_SUPPORTED

    j, (rc, got, count, vt) = bracketed(lambda: fake.samples(h, 0, 200), t0, S_NS)
    assert rc == 0 and vt == 1 and count == len(got) == 120
    stamps = [s for s, _ in got]
    assert all(b - a == 20_000 for a, b in zip(stamps, stamps[1:]))  # oldest first, 20 ms apart
    ticks = range(j - 119, j + 1)
    assert [v for _, v in got] == [round(sp.power_w(jj * S_NS / 1e9) * 1000) for jj in ticks]
    offset_ns = time.time_ns() - time.monotonic_ns()
    assert abs(stamps[-1] - (t0 + j * S_NS + offset_ns) / 1000) < 2000

    rc, part, count, _ = fake.samples(h, stamps[50], cap=5)
    assert rc == 0 and count == 5 and part == got[51:56]  # oldest 5 newer than lastSeen

    def newest_then_again():
        rc, g, _, _ = fake.samples(h, 0, 200)
        return g[-1][0], fake.samples(h, g[-1][0], cap=200, count_init=77)
    _, (last, (rc, _, count, _)) = bracketed(newest_then_again, t0, S_NS)
    assert rc == NOT_FOUND and count == 77  # nothing newer: count untouched


def test_utilization_samples_are_the_busy_percent_of_the_period_before_each(fake):
    busy = Profile([(-30.0, 0.0)] + [(-3.0 + 0.07 * i, float((41 * i) % 101)) for i in range(100)])
    t0 = time.monotonic_ns() - 2_000_000_000
    v_ns = 166_666_667
    assert fake.init(Profile.steady(100.0), t0, utilization=busy) == 0
    h = fake.handle()
    j, (rc, got, count, vt) = bracketed(lambda: fake.samples(h, 0, 200, typ=1), t0, v_ns)
    assert rc == 0 and vt == 1 and count == len(got) == 120
    stamps = [s for s, _ in got]
    assert all(b - a in (166_666, 166_667) for a, b in zip(stamps, stamps[1:]))
    expected = [utilization_sample_pct(busy, jj) for jj in range(j - 119, j + 1)]
    assert [v for _, v in got] == expected and len(set(expected)) > 20
    # The value is the mean over the period before the stamp, not the profile at the stamp.
    assert expected != [round(busy.power_w(jj * v_ns / 1e9)) for jj in range(j - 119, j + 1)]
    fake.shutdown_all()
    assert fake.init(disable="utilization") == 0
    assert fake.samples(fake.handle(), typ=1)[0] == NOT_SUPPORTED
    assert fake.samples(fake.handle(), typ=0)[0] == 0


def test_samples_gain_scales_the_driver_samples_only(fake):
    t0 = time.monotonic_ns() - 3_000_000_000
    assert fake.init(Profile.steady(200.0), t0, samples_gain=1.1) == 0
    h = fake.handle()
    rc, got, _, _ = fake.samples(h, 0, 200)
    assert rc == 0 and {v for _, v in got} == {220_000}
    assert fake.power(h) == (0, 200_000)
    k, (rc, mj) = bracketed(lambda: fake.counter(h), t0, U_NS)
    assert mj == COUNTER_BASE_MJ + k * U_NS // 1_000_000 * 200


def check_ring_read(got, last, ring):
    """A read from lastSeen=last after m new ticks: min(m, ring) contiguous samples, ending at the
    newest tick; returns (m, lost)."""
    m = (got[-1][0] - last) // 20_000
    assert len(got) == min(m, ring)
    assert [s for s, _ in got] == [got[-1][0] - 20_000 * i for i in range(len(got) - 1, -1, -1)]
    return m, m - len(got)


def test_ring_keeps_up_then_loses_old_samples(fake):
    t0 = time.monotonic_ns()
    assert fake.init(RAMP, t0, ring=10) == 0
    h = fake.handle()
    rc, got, _, _ = fake.samples(h, 0)
    assert rc == 0 and len(got) == 10
    time.sleep(0.1)  # ~5 new ticks fit in a ring of 10: a contiguous continuation
    last = got[-1][0]
    rc, got, _, _ = fake.samples(h, last)
    m, lost = check_ring_read(got, last, 10)
    assert rc == 0 and m >= 4
    if m <= 10:
        assert lost == 0 and got[0][0] == last + 20_000
    last = got[-1][0]
    time.sleep(0.32)  # >= 16 ticks into a ring of 10: the oldest are gone
    rc, got, _, _ = fake.samples(h, last)
    m, lost = check_ring_read(got, last, 10)
    assert rc == 0 and m >= 16 and lost == m - 10 >= 6


def test_samples_before_t0(fake):
    """Sample ticks at negative t carry the profile's first value region too."""
    sp = Profile([(-3.0 + 0.01 * i, 30.0 + (13 * i) % 701) for i in range(400)])
    t0 = time.monotonic_ns() + 1_000_000_000  # now is t = -1 s
    assert fake.init(sp, t0) == 0
    h = fake.handle()
    j, (rc, got, _, _) = bracketed(lambda: fake.samples(h, 0, 200), t0, S_NS)
    assert rc == 0 and len(got) == 120 and j - 119 < -150  # reaches before the first breakpoint
    assert [v for _, v in got] == [round(sp.power_w(jj * S_NS / 1e9) * 1000) for jj in range(j - 119, j + 1)]


# ---------------------------------------------------------------- faults

def test_disable(fake):
    assert fake.init(disable=["samples", "instant", "average", "counter"]) == 0
    h = fake.handle()
    assert fake.counter(h)[0] == fake.power(h)[0] == fake.samples(h)[0] == NOT_SUPPORTED
    rc, fv = fake.fields(h, [83, 185, 186])
    assert rc == 0 and [f.nvmlReturn for f in fv] == [NOT_SUPPORTED] * 3
    fake.shutdown_all()
    assert fake.init(disable="counter") == 0
    h = fake.handle()
    rc, fv = fake.fields(h, [83, 185, 186])
    assert [f.nvmlReturn for f in fv] == [NOT_SUPPORTED, 0, 0] and fake.power(h) == (0, 100_000)


def test_fail_windows(fake):
    t0 = time.monotonic_ns() - 100_000_000
    assert fake.init(RAMP, t0, ring=10, fail=[("samples", 0.25, 0.55), ("counter", 0.0, 0.45)]) == 0
    h = fake.handle()
    assert fake.counter(h)[0] == UNKNOWN
    assert [f.nvmlReturn for f in fake.fields(h, [83, 186])[1]] == [UNKNOWN, 0]
    rc, got, _, _ = fake.samples(h, 0)
    assert rc == 0
    last = got[-1][0]
    wait_until_t(t0, 0.27)
    assert fake.samples(h, last)[0] == UNKNOWN and fake.power(h)[0] == 0
    wait_until_t(t0, 0.57)
    assert fake.counter(h)[0] == 0
    rc, got, _, _ = fake.samples(h, last)  # the ring kept filling while reads failed
    m, lost = check_ring_read(got, last, 10)
    assert rc == 0 and m >= 22 and lost == m - 10


# ---------------------------------------------------------------- pynvml in a subprocess

def test_pynvml_loads_the_fake(lib_path):
    t0 = time.monotonic_ns() - 10_000_000_000
    p = Profile.step(80, 560, 2.0, 12.0)
    script = textwrap.dedent("""
        import json, time, pynvml as N
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        a = time.monotonic_ns()
        out = dict(name=N.nvmlDeviceGetName(h), uuid=N.nvmlDeviceGetUUID(h), arch=N.nvmlDeviceGetArchitecture(h),
                   driver=N.nvmlSystemGetDriverVersion(), count=N.nvmlDeviceGetCount(),
                   power=N.nvmlDeviceGetPowerUsage(h), energy=N.nvmlDeviceGetTotalEnergyConsumption(h),
                   fields=[(f.nvmlReturn, f.value.uiVal if f.fieldId != 83 else f.value.ullVal)
                           for f in N.nvmlDeviceGetFieldValues(h, [186, 185, 83])])
        vt, s = N.nvmlDeviceGetSamples(h, N.NVML_TOTAL_POWER_SAMPLES, 0)
        out.update(a=a, b=time.monotonic_ns(), vt=vt, n=len(s), last=s[-1].sampleValue.uiVal)
        try:
            N.nvmlDeviceGetSamples(h, N.NVML_TOTAL_POWER_SAMPLES, 2**64 - 1)
        except N.NVMLError as e:
            out["err"] = e.value
        N.nvmlShutdown()
        print(json.dumps(out))
    """)
    env = clean_environ(fake_env(lib_path.parent, p, t0))
    for _ in range(3):  # retry if the reads straddled an update tick
        r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        if (out["a"] - t0) // U_NS == (out["b"] - t0) // U_NS:
            break
    tick = tick_time_s(out["a"], t0, 0.1)
    assert out["name"] == "Fake H200 (scripted)" and out["uuid"] == "GPU-00000000-fa4e-4000-8000-00000000fa4e"
    assert (out["arch"], out["driver"], out["count"]) == (9, "999.0-fake", 1)
    assert out["power"] == p.nvml_average_mw(tick) and out["energy"] == p.nvml_counter_mj(tick)
    assert out["power"] == 560_000
    assert out["fields"] == [[0, 560_000], [0, out["power"]], [0, out["energy"]]]
    assert (out["vt"], out["n"], out["last"], out["err"]) == (1, 120, 560_000, NOT_FOUND)
