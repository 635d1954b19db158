"""The report on a results directory written by the real benchmark (python -m ecomeasure.bench)
on the CPU, with the fake NVML playing a square-wave power profile."""
from __future__ import annotations

import csv
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ecomeasure.report.__main__ import main
from fakes import Profile, build_fake_nvml, clean_environ, fake_env

ROOT = Path(__file__).resolve().parents[1]
PNGS = ("energy_by_config.png", "nf4_crossover.png", "throughput_vs_energy.png", "energy_vs_bandwidth_floor.png",
        "power_trace.png")
REGIMES = ("eager", "graph")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ROOT / "ecomeasure" / "bench" / "__main__.py").is_file(),
                       reason="the benchmark (ecomeasure/bench/__main__.py) is not there yet"),
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    lib = build_fake_nvml(tmp_path_factory.mktemp("fake_nvml_report"))
    # A square wave, so energies vary between iterations and idle differs from load.
    profile = Profile.square(100.0, 250.0, 0.1, 0.3, 0.0, 600.0)
    env = clean_environ(fake_env(lib.parent, profile, time.monotonic_ns()))
    env["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    env["HF_HUB_OFFLINE"] = "1"
    out = tmp_path_factory.mktemp("bench") / "results"
    args = [sys.executable, "-m", "ecomeasure.bench", "--model", "tiny-llama-test", "--quant", "fp16",
            "bf16", "--device", "cpu", "--new-tokens", "8", "--iterations", "3", "--warmup", "1",
            "--warmup-tokens", "4", "--idle-seconds", "0.5", "--out", str(out),
            "--weights-dir", str(tmp_path_factory.mktemp("weights"))]
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_report_of_real_bench_output(bench_dir):
    assert main([str(bench_dir)]) == 0
    out = bench_dir / "report"
    for name in ("report.md", "tables.csv", "statistics.csv", "findings.csv", *PNGS):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert "power trace of tiny-llama-test fp16 bs1" in md  # drawn from the bench's own traces
    assert "Fake H200 (scripted)" in md

    iterations = read_csv(bench_dir / "iterations.csv")
    written = read_csv(out / "statistics.csv")
    # The two regimes are two datasets, side by side; each is compared with its own fp16.
    label = {regime: f"{bench_dir} · {regime}" for regime in REGIMES}
    assert {(r["dataset"], r["quant"], r["method"], r["basis"]) for r in written} == {
        (label[regime], "bf16", m, b) for regime in REGIMES for m in ("native", "ref") for b in ("gross", "net")}
    assert "## Side by side" in md and all(label[regime] in md for regime in REGIMES)
    column = {("native", "gross"): "energy_j", ("native", "net"): "energy_net_j",
              ("ref", "gross"): "ref_energy_j", ("ref", "net"): "ref_energy_net_j"}
    for row in written:
        regime = next(k for k, v in label.items() if v == row["dataset"])

        def energy(quant, row=row, regime=regime):
            return np.array([float(r[column[(row["method"], row["basis"])]]) / float(r["tokens"]) * 1000
                             for r in iterations if (r["quant"], r["regime"]) == (quant, regime)])
        x, y = energy("bf16"), energy("fp16")
        assert int(row["n"]) == x.size == 3
        assert float(row["energy_j_per_1k_mean"]) == pytest.approx(x.mean(), rel=1e-9, abs=1e-12)
        if np.var(x) > 0 or np.var(y) > 0:
            with warnings.catch_warnings():  # nearly identical samples: scipy warns, the value stands
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = stats.ttest_ind(x, y, equal_var=False).pvalue
            assert float(row["welch_p"]) == pytest.approx(expected, rel=1e-6)
        if np.std(x) > 0:
            low, high = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
            assert float(row["ci95_low"]) == pytest.approx(low, rel=1e-6, abs=1e-12)
            assert float(row["ci95_high"]) == pytest.approx(high, rel=1e-6, abs=1e-12)

    tables = {(r["dataset"], r["quant"], r["method"]): r for r in read_csv(out / "tables.csv")}
    for r in read_csv(bench_dir / "results.csv"):
        mine = tables[(label[r["regime"]], r["quant"], "native")]
        assert float(mine["energy_j_per_1k_mean"]) == pytest.approx(float(r["energy_j_per_1k_mean"]))
    findings = read_csv(out / "findings.csv")
    assert {f["verdict"] for f in findings} == {"not testable here"}  # fp16 and bf16 only


def test_bench_output_beside_the_seed(bench_dir, tmp_path):
    assert main([str(bench_dir), "--include-seed", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "## Side by side" in md and "seed (published, not measured by ecomeasure)" in md
    for name in PNGS:
        assert (tmp_path / name).stat().st_size > 0
