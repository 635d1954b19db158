"""Energy per request (ecomeasure.attribution) on traces of exact energy, and on the fake NVML."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecomeasure import _native, load_traces
from ecomeasure.attribution import (Attributor, RequestWindow, Step, attribute, attribute_trace, split,
                                    trace_integral)
from conftest import record
from fakes import Profile

S = 1_000_000_000  # ns per second

# 100 W for 5 s, then 300 W for 5 s: a jump at 5 s (two points on one stamp). Its energy over
# any interval is exact by hand.
JUMP_T = np.array([0, 5 * S, 5 * S, 10 * S], dtype=np.int64)
JUMP_W = np.array([100.0, 100.0, 300.0, 300.0])
THREE = [RequestWindow("A", 0, 6 * S), RequestWindow("B", 2 * S, 8 * S), RequestWindow("C", 4 * S, 10 * S)]


def test_three_overlapping_windows_with_weights_get_the_shares_worked_by_hand():
    # From 3 s to 7 s a step weighs A 1 and B 3; C, open from 4 s, is not in it and gets
    # nothing there. Elsewhere the open windows share equally.
    steps = [Step(3 * S, 7 * S, {"A": 1, "B": 3})]
    result = attribute_trace(JUMP_T, JUMP_W, THREE, steps)
    # [0,2] A 200 | [2,3] A,B 50/50 | [3,4] 25/75 | [4,5] 25/75 | [5,6] 75/225 | [6,7] B 300 |
    # [7,8] B,C 150/150 | [8,10] C 600
    assert result.energy_j["A"] == pytest.approx(375.0, rel=1e-12)
    assert result.energy_j["B"] == pytest.approx(875.0, rel=1e-12)
    assert result.energy_j["C"] == pytest.approx(750.0, rel=1e-12)
    assert result.union_j == pytest.approx(2000.0, rel=1e-12)
    assert result.attributed_j == pytest.approx(result.union_j, rel=1e-12)
    assert result.not_attributed_j == 0.0
    assert result.total_j == pytest.approx(2000.0, rel=1e-12)
    assert (result.start_ns, result.end_ns, result.steps) == (0, 10 * S, 1)


def test_equal_split_and_the_not_attributed_part_of_a_wider_span():
    # Without steps each shared interval is split equally; the span reaches 1 s past the
    # trace on each side, where the nearest value holds, and 2 s between two windows are idle.
    windows = [RequestWindow("x", 0, 4 * S), RequestWindow("y", 2 * S, 4 * S), RequestWindow("x", 6 * S, 7 * S)]
    result = attribute_trace(JUMP_T, JUMP_W, windows, span_ns=(-1 * S, 11 * S))
    assert result.energy_j["x"] == pytest.approx(200.0 + 100.0 + 300.0, rel=1e-12)
    assert result.energy_j["y"] == pytest.approx(100.0, rel=1e-12)
    assert result.union_j == pytest.approx(700.0, rel=1e-12)
    # [-1,0] 100, [4,5] 100, [5,6] 300, [7,10] 900, [10,11] 300
    assert result.not_attributed_j == pytest.approx(1700.0, rel=1e-12)
    assert result.total_j == pytest.approx(2400.0, rel=1e-12)
    assert list(result.energy_j) == ["x", "y"]


def test_a_step_naming_no_open_window_falls_back_to_the_equal_split():
    steps = [Step(0, 1 * S, {"C": 5})]  # C is not open before 4 s
    result = attribute_trace(JUMP_T, JUMP_W, THREE[:2] + [RequestWindow("C", 4 * S, 4 * S)], steps)
    assert result.energy_j["A"] == pytest.approx(200.0 + 100.0 + 100.0 / 2 + 300.0 / 2, rel=1e-12)
    assert result.energy_j["C"] == 0.0  # a zero-length window is open during no interval


def test_cumulative_counter_trace_gives_the_same_split_as_its_power():
    # The cumulative energy of the jump profile, read every second: linear between the
    # readings, so the difference integrates the same piecewise-constant power exactly.
    t = np.arange(0, 11) * S
    cum = np.array([100.0 * min(k, 5) + 300.0 * max(k - 5, 0) for k in range(11)])
    steps = [Step(3 * S, 7 * S, {"A": 1, "B": 3})]
    by_counter = attribute_trace(t, cum, THREE, steps, cumulative=True)
    by_power = attribute_trace(JUMP_T, JUMP_W, THREE, steps)
    assert by_counter.method == "counter"
    for rid in "ABC":
        assert by_counter.energy_j[rid] == pytest.approx(by_power.energy_j[rid], rel=1e-12)


@pytest.mark.parametrize("weight", [0, -1, -0.5, float("nan"), float("inf")])
def test_zero_negative_and_non_finite_weights_are_refused(weight):
    with pytest.raises(ValueError, match="positive and finite"):
        attribute_trace(JUMP_T, JUMP_W, THREE, [Step(0, S, {"A": weight})])
    attributor = Attributor()
    attributor.open("A")
    with pytest.raises(ValueError, match="positive and finite"):
        attributor.step({"A": weight})


@pytest.mark.parametrize("windows,steps,span,match", [
    ([RequestWindow("a", 2, 1)], [], None, "ends before it begins"),
    ([RequestWindow("a", 0, 5), RequestWindow("a", 4, 9)], [], None, "overlapping windows"),
    ([RequestWindow("a", 0, 5)], [Step(0, 3, {"a": 1}), Step(2, 4, {"a": 1})], None, "steps overlap"),
    ([RequestWindow("a", 0, 5)], [Step(3, 3, {"a": 1})], None, "positive length"),
    ([RequestWindow("a", 0, 5)], [Step(0, 3, {"b": 1})], None, "has no window"),
    ([RequestWindow("a", 0, 5)], [], (1, 5), "outside the span"),
    ([], [], None, "nothing to attribute"),
])
def test_bad_input_is_refused_with_a_clear_error(windows, steps, span, match):
    with pytest.raises(ValueError, match=match):
        attribute_trace(JUMP_T, JUMP_W, windows, steps, span_ns=span)


def test_float_times_and_malformed_windows_are_type_errors():
    with pytest.raises(TypeError, match="int nanoseconds"):
        attribute_trace(JUMP_T, JUMP_W, [RequestWindow("a", 0.0, 1e9)])
    with pytest.raises(TypeError, match="RequestWindow or"):
        attribute_trace(JUMP_T, JUMP_W, [("a", 0)])


def test_tuples_are_windows_too():
    assert attribute_trace(JUMP_T, JUMP_W, [("A", 0, 6 * S)]).energy_j["A"] == pytest.approx(800.0, rel=1e-12)


def test_many_short_intervals_integrate_as_the_whole_trace():
    # trace_integral hands the core only the points around each interval: the intervals'
    # sum must be the whole trace's integral.
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.integers(1, 20_000_000, 3000)).astype(np.int64)
    p = rng.uniform(50, 700, len(t))
    integral = trace_integral(t, p)
    cuts = np.unique(rng.integers(t[0] - S, t[-1] + S, 500))
    parts = [integral(int(a), int(b)) for a, b in zip(cuts, cuts[1:])]
    whole = _native.trapezoid(t, p, int(cuts[0]), int(cuts[-1]))[0]
    assert math.fsum(parts) == pytest.approx(whole, rel=1e-12)


# Hypothesis: whatever the windows, steps and weights, the parts add up.
@st.composite
def scenarios(draw):
    n = draw(st.integers(2, 40))
    gaps = draw(st.lists(st.integers(0, 50_000_000), min_size=n, max_size=n))
    t = np.cumsum(np.array(gaps, dtype=np.int64))
    p = np.array(draw(st.lists(st.floats(0, 1000, allow_nan=False), min_size=n, max_size=n)))
    lo, hi = int(t[0]) - 10_000_000, int(t[-1]) + 10_000_000
    time_ = st.integers(lo, hi)
    ids = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True))
    windows = []
    for rid in ids:
        a, b = sorted((draw(time_), draw(time_)))
        windows.append(RequestWindow(rid, a, b))
    edges = sorted(set(draw(st.lists(time_, min_size=0, max_size=10))))
    steps = []
    for a, b in zip(edges[::2], edges[1::2]):
        named = draw(st.lists(st.sampled_from(ids), max_size=len(ids), unique=True))
        weights = {rid: draw(st.floats(1e-3, 1e3)) for rid in named}
        steps.append(Step(a, b, weights))
    widen = draw(st.booleans())
    span = (lo - 1, hi + 1) if widen else None
    return t, p, windows, steps, span


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_parts_plus_not_attributed_is_the_total(scenario):
    t, p, windows, steps, span = scenario
    result = attribute_trace(t, p, windows, steps, span_ns=span)
    whole = _native.trapezoid(t, p, result.start_ns, result.end_ns)[0]
    scale = max(whole, 1.0)
    assert all(e >= 0 for e in result.energy_j.values())
    assert result.attributed_j == pytest.approx(result.union_j, rel=1e-12, abs=1e-12 * scale)
    assert result.attributed_j + result.not_attributed_j == pytest.approx(result.total_j, rel=1e-12,
                                                                          abs=1e-12 * scale)
    assert result.total_j == pytest.approx(whole, rel=1e-9, abs=1e-9 * scale)
    if len(windows) == 1 and result.union_j > 0:  # alone, a window gets its whole energy
        w = windows[0]
        assert result.energy_j[w.request_id] == pytest.approx(
            _native.trapezoid(t, p, w.start_ns, w.end_ns)[0], rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1e-3, 1e3), min_size=2, max_size=6))
def test_windows_open_together_share_in_proportion_to_their_weights(weights):
    ids = [f"r{k}" for k in range(len(weights))]
    windows = [RequestWindow(rid, S, 9 * S) for rid in ids]
    result = attribute_trace(JUMP_T, JUMP_W, windows, [Step(S, 9 * S, dict(zip(ids, weights)))])
    total = 100.0 * 4 + 300.0 * 4
    for rid, weight in zip(ids, weights):
        assert result.energy_j[rid] == pytest.approx(total * weight / math.fsum(weights), rel=1e-9)


# The online form.
def test_attributor_collects_windows_and_steps_in_order():
    attributor = Attributor()
    attributor.open("a")
    time.sleep(0.02)
    attributor.open("b")
    time.sleep(0.02)
    attributor.step({"a": 1, "b": 3})
    time.sleep(0.02)
    attributor.close("a")
    attributor.step()  # a cut without weights: equal split since the step before
    time.sleep(0.02)
    attributor.step({"b": 2})
    attributor.close("b")
    with pytest.raises(KeyError, match="not open"):
        attributor.close("a")
    with pytest.raises(ValueError, match="never opened"):
        attributor.step({"z": 1})
    windows, steps = attributor.windows(), attributor.steps()
    assert [w.request_id for w in windows] == ["a", "b"]
    assert len(steps) == 2 and steps[0].weights == {"a": 1, "b": 3}
    assert steps[0].start_ns == windows[0].start_ns  # the first step begins at the first open
    assert steps[1].start_ns > steps[0].end_ns       # the unweighted cut sits between them
    # 1 W: each part is a known function of the mark times.
    result = attributor.attribute(energy_between=lambda a, b: (b - a) / S)
    a, b = windows
    s0, s1 = steps
    expect_a = (b.start_ns - a.start_ns) / S + (s0.end_ns - b.start_ns) / S * 0.25 + (a.end_ns - s0.end_ns) / S / 2
    assert result.energy_j["a"] == pytest.approx(expect_a, rel=1e-9)
    assert result.attributed_j == pytest.approx((b.end_ns - a.start_ns) / S, rel=1e-12)


def test_attributor_refuses_to_attribute_open_requests_and_reopening():
    attributor = Attributor()
    attributor.open("a")
    with pytest.raises(ValueError, match="already open"):
        attributor.open("a")
    with pytest.raises(RuntimeError, match="still open"):
        attributor.attribute(energy_between=lambda a, b: 0.0)


# With the meter, on the fake NVML.
def test_meter_attribution_adds_up_to_the_headline_and_matches_the_profile(fake_nvml_dir, tmp_path):
    # 150 W idle, 600 W from 1.51 s to 3.01 s. Three requests overlap across the step.
    profile = Profile.step(150.0, 600.0, 1.51, 3.01)
    rec = record(fake_nvml_dir, profile, 4.6)
    t0 = int(rec.t0_s * S)
    def at(s: float) -> int:
        return t0 + int(s * S)
    windows = [RequestWindow("a", at(0.5), at(2.0)), RequestWindow("b", at(1.0), at(3.5)),
               RequestWindow("c", at(2.5), at(4.0))]
    steps = [Step(at(1.0), at(2.0), {"a": 1, "b": 4})]
    result = attribute(rec.meter, windows, steps, span_ns=(at(0.2), at(4.3)))
    headline = rec.meter.measure_ns(at(0.2), at(4.3))
    assert result.method == headline.method
    assert result.total_j == pytest.approx(headline.energy_j, rel=1e-9)
    assert result.headline_j == pytest.approx(headline.energy_j, rel=1e-12)
    assert result.attributed_j + result.not_attributed_j == pytest.approx(result.total_j, rel=1e-12)
    E = profile.energy_j
    truth = {"a": E(0.5, 1.0) + E(1.0, 2.0) / 5,
             "b": E(1.0, 2.0) * 4 / 5 + E(2.0, 2.5) + E(2.5, 3.5) / 2,
             "c": E(2.5, 3.5) / 2 + E(3.5, 4.0)}
    for rid, energy_j in truth.items():
        # The driver samples' 20 ms steps around the power change cost at most ~1 %.
        assert result.energy_j[rid] == pytest.approx(energy_j, rel=0.02), rid
    assert result.not_attributed_j == pytest.approx(E(0.2, 0.5) + E(4.0, 4.3), rel=0.02)
    # Saved and loaded back, the traces give the same split.
    saved = load_traces(rec.meter.save(tmp_path / "traces.npz"))
    again = attribute(saved, windows, steps, span_ns=(at(0.2), at(4.3)))
    for rid in truth:
        assert again.energy_j[rid] == pytest.approx(result.energy_j[rid], rel=1e-12)
    assert set(result.devices) == {0}


def test_calibrated_attribution_uses_the_spans_one_factor(fake_nvml_dir):
    # The driver samples read 10 % high and the counter is exact: the parts follow the
    # calibrated headline, so they land on the profile's truth, not on the samples'.
    profile = Profile.step(150.0, 600.0, 1.51, 3.01)
    rec = record(fake_nvml_dir, profile, 4.3, meter_kwargs={"calibration_min_span_s": 2.0}, samples_gain=1.1)
    t0 = int(rec.t0_s * S)
    windows = [RequestWindow("a", t0 + int(0.5 * S), t0 + int(2.5 * S)),
               RequestWindow("b", t0 + int(1.5 * S), t0 + int(4.0 * S))]
    result = attribute(rec.meter, windows)
    assert result.method == "calibrated"
    assert result.calibration == pytest.approx(1 / 1.1, rel=0.01)
    assert result.total_j == pytest.approx(result.headline_j, rel=1e-9)
    E = profile.energy_j
    assert result.energy_j["a"] == pytest.approx(E(0.5, 1.5) + E(1.5, 2.5) / 2, rel=0.015)
    assert result.energy_j["b"] == pytest.approx(E(1.5, 2.5) / 2 + E(2.5, 4.0), rel=0.015)


def test_several_devices_are_split_each_and_summed(fake_nvml_dir):
    rec = record(fake_nvml_dir, Profile.steady(100.0), 2.0, devices=2,
                 device_profiles={1: Profile.steady(300.0)})
    t0 = int(rec.t0_s * S)
    windows = [RequestWindow("a", t0 + int(0.3 * S), t0 + int(1.5 * S)),
               RequestWindow("b", t0 + int(0.9 * S), t0 + int(1.5 * S))]
    result = attribute(rec.meter, windows)
    assert set(result.devices) == {0, 1}
    assert result.devices[1].energy_j["a"] == pytest.approx(3 * result.devices[0].energy_j["a"], rel=0.01)
    assert result.energy_j["b"] == pytest.approx(400.0 * 0.6 / 2, rel=0.01)
    assert result.energy_j["a"] == pytest.approx(400.0 * (0.6 + 0.3), rel=0.01)


def test_attributor_in_a_live_loop_with_the_meter(fake_nvml_dir):
    from conftest import patched_environ
    from fakes import fake_env
    from ecomeasure import Meter

    t0 = time.monotonic_ns()
    with patched_environ(fake_env(fake_nvml_dir, Profile.steady(250.0), t0)):
        with Meter() as meter:
            attributor = Attributor()
            batch: dict[str, int] = {}
            for k in range(6):
                rid = f"r{k}"
                attributor.open(rid)
                batch[rid] = 4 - k % 3  # tokens left
                time.sleep(0.05)
                attributor.step(dict.fromkeys(batch, 1))
                for done in [r for r in batch if batch[r] == 1]:
                    attributor.close(done)
                    del batch[done]
                for r in batch:
                    batch[r] -= 1
            while batch:
                time.sleep(0.05)
                attributor.step(dict.fromkeys(batch, 1))
                for done in [r for r in batch if batch[r] == 1]:
                    attributor.close(done)
                    del batch[done]
                for r in batch:
                    batch[r] -= 1
            result = attributor.attribute(meter)
        meter.close()
    assert len(result.energy_j) == 6
    assert result.attributed_j == pytest.approx(result.total_j - result.not_attributed_j, rel=1e-12)
    assert result.total_j == pytest.approx(result.headline_j, rel=1e-9)
    # Steady 250 W and one token per request per step: each request's part is 250 W times
    # its share of the time, and all of it is attributed (a window is open throughout).
    assert result.attributed_j == pytest.approx(250.0 * result.duration_s, rel=0.01)


def test_split_asks_for_each_elementary_interval_once_in_time_order():
    calls: list[tuple[int, int]] = []
    def energy_between(a: int, b: int) -> float:
        calls.append((a, b))
        return (b - a) / S
    result = split(energy_between, THREE, [Step(3 * S, 7 * S, {"A": 1})], span_ns=(-S, 10 * S))
    cuts = [-1, 0, 2, 3, 4, 6, 7, 8, 10]
    assert calls == [(a * S, b * S) for a, b in zip(cuts, cuts[1:])]
    assert result.not_attributed_j == pytest.approx(1.0) and result.union_j == pytest.approx(10.0)


@pytest.mark.slow
def test_the_gpu_demo_runs_on_the_fake_nvml_with_a_tiny_model(fake_nvml_dir, tmp_path):
    # benchmarks/meter/attribution.py on the CPU: the fake plays a steady 200 W, so the run's
    # energy is 200 W times its span and each window measured alone is 200 W times its length;
    # how much the requests overlap depends on the machine's load, so the sum of the windows
    # alone is checked against their lengths and the split against exactly the union.
    import json
    import subprocess
    import sys
    from pathlib import Path

    from conftest import patched_environ
    from fakes import fake_env

    root = Path(__file__).resolve().parents[1]
    with patched_environ(fake_env(fake_nvml_dir, Profile.steady(200.0), time.monotonic_ns())):
        import os
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.meter.attribution", "--out", str(tmp_path), "--model", "tiny-llama-test",
             "--device", "cpu", "--seconds", "2", "--idle-seconds", "0.3", "--prompt-tokens", "4", "16",
             "--new-tokens", "4", "10", "--arrival-rate", "8"],
            cwd=root, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "attribution.json").read_text())
    checks = summary["checks"]
    assert summary["goals"]["attributed_vs_union_within_0.1pct"]
    assert checks["total_j"] == pytest.approx(200.0 * summary["span_s"], rel=0.01)
    window_s = [r["window_s"] for r in summary["per_request"]]
    assert checks["windows_measured_alone_sum_j"] == pytest.approx(200.0 * math.fsum(window_s), rel=0.01)
    assert checks["union_measured_j"] <= 200.0 * summary["span_s"] * 1.01
    if math.fsum(window_s) > 1.05 * summary["span_s"]:  # the requests overlapped
        assert checks["windows_measured_alone_sum_j"] > checks["union_measured_j"] * 1.04
    parts = [r["energy_j_processed"] for r in summary["per_request"]]
    assert math.fsum(parts) == pytest.approx(checks["union_measured_j"], rel=1e-9)
    for name in ("traces.npz", "windows.json", "trace.json", "power.png"):
        assert (tmp_path / name).stat().st_size > 0, name
