"""The whole benchmark CLI, end to end, on a 2-layer random-weight model on the CPU, with the
fake NVML playing a steady power profile whose energy over any window is known exactly."""
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import Profile, build_fake_nvml, clean_environ, fake_env  # noqa: E402
from test_bench_columns import (SMOKE_ARGS, documented_iteration_columns,  # noqa: E402
                                documented_result_columns, read_csv, run_cli)

POWER_W = 150.0
BATCH_SIZES = (1, 2)
QUANTS = ("fp16", "bf16")
REGIMES = ("eager", "graph")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    lib = build_fake_nvml(tmp_path_factory.mktemp("fake_nvml_bench"))
    t0_ns = time.monotonic_ns()
    profile = Profile.steady(POWER_W)
    env = clean_environ(fake_env(lib.parent, profile, t0_ns))
    env["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    env["HF_HUB_OFFLINE"] = "1"
    return SimpleNamespace(env=env, profile=profile, t0_s=t0_ns / 1e9)


@pytest.fixture(scope="module")
def run(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    args = [*SMOKE_ARGS, "--quant", *QUANTS, "--batch-size", *map(str, BATCH_SIZES), "--idle-seconds", "0.5",
            "--out", str(out), "--weights-dir", str(tmp_path_factory.mktemp("weights"))]
    done = run_cli(args, fake.env)
    assert done.returncode == 0, done.stderr
    header, rows = read_csv(out / "results.csv")
    iter_header, iterations = read_csv(out / "iterations.csv")
    return SimpleNamespace(done=done, out=out, args=args, header=header, rows=rows,
                           iter_header=iter_header, iterations=iterations)


def f(cell):
    return float(cell) if cell != "" else math.nan


def test_output_files_have_the_documented_columns(run):
    assert run.header == documented_result_columns()
    assert run.iter_header == documented_iteration_columns()
    assert len(list(run.out.glob("run-*.json"))) == 1


def test_one_row_per_configuration(run):
    keys = [(r["model"], r["quant"], int(r["batch_size"]), r["regime"]) for r in run.rows]
    assert keys == [("tiny-llama-test", q, bs, regime) for q in QUANTS for bs in BATCH_SIZES for regime in REGIMES]
    for r in run.rows:
        assert r["status"] == "ok" and r["error"] == ""
        assert r["weights"] == "random" and r["device"] == "cpu"
        assert r["gpu_name"] == "Fake H200 (scripted)" and r["gpu_uuid"] == "GPU-00000000-fa4e-4000-8000-00000000fa4e"
        assert r["driver"] == "999.0-fake"
        assert f(r["params_b"]) == pytest.approx(139_584 / 1e9)
        assert (r["new_tokens"], r["iterations"]) == ("8", "2")
        assert (r["prompt_tokens"], r["prompt_tokens_source"]) == ("11", "estimated")
        assert r["torch_version"] and r["transformers_version"] and r["ecomeasure_version"]
        assert r["method"] and r["method"] != "unavailable"
        assert (run.out / r["traces"]).is_file()
        assert r["date"].endswith("+00:00")


def test_tokens_are_exact(run):
    for r in run.rows:
        assert f(r["tokens_generated"]) == 8 * int(r["batch_size"])
    for it in run.iterations:
        assert int(it["tokens"]) == 8 * int(it["batch_size"])
    assert len(run.iterations) == 2 * len(run.rows)


def test_iteration_energy_matches_the_profile(run, fake):
    for it in run.iterations:
        start, end = f(it["start_s"]), f(it["end_s"])
        truth = fake.profile.energy_j(start - fake.t0_s, end - fake.t0_s)
        assert f(it["duration_s"]) == pytest.approx(end - start, abs=1e-8)
        assert f(it["energy_j"]) == pytest.approx(truth, rel=0.02), it
        assert f(it["ref_energy_j"]) == pytest.approx(truth, rel=0.05), it
        # Steady power: idle power is the same, so net energy is ~0 by both methods.
        assert abs(f(it["energy_net_j"])) < 0.02 * truth
        assert abs(f(it["ref_energy_net_j"])) < 0.05 * truth
        assert f(it["idle_power_w"]) == pytest.approx(POWER_W, rel=0.02)
        assert f(it["ref_idle_power_w"]) == pytest.approx(POWER_W, rel=0.05)
        # Prefill and decode split the iteration.
        assert f(it["prefill_s"]) > 0 and f(it["decode_s"]) > 0
        assert f(it["prefill_s"]) + f(it["decode_s"]) == pytest.approx(f(it["duration_s"]), abs=1e-8)
        assert f(it["prefill_energy_j"]) + f(it["decode_energy_j"]) == pytest.approx(f(it["energy_j"]), rel=0.02)
        assert f(it["throughput_tok_s"]) == pytest.approx(int(it["tokens"]) / f(it["duration_s"]), rel=1e-6)


def test_summary_rows_follow_from_the_iterations(run):
    for r in run.rows:
        its = [i for i in run.iterations
               if (i["quant"], i["batch_size"], i["regime"]) == (r["quant"], r["batch_size"], r["regime"])]
        per_1k = [f(i["energy_j"]) * 1000 / int(i["tokens"]) for i in its]
        net_per_1k = [f(i["energy_net_j"]) * 1000 / int(i["tokens"]) for i in its]
        ref_per_1k = [f(i["ref_energy_j"]) * 1000 / int(i["tokens"]) for i in its]
        throughput = [f(i["throughput_tok_s"]) for i in its]
        assert f(r["energy_j_per_1k_mean"]) == pytest.approx(statistics.fmean(per_1k), rel=1e-6)
        assert f(r["energy_j_per_1k_std"]) == pytest.approx(statistics.stdev(per_1k), rel=1e-6, abs=1e-9)
        assert f(r["energy_net_j_per_1k_mean"]) == pytest.approx(statistics.fmean(net_per_1k), rel=1e-6, abs=1e-6)
        assert f(r["ref_energy_j_per_1k_mean"]) == pytest.approx(statistics.fmean(ref_per_1k), rel=1e-6)
        assert f(r["throughput_tok_s_mean"]) == pytest.approx(statistics.fmean(throughput), rel=1e-6)
        assert f(r["throughput_cv_pct"]) == pytest.approx(
            100 * statistics.stdev(throughput) / statistics.fmean(throughput), rel=1e-6)
        assert f(r["power_w_mean"]) == pytest.approx(POWER_W, rel=0.02)
        assert f(r["native_vs_ref_pct"]) == pytest.approx(
            100 * (f(r["ref_energy_j_per_1k_mean"]) - f(r["energy_j_per_1k_mean"])) / f(r["energy_j_per_1k_mean"]),
            abs=1e-6)
        for source in ("samples", "instant", "average", "counter"):
            assert r[f"energy_j_per_1k_{source}"] != ""
        assert f(r["prefill_s_mean"]) > 0 and f(r["decode_energy_j_mean"]) > 0
    by_key = {(r["quant"], r["batch_size"], r["regime"]): r for r in run.rows}
    for bs, regime in ((bs, regime) for bs in map(str, BATCH_SIZES) for regime in REGIMES):
        fp16, bf16 = by_key[("fp16", bs, regime)], by_key[("bf16", bs, regime)]
        assert f(fp16["delta_vs_fp16_pct"]) == 0
        assert f(bf16["delta_vs_fp16_pct"]) == pytest.approx(
            100 * (f(bf16["energy_j_per_1k_mean"]) / f(fp16["energy_j_per_1k_mean"]) - 1), rel=1e-6)


def _counter_check(out, rows, iterations, profile, t0_s, stderr, tick_s):
    """Each row's native_vs_counter_pct is its native energy against the counter's difference
    between the counter readings nearest its first iteration's start and its last one's end
    (recomputed from the saved traces), over the seconds native_vs_counter_s; the counter's
    difference is the profile's energy to within its tick; the bench printed the check."""
    from ecomeasure import load_traces
    from ecomeasure.bench.rows import counter_verdict
    pcts = []
    for r in rows:
        its = [i for i in iterations
               if (i["quant"], i["batch_size"], i["regime"]) == (r["quant"], r["batch_size"], r["regime"])]
        start, end = f(its[0]["start_s"]), f(its[-1]["end_s"])
        traces = load_traces(out / r["traces"])
        t_s, counter_j = traces.trace("counter")
        a, z = int(np.argmin(abs(t_s - start))), int(np.argmin(abs(t_s - end)))
        if z <= a:  # one reading nearest both ends: nothing to compare
            assert math.isnan(f(r["native_vs_counter_pct"])) and math.isnan(f(r["native_vs_counter_s"]))
            pcts.append(math.nan)
            continue
        assert f(r["native_vs_counter_s"]) == pytest.approx(t_s[z] - t_s[a], abs=1e-9)
        native, counter = traces.measure(t_s[a], t_s[z]).energy_j, counter_j[z] - counter_j[a]
        truth = profile.energy_j(t_s[a] - t0_s, t_s[z] - t0_s)
        assert abs(counter - truth) <= 0.005 * truth + 2 * POWER_W * tick_s
        assert native == pytest.approx(truth, rel=0.02)
        pct = f(r["native_vs_counter_pct"])
        assert pct == pytest.approx(100 * (native - counter) / counter, abs=1e-6)
        label = f"tiny-llama-test {r['quant']} bs={r['batch_size']} {r['regime']}: "
        printed = [line for line in stderr.splitlines() if line.startswith(label) and "tok/s" in line]
        assert len(printed) == 1, stderr
        assert printed[0].endswith(counter_verdict(pct, f(r["native_vs_counter_s"]))), printed[0]
        pcts.append(pct)
    return pcts


def test_native_energy_is_checked_against_the_energy_counter(run, fake):
    _counter_check(run.out, run.rows, run.iterations, fake.profile, fake.t0_s, run.done.stderr, tick_s=0.1)


def test_native_energy_within_half_a_percent_of_a_fine_counter(tmp_path_factory):
    # A counter that updates every millisecond: over a configuration's iterations (~1 s here,
    # long enough for two counter readings) its difference is exact to well under 0.5 %, and
    # so must the native be.
    lib = build_fake_nvml(tmp_path_factory.mktemp("fake_nvml_counter"))
    t0_ns = time.monotonic_ns()
    profile = Profile.steady(POWER_W)
    env = clean_environ(fake_env(lib.parent, profile, t0_ns, update_period_s=0.001))
    env["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    out = tmp_path_factory.mktemp("results_counter")
    done = run_cli([*SMOKE_ARGS, "--quant", "fp16", "--regime", "graph", "--iterations", "4", "--new-tokens", "300",
                    "--idle-seconds", "0.5",
                    "--out", str(out), "--weights-dir", str(tmp_path_factory.mktemp("weights"))], env)
    assert done.returncode == 0, done.stderr
    _, rows = read_csv(out / "results.csv")
    _, iterations = read_csv(out / "iterations.csv")
    pcts = _counter_check(out, rows, iterations, profile, t0_ns / 1e9, done.stderr, tick_s=0.001)
    assert len(pcts) == 1 and abs(pcts[0]) <= 0.5


def test_traces_recompute_the_figures(run):
    from ecomeasure import load_traces
    from ecomeasure._native import trapezoid

    for r in run.rows:
        traces = load_traces(run.out / r["traces"])
        reference = run.out / r["traces"].replace(".npz", "_reference.csv")
        lines = reference.read_text().splitlines()
        assert lines[0] == "time_s,power_w"
        data = np.loadtxt(lines[1:], delimiter=",", ndmin=2)
        t_ns, power_w = np.round(data[:, 0] * 1e9).astype(np.int64), data[:, 1]
        for it in run.iterations:
            if (it["quant"], it["batch_size"], it["regime"]) != (r["quant"], r["batch_size"], r["regime"]):
                continue
            start, end = f(it["start_s"]), f(it["end_s"])
            assert traces.measure(start, end).energy_j == pytest.approx(f(it["energy_j"]), rel=1e-6)
            energy_j, _, _ = trapezoid(t_ns, power_w, round(start * 1e9), round(end * 1e9))
            assert energy_j == pytest.approx(f(it["ref_energy_j"]), rel=1e-6)


def test_run_file_records_the_configuration(run):
    info = json.loads(next(run.out.glob("run-*.json")).read_text())
    assert info["command"][1:3] == ["-m", "ecomeasure.bench"] and info["command"][3:] == run.args
    assert info["config"]["new_tokens"] == 8 and info["protocol"]["idle_s"] == 0.5
    assert info["environment"]["hardware"]["gpu"]["name"] == "Fake H200 (scripted)"
    assert info["environment"]["versions"]["transformers_version"]
    assert info["interrupted"] is False and info["written"] == 8
    configs = info["configurations"]
    assert [c["status"] for c in configs] == ["ok"] * 8
    assert all(c["meter"]["capabilities"]["0"]["samples"]["available"] for c in configs)
    assert all(c["reference"]["samples"] > 0 for c in configs)


def test_run_file_has_a_timeline_that_adds_up(run):
    """The monotonic marks place each configuration's idle window inside its measuring, and
    ecomeasure.bench.timeline's parts add up to the process's life."""
    from ecomeasure.bench import timeline

    path = next(run.out.glob("run-*.json"))
    info = json.loads(path.read_text())
    marks = info["monotonic_s"]
    assert marks["process_started"] < marks["main"] <= marks["ready"] <= marks["finished"]
    assert 0 < marks["main"] - marks["process_started"] < 120  # the interpreter and the CLI's imports
    configs = info["configurations"]
    previous_written = marks["ready"]
    for c in configs:
        m = c["monotonic_s"]
        assert m["load"][0] < m["load"][1] <= m["begin"] < m["prepared"] < m["measured"] <= m["written"]
        assert previous_written <= m["begin"] and m["written"] <= marks["finished"]
        idle_start, idle_end = c["idle_window_s"]
        assert m["prepared"] < idle_start < idle_end <= m["measured"]
        previous_written = m["written"]
    # One load per quantization, shared by its batch sizes and regimes.
    assert len({tuple(c["monotonic_s"]["load"]) for c in configs}) == len(QUANTS)
    parts = timeline.parts_s(info)
    assert all(v >= 0 for v in parts.values()), parts
    assert sum(parts.values()) == pytest.approx(marks["finished"] - marks["process_started"], abs=1e-6)
    assert parts["measure"] >= 0.5 * len(configs)  # each holds its 0.5 s idle window
    assert parts["loads"] == pytest.approx(sum(b - a for a, b in {tuple(c["monotonic_s"]["load"]) for c in configs}))
    lines = timeline.describe(path, launched_at_s=marks["process_started"] - 1.0)
    assert "process started 1.0 s after the launch" in lines[0] and f"({len(configs)} configurations)" in lines[0]
    assert lines[1].count("bs=") == len(configs)


def test_timeline_counts_a_configuration_that_failed_before_it_began_as_between(run):
    """A configuration whose weights or load failed has no marks: the timeline still reads,
    and the parts still add up to the process's life."""
    from ecomeasure.bench import timeline

    info = json.loads(next(run.out.glob("run-*.json")).read_text())
    unmarked = {k: v for k, v in info["configurations"][0].items() if k != "monotonic_s"}
    info["configurations"].insert(1, unmarked)
    parts = timeline.parts_s(info)
    assert all(v >= 0 for v in parts.values()), parts
    marks = info["monotonic_s"]
    assert sum(parts.values()) == pytest.approx(marks["finished"] - marks["process_started"], abs=1e-6)


def test_timeline_command_reads_the_good_files_and_says_the_bad_one_in_a_line(run, tmp_path):
    """``python -m ecomeasure.bench.timeline`` with a missing run file beside a good one: the good
    one is described, the missing one is one line on stderr, and the exit status is 2."""
    good = next(run.out.glob("run-*.json"))
    done = subprocess.run([sys.executable, "-m", "ecomeasure.bench.timeline", str(tmp_path / "nothing.json"),
                           str(good)], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nothing.json" in done.stderr
    assert done.stdout.count(f"timeline {good.parent.name}/{good.name}:") == 2


def test_summary_table_and_progress_are_printed(run):
    assert "tiny-llama-test" in run.done.stdout and "J/1k" in run.done.stdout
    assert "Fake H200" in run.done.stderr


def test_rerun_skips_finished_rows_and_redo_appends(run, fake, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(run.out, out)
    args = [*run.args[:run.args.index("--out")], "--out", str(out), *run.args[run.args.index("--out") + 2:]]
    again = run_cli(args, fake.env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("skip tiny-llama-test") == 8
    assert len(read_csv(out / "results.csv")[1]) == 8 and len(read_csv(out / "iterations.csv")[1]) == 16
    assert "tiny-llama-test" in again.stdout  # the summary still shows the sweep

    redo = run_cli([*SMOKE_ARGS, "--quant", "bf16", "--batch-size", "1", "--regime", "eager", "--idle-seconds", "0.2",
                    "--redo",
                    "--out", str(out), "--weights-dir", args[args.index("--weights-dir") + 1]], fake.env)
    assert redo.returncode == 0, redo.stderr
    rows = read_csv(out / "results.csv")[1]
    assert len(rows) == 9 and rows[-1]["quant"] == "bf16" and rows[-1]["status"] == "ok"
    assert rows[-1]["traces"] == "traces/tiny-llama-test_bf16_bs1_eager-2.npz"  # the first run's traces are kept
    # The delta compares with the fp16 row of the same batch size and regime already in the file.
    fp16 = next(r for r in rows if (r["quant"], r["batch_size"], r["regime"]) == ("fp16", "1", "eager"))
    assert f(rows[-1]["delta_vs_fp16_pct"]) == pytest.approx(
        100 * (f(rows[-1]["energy_j_per_1k_mean"]) / f(fp16["energy_j_per_1k_mean"]) - 1), rel=1e-6)
    assert len(list(out.glob("run-*.json"))) == 3


def test_both_regimes_generate_the_same_tokens(run):
    graph = [r for r in run.rows if r["regime"] == "graph"]
    assert len(graph) == len(QUANTS) * len(BATCH_SIZES)
    assert all(r["same_tokens_as_eager"] == "True" for r in graph), [r.get("notes") for r in graph]
    assert all(r["same_tokens_as_eager"] == "" for r in run.rows if r["regime"] == "eager")


def test_rows_carry_the_decode_step_and_the_outlier_flags(run):
    for r in run.rows:
        steps = 8 - 1
        assert f(r["decode_ms_per_step_mean"]) == pytest.approx(1e3 * f(r["decode_s_mean"]) / steps, rel=1e-6)
        assert r["bandwidth_source"] == "unknown" and r["bandwidth_floor_fraction"] == ""  # the CPU
        assert int(r["bytes_per_step"]) > 0
        flagged = {i["iteration"] for i in run.iterations
                   if (i["quant"], i["batch_size"], i["regime"]) == (r["quant"], r["batch_size"], r["regime"])
                   and i["outlier"] == "True"}
        assert set(filter(None, r["outlier_iterations"].split(";"))) == flagged
