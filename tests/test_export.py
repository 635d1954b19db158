"""The timeline export (ecomeasure.export): trace-event JSON per the format, and the PNG plot."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomeasure import export
from ecomeasure.attribution import RequestWindow, attribute
from conftest import record
from fakes import Profile

S = 1_000_000_000
ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEP = Profile.step(150.0, 600.0, 1.01, 3.01)


@pytest.fixture(scope="module")
def recording(fake_nvml_dir):
    return record(fake_nvml_dir, STEP, 4.2)


@pytest.fixture
def saved(recording, tmp_path) -> Path:
    return recording.meter.save(tmp_path / "traces.npz")


def at(recording, seconds: float) -> int:
    return int(recording.t0_s * S) + int(seconds * S)


def windows_file(recording, tmp_path: Path) -> Path:
    windows = [RequestWindow("a", at(recording, 0.5), at(recording, 1.5)),
               RequestWindow("b", at(recording, 1.0), at(recording, 2.5)),  # overlaps a, not nested
               RequestWindow("a-inner", at(recording, 0.6), at(recording, 0.9))]
    result = attribute(recording.meter, windows)
    data = result.to_dict()
    data["marks"] = [{"name": "first token", "t_ns": at(recording, 0.7)}]
    path = tmp_path / "windows.json"
    path.write_text(json.dumps(data))
    return path


def export_json(*args: str | Path) -> dict:
    out = Path(args[args.index("-o") + 1])
    assert export.main(["perfetto", *map(str, args)]) == 0
    return json.loads(out.read_text())


def assert_valid_trace_events(trace: dict) -> list[dict]:
    """The JSON object form of the trace-event format, as the viewers read it."""
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    for e in events:
        for key in ("ph", "ts", "pid", "tid", "name"):
            assert key in e, (key, e)
        assert isinstance(e["ts"], (int, float)) and isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "C":
            assert e["args"] and all(isinstance(v, (int, float)) for v in e["args"].values())
        elif e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        elif e["ph"] == "i":
            assert e["s"] in ("g", "p", "t")
        else:
            assert e["ph"] == "M" and ("name" in e["args"] or "sort_index" in e["args"])
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)
    return events


def test_perfetto_export_is_valid_and_holds_every_track(recording, saved, tmp_path):
    trace = export_json(saved, "-o", tmp_path / "t.json", "--windows", windows_file(recording, tmp_path))
    events = assert_valid_trace_events(trace)
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert {"GPU0 samples", "GPU0 instant", "GPU0 average", "GPU0 counter"} <= counters
    # The counter's track is its power between readings at least 0.5 s apart: 150 W idle,
    # 600 W under load, never the noise of two readings a few milliseconds apart.
    counter = [e for e in events if e["name"] == "GPU0 counter"]
    counter_w = [e["args"]["W"] for e in counter]
    assert min(counter_w) == pytest.approx(150.0, rel=0.02) and max(counter_w) == pytest.approx(600.0, rel=0.02)
    assert min(np.diff([e["ts"] for e in counter])) >= 0.5e6
    slices = {e["name"]: e for e in events if e["ph"] == "X"}
    assert set(slices) == {"a", "b", "a-inner"}
    # a and b overlap without nesting: two lanes; a-inner nests in a and shares its lane.
    assert slices["a"]["tid"] != slices["b"]["tid"] and slices["a-inner"]["tid"] == slices["a"]["tid"]
    assert slices["a"]["dur"] == pytest.approx(1.0e6, abs=1)
    assert slices["a"]["args"]["energy_j"] == pytest.approx(STEP.energy_j(0.5, 1.5), rel=0.01)
    assert "attributed_j" in slices["b"]["args"]
    assert [e["name"] for e in events if e["ph"] == "i"] == ["first token"]
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert any(n.startswith("GPU 0 power") for n in names) and "ecomeasure windows" in names


def test_timestamps_are_on_the_wall_clock_like_kineto(recording, saved, tmp_path):
    trace = export_json(saved, "-o", tmp_path / "t.json", "--windows", windows_file(recording, tmp_path))
    info = trace["otherData"]["ecomeasure"]
    assert info["clock"] == "realtime"
    offset, base = info["realtime_minus_monotonic_ns"], trace["baseTimeNanoseconds"]
    assert base % export.KINETO_BASE_STEP_NS == 0
    a = next(e for e in trace["traceEvents"] if e["name"] == "a")
    assert a["ts"] == pytest.approx((a["args"]["start_ns"] + offset - base) / 1000, abs=1e-3)
    # The wall-clock time the trace states is the wall-clock time of the run (to the second).
    assert (base + a["ts"] * 1000) / S == pytest.approx(recording.t0_s + 0.5 + offset / S, abs=1e-3)
    import time
    assert abs((base + a["ts"] * 1000) / S - time.time()) < 600


def test_beside_a_torch_profiler_trace_takes_its_base_and_keeps_its_events(recording, saved, tmp_path):
    base = 1_790_000_000 * S
    torch_trace = {"schemaVersion": 1, "baseTimeNanoseconds": base, "displayTimeUnit": "ms",
                   "traceEvents": [{"ph": "X", "name": "aten::mm", "pid": 42, "tid": 42, "ts": 10.0, "dur": 5.0}]}
    (tmp_path / "torch.json").write_text(json.dumps(torch_trace))
    trace = export_json(saved, "-o", tmp_path / "t.json", "--beside", tmp_path / "torch.json")
    assert trace["baseTimeNanoseconds"] == base and trace["schemaVersion"] == 1
    assert trace["traceEvents"][0]["name"] == "aten::mm"
    ours = [e for e in trace["traceEvents"] if e["pid"] >= export.PID_GPU]
    offset = trace["otherData"]["ecomeasure"]["realtime_minus_monotonic_ns"]
    first = min(e["ts"] for e in ours if e["name"] == "GPU0 samples")
    t_ns = np.load(saved)["0/samples/t_ns"]
    assert first == pytest.approx((int(t_ns[0]) + offset - base) / 1000, abs=1e-3)


def without_offset(saved: Path, tmp_path: Path) -> Path:
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    report = json.loads(str(arrays["report"]))
    del report["realtime_minus_monotonic_ns"]
    arrays["report"] = np.array(json.dumps(report))
    out = tmp_path / "old.npz"
    np.savez_compressed(out, **arrays)
    return out


def test_a_file_without_the_offset_exports_on_the_monotonic_clock(recording, saved, tmp_path, capsys):
    old = without_offset(saved, tmp_path)
    trace = export_json(old, "-o", tmp_path / "t.json")
    assert trace["otherData"]["ecomeasure"]["clock"] == "monotonic" and trace["baseTimeNanoseconds"] == 0
    t_ns = np.load(saved)["0/samples/t_ns"]
    first = min(e["ts"] for e in trace["traceEvents"] if e["name"] == "GPU0 samples")
    assert first == pytest.approx(t_ns[0] / 1000, abs=1e-3)
    (tmp_path / "torch.json").write_text(json.dumps({"traceEvents": []}))
    assert export.main(["perfetto", str(old), "-o", str(tmp_path / "u.json"), "--beside",
                        str(tmp_path / "torch.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--realtime-offset-ns" in err
    trace = export_json(old, "-o", tmp_path / "v.json", "--realtime-offset-ns", "5000")
    assert trace["otherData"]["ecomeasure"]["clock"] == "realtime"


def test_cpu_zones_become_power_tracks(saved, tmp_path):
    # Meter(cpu=...) saves each RAPL zone as cumulative microjoules: 40 W and 7 W steady.
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    t = arrays["0/samples/t_ns"][::10]
    for zone, watts in [("package-0", 40.0), ("package-0-dram", 7.0)]:
        arrays[f"cpu/{zone}/t_ns"] = t
        arrays[f"cpu/{zone}/energy_uj"] = np.round((t - t[0]) / S * watts * 1e6).astype(np.int64)
    path = tmp_path / "with_cpu.npz"
    np.savez_compressed(path, **arrays)
    events = assert_valid_trace_events(export_json(path, "-o", tmp_path / "t.json"))
    package = [e["args"]["W"] for e in events if e["name"] == "CPU package-0"]
    dram = [e["args"]["W"] for e in events if e["name"] == "CPU package-0-dram"]
    assert len(package) == len(t) - 1 and package == pytest.approx([40.0] * len(package), rel=1e-4)
    assert dram == pytest.approx([7.0] * len(dram), rel=1e-3)
    assert export.main(["plot", str(path), "-o", str(tmp_path / "cpu.png")]) == 0
    assert (tmp_path / "cpu.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_writes_a_png(recording, saved, tmp_path):
    out = tmp_path / "sub" / "power.png"
    assert export.main(["plot", str(saved), "-o", str(out), "--windows", str(windows_file(recording, tmp_path))]) == 0
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000


def test_bench_traces_get_their_iterations_as_windows(recording, saved, tmp_path):
    # A bench run's layout: results.csv names the trace, iterations.csv holds its windows.
    run = tmp_path / "run"
    (run / "traces").mkdir(parents=True)
    npz = run / "traces" / "m_fp16_bs1_eager.npz"
    saved.rename(npz)
    key = {"model": "m", "quant": "fp16", "batch_size": "1", "regime": "eager"}
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, [*key, "traces"])
        w.writeheader()
        w.writerow({**key, "traces": "traces/m_fp16_bs1_eager.npz"})
        w.writerow({**key, "regime": "graph", "traces": "traces/other.npz"})
    with open(run / "iterations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, [*key, "iteration", "start_s", "end_s", "prefill_s", "tokens"])
        w.writeheader()
        w.writerow({**key, "iteration": 0, "start_s": at(recording, 0.5) / S, "end_s": at(recording, 2.5) / S,
                    "prefill_s": 0.25, "tokens": 64})
        w.writerow({**key, "regime": "graph", "iteration": 0, "start_s": at(recording, 0.5) / S,
                    "end_s": at(recording, 1.0) / S, "prefill_s": 0.1, "tokens": 64})
    events = assert_valid_trace_events(export_json(npz, "-o", tmp_path / "t.json"))
    slices = {e["name"]: e for e in events if e["ph"] == "X"}
    assert set(slices) == {"iteration 0", "prefill 0", "decode 0"}
    assert slices["prefill 0"]["dur"] + slices["decode 0"]["dur"] == pytest.approx(slices["iteration 0"]["dur"], abs=2)
    assert [e["name"] for e in events if e["ph"] == "i"] == ["first token 0"]


@pytest.mark.parametrize("case", ["missing", "not-npz", "bad-windows", "windows-not-list", "unwritable",
                                  "bad-source", "beside-missing"])
def test_bad_input_is_one_line_and_exit_2(case, saved, tmp_path, capsys):
    args = ["perfetto", str(saved), "-o", str(tmp_path / "t.json")]
    if case == "missing":
        args[1] = str(tmp_path / "nothing.npz")
    elif case == "not-npz":
        (tmp_path / "text.npz").write_text("hello")
        args[1] = str(tmp_path / "text.npz")
    elif case == "bad-windows":
        (tmp_path / "w.json").write_text('[{"name": "a", "start_ns": "soon", "end_ns": 5}]')
        args += ["--windows", str(tmp_path / "w.json")]
    elif case == "windows-not-list":
        (tmp_path / "w.json").write_text('{"windows": 3}')
        args += ["--windows", str(tmp_path / "w.json")]
    elif case == "unwritable":
        (tmp_path / "file").write_text("")
        args[3] = str(tmp_path / "file" / "t.json")
    elif case == "bad-source":
        args += ["--sources", "samples,volts"]
    elif case == "beside-missing":
        args += ["--beside", str(tmp_path / "none.json")]
    assert export.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m ecomeasure.export: error:")
    assert not (tmp_path / "t.json").exists()


def test_the_module_runs_as_a_command(saved, tmp_path):
    done = subprocess.run([sys.executable, "-m", "ecomeasure.export", "plot", str(saved), "-o",
                           str(tmp_path / "p.png")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_SIGNATURE
    done = subprocess.run([sys.executable, "-m", "ecomeasure.export", "perfetto", str(tmp_path / "none.npz"),
                           "-o", str(tmp_path / "t.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)), min_size=1, max_size=30))
def test_lanes_hold_only_windows_that_nest_or_follow(spans):
    windows = [export.Window(str(k), a, a + d) for k, (a, d) in enumerate(spans)]
    lane_of = export.lanes(windows)
    for i, wi in enumerate(windows):
        for j, wj in enumerate(windows):
            if i < j and lane_of[i] == lane_of[j]:
                disjoint = wi.end_ns <= wj.start_ns or wj.end_ns <= wi.start_ns
                nested = (wi.start_ns <= wj.start_ns and wj.end_ns <= wi.end_ns) or \
                         (wj.start_ns <= wi.start_ns and wi.end_ns <= wj.end_ns)
                assert disjoint or nested, (wi, wj)


def test_power_of_a_cumulative_trace_skips_readings_too_close_together():
    t = np.array([0, 1 * S, 1 * S + 5_000_000, 2 * S, 3 * S, 3 * S], dtype=np.int64)
    e = np.array([0.0, 100.0, 100.0, 300.0, 400.0, 400.0])
    stamps, watts = export.power_of_cumulative(t, e, S // 2)
    assert stamps.tolist() == [0, 1 * S, 2 * S] and watts.tolist() == pytest.approx([100.0, 200.0, 100.0])
    stamps, watts = export.power_of_cumulative(t, e)  # only readings on one stamp are merged
    assert watts.tolist() == pytest.approx([100.0, 0.0, 200.0 / 0.995, 100.0])
