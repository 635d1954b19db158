"""benchmarks/peers/peers.py without a GPU, Zeus or CodeCarbon: its truth, its analysis, its table,
and what it says when a peer is missing."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "peers" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_bench", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers_bench"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("peers_bench", None)


def row(peers, method, energy, truth, length=1.0, workload="steady", begin=0.001, end=0.002, note="",
        read=math.nan):
    return peers.Row(workload, length, 0, method, energy, length, truth, begin, end, read_s=read, note=note)


def test_local_power_is_the_counters_slope_inside_the_load(peers):
    t = np.arange(0.0, 60.0, 1.0)
    energy = np.where(t < 20, 100.0 * t, 2000.0 + 700.0 * (t - 20))  # idle, then 700 W from t = 20
    assert peers.local_power_w(t, energy, 40.0, 10.0, 25.0, 60.0) == pytest.approx(700.0, rel=1e-12)
    # Readings before the load started would pull the slope down; the bounds keep them out.
    assert peers.local_power_w(t, energy, 26.0, 10.0, 0.0, 60.0) < 650.0
    assert math.isnan(peers.local_power_w(t, energy, 40.0, 0.5, 25.0, 60.0))  # one reading


def test_burst_window_truth_adds_idle_for_the_rest_of_the_window(peers):
    assert peers.burst_window_truth_j(700.0, 120.0, 1.0, 1.25) == pytest.approx(700.0 + 30.0)
    assert peers.burst_window_truth_j(700.0, 120.0, 1.0, 0.999) == pytest.approx(700.0)


def test_summary_median_abs_error_worst_and_overhead(peers):
    rows = [row(peers, "ecomeasure", e, 100.0) for e in (101.0, 99.0, 100.5)]
    rows += [row(peers, "zeus_monitor", e, 100.0, begin=0.004, end=0.005) for e in (90.0, 104.0, 97.0)]
    rows += [row(peers, "seed_10hz", math.nan, 100.0)]
    summary = {s.method: s for s in peers.summarize(rows, {"codecarbon_1s": "not installed"})}
    eco, zeus = summary["ecomeasure"], summary["zeus_monitor"]
    assert (eco.n, eco.median_abs_error, eco.worst_error) == (3, pytest.approx(0.01), pytest.approx(0.01))
    assert zeus.median_abs_error == pytest.approx(0.04) and zeus.worst_error == pytest.approx(-0.10)
    assert zeus.median_overhead_ms == pytest.approx(9.0)
    assert summary["seed_10hz"].n == 0 and summary["codecarbon_1s"].note == "not installed"
    assert [s.method for s in peers.summarize(rows)] == list(peers.METHODS)


def test_table_says_not_installed_and_failed(peers):
    rows = [row(peers, "ecomeasure", 100.2, 100.0), row(peers, "ecomeasure", 100.2, 100.0, workload="bursts"),
            row(peers, "zeus_power", math.nan, 100.0, note="RuntimeError: no samples")]
    table = peers.markdown_table(peers.summarize(rows, {"codecarbon_15s": "not installed"}))
    steady = next(line for line in table.splitlines() if line.startswith("| steady | 1 s"))
    cells = [c.strip() for c in steady.strip("|").split("|")]
    assert cells[2] == "0.20 % (0.20 %)"
    assert cells[2 + peers.METHODS.index("codecarbon_15s")] == "not installed"
    assert cells[2 + peers.METHODS.index("zeus_power")] == "failed: RuntimeError: no samples"
    assert "| bursts | 1 s |" in table and "caller cost per window" in table


def test_caller_cost_and_time_to_result_are_apart(peers):
    # ecomeasure: cheap to close, its energy 18 ms later; Zeus: its end call computes.
    rows = [row(peers, "ecomeasure", 100.0, 100.0, begin=0.00001, end=0.00002, read=r) for r in (0.017, 0.018, 0.019)]
    rows += [row(peers, "zeus_monitor", 100.0, 100.0, begin=0.004, end=0.005, read=0.0) for _ in range(3)]
    rows += [row(peers, "seed_10hz", 100.0, 100.0)]  # a run made before reads were timed
    summary = {s.method: s for s in peers.summarize(rows)}
    assert summary["ecomeasure"].median_overhead_ms == pytest.approx(0.03)
    assert summary["ecomeasure"].median_result_ms == pytest.approx(18.02)
    assert summary["zeus_monitor"].median_result_ms == pytest.approx(5.0)
    assert math.isnan(summary["seed_10hz"].median_result_ms)
    lines = peers.markdown_table(peers.summarize(rows)).splitlines()
    at = lines.index(next(line for line in lines if line.startswith("| time to result")))
    cells = [c.strip() for c in lines[at + 2].strip("|").split("|")]
    assert cells[0] == "steady" and cells[1 + peers.METHODS.index("ecomeasure")] == "18.02"
    assert cells[1 + peers.METHODS.index("seed_10hz")] == "-"


def test_a_window_is_read_right_after_it_ends_and_the_read_is_timed(peers):
    import time

    class Slow:
        def begin(self):
            pass

        def end(self):
            def result():
                time.sleep(0.05)
                return 7.0, 1.0
            return result

    class Broken(Slow):
        def end(self):
            def result():
                raise RuntimeError("no samples")
            return result

    _, timing = peers.measure_window({"ecomeasure": Slow(), "zeus_power": Broken()}, 0, lambda: None)
    result, _, _, error, read_s = timing["ecomeasure"]
    assert result() == (7.0, 1.0) and error == "" and 0.045 <= read_s < 1.0
    assert timing["zeus_power"][0] is None and timing["zeus_power"][3] == "RuntimeError: no samples"
    rows = peers._rows("steady", 1.0, 0, timing, lambda own: 7.0)
    assert {r.method: r.read_s for r in rows}["ecomeasure"] == read_s


def test_a_missing_peer_gives_one_line_that_says_what_to_install(peers, monkeypatch):
    monkeypatch.setitem(sys.modules, "zeus", None)  # import zeus now raises ImportError
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    found = peers.import_peers()
    assert isinstance(found["zeus"], str)
    line = peers.missing_line("zeus", found["zeus"])
    assert "\n" not in line and 'pip install "ecomeasure[peers]"' in line and "zeus==" in line


def test_a_missing_peer_package_marks_each_of_its_methods_not_installed(peers, capsys):
    unavailable = peers.note_missing_peers({"zeus": "No module named 'zeus'", "codecarbon": object()})
    assert unavailable == {"zeus_monitor": "not installed", "zeus_power": "not installed"}
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "zeus" in out[0]


def test_the_sklearn_stand_in_matches_the_trapezoid_rule(peers, monkeypatch):
    for name in ("sklearn", "sklearn.metrics"):
        monkeypatch.setitem(sys.modules, name, None)
    assert peers._stand_in_for_sklearn() is True
    auc = sys.modules["sklearn.metrics"].auc
    assert auc([0.0, 1.0, 3.0], [100.0, 300.0, 300.0]) == pytest.approx(200.0 + 600.0)
    assert auc([3.0, 1.0, 0.0], [300.0, 300.0, 100.0]) == pytest.approx(800.0)
    with pytest.raises(ValueError):
        auc([0.0, 2.0, 1.0], [1.0, 1.0, 1.0])


def test_default_plan_fits_the_gpu_time(peers):
    args = peers.parse_args([])
    assert len(args.lengths) >= 6 and min(args.lengths) <= 0.25 and max(args.lengths) >= 10
    planned = peers.planned_s(args.lengths, args.repetitions, args.target_s, args.gap_s, args.edge_s)
    assert 120 < planned < 300
