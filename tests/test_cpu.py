"""CPU energy from RAPL (ecomeasure.cpu) against a fake powercap tree: which zones are read,
counter wraparound, unreadable counters said once and not raised, no RAPL at all, and the
CPU part of a Meter's windows and saved traces."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomeasure import cpu
from fake_powercap import SteadyPower, add_zone, server_tree, set_energy


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    # Each test sees its own first warning: the "once" is per process.
    monkeypatch.setattr(cpu, "_warned", set())


def test_a_server_tree_gives_packages_and_dram_only(tmp_path):
    expected = server_tree(tmp_path / "powercap")
    found = cpu.find_zones(tmp_path / "powercap")
    assert [z.label for z in found.zones] == ["package-0", "dram-0", "package-1", "dram-1"]
    assert {z.label: z.path for z in found.zones} == expected
    assert [z.kind for z in found.zones] == ["package", "dram"] * 2
    assert found.problems == () and found.present


def test_amd_zones_and_an_mmio_only_package_are_read(tmp_path):
    add_zone(tmp_path, "amd-rapl:0", "package-0")
    add_zone(tmp_path, "intel-rapl-mmio:1", "package-1")
    assert [z.label for z in cpu.find_zones(tmp_path).zones] == ["package-0", "package-1"]


def test_the_root_comes_from_the_environment(tmp_path, monkeypatch):
    server_tree(tmp_path, packages=1)
    monkeypatch.setenv(cpu.POWERCAP_ROOT_ENV, str(tmp_path))
    assert cpu.powercap_root() == tmp_path
    assert [z.label for z in cpu.CpuSampler(warn=False).zones] == ["package-0", "dram-0"]


def test_no_rapl_at_all_is_unavailable_and_silent_for_auto(tmp_path, monkeypatch):
    monkeypatch.setenv(cpu.POWERCAP_ROOT_ENV, str(tmp_path / "absent"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu.cpu_sampler("auto") is None
    found = cpu.find_zones()
    assert not found.present and found.zones == () and "no RAPL zones" in found.problems[0]
    with pytest.warns(RuntimeWarning, match="no RAPL zones"):
        assert cpu.cpu_sampler(True) is None


def test_permission_denied_is_said_once_and_the_readable_zones_are_kept(tmp_path, monkeypatch):
    zones = server_tree(tmp_path, packages=1)
    denied = zones["dram-0"] / "energy_uj"
    real_open = open

    def kernel_open(path, *args, **kwargs):  # what a non-root reader meets on recent kernels
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", kernel_open)
    with pytest.warns(RuntimeWarning, match=r"intel-rapl:0:2/energy_uj: permission denied") as caught:
        sampler = cpu.CpuSampler(root=tmp_path)
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second sampler says nothing
        again = cpu.CpuSampler(root=tmp_path)
    assert [z.label for z in sampler.zones] == [z.label for z in again.zones] == ["package-0"]
    assert any("permission denied" in p for p in sampler.problems)


def test_a_counter_that_turns_unreadable_mid_run_is_counted_not_raised(tmp_path):
    zones = server_tree(tmp_path, packages=1)
    sampler = cpu.CpuSampler(root=tmp_path, warn=False)
    sampler.read()
    (zones["dram-0"] / "energy_uj").unlink()
    (zones["dram-0"] / "energy_uj").mkdir()  # reading it now fails with EISDIR
    sampler.read()
    assert sampler.report()["errors"] == {"package-0": 0, "dram-0": 1}
    assert len(sampler.snapshot().trace_ns("dram-0")[0]) == 1


@settings(max_examples=300, deadline=None)
@given(max_range=st.integers(1, 2**40), start=st.integers(0, 2**40), data=st.data())
def test_unwrap_gives_the_true_cumulative_energy(max_range, start, data):
    start %= max_range
    # Below one range between readings: at most one wrap, what reading often guarantees.
    increments = data.draw(st.lists(st.integers(0, max_range - 1), min_size=1, max_size=50))
    truth = np.cumsum([0, *increments])
    readings = [(start + int(t)) % max_range for t in truth]
    assert cpu.unwrap_uj(readings, max_range).tolist() == truth.tolist()


@settings(max_examples=25, deadline=None)
@given(start=st.integers(0, 999), increments=st.lists(st.integers(0, 999), min_size=2, max_size=12))
def test_a_sampler_over_a_wrapping_counter_measures_the_true_energy(tmp_path_factory, start, increments):
    root = tmp_path_factory.mktemp("powercap")
    zone = add_zone(root, "intel-rapl:0", "package-0", start, max_range_uj=1000)
    sampler = cpu.CpuSampler(root=root, warn=False)
    sampler.read()
    value = start
    for inc in increments:
        value = (value + inc) % 1000
        set_energy(zone, value)
        sampler.read()
    t_ns, energy_j = sampler.snapshot().trace_ns("package-0")
    assert np.diff(t_ns).min() > 0
    measured = sampler.energy_ns(int(t_ns[0]), int(t_ns[-1]))
    assert measured.zones == {"package-0": pytest.approx(sum(increments) / 1e6, abs=1e-12)}
    assert measured.complete
    # Halfway between two readings is halfway between their energies.
    mid = sampler.energy_ns(int(t_ns[0]), int((t_ns[0] + t_ns[1]) // 2)).zones["package-0"]
    assert mid == pytest.approx(increments[0] / 1e6 * ((t_ns[1] - t_ns[0]) // 2) / (t_ns[1] - t_ns[0]),
                                abs=1e-12)


def test_outside_the_readings_a_window_is_incomplete(tmp_path):
    server_tree(tmp_path, packages=1)
    sampler = cpu.CpuSampler(root=tmp_path, warn=False)
    sampler.read()
    sampler.read()
    traces = sampler.snapshot()
    # Zones are read one after another: a window is covered from the last zone's first
    # reading to the first zone's last.
    first = max(int(traces.trace_ns(z)[0][0]) for z in traces.labels)
    last = min(int(traces.trace_ns(z)[0][-1]) for z in traces.labels)
    assert sampler.energy_ns(first, last).complete
    assert not sampler.energy_ns(first - 10**9, last).complete
    assert not sampler.energy_ns(first, last + 10**9).complete


def test_a_running_sampler_measures_steady_power_through_wraps(tmp_path):
    # Wraps every 0.4 s at 50 W: two or three in the second measured, each seen as long as the
    # sampler reads within 0.4 s (a busy machine can hold its thread off for a tenth of one).
    zones = server_tree(tmp_path, packages=1, max_range_uj=20_000_000)
    watts = {zones["package-0"]: 50.0, zones["dram-0"]: 8.0}
    with SteadyPower(watts, max_range_uj=20_000_000):
        time.sleep(0.05)
        sampler = cpu.CpuSampler(interval_s=0.02, root=tmp_path, warn=False).start()
        t0 = time.monotonic_ns()
        time.sleep(1.0)
        t1 = time.monotonic_ns()
        energy = sampler.energy_ns(t0, t1)
        sampler.stop()
    assert not sampler.running
    seconds = (t1 - t0) / 1e9
    # The writer's period and its scheduling put each end off by a few ms of power.
    assert energy.zones["package-0"] == pytest.approx(50.0 * seconds, abs=50.0 * 0.03)
    assert energy.zones["dram-0"] == pytest.approx(8.0 * seconds, abs=8.0 * 0.03)
    assert energy.energy_j == pytest.approx(sum(energy.zones.values()))
    assert energy.complete and energy.power_w == pytest.approx(58.0, rel=0.05)


def test_a_meter_window_holds_the_cpu_part_and_save_keeps_it(tmp_path, fake_nvml_dir):
    from conftest import patched_environ
    from ecomeasure import Meter, load_traces
    from fakes import Profile, fake_env

    zones = server_tree(tmp_path / "powercap", packages=1, max_range_uj=20_000_000)
    env = fake_env(fake_nvml_dir, Profile.steady(100.0), time.monotonic_ns())
    env[cpu.POWERCAP_ROOT_ENV] = str(tmp_path / "powercap")
    with SteadyPower({zones["package-0"]: 40.0, zones["dram-0"]: 5.0}, max_range_uj=20_000_000), \
            patched_environ(env):
        meter = Meter(cpu=True)
        try:
            assert meter.cpu is not None and meter.cpu.running
            with meter.window("w") as w:
                time.sleep(0.6)
            m = w.measurement
            meter.stop()
            path = meter.save(tmp_path / "traces.npz")
        finally:
            meter.close()
    assert m.cpu is not None and set(m.cpu.zones) == {"package-0", "dram-0"}
    assert m.cpu.zones["package-0"] == pytest.approx(40.0 * m.duration_s, abs=40.0 * 0.03)
    assert m.energy_j == pytest.approx(100.0 * m.duration_s, rel=0.02)  # the GPU's, without the CPU
    assert m.to_dict()["cpu"]["energy_j"] == pytest.approx(m.cpu.energy_j)
    saved = load_traces(path)
    again = saved.measure(m.start_s, m.end_s)
    assert again.cpu is not None and again.cpu.zones == pytest.approx(dict(m.cpu.zones), abs=1e-9)
    assert saved.report["cpu"]["zones"][0]["label"] == "package-0"


def test_a_meter_without_cpu_has_none(fake_nvml_dir):
    from conftest import patched_environ
    from ecomeasure import Meter
    from fakes import fake_env

    with patched_environ(fake_env(fake_nvml_dir, None, None)):
        meter = Meter()
        try:
            m = meter.measure(time.monotonic() - 0.1, time.monotonic() - 0.05)
        finally:
            meter.close()
    assert meter.cpu is None and m.cpu is None and m.to_dict()["cpu"] is None
    with pytest.raises(ValueError, match="cpu must be"):
        cpu.cpu_sampler("yes")

