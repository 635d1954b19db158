"""Cheap windows: closing one costs only its marks, its energy comes when read, and the
sampler is woken for it (docs/meter-windows.md). Truth: the fake NVML's known profiles."""
from __future__ import annotations

import pickle
import statistics
import time

import pytest
from conftest import patched_environ
from fakes import Profile, fake_env

from ecomeasure import Measurement, Meter


def _profile_energy(profile: Profile, t0_ns: int, m: Measurement) -> float:
    return profile.energy_j(m.start_s - t0_ns / 1e9, m.end_s - t0_ns / 1e9)


def test_closing_a_window_costs_the_caller_only_its_marks(fake_nvml_dir):
    # Utilization samples 1 s apart: a close that waited for them would take ~0.5 s.
    profile = Profile.steady(250.0)
    t0 = time.monotonic_ns()
    with patched_environ(fake_env(fake_nvml_dir, profile, t0, utilization_period_s=1.0)):
        with Meter() as meter:
            time.sleep(0.1)
            costs_s, measurements = [], []
            for k in range(200):
                started = time.perf_counter()
                meter.begin_window(f"w{k}")
                measurements.append(meter.end_window(f"w{k}"))
                costs_s.append(time.perf_counter() - started)
            energies = [m.energy_j for m in measurements]
        meter.close()  # lets go of the fake, which reads its profile again at the next init
    # Generous for a loaded test machine; the old close took a utilization period (1 s here).
    assert statistics.median(costs_s) < 2e-3
    for m, energy_j in zip(measurements, energies):
        assert energy_j == pytest.approx(_profile_energy(profile, t0, m), rel=1e-3, abs=1e-6)
        assert m.complete


def test_energy_read_later_is_right_and_does_not_wait_for_utilization(fake_nvml_dir):
    profile = Profile.step(100.0, 600.0, 0.41, 0.91)  # changes midway between 20 ms samples
    busy = Profile([(0.0, 0.0), (0.3, 50.0)])  # 50 % busy from 0.3 s on
    t0 = time.monotonic_ns()
    with patched_environ(fake_env(fake_nvml_dir, profile, t0, utilization=busy, utilization_period_s=0.5)):
        with Meter() as meter:
            time.sleep(max(0.0, t0 / 1e9 + 0.55 - time.monotonic()))
            window = meter.window("later")
            time.sleep(1.0)
            window.end()
            m = window.measurement
            assert m is window.measurement  # one object, filled in once
            started = time.monotonic()
            energy_j = m.energy_j
            energy_wait_s = time.monotonic() - started
            started = time.monotonic()
            share = m.gpu_busy_share
            share_wait_s = time.monotonic() - started
        meter.close()
    assert energy_j == pytest.approx(_profile_energy(profile, t0, m), rel=0.01)
    # Energy waits for the 20 ms driver samples, not the 0.5 s utilization samples ...
    assert energy_wait_s < 0.25
    # ... which gpu_busy_share waits for when asked, and then gets right.
    assert share == pytest.approx(0.5, abs=0.02)
    assert m.devices[0].gpu_busy_share == pytest.approx(0.5, abs=0.02)
    assert energy_wait_s + share_wait_s > 0.2


def test_the_sampler_wakes_when_a_window_ends(fake_nvml_dir):
    # The thread's own pace is 0.5 s (poll) and 1 s (drain); a window's result must come from
    # the wake at its end and the quick retries while a driver sample (every 20 ms) is due.
    profile = Profile.steady(300.0)
    t0 = time.monotonic_ns()
    with patched_environ(fake_env(fake_nvml_dir, profile, t0)):
        with Meter(poll_interval_s=0.5, drain_interval_s=1.0) as meter:
            time.sleep(0.2)
            waits_s = []
            for k in range(8):
                with meter.window(f"w{k}") as w:
                    time.sleep(0.05 + 0.013 * k)
                _, end_ns = w.edges_ns()
                energy_j = w.measurement.energy_j
                waits_s.append((time.monotonic_ns() - end_ns) / 1e9)
                assert energy_j == pytest.approx(300.0 * w.measurement.duration_s, rel=0.01)
                assert w.ready
        meter.close()
    assert statistics.median(waits_s) < 0.1


def test_ready_turns_true_without_reading(fake_nvml_dir):
    with patched_environ(fake_env(fake_nvml_dir, Profile.steady(200.0), None)):
        with Meter() as meter:
            w = meter.window("w")
            assert not w.ready  # still open
            w.end()
            deadline = time.monotonic() + 1.0
            while not w.ready and time.monotonic() < deadline:
                time.sleep(0.005)
            assert w.ready
            assert "devices" not in w.measurement.__dict__  # nothing was read to get there
        meter.close()


def test_a_pending_measurement_reads_like_a_plain_one(fake_nvml_dir):
    profile = Profile.steady(150.0)
    t0 = time.monotonic_ns()
    with patched_environ(fake_env(fake_nvml_dir, profile, t0)):
        with Meter() as meter:
            time.sleep(0.1)
            with meter.window("w") as w:
                time.sleep(0.2)
            unread = w.measurement
        meter.close()
        # The meter stopped before anything was read: stop() let the data past the end in first.
    assert isinstance(unread, Measurement) and unread.name == "w"
    plain = pickle.loads(pickle.dumps(unread))
    assert type(plain) is Measurement and type(plain.devices[0]).__name__ == "DeviceEnergy"
    assert plain.energy_j == unread.energy_j == pytest.approx(_profile_energy(profile, t0, unread), rel=0.01)
    assert plain.to_dict() == unread.to_dict()
    assert unread.complete


def test_a_stream_window_closes_before_the_gpu_gets_there(fake_nvml_dir, fake_cuda_lib):
    # The fake GPU reaches each mark 80 ms after it is queued: closing must not wait for it.
    import json
    import subprocess
    import sys
    import textwrap

    from fakes import clean_environ
    env = fake_env(fake_nvml_dir, Profile.steady(300.0), None)
    env.update(ECOMEASURE_CUDA_LIBRARY=str(fake_cuda_lib), FAKE_CUDA_DELAY_US="80000")
    code = textwrap.dedent("""
        import json, time, ecomeasure
        with ecomeasure.Meter() as meter:
            time.sleep(0.1)
            w = meter.begin_window("w", stream=7)
            time.sleep(0.2)
            asked = time.perf_counter()
            m = meter.end_window("w")
            close_s = time.perf_counter() - asked
            ready_at_once = w.ready
            energy, duration = m.energy_j, m.duration_s
            ready_after = w.ready
        meter.close()
        print(json.dumps(dict(close_s=close_s, ready_at_once=ready_at_once, ready_after=ready_after,
                              energy=energy, duration=duration)))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=clean_environ(env), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["close_s"] < 0.04 and not result["ready_at_once"]
    assert result["ready_after"]
    assert result["energy"] == pytest.approx(300.0 * result["duration"], rel=0.01)
