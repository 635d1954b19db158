"""The native meter against the fake NVML, whose scripted profile has an exact energy."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ecomeasure
from ecomeasure import DeviceSelectionError, Meter, NVMLUnavailableError, load_traces
from conftest import SHIFT, patched_environ, record
from fakes import Profile, clean_environ, fake_env, utilization_sample_pct

# Windows of at least 1 s over every shape of the rich profile (profile seconds).
LONG_WINDOWS = [(0.2, 1.2), (1.51, 3.51), (1.0, 3.0), (1.2, 2.2), (0.9, 4.0), (4.51, 6.51),
                (4.55, 5.75), (6.8, 8.5), (0.5, 8.8)]
# Windows of a slow step (idle, 2.5 s of load from 2.51 s, idle) whose edges lie in steady
# stretches between counter reads at the same power: the counter, read every second, is
# exact there.
SLOW_STEP = Profile.step(120.0, 690.0, 2.51, 5.01)
STEADY_EDGE_WINDOWS = [(0.0, 1.9), (3.0, 4.9), (0.5, 6.5), (1.0, 6.9)]


@pytest.fixture(scope="module")
def slow_step_recording(fake_nvml_dir):
    return record(fake_nvml_dir, SLOW_STEP, 7.4)


def relative_error(measured: float, truth: float) -> float:
    return abs(measured - truth) / truth


@pytest.mark.parametrize("a,b", LONG_WINDOWS)
def test_headline_and_driver_samples_within_1pct_for_windows_of_1s_and_longer(rich_recording, a, b):
    m, truth = rich_recording.window(a, b)
    assert m.method == "calibrated"
    assert m.complete
    assert relative_error(m.energy_j, truth) < 0.01
    assert relative_error(m.source_energy_j("samples"), truth) < 0.01


def test_calibration_removes_a_sensor_gain_the_counter_does_not_share(fake_nvml_dir):
    # The driver samples read 10 % high; the counter is exact. The headline scales the samples
    # to the counter, so it must land on the truth while the raw samples keep the gain.
    profile = Profile.step(150.0, 600.0, 1.51, 3.01)
    rec = record(fake_nvml_dir, profile, 4.3, meter_kwargs={"calibration_min_span_s": 2.0},
                 samples_gain=1.1)
    for a, b in [(0.5, 4.0), (1.2, 2.4), (3.1, 4.1)]:
        m, truth = rec.window(a, b)
        assert m.method == "calibrated"
        assert m.devices[0].calibration == pytest.approx(1 / 1.1, rel=0.01)
        assert relative_error(m.energy_j, truth) < 0.01, (a, b)
        assert relative_error(m.source_energy_j("samples"), 1.1 * truth) < 0.01


@pytest.mark.parametrize("a,b", STEADY_EDGE_WINDOWS)
def test_counter_within_1pct_where_window_edges_are_steady(slow_step_recording, a, b):
    m, truth = slow_step_recording.window(a, b)
    assert relative_error(m.source_energy_j("counter"), truth) < 0.01
    assert relative_error(m.energy_j, truth) < 0.01


def test_counter_error_is_bounded_by_its_staleness(slow_step_recording):
    # A counter value is up to one update period (100 ms) old when read; the meter stamps it
    # 50 ms back, so each edge whose reads lie in one steady stretch may be off by up to
    # 50 ms of that edge's power.
    for a, b in [(0.3, 3.5), (1.5, 4.5), (3.2, 6.6)]:
        m, truth = slow_step_recording.window(a, b)
        p0, p1 = SLOW_STEP.power_w(a), SLOW_STEP.power_w(b)
        assert abs(m.source_energy_j("counter") - truth) <= (p0 + p1) * 0.05 + 1.0


def test_headline_tracks_short_bursts(rich_recording):
    for a, b, tolerance in [(7.3, 7.54, 0.05), (7.8, 8.3, 0.03), (7.0, 7.06, 0.10)]:
        m, truth = rich_recording.window(a + SHIFT, b + SHIFT)
        assert relative_error(m.energy_j, truth) < tolerance, (a, b, m.energy_j, truth)


def test_average_power_lags_a_2s_burst_like_hopper(rich_recording):
    m, truth = rich_recording.window(1.5 + SHIFT, 3.5 + SHIFT)
    average = m.source_energy_j("average")
    # The 1 s moving average ramps up for a second: well over 10 % short.
    assert average < 0.9 * truth
    assert relative_error(m.source_energy_j("instant"), truth) < 0.03


def test_a_power_change_on_a_sample_tick_costs_at_most_half_a_sample_period(fake_nvml_dir):
    # Instantaneous samples 20 ms apart cannot place a change more precisely than that:
    # the trapezoid's error for one change is at most |dP| * 10 ms.
    profile = Profile.step(120.0, 690.0, 1.0, 9.0)  # 1.0 s is a sample tick
    rec = record(fake_nvml_dir, profile, 1.8)
    m, truth = rec.window(0.5, 1.5)
    assert abs(m.source_energy_j("samples") - truth) <= 570.0 * 0.010 + 0.01
    assert abs(m.source_energy_j("samples") - truth) > 0


def test_window_shorter_than_every_update_period_is_not_zero(rich_recording):
    m, truth = rich_recording.window(2.005, 2.008)  # between two 20 ms sample ticks
    assert truth == pytest.approx(690 * 0.003)
    for source in ecomeasure.SOURCES:
        if source != "average":  # still ramping up at 2.0 s
            assert m.source_energy_j(source) == pytest.approx(truth, rel=0.02), source
    assert m.energy_j == pytest.approx(truth, rel=0.02)
    assert m.devices[0].sources["samples"].samples == 0


def test_energy_is_additive_over_adjacent_windows(rich_recording):
    meter, t0 = rich_recording.meter, rich_recording.t0_s
    whole = meter.measure(t0 + 1.0, t0 + 6.0)
    first, second = meter.measure(t0 + 1.0, t0 + 3.7), meter.measure(t0 + 3.7, t0 + 6.0)
    for source in ecomeasure.SOURCES:
        assert first.source_energy_j(source) + second.source_energy_j(source) == pytest.approx(
            whole.source_energy_j(source), rel=1e-9)
    assert first.energy_j + second.energy_j == pytest.approx(whole.energy_j, rel=1e-9)


def test_measurement_reports_time_power_and_counts(rich_recording):
    m, truth = rich_recording.window(1.5 + SHIFT, 3.5 + SHIFT, "burst")
    assert m.name == "burst"
    assert m.duration_s == pytest.approx(2.0, abs=1e-6)
    assert m.power_w == pytest.approx(truth / 2.0, rel=0.01)
    samples = m.devices[0].sources["samples"]
    assert 95 <= samples.samples <= 101  # a sample every 20 ms
    assert samples.power_w == pytest.approx(samples.energy_j / 2.0)
    assert m.to_dict()["energy_j"] == m.energy_j


def test_window_past_the_recording_is_flagged_incomplete(rich_recording):
    m, _ = rich_recording.window(8.0, 60.0)
    assert not m.complete
    assert not m.devices[0].sources["samples"].complete


def test_traces_are_sorted_and_keep_only_changes(rich_recording):
    meter = rich_recording.meter
    for source in ecomeasure.SOURCES:
        t, v = meter.trace(source)
        assert len(t) == len(v) > 5
        assert np.all(np.diff(t) >= 0)
    t, v = meter.trace("samples")
    assert np.median(np.diff(t)) == pytest.approx(0.02, abs=1e-4)
    t, v = meter.trace("instant")
    # ~10 updates a second of a 5 ms poll: only changes and a 100 ms keepalive are kept.
    assert len(t) < 15 * 9.5
    t, v = meter.trace("counter")
    assert v[0] == 0 and np.all(np.diff(v) >= 0)


def test_capabilities_report_sources_and_update_periods(rich_recording):
    caps = rich_recording.meter.capabilities()[0]
    assert all(caps[s]["available"] for s in ecomeasure.SOURCES)
    assert caps["samples"]["update_period_s"] == pytest.approx(0.02, rel=0.05)
    # The fake's flat stretches hide updates, so only a lower bound holds here.
    assert 0.09 < caps["instant"]["update_period_s"] < 1.0
    assert caps["samples"]["gaps"] == []
    assert all(caps[s]["errors"] == 0 for s in ecomeasure.SOURCES)
    device = rich_recording.meter.devices[0]
    assert device.architecture == "Hopper" and device.uuid.startswith("GPU-")


def test_save_and_load_give_the_same_measurements(rich_recording, tmp_path):
    meter, t0 = rich_recording.meter, rich_recording.t0_s
    saved = load_traces(meter.save(tmp_path / "traces.npz"))
    for a, b in [(1.51, 3.51), (7.31, 7.55), (0.5, 8.8)]:
        live, loaded = meter.measure(t0 + a, t0 + b), saved.measure(t0 + a, t0 + b)
        assert loaded.energy_j == pytest.approx(live.energy_j, rel=1e-12)
        assert loaded.method == live.method
        for s in ecomeasure.SOURCES:
            assert loaded.source_energy_j(s) == pytest.approx(live.source_energy_j(s), rel=1e-12)
    t_live, v_live = meter.trace("samples")
    t_saved, v_saved = saved.trace("samples")
    np.testing.assert_array_equal(v_live, v_saved)
    assert saved.report["driver_version"] == meter.driver_version


def test_lost_driver_samples_are_flagged_and_the_run_goes_on(fake_nvml_dir):
    # The driver buffer fails for 3 s; its 120-sample ring holds 2.4 s, so ~0.6 s is lost.
    rec = record(fake_nvml_dir, Profile.steady(200.0), 4.3, fail=[("samples", 0.5, 3.5)])
    caps = rec.meter.capabilities()[0]
    assert caps["samples"]["errors"] > 0 and "999" in caps["samples"]["last_error"]
    assert len(caps["samples"]["gaps"]) == 1
    gap_from, gap_to = (t / 1e9 - rec.t0_s for t in caps["samples"]["gaps"][0])
    # From the last sample drained before the failure to the oldest still in the ring after.
    assert 0.25 <= gap_from <= 0.5 and 3.5 - 2.4 <= gap_to <= 3.5 - 2.4 + 0.3
    lossy, truth = rec.window(0.2, 3.9)
    assert not lossy.devices[0].sources["samples"].complete
    assert lossy.devices[0].sources["counter"].complete
    clean, _ = rec.window(2.0, 3.9)
    assert clean.devices[0].sources["samples"].complete
    # Power was steady, so even across the gap the energy holds.
    assert relative_error(lossy.energy_j, truth) < 0.01


def test_nvml_errors_mid_run_are_counted_not_fatal(fake_nvml_dir):
    rec = record(fake_nvml_dir, Profile.steady(300.0), 1.5, fail=[("instant", 0.3, 0.8), ("counter", 0.0, 0.6)])
    caps = rec.meter.capabilities()[0]
    assert caps["instant"]["errors"] > 10 and caps["counter"]["errors"] >= 1
    m, truth = rec.window(0.9, 1.4)
    assert relative_error(m.source_energy_j("instant"), truth) < 0.01


@pytest.mark.parametrize("disabled,method", [
    ("counter", "samples"), ("counter,samples", "instant"), ("counter,samples,instant", "average"),
    ("samples", "counter"),
])
def test_falls_back_and_says_which_method(fake_nvml_dir, disabled, method):
    rec = record(fake_nvml_dir, Profile.steady(250.0), 1.8, disable=disabled)
    caps = rec.meter.capabilities()[0]
    for source in disabled.split(","):
        assert not caps[source]["available"] and "3" in caps[source]["reason"]
    m, truth = rec.window(0.2, 0.9)
    assert m.method == method
    assert relative_error(m.energy_j, truth) < 0.01


def test_all_sources_off_gives_nan_and_says_none(fake_nvml_dir):
    rec = record(fake_nvml_dir, Profile.steady(250.0), 0.3, disable="samples,instant,average,counter")
    m, _ = rec.window(0.1, 0.2)
    assert m.method == "none" and math.isnan(m.energy_j)


def test_several_devices_sum_into_the_headline(fake_nvml_dir):
    profiles = {1: Profile.steady(400.0)}
    rec = record(fake_nvml_dir, Profile.steady(100.0), 2.6, devices=2, device_profiles=profiles)
    m, truth0 = rec.window(0.2, 2.5)
    assert sorted(m.devices) == [0, 1]
    assert m.devices[1].energy_j == pytest.approx(400.0 * 2.3, rel=0.01)
    assert m.energy_j == pytest.approx(500.0 * 2.3, rel=0.01)
    assert rec.meter.trace("samples", device=1)[1][-1] == 400.0
    with pytest.raises(ValueError, match="does not read GPU 7"):
        rec.meter.trace("samples", device=7)


def test_live_windows_context_manager_begin_end_nested_and_overlapping(fake_nvml_dir):
    profile = Profile.steady(300.0)
    t0 = time.monotonic_ns()
    with patched_environ(fake_env(fake_nvml_dir, profile, t0)):
        with Meter() as meter:
            outer = meter.begin_window("outer")
            with meter.window("inner") as inner:
                time.sleep(0.3)
            overlap = meter.begin_window("overlap")
            time.sleep(0.2)
            m_outer = meter.end_window("outer")
            time.sleep(0.1)
            started = time.monotonic()
            m_overlap = meter.end_window("overlap")
            waited_s = time.monotonic() - started
            meter.begin_window("x")
            with pytest.raises(ValueError, match="already open"):
                meter.begin_window("x")
            with pytest.raises(KeyError, match="no open window"):
                meter.end_window("nope")
        meter.close()
    m_inner = inner.measurement
    assert m_inner.complete and m_outer.complete and m_overlap.complete
    for m in (m_inner, m_outer, m_overlap):
        assert m.energy_j == pytest.approx(300.0 * m.duration_s, rel=0.01)
    assert m_inner.duration_s == pytest.approx(0.3, abs=0.05)
    assert m_outer.duration_s > m_inner.duration_s
    # The thread reads everything at once for a waiting window: no wait for the next scheduled counter read.
    assert waited_s < 0.3
    assert outer.end_mark is not None and overlap.end_mark is not None


def test_start_stop_close_are_idempotent(fake_nvml_dir):
    with patched_environ(fake_env(fake_nvml_dir, Profile.steady(100.0), None)):
        meter = Meter(start=False)
        assert not meter.running
        meter.start()
        meter.start()
        assert meter.running
        meter.stop()
        meter.stop()
        assert not meter.running
        meter.start()
        time.sleep(0.05)
        meter.close()
        meter.close()
        with pytest.raises(ecomeasure.MeterError, match="closed"):
            meter.start()
    stats = meter.stats()
    assert stats["loops"] > 0 and 0 < stats["cpu_time_s"] <= stats["wall_time_s"]  # one thread


def test_bad_arguments_get_clear_errors(fake_nvml_dir):
    with patched_environ(fake_env(fake_nvml_dir, None, None)):
        with pytest.raises(DeviceSelectionError, match="no GPU with NVML index 5"):
            Meter(devices=[5])
        with pytest.raises(ValueError, match="poll_interval_s must be positive"):
            Meter(poll_interval_s=0)
        with Meter() as meter:
            with pytest.raises(ValueError, match="unknown trace 'power'"):
                meter.trace("power")
            with pytest.raises(ValueError, match="cannot end before"):
                meter.measure(2.0, 1.0)
            meter.close()


def test_no_nvml_is_a_clear_error():
    with pytest.raises(NVMLUnavailableError, match="ECOMEASURE_NVML_LIBRARY"):
        Meter(nvml_library="/nonexistent/libnvidia-ml.so.1")
    assert issubclass(NVMLUnavailableError, ecomeasure.MeterError)


def test_nvml_that_fails_to_initialise_is_a_clear_error(fake_nvml_dir):
    with patched_environ(fake_env(fake_nvml_dir, None, None, init_fail=True)):
        with pytest.raises(NVMLUnavailableError, match="did not initialise.*error 9"):
            Meter()


def run_python(code: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, timeout=timeout,
                          capture_output=True, text=True)


def test_info_lists_gpus_and_sources(fake_nvml_dir):
    # Power changes between every two 100 ms update ticks, so every update shows.
    alternating = Profile([(0.0, 100.0)] + [(0.05 + 0.1 * k, 100.0 + 300.0 * (k % 2)) for k in range(200)])
    env = clean_environ(fake_env(fake_nvml_dir, alternating, None))
    info = [sys.executable, "-m", "ecomeasure.info", "--seconds", "0.6"]
    out = subprocess.run(info, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "GPU 0: Fake H200 (scripted)  GPU-00000000-fa4e-4000-8000-00000000fa4e  (Hopper)" in out.stdout
    for source in ecomeasure.meter.TRACES:
        assert f"  {source:11s} yes  updates every" in out.stdout
    report = json.loads(subprocess.run(info + ["--json"], env=env, capture_output=True, text=True,
                                       timeout=30).stdout)
    periods = {s: c["update_period_s"] for s, c in report["capabilities"]["0"].items()}
    assert periods["samples"] == pytest.approx(0.02, rel=0.02)
    for source in ("instant", "average", "counter"):
        assert periods[source] == pytest.approx(0.1, rel=0.15), source


def test_info_without_nvml_exits_non_zero_with_one_line():
    env = clean_environ({"ECOMEASURE_NVML_LIBRARY": "/nonexistent/libnvidia-ml.so.1"})
    out = subprocess.run([sys.executable, "-m", "ecomeasure.info"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecomeasure: no usable NVML: cannot load NVML")


def test_meter_left_running_at_interpreter_exit_does_not_hang(fake_nvml_dir):
    env = clean_environ(fake_env(fake_nvml_dir, None, None))
    out = run_python("""
        import time, ecomeasure
        meter = ecomeasure.Meter()
        window = meter.window("never closed")
        time.sleep(0.2)
        print("bye")
    """, env=env, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "bye"


def test_meter_used_after_fork_says_so(fake_nvml_dir):
    env = clean_environ(fake_env(fake_nvml_dir, None, None))
    out = run_python("""
        import os, ecomeasure
        meter = ecomeasure.Meter()
        pid = os.fork()
        if pid == 0:
            try:
                meter.window("child")
            except RuntimeError as e:
                os._exit(0 if "another process" in str(e) else 3)
            os._exit(4)
        _, status = os.waitpid(pid, 0)
        meter.close()
        print(os.waitstatus_to_exitcode(status))
    """, env=env, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


@pytest.mark.parametrize("how", ["sys.exit", "return"])
def test_forked_child_of_a_running_meter_exits_promptly(fake_nvml_dir, how):
    # The child exits normally, so finalizers and destructors run on the sampler state it
    # copied mid-wait; it must leave that state alone. Several forks make a fork land while
    # the thread waits on its condition variable or holds its lock.
    env = clean_environ(fake_env(fake_nvml_dir, None, None))
    out = run_python(f"""
        import os, sys, time, ecomeasure
        meter = ecomeasure.Meter(poll_interval_s=0.001)
        codes = []
        for k in range(20):
            pid = os.fork()
            if pid == 0:
                if "{how}" == "sys.exit":
                    sys.exit(7)
                break  # the child returns from the loop and ends the script normally
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
            time.sleep(0.003)
        else:
            meter.close()
            print(codes)
    """, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    expected = 7 if how == "sys.exit" else 0
    assert out.stdout.strip() == str([expected] * 20)


def test_sampler_thread_does_not_hold_the_gil(fake_nvml_dir):
    # A busy pure-Python loop keeps the GIL; the sampler must keep sampling regardless.
    with patched_environ(fake_env(fake_nvml_dir, Profile.steady(100.0), None)):
        with Meter() as meter:
            before = meter.stats()["loops"]
            end = time.monotonic() + 0.5
            x = 0
            while time.monotonic() < end:
                x += 1
            loops = meter.stats()["loops"] - before
            meter.close()
    assert loops > 30  # a loop every 10 ms


# GPU busy percent: a kernel runs for stretches that start and end anywhere within the fake's
# 1/6 s utilization periods, so most samples are fractions.
BUSY = Profile([(0.0, 0.0), (0.23, 100.0), (0.61, 40.0), (1.07, 0.0), (1.5, 75.0), (2.2, 10.0),
                (2.45, 100.0)])
BUSY_PERIOD_NS = 166_666_667  # the fake's default 1/6 s, in its integer ns


@pytest.fixture(scope="module")
def busy_recording(fake_nvml_dir):
    return record(fake_nvml_dir, Profile.steady(300.0), 3.4, utilization=BUSY)  # drained past 2.84 s


def step_share(a: float, b: float) -> float:
    """The utilization step function's mean over [a, b] (profile s), each fake sample j
    covering ((j-1)V, jV]: what the meter must report, up to stamp jitter."""
    busy = covered = 0.0
    for j in range(int(a * 1e9 // BUSY_PERIOD_NS), int(b * 1e9 // BUSY_PERIOD_NS) + 2):
        lo, hi = (j - 1) * BUSY_PERIOD_NS / 1e9, j * BUSY_PERIOD_NS / 1e9
        overlap = max(0.0, min(hi, b) - max(lo, a))
        busy += overlap * utilization_sample_pct(BUSY, j)
        covered += overlap
    return busy / covered / 100


@pytest.mark.parametrize("j0,j1", [(2, 6), (1, 17), (7, 13), (9, 10)])
def test_gpu_busy_share_of_windows_on_sample_ticks_is_the_scripted_share(busy_recording, j0, j1):
    # Edges on utilization ticks: the only error is each sample's rounding to a whole percent.
    a, b = j0 * BUSY_PERIOD_NS / 1e9, j1 * BUSY_PERIOD_NS / 1e9
    m, _ = busy_recording.window(a, b)
    truth = BUSY.energy_j(a, b) / (b - a) / 100
    assert 0 < m.gpu_busy_share < 1
    assert m.gpu_busy_share == pytest.approx(truth, abs=0.005)
    assert m.devices[0].gpu_busy_share == m.gpu_busy_share


@pytest.mark.parametrize("a,b", [(0.3, 0.9), (0.25, 2.55), (1.55, 1.6), (1.01, 1.12)])
def test_gpu_busy_share_weights_each_sample_by_its_period_inside_the_window(busy_recording, a, b):
    # Edges between ticks: each sample counts for the part of its period inside the window.
    m, _ = busy_recording.window(a, b)
    assert m.gpu_busy_share == pytest.approx(step_share(a, b), abs=1e-4)


def test_utilization_trace_capabilities_and_saved_file(busy_recording, tmp_path):
    meter, t0 = busy_recording.meter, busy_recording.t0_s
    caps = meter.capabilities()[0]
    assert caps["utilization"]["available"]
    assert caps["utilization"]["update_period_s"] == pytest.approx(1 / 6, rel=0.01)
    t, pct = meter.trace("utilization")
    j = np.round((t - t0) * 6).astype(int)
    assert list(pct) == [utilization_sample_pct(BUSY, k) for k in j]
    assert "utilization" not in ecomeasure.SOURCES
    m = meter.measure(t0 + 0.4, t0 + 2.3)
    assert "utilization" not in m.devices[0].sources
    saved = load_traces(meter.save(tmp_path / "traces.npz"))
    np.testing.assert_array_equal(saved.trace("utilization")[1], pct)
    assert saved.measure(t0 + 0.4, t0 + 2.3).gpu_busy_share == m.gpu_busy_share
    assert m.to_dict()["gpu_busy_share"] == m.gpu_busy_share


def test_no_utilization_samples_gives_nan_and_capabilities_say_why(fake_nvml_dir):
    rec = record(fake_nvml_dir, Profile.steady(250.0), 1.0, disable="utilization", utilization=BUSY)
    caps = rec.meter.capabilities()[0]
    assert not caps["utilization"]["available"] and "Not Supported" in caps["utilization"]["reason"]
    m, truth = rec.window(0.2, 0.9)
    assert math.isnan(m.gpu_busy_share) and math.isnan(m.devices[0].gpu_busy_share)
    assert relative_error(m.energy_j, truth) < 0.01  # the energy does not depend on it


def test_window_before_the_first_utilization_sample_is_nan(busy_recording):
    t, _ = busy_recording.meter.trace("utilization")
    m = busy_recording.meter.measure(t[0] - 2.0, t[0] - 1.0)
    assert math.isnan(m.gpu_busy_share)
