"""Property tests of the integration in the native core (trapezoid and cumulative deltas)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomeasure._native import cumulative_delta, trapezoid

NS = 1_000_000_000


@st.composite
def piecewise_linear(draw):
    """Breakpoints of a piecewise-linear power curve: strictly increasing times (ns), values (W)."""
    n = draw(st.integers(2, 30))
    gaps = draw(st.lists(st.integers(1, 2 * NS), min_size=n - 1, max_size=n - 1))
    t = np.cumsum([draw(st.integers(0, 10 * NS))] + gaps).astype(np.int64)
    p = np.array(draw(st.lists(st.floats(0, 1000), min_size=n, max_size=n)))
    return t, p


def exact_integral_j(t, p, t0, t1):
    """The exact integral of the piecewise-linear curve (held flat outside), on a fine grid
    that contains every breakpoint and both edges, where the trapezoid rule is exact."""
    grid = np.unique(np.concatenate([t[(t > t0) & (t < t1)], [t0, t1]]))
    values = np.interp(grid, t, p)  # interp holds the end values outside, like the meter
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid))) / NS


def window(draw, t):
    lo, hi = int(t[0]) - NS, int(t[-1]) + NS
    a = draw(st.integers(lo, hi))
    b = draw(st.integers(a, hi))
    return a, b


@settings(max_examples=300, deadline=None)
@given(piecewise_linear(), st.data())
def test_exact_on_piecewise_linear_signals_sampled_at_their_breakpoints(curve, data):
    t, p = curve
    t0, t1 = window(data.draw, t)
    energy_j, inside, covered = trapezoid(t, p, t0, t1)
    assert energy_j == pytest.approx(exact_integral_j(t, p, t0, t1), rel=1e-9, abs=1e-9)
    assert inside == int(np.sum((t > t0) & (t < t1)))
    assert covered == (t[0] <= t0 and t[-1] >= t1)


@settings(max_examples=300, deadline=None)
@given(piecewise_linear(), st.data())
def test_extra_samples_on_the_curve_change_nothing(curve, data):
    # Sampling a piecewise-linear curve at more points (on the curve) leaves the integral exact.
    t, p = curve
    extra = np.array(data.draw(st.lists(st.integers(int(t[0]), int(t[-1])), max_size=20)), dtype=np.int64)
    t2 = np.sort(np.concatenate([t, extra]))
    p2 = np.interp(t2, t, p)
    t0, t1 = window(data.draw, t)
    assert trapezoid(t2, p2, t0, t1)[0] == pytest.approx(trapezoid(t, p, t0, t1)[0], rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(piecewise_linear(), st.data())
def test_additive_over_adjacent_windows(curve, data):
    t, p = curve
    lo, hi = int(t[0]) - NS, int(t[-1]) + NS
    a, b, c = sorted(data.draw(st.lists(st.integers(lo, hi), min_size=3, max_size=3)))
    whole = trapezoid(t, p, a, c)[0]
    assert trapezoid(t, p, a, b)[0] + trapezoid(t, p, b, c)[0] == pytest.approx(whole, rel=1e-9, abs=1e-9)
    cum = np.cumsum(p)
    assert cumulative_delta(t, cum, a, b)[0] + cumulative_delta(t, cum, b, c)[0] == pytest.approx(
        cumulative_delta(t, cum, a, c)[0], rel=1e-9, abs=1e-6)


@settings(max_examples=300, deadline=None)
@given(piecewise_linear(), st.data())
def test_duplicated_samples_change_nothing(curve, data):
    t, p = curve
    picks = data.draw(st.lists(st.integers(0, len(t) - 1), min_size=1, max_size=10))
    t2, p2 = np.insert(t, picks, t[picks]), np.insert(p, picks, p[picks])
    t0, t1 = window(data.draw, t)
    assert trapezoid(t2, p2, t0, t1)[0] == pytest.approx(trapezoid(t, p, t0, t1)[0], rel=1e-12, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10 * NS), st.integers(1, 2 * NS), st.floats(0, 1000), st.floats(0, 1000),
       st.floats(0, 1), st.floats(0, 1))
def test_edges_are_interpolated_inside_one_segment(t_a, width, p_a, p_b, f0, f1):
    # A window inside one sample interval gets the area under the straight line between the
    # two samples: never zero, however short.
    t = np.array([t_a, t_a + width], dtype=np.int64)
    p = np.array([p_a, p_b])
    f0, f1 = sorted((f0, f1))
    t0, t1 = t_a + int(f0 * width), t_a + int(f1 * width)

    def at(x):
        return p_a + (p_b - p_a) * (x - t_a) / width

    expected = (at(t0) + at(t1)) / 2 * (t1 - t0) / NS
    energy_j, inside, covered = trapezoid(t, p, t0, t1)
    assert energy_j == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert inside == 0 and covered


@settings(max_examples=200, deadline=None)
@given(piecewise_linear(), st.data())
def test_cumulative_delta_interpolates_the_counter(curve, data):
    t, p = curve
    counter_j = np.cumsum(p)  # any non-decreasing cumulative trace
    t0, t1 = window(data.draw, t)
    expected = np.interp(t1, t, counter_j) - np.interp(t0, t, counter_j)
    assert cumulative_delta(t, counter_j, t0, t1)[0] == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_a_jump_at_one_time_stamp_is_kept():
    # Two samples at one instant (a step) are the curve's values before and after it.
    t = np.array([0, NS, NS, 2 * NS], dtype=np.int64)
    p = np.array([0.0, 0.0, 10.0, 10.0])
    assert trapezoid(t, p, NS, 2 * NS)[0] == pytest.approx(10.0)
    assert trapezoid(t, p, 0, NS)[0] == pytest.approx(0.0)


def test_bad_traces_are_refused():
    with pytest.raises(ValueError, match="ascending"):
        trapezoid(np.array([2, 1], dtype=np.int64), np.array([1.0, 1.0]), 0, 3)
    with pytest.raises(ValueError, match="same length"):
        trapezoid(np.array([1, 2], dtype=np.int64), np.array([1.0]), 0, 3)
    assert trapezoid(np.array([], dtype=np.int64), np.array([]), 0, 3) == (0.0, 0, False)


# ---------------------------------------------------------------- a core that lasts a day

from ecomeasure._native import TraceSet  # noqa: E402


def synthetic_run(seconds: int, samples_w, counter_w):
    """Driver samples every 20 ms and counter readings every 1 s of a run whose power is
    samples_w(t) by the samples and counter_w(t) by the counter (both piecewise constant)."""
    t = np.arange(0, seconds * NS + 1, 20_000_000, dtype=np.int64)
    tc = np.arange(0, seconds * NS + 1, NS, dtype=np.int64)
    dt = np.diff(tc, prepend=0) / NS
    counter_j = np.cumsum([counter_w(x / NS) * d for x, d in zip(tc, dt)])
    return {"samples": (t, np.array([samples_w(x / NS) for x in t])), "counter": (tc, counter_j)}


def test_a_windows_headline_does_not_drift_once_the_run_is_a_reach_past_it():
    # After 300 s the samples read 200 W and the counter 300 W: a new scale. A window in the
    # first part is calibrated over the readings within the reach of it only, so its value
    # is the same at 200 s and at 600 s (whole-run calibration would move it by a third).
    def run(seconds):
        return synthetic_run(seconds, lambda x: 100.0 if x < 300 else 200.0,
                             lambda x: 100.0 if x <= 300 else 300.0)
    reach = 60 * NS
    early = TraceSet(run(200), []).energy(100 * NS, 110 * NS, 30 * NS, reach)
    late = TraceSet(run(600), []).energy(100 * NS, 110 * NS, 30 * NS, reach)
    assert early["method"] == late["method"] == "calibrated"
    assert early["energy_j"] == late["energy_j"] == pytest.approx(1000.0, rel=1e-9)
    # Within the reach of the change the scale does see it.
    near = TraceSet(run(600), []).energy(280 * NS, 290 * NS, 30 * NS, reach)
    assert near["calibration"] > 1.01


def test_bounded_traces_drop_old_readings_and_count_them():
    keep_ns = 10 * NS
    traces = TraceSet({}, [], keep_ns)
    t = np.arange(0, 100 * NS, 20_000_000, dtype=np.int64)
    traces.append("samples", t, np.full(len(t), 50.0))
    kept_t, _ = traces.trace("samples")
    assert len(kept_t) <= 1.25 * keep_ns / 20_000_000 + 1
    assert kept_t[-1] == t[-1] and kept_t[0] >= t[-1] - 1.25 * keep_ns
    assert traces.counts("samples")["dropped"] == len(t) - len(kept_t) > 0
    # The last 10 s are whole and exact; a window before the kept span is flagged incomplete.
    last = traces.energy(int(t[-1]) - keep_ns, int(t[-1]), 30 * NS, 60 * NS)
    assert last["sources"]["samples"]["complete"] and last["energy_j"] == pytest.approx(500.0)
    assert not traces.energy(0, 5 * NS, 30 * NS, 60 * NS)["sources"]["samples"]["complete"]
    unbounded = TraceSet({}, [])
    unbounded.append("samples", t, np.full(len(t), 50.0))
    assert len(unbounded.trace("samples")[0]) == len(t)
    assert traces.memory_bytes < unbounded.memory_bytes / 4


def test_a_stamp_that_goes_backwards_is_clamped_and_counted():
    # A wall clock stepped back under the driver's stamps: the reading is kept at the last
    # stamp (order is what the searches need) and counted, not hidden.
    traces = TraceSet({}, [])
    traces.append("samples", np.array([0, 10, 20, 5, 30]) * NS, np.full(5, 100.0))
    t, _ = traces.trace("samples")
    assert list(t) == [0, 10 * NS, 20 * NS, 20 * NS, 30 * NS]
    assert traces.counts("samples") == {"clamped": 1, "dropped": 0}


def test_a_counter_step_at_a_shared_stamp_falls_in_exactly_one_of_two_adjoining_windows():
    # Two readings at one stamp (a clamped stamp, or a step): the window that ends there holds
    # the step and the window that starts there does not, so the two add up to the whole.
    t = np.array([0, 10**9, 10**9, 2 * 10**9], dtype=np.int64)
    counter_j = np.array([0.0, 10.0, 15.0, 25.0])
    before = cumulative_delta(t, counter_j, 0, 10**9)[0]
    after = cumulative_delta(t, counter_j, 10**9, 2 * 10**9)[0]
    assert (before, after) == (15.0, 10.0)
    assert before + after == cumulative_delta(t, counter_j, 0, 2 * 10**9)[0] == 25.0
