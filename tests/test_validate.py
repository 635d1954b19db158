"""The validation (``python -m ecomeasure.validate``) on the fake NVML, where the truth is exact.

One scripted run (~26 s) plays a shortened plan; the tests check the differential truth
against the profile's exact energy, the error tables against a recomputation, the files, and
that a re-analysis of the saved files (``--from``) reproduces them.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import textwrap
import time
from collections import defaultdict

import numpy as np
import pytest

from conftest import patched_environ
from ecomeasure import Meter
from ecomeasure.reference import ReferenceMeter
from ecomeasure.validate import (METHODS, RAW_FILES, EdgeCounter, PlanSettings, ScriptedWorkload,
                                 WindowResult, build_plan, check_goals, counter_energy_j, default_settings,
                                 differential_truth, run_validation, schedule, summarize, write_outputs)
from ecomeasure.validate.__main__ import main as validate_main
from ecomeasure.validate.plan import edge_idle_for
from fakes import Profile, clean_environ, fake_env

IDLE_W, LOAD_W = 60.0, 600.0
# The fake's counter updates every 20 ms (Hopper: ~100 ms), so that the truth's worst-case
# counter error, (1 + T_A/T_B) * U * P_idle over >= 1 s of bursts, is under 0.4 % in this short
# run (see truth.py). Its driver samples come every 10 ms (Hopper: ~20 ms), so that even the
# worst-placed 0.25 s window is within the headline's goal: interpolating a step between two
# samples misplaces at most half a sample period of it at each edge.
FAKE_UPDATE_S, FAKE_SAMPLE_S = 0.02, 0.01
SETTINGS = PlanSettings(lengths_s=(0.1, 0.25, 1.0), burst_target_s=1.0, gap_s=0.2, jitter=0.5,
                        squares=((0.2, 0.5),), square_target_s=1.0, steady_s=1.6, steady_settle_s=0.3,
                        step_s=(0.3, 0.6, 0.4), edge_idle_s=edge_idle_for(0.1))  # the meter reads every 0.1 s


@pytest.fixture(scope="module")
def fake_run(fake_nvml_dir, tmp_path_factory):
    plan = schedule(build_plan(SETTINGS), seed=3)
    t0_ns = time.monotonic_ns()
    workload = ScriptedWorkload(plan, t0_ns=t0_ns, idle_w=IDLE_W, load_w=LOAD_W, lead_s=0.5)
    profile = Profile(workload.breakpoints())
    env = fake_env(fake_nvml_dir, profile, t0_ns, update_period_s=FAKE_UPDATE_S, sample_period_s=FAKE_SAMPLE_S)
    library = env["ECOMEASURE_NVML_LIBRARY"]
    with patched_environ(env):
        meter = Meter(counter_interval_s=0.1)
        reference = ReferenceMeter(0, 0.1, nvml_library=library).start()
        edges = EdgeCounter(0, library)
        try:
            validation = run_validation(plan, SETTINGS, workload, meter, reference, read_counter_j=edges.read_j,
                                        counter_update_s=FAKE_UPDATE_S,
                                        info={"gpu": meter.devices[0].name, "driver": meter.driver_version,
                                              "command": "pytest"})
        finally:
            reference.stop()
            edges.close()
            meter.stop()
    out = tmp_path_factory.mktemp("validation")
    files = write_outputs(validation, out, meter, reference)
    meter.close()
    return validation, (profile, t0_ns), files


# --- the plan ------------------------------------------------------------------------------

def test_default_and_quick_plans_fit_their_time_budgets():
    default = schedule(build_plan(default_settings()))
    quick = schedule(build_plan(default_settings(quick=True)))
    # The lead's budget: about 5 min in all (GPU start-up and evaluation add ~20-30 s).
    assert 200 < default.planned_s < 290
    assert 60 < quick.planned_s < 110
    for s in (default_settings(), default_settings(quick=True)):
        bursts = {i.length_s: i for i in build_plan(s) if i.kind == "burst"}
        assert sorted(bursts) == sorted(s.lengths_s)
        for length, item in bursts.items():
            assert item.repetitions * length >= min(s.burst_target_s, length) - 1e-9
    lengths = {i.length_s for i in build_plan(default_settings()) if i.kind == "burst"}
    assert {0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0} <= lengths


def test_edge_margin_follows_the_meters_counter_interval():
    interval = Meter.__init__.__kwdefaults__["counter_interval_s"]
    assert default_settings().edge_idle_s == pytest.approx(interval + 0.2)
    assert default_settings(quick=True).edge_idle_s == pytest.approx(interval + 0.2)
    assert default_settings(counter_interval_s=0.5).edge_idle_s == pytest.approx(0.7)
    items = build_plan(default_settings(counter_interval_s=2.0))
    assert all(i.lead_idle_s >= 2.2 - 1e-9 and i.tail_idle_s >= 2.2 - 1e-9 for i in items if i.kind != "step")


def test_plan_has_every_workload_the_issue_asks_for():
    items = build_plan(default_settings())
    kinds = [i.kind for i in items]
    assert kinds[0] == "step" and "steady" in kinds
    step = items[0]
    assert (step.lead_idle_s, step.length_s, step.tail_idle_s) == (1.0, 3.0, 2.0)
    squares = [(round(i.length_s + i.gap_s, 9), round(i.length_s / (i.length_s + i.gap_s), 9))
               for i in items if i.kind == "square"]
    assert squares == [(0.05, 0.5), (0.2, 0.5), (1.0, 0.5), (0.2, 0.25)]
    gaps = {i.length_s: i.gap_s for i in items if i.kind == "burst"}
    assert gaps[0.1] == 0.5 and gaps[5.0] == 1.0 and gaps[10.0] == 1.0
    steady = next(i for i in items if i.kind == "steady")
    assert steady.length_s == 10.0 and max(steady.tile_lengths_s) == 5.0


def test_schedule_is_seeded_and_runs_start_and_end_in_idle():
    items = build_plan(default_settings(quick=True))
    a, b, c = schedule(items, seed=1), schedule(items, seed=1), schedule(items, seed=2)
    assert a.ops == b.ops and a.ops != c.ops
    edge = default_settings().edge_idle_s
    for i, item in enumerate(items):
        ops = [op for op in a.ops if op.item == i]
        run_a = ops[ops.index(next(o for o in ops if o.kind == "begin")):]
        # begin, idle (lead), burst, ..., idle (last gap), end; the step (no truth) has its own.
        assert run_a[1].kind == "idle" and (run_a[1].duration_s >= edge or item.kind == "step")
        end_a = next(k for k, o in enumerate(run_a) if o.kind == "end")
        assert run_a[end_a - 1].kind == "idle" and run_a[end_a - 1].duration_s >= edge
        assert sum(o.kind == "burst" for o in ops) == item.repetitions
        idle_runs = [o for o in ops if o.run == "B" and o.kind == "idle"]
        if item.idle_run:
            assert len(idle_runs) == 1 and idle_runs[0].match_run
            assert idle_runs[0].duration_s == pytest.approx(sum(o.duration_s for o in ops if o.run == "A"))
        else:
            assert idle_runs == []


def test_scripted_workload_profile_and_exact_energy_agree():
    plan = schedule(build_plan(SETTINGS), seed=5)
    workload = ScriptedWorkload(plan, t0_ns=10**12, idle_w=IDLE_W, load_w=LOAD_W, lead_s=0.5)
    profile = Profile(workload.breakpoints())
    rng = np.random.default_rng(0)
    span_s = (workload.end_ns - workload.t0_ns) / 1e9
    for _ in range(200):
        a, b = sorted(rng.uniform(0, span_s, 2))
        exact = workload.exact_energy_j(workload.t0_ns + round(a * 1e9), workload.t0_ns + round(b * 1e9))
        assert exact == pytest.approx(profile.energy_j(a, b), rel=1e-9, abs=1e-6)
    busy = sum(o.duration_s for o in plan.ops if o.kind == "burst")
    total = workload.exact_energy_j(workload.start_ns, workload.end_ns)
    assert total == pytest.approx(LOAD_W * busy + IDLE_W * (span_s - 0.5 - busy), rel=1e-9)


# --- the truth, on synthetic counter traces ---------------------------------------------------

def test_differential_truth_recovers_powers_from_a_counter_trace():
    ns = 1_000_000_000
    idle_w, burst_w = 120.0, 700.0
    bursts = [(1.0, 1.25), (2.0, 2.26), (3.0, 3.24)]  # s, on a run A of [0, 4)
    t = np.arange(0, 8.0001, 0.01)

    def power(x):
        return burst_w if any(a <= x < b for a, b in bursts) else idle_w
    cumulative = np.concatenate([[0.0], np.cumsum([power(x) * 0.01 for x in t[:-1]])])
    truth = differential_truth((t * ns).astype(np.int64), cumulative, (0, 4 * ns), (4 * ns, 8 * ns),
                               [b - a for a, b in bursts], counter_update_s=0.1)
    assert truth.idle_w == pytest.approx(idle_w)
    assert truth.burst_w == pytest.approx(burst_w)
    assert truth.energy_j(0.25) == pytest.approx(burst_w * 0.25)
    assert truth.excess_j == pytest.approx((burst_w - idle_w) * 0.75)
    # (1 + T_A/T_B) * U * P_idle, relative to the bursts' energy.
    assert truth.counter_bound == pytest.approx(2 * 0.1 * idle_w / (burst_w * 0.75))


def test_boundaries_from_idle_side_readings_are_exact_where_interpolation_leaks_a_burst():
    # The fake's power profile, its counter read every 1 s (Meter()'s default). Run A starts
    # 0.3 s before a burst and ends 0.2 s after one, so the readings that bracket A's start and
    # A's end straddle a burst; interpolating between them leaks its energy into the boundary.
    ns = 1_000_000_000
    idle_w, load_w = 120.0, 700.0
    bursts = [(10.3, 11.0), (15.0, 15.8)]
    profile = Profile([(0.0, idle_w)] + [p for a, b in bursts for p in ((a, load_w), (b, idle_w))])
    t = np.arange(0.5, 30.0, 1.0)  # readings at x.5 s: 10.5 and 15.5 fall inside the bursts
    cumulative = np.array([profile.energy_j(0.0, x) for x in t])
    t_ns = np.round(t * ns).astype(np.int64)
    run_a, run_b = (10 * ns, 16 * ns), (16 * ns, 22 * ns)
    durations = [b - a for a, b in bursts]
    busy_ns = [(round(a * ns), round(b * ns)) for a, b in bursts]
    truth = differential_truth(t_ns, cumulative, run_a, run_b, durations, counter_update_s=0.1, busy_ns=busy_ns)
    assert truth.boundaries == ("fit 3", "fit 3", "fit 3")
    assert truth.boundary_note == "idle fit (3/3/3 readings)"
    assert truth.idle_w == pytest.approx(idle_w, rel=1e-9)
    assert truth.burst_w == pytest.approx(load_w, rel=1e-9)
    assert truth.energy_j(0.7) == pytest.approx(profile.energy_j(*bursts[0]), rel=1e-9)
    # Plain interpolation at the same boundaries is far off.
    active = counter_energy_j(t_ns, cumulative, *run_a)
    idle = counter_energy_j(t_ns, cumulative, *run_b)
    excess = active - idle / 6.0 * 6.0
    interpolated_w = idle / 6.0 + excess / sum(durations)
    assert abs(interpolated_w / load_w - 1) > 0.05
    # With too few idle readings on a boundary's side it falls back, and says so.
    sparse = differential_truth(t_ns[::4], cumulative[::4], run_a, run_b, durations, busy_ns=busy_ns)
    assert "interpolated" in sparse.boundary_note


def test_counter_energy_needs_readings_on_both_sides():
    t = np.array([0, 10, 20], dtype=np.int64)
    e = np.array([0.0, 1.0, 3.0])
    assert counter_energy_j(t, e, 5, 15) == pytest.approx(1.5)
    assert math.isnan(counter_energy_j(t, e, 5, 25))
    assert math.isnan(counter_energy_j(t[:1], e[:1], 0, 0))


def _window(energies: dict, truth: float, length: float = 0.25, item: int = 0) -> WindowResult:
    full = {m: math.nan for m in METHODS} | energies
    return WindowResult("burst", f"burst {length:g} s", length, item, 0, 0, int(length * 1e9), truth, truth,
                        full, "calibrated", True)


def test_tail_view_summarizes_only_windows_with_a_tail():
    a = _window({"headline": 90.0}, 100.0)
    a.tail_s, a.energy_tail_j = 0.3, {m: math.nan for m in METHODS} | {"headline": 99.0}
    b = _window({"headline": 92.0}, 100.0)  # no tail: the next burst came too soon
    rows = {r.method: r for r in summarize([a, b], view="tail")}
    assert rows["headline"].n == 1 and rows["headline"].median_error == pytest.approx(-0.01)
    assert rows["counter_at_edges"].n == 0
    assert {r.method: r for r in summarize([a, b])}["headline"].n == 2


def test_summary_statistics_and_goals_on_hand_made_windows():
    windows = [_window({"headline": 101.0, "average": 50.0}, 100.0),
               _window({"headline": 97.0, "average": 40.0}, 100.0),
               _window({"headline": 100.5, "average": 60.0}, 100.0)]
    rows = {r.method: r for r in summarize(windows)}
    assert rows["headline"].n == 3
    assert rows["headline"].median_error == pytest.approx(0.005)
    assert rows["headline"].median_abs_error == pytest.approx(0.01)
    assert rows["headline"].worst_error == pytest.approx(-0.03)
    assert rows["average"].worst_error == pytest.approx(-0.6)
    assert rows["counter"].n == 0 and math.isnan(rows["counter"].median_error)
    (goal,) = check_goals(summarize(windows))
    assert goal.length_s == 0.25 and goal.limit == 0.05 and goal.met and goal.met_by_worst
    long = [_window({"headline": 103.0}, 100.0, 2.0, item=1)]
    (goal,) = check_goals(summarize(long))
    assert goal.limit == 0.02 and not goal.met


# --- the whole validation on the fake -------------------------------------------------------

def test_truth_estimator_agrees_with_the_exact_truth(fake_run):
    validation, _, _ = fake_run
    assert len(validation.windows) > 30
    for w in validation.windows:
        relative = abs(w.truth_j - w.exact_j) / w.exact_j
        truth = validation.items[w.item].truth
        assert relative < 0.005, (w.label, w.index, w.truth_j, w.exact_j)
        assert relative <= truth.counter_bound + 1e-6  # the printed bound holds
    for r in validation.items:
        if r.truth is not None:
            # Idle power is a slope through counter readings 1 s apart whose stamps jitter by
            # the fake's 20 ms update; it enters a burst's truth only times its gap.
            assert r.truth.idle_w == pytest.approx(IDLE_W, rel=0.03)
            assert r.truth.burst_w == pytest.approx(LOAD_W, rel=0.005)
            assert r.truth.counter_bound < 0.0045


def test_the_fake_has_no_tail_and_no_idle_mismatch(fake_run):
    validation, _, _ = fake_run
    for r in validation.items:
        d = r.diagnostics
        if d is None:
            continue
        assert d.idle_samples_w == pytest.approx(IDLE_W, rel=1e-3)
        if math.isfinite(d.tail_fraction):
            assert abs(d.tail_fraction) < 0.03  # only the samples' interpolation noise
        if math.isfinite(d.idle_mismatch_fraction):
            assert abs(d.idle_mismatch_fraction) < 0.005


@pytest.mark.parametrize("truth", ["truth", "exact"])
def test_reported_errors_equal_a_recomputation(fake_run, truth):
    validation, _, _ = fake_run
    rows = summarize(validation.windows, truth=truth) if truth == "exact" else validation.summary
    groups = defaultdict(list)
    for w in validation.windows:
        groups[(w.item, w.length_s)].append(w)
    assert len(rows) == len(groups) * len(METHODS)
    for row in rows:
        ws = groups[(row.item, row.length_s)]
        reference = [w.truth_j if truth == "truth" else w.exact_j for w in ws]
        errors = np.array([(w.energy_j[row.method] - ref) / ref for w, ref in zip(ws, reference)])
        errors = errors[np.isfinite(errors)]
        assert row.n == len(errors)
        if row.n == 0:
            assert row.method == "counter_at_edges" and row.kind == "steady"
            continue
        assert row.median_error == pytest.approx(np.median(errors), rel=1e-12, abs=1e-15)
        assert row.median_abs_error == pytest.approx(np.median(np.abs(errors)), rel=1e-12, abs=1e-15)
        assert abs(row.worst_error) == pytest.approx(np.max(np.abs(errors)), rel=1e-12)
        assert row.worst_error in errors


def test_exact_truth_is_the_fake_profiles_integral(fake_run):
    validation, (profile, t0_ns), _ = fake_run
    # Window times are on the monotonic clock; profile time 0 is FAKE_NVML_T0_NS = t0_ns.
    for w in validation.windows:
        a, b = (w.start_ns - t0_ns) / 1e9, (w.end_ns - t0_ns) / 1e9
        assert w.exact_j == pytest.approx(profile.energy_j(a, b), rel=1e-9)
        assert w.exact_j == pytest.approx(LOAD_W * w.duration_s, rel=1e-9)  # windows lie in the load


def test_on_the_fake_the_headline_meets_the_goals_and_the_average_does_not(fake_run):
    validation, _, _ = fake_run
    checks = check_goals(validation.summary)
    assert [c.length_s for c in checks] == [0.25, 1.0]
    assert all(c.met and c.met_by_worst for c in checks)
    exact_checks = check_goals(summarize(validation.windows, truth="exact"))
    assert all(c.met for c in exact_checks)
    rows = {(r.kind, r.length_s, r.method): r for r in validation.summary}
    # The 1 s moving average, and the seed's 10 Hz reference of it, miss most of a 0.25 s burst.
    assert rows[("burst", 0.25, "average")].median_abs_error > 0.2
    assert rows[("burst", 0.25, "reference_10hz")].median_abs_error > 0.2
    assert rows[("burst", 0.25, "headline")].median_abs_error < 0.05
    # Inside a steady load every instantaneous source is right.
    for method in ("headline", "samples", "instant"):
        assert abs(rows[("steady", 1.0, method)].worst_error) < 0.01


def test_tail_view_on_the_fake(fake_run):
    validation, _, _ = fake_run
    with_tail = [w for w in validation.windows if math.isfinite(w.tail_s)]
    assert with_tail and all(w.kind in ("burst", "square") for w in with_tail)
    assert all(math.isnan(w.tail_s) for w in validation.windows if w.kind == "steady")
    for w in with_tail:
        assert w.tail_s == pytest.approx(0.3)
        assert math.isnan(w.energy_tail_j["counter_at_edges"])
        # No tail on the fake: the extension adds idle only, which the truth's idle power removes.
        for method in ("headline", "samples"):
            assert w.energy_tail_j[method] == pytest.approx(w.exact_j, rel=0.03), (w.label, method)
    assert {(r.kind, r.length_s) for r in validation.summary_tail} <= {(w.kind, w.length_s) for w in with_tail}
    # The fake's short gaps (0.2-0.3 s) leave tau of idle on both sides of few bursts.
    checks = check_goals(validation.summary_tail)
    assert 1.0 in [c.length_s for c in checks] and all(c.met for c in checks)


def test_counter_at_edges_is_read_only_around_bursts(fake_run):
    validation, _, _ = fake_run
    for w in validation.windows:
        value = w.energy_j["counter_at_edges"]
        if w.kind == "steady":
            assert math.isnan(value)
        else:
            assert math.isfinite(value) and value > 0  # every burst window draws power
    one_second = [w for w in validation.windows if w.kind == "burst" and w.length_s == 1.0]
    assert abs(one_second[0].error("counter_at_edges")) < 0.05


def test_files_are_written_and_agree_with_the_summary(fake_run):
    validation, _, files = fake_run
    for name in ("validation.csv", "validation_with_tail.csv", "windows.csv", "truth.csv", "run.json",
                 "error_vs_length.png", "step_trace.png", "validation.md", "traces.npz", "reference.csv"):
        assert files[name].exists() and files[name].stat().st_size > 100, name
    for png in ("error_vs_length.png", "step_trace.png"):
        assert files[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(files["windows.csv"]) as f:
        windows = list(csv.DictReader(f))
    with open(files["validation.csv"]) as f:
        summary = list(csv.DictReader(f))
    assert len(windows) == len(validation.windows)
    assert len(summary) == len(validation.summary)
    by_group = defaultdict(list)
    for w in windows:
        by_group[(w["label"], float(w["length_s"]))].append(w)
    for row in summary:
        ws = by_group[(row["label"], float(row["length_s"]))]
        errors = [(float(w[f"{row['method']}_j"]) - float(w["truth_j"])) / float(w["truth_j"])
                  for w in ws if w[f"{row['method']}_j"]]
        assert int(row["n"]) == len(errors)
        if errors:
            assert float(row["median_error"]) == pytest.approx(np.median(errors), rel=1e-4, abs=1e-7)
    text = files["validation.md"].read_text()
    for needle in ("# Validation on Fake H200", "999.0-fake", "## Goals", "## Truth", "counter bound",
                   "![error vs window length](error_vs_length.png)", "![step trace](step_trace.png)",
                   "| burst 0.25 s | 0.25 s |", "Goals met", "**Window only**", "**Burst plus its tail**",
                   "## Error against the truth: burst plus its tail", "idle fit (", "counter every 0.1 s",
                   "`python -m ecomeasure.validate`"):
        assert needle in text, needle
    assert "0.5 s" not in text.split("## Truth")[1].split("| workload")[0]  # no stale interval


def _csv_rows(path, drop=()):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def test_reanalysis_from_the_saved_files_reproduces_the_run(fake_run, tmp_path, capsys):
    validation, _, files = fake_run
    folder = files["validation.csv"].parent
    assert validate_main(["--from", str(folder), "--out", str(tmp_path / "again")]) == 0
    again = tmp_path / "again"
    for name in ("validation.csv", "validation_with_tail.csv", "truth.csv"):
        assert (again / name).read_text() == (folder / name).read_text(), name
    # exact_j needs the scripted workload, which a re-analysis does not have.
    assert _csv_rows(again / "windows.csv", {"exact_j"}) == _csv_rows(folder / "windows.csv", {"exact_j"})
    text = (again / "validation.md").read_text()
    assert "re-analysed" in text and f"--from {folder}" in text
    for name in ("traces.npz", "reference.csv", "run.json", "error_vs_length.png", "step_trace.png"):
        assert (again / name).exists(), name
    # The run's card comes back from run.json.
    for needle in (f"# Validation on {validation.info['gpu']}", "- **driver**: 999.0-fake", "- **command**: `pytest`"):
        assert needle in text, needle


def test_the_raw_files_alone_reproduce_every_table(fake_run, tmp_path):
    """A folder holding only RAW_FILES (what gets committed) gives the same tables."""
    _, _, files = fake_run
    folder, raw = files["validation.csv"].parent, tmp_path / "raw"
    raw.mkdir()
    for name in RAW_FILES:
        shutil.copyfile(folder / name, raw / name)
    assert validate_main(["--from", str(raw), "--out", str(tmp_path / "again")]) == 0
    for name in ("validation.csv", "validation_with_tail.csv", "truth.csv"):
        assert (tmp_path / "again" / name).read_text() == (folder / name).read_text(), name
    assert (_csv_rows(tmp_path / "again" / "windows.csv", {"exact_j"})
            == _csv_rows(folder / "windows.csv", {"exact_j"}))


def test_saved_traces_are_compressed(fake_run):
    """traces.npz takes fewer bytes than its readings raw (8-byte time + 8-byte value each):
    what keeps a saved run small enough to commit."""
    validation, _, files = fake_run
    with np.load(files["traces.npz"]) as data:
        readings = sum(data[k].size for k in data.files if k.endswith("/t_ns"))
    size = files["traces.npz"].stat().st_size
    per_min = sum(files[name].stat().st_size for name in RAW_FILES) / validation.info["recording_s"] * 60
    print(f"traces.npz: {size / readings:.1f} bytes a reading; raw files {per_min / 1e3:.0f} kB a minute")
    assert readings > 1000 and size < 16 * readings


def test_step_trace_holds_every_source_and_the_reference(fake_run):
    validation, _, _ = fake_run
    step = validation.step
    assert step is not None
    for source in ("samples", "instant", "average", "counter"):
        t, v = step.sources[source]
        assert len(t) > 5, source
        if source == "average":  # a 1 s average of a 0.6 s load never gets there
            assert np.max(v) == pytest.approx(IDLE_W + 0.6 * (LOAD_W - IDLE_W), rel=0.05)
        else:
            assert np.max(v) == pytest.approx(LOAD_W, rel=0.2), source
    assert len(step.reference[0]) > 10
    a, b = step.burst_s
    assert a == pytest.approx(0.3, abs=1e-6) and b - a == pytest.approx(0.6, abs=1e-6)


# --- the command line --------------------------------------------------------------------------

def test_cli_without_a_gpu_says_so_in_one_line():
    env = clean_environ({"CUDA_VISIBLE_DEVICES": ""})  # no GPU even where there is one
    out = subprocess.run([sys.executable, "-m", "ecomeasure.validate", "--quick"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ecomeasure.validate: ") and "NVIDIA GPU and PyTorch or CuPy" in lines[0]


def test_from_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nothing"
    out = subprocess.run([sys.executable, "-m", "ecomeasure.validate", "--from", str(missing)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecomeasure.validate: cannot re-analyse") and str(missing) in lines[0]
    assert not missing.exists()  # nothing written where the run was not


def test_cli_help_names_every_option():
    out = subprocess.run([sys.executable, "-m", "ecomeasure.validate", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for option in ("--out", "--from", "--device", "--lengths", "--quick", "--seed", "--backend"):
        assert option in out.stdout


# --- the GPU workload's logic, on a fake CUDA driver ------------------------------------------

def test_matmul_workload_puts_bursts_between_stream_marks(fake_cuda_lib, fake_nvml_dir):
    # A backend whose "GPU work" is a host sleep, so the marks (stamped by the fake driver's
    # callback threads) land right before and after it. The driver loads once per process.
    env = fake_env(fake_nvml_dir, Profile.steady(300.0), None)
    env.update(ECOMEASURE_CUDA_LIBRARY=str(fake_cuda_lib), FAKE_CUDA_DELAY_US="0")
    code = textwrap.dedent("""
        import json, os, time
        from ecomeasure import Meter
        from ecomeasure.validate.workloads import MatmulWorkload
        from ecomeasure.validate.methods import EdgeCounter

        class SleepBackend:
            stream = 7
            def launch(self, n): time.sleep(n * 0.002)
            def synchronize(self): pass
            def event(self): return time.perf_counter()
            def elapsed_s(self, a, b): return b - a

        with Meter() as meter:
            edges = EdgeCounter(0, os.environ["ECOMEASURE_NVML_LIBRARY"])
            workload = MatmulWorkload(SleepBackend(), meter)
            per_matmul = workload.calibrate(warmup_s=0.05, timed=10)
            bursts = [workload.burst(0.1, edges.read_j) for _ in range(3)]
            workload.idle(0.2)
            edges.close()
            meter.close()
        print(json.dumps(dict(per_matmul=per_matmul,
            durations=[(b.end.time_ns() - b.start.time_ns()) / 1e9 for b in bursts],
            events=[b.events_s for b in bursts],
            counter=[b.counter_after_j - b.counter_before_j for b in bursts])))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=clean_environ(env), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["per_matmul"] == pytest.approx(0.002, rel=0.5)
    for duration, events, counter in zip(result["durations"], result["events"], result["counter"]):
        assert duration == pytest.approx(0.1, abs=0.03)
        assert events == pytest.approx(duration, abs=0.01)
        # 300 W read by a counter that moves every 0.1 s: whole ticks of 30 J, at most two.
        assert round(counter / 30.0) in (0, 1, 2) and counter == pytest.approx(30.0 * round(counter / 30.0), abs=0.01)


def test_no_gpu_backend_is_a_setup_error_naming_both_frameworks():
    from ecomeasure.validate.workloads import SetupError, _pci, open_backend
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SetupError, match="NVIDIA GPU and PyTorch or CuPy.*torch: .*CuPy: "):
        open_backend("auto", 0)
    with pytest.raises(ValueError, match="unknown backend"):
        open_backend("jax", 0)
    assert _pci("0000:1b:00.0") == _pci(b"00000000:1B:00.0") == (0, 0x1B, 0, 0)
