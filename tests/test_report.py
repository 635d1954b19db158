"""The report (python -m ecomeasure.report) on synthetic results directories (report_fixture)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ecomeasure.report import (SEED_LABEL, build_report, check_dataset, cohens_d, compare_dataset,
                               load_results_dir, load_seed, mean_ci, welch)
from ecomeasure.report.__main__ import main
from ecomeasure.report.stats import MeanCI
from report_fixture import (FIXTURE_GPU, ITERATION_COLUMNS, RESULT_COLUMNS, FixtureConfig,
                            failing_configs, holding_configs, write_results_dir)

PNGS = ("energy_by_config.png", "nf4_crossover.png", "throughput_vs_energy.png", "energy_vs_bandwidth_floor.png",
        "power_trace.png")
FILES = ("report.md", "tables.csv", "statistics.csv", "findings.csv", *PNGS)
FAILED = FixtureConfig("qwen2-7b", 7.6, "nf4", status="failed")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def holding_dir(tmp_path_factory) -> Path:
    return write_results_dir(tmp_path_factory.mktemp("holding"), holding_configs() + [FAILED])


@pytest.fixture(scope="module")
def failing_dir(tmp_path_factory) -> Path:
    return write_results_dir(tmp_path_factory.mktemp("failing"), failing_configs(), seed=1)


@pytest.fixture(scope="module")
def holding_report(holding_dir) -> Path:
    assert main([str(holding_dir)]) == 0
    return holding_dir / "report"


def verdicts(findings, method="native"):
    return {(f.key, f.basis): f for f in findings if f.method == method}


# statistics --------------------------------------------------------------------------------
def per_iteration(rows, model, quant, bs, column):
    """Energy per 1k tokens straight from iterations.csv, independently of the report."""
    return np.array([float(r[column]) / float(r["tokens"]) * 1000.0 for r in rows
                     if (r["model"], r["quant"], r["batch_size"]) == (model, quant, str(bs))])


def test_statistics_match_scipy(holding_dir, holding_report):
    iterations = read_csv(holding_dir / "iterations.csv")
    written = read_csv(holding_report / "statistics.csv")
    columns = {("native", "gross"): "energy_j", ("native", "net"): "energy_net_j",
               ("ref", "gross"): "ref_energy_j", ("ref", "net"): "ref_energy_net_j"}
    # every non-fp16 ok config x 2 methods x 2 bases
    assert len(written) == 9 * 4
    for row in written:
        column = columns[(row["method"], row["basis"])]
        x = per_iteration(iterations, row["model"], row["quant"], row["batch_size"], column)
        y = per_iteration(iterations, row["model"], "fp16", row["batch_size"], column)
        assert int(row["n"]) == x.size == 5 and int(row["fp16_n"]) == y.size == 5
        welch_ref = stats.ttest_ind(x, y, equal_var=False)
        assert float(row["welch_p"]) == pytest.approx(welch_ref.pvalue, rel=1e-6)
        assert float(row["welch_t"]) == pytest.approx(welch_ref.statistic, rel=1e-6)
        low, high = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
        assert float(row["ci95_low"]) == pytest.approx(low, rel=1e-6)
        assert float(row["ci95_high"]) == pytest.approx(high, rel=1e-6)
        low, high = stats.t.interval(0.95, y.size - 1, loc=y.mean(), scale=stats.sem(y))
        assert float(row["fp16_ci95_low"]) == pytest.approx(low, rel=1e-6)
        assert float(row["fp16_ci95_high"]) == pytest.approx(high, rel=1e-6)
        pooled = math.sqrt((4 * x.var(ddof=1) + 4 * y.var(ddof=1)) / 8)
        assert float(row["cohens_d"]) == pytest.approx((x.mean() - y.mean()) / pooled, rel=1e-6)
        assert float(row["delta_vs_fp16_pct"]) == pytest.approx(100 * (x.mean() / y.mean() - 1), rel=1e-6)


def test_statistics_means_agree_with_results_csv(holding_dir):
    dataset = load_results_dir(holding_dir)
    results = {(r["model"], r["quant"], r["batch_size"]): r
               for r in read_csv(holding_dir / "results.csv") if r["status"] == "ok"}
    for c in compare_dataset(dataset, ("native",)):
        row = results[(c.model, c.quant, str(c.batch_size))]
        column = "energy_j_per_1k_mean" if c.basis == "gross" else "energy_net_j_per_1k_mean"
        assert c.config.mean == pytest.approx(float(row[column]), rel=1e-9)


def test_statistics_need_two_iterations():
    assert math.isnan(mean_ci([5.0]).low) and mean_ci([5.0]).mean == 5.0 and mean_ci([]).n == 0
    assert math.isnan(cohens_d([1.0], [1.0, 2.0]))
    assert all(math.isnan(v) for v in welch([1.0], [1.0, 2.0]))
    # No spread at all: the test is undefined, and no warning escapes (warnings are errors here).
    assert all(math.isnan(v) for v in welch([2.0, 2.0, 2.0], [2.0, 2.0, 2.0]))
    assert mean_ci([3.0, 3.0, 3.0]) == MeanCI(3, 3.0, 3.0, 3.0)  # no spread: a zero-width interval
    assert math.isnan(cohens_d([2.0, 2.0], [2.0, 2.0]))
    t, p = welch([1.0, 1.0 + 1e-12, 1.0], [1.0, 1.0, 1.0 - 1e-12])  # scipy warns on precision
    assert 0.0 <= p <= 1.0 or math.isnan(p)


def test_one_iteration_gives_na_in_report(tmp_path):
    root = write_results_dir(tmp_path / "r", [FixtureConfig("tinyllama", 1.1, "fp16"),
                                              FixtureConfig("tinyllama", 1.1, "nf4")], iterations=1)
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    row = read_csv(tmp_path / "out" / "statistics.csv")[0]
    assert row["n"] == "1" and row["welch_p"] == "" and row["cohens_d"] == "" and row["ci95_low"] == ""
    assert "n/a" in (tmp_path / "out" / "report.md").read_text()


# findings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["native", "ref"])
def test_findings_hold(holding_dir, method):
    found = verdicts(check_dataset(load_results_dir(holding_dir), ("native", "ref")), method)
    for key in ("nf4_crossover", "int8_penalty", "int8_pure_recovery", "batch_scaling"):
        for basis in ("gross", "net"):
            assert found[(key, basis)].verdict == "holds", found[(key, basis)].detail
    nf4 = found[("nf4_crossover", "gross")].detail
    assert nf4.startswith("nf4 vs fp16: tinyllama (1.1B) +")
    assert "mistral (7.2B) -" in nf4
    assert "recovers" in found[("int8_pure_recovery", "gross")].detail
    assert "mistral fp16: slope -1.0" in found[("batch_scaling", "gross")].detail or \
        "mistral fp16: slope -0.9" in found[("batch_scaling", "gross")].detail
    assert "bs8 vs bs1 -8" in found[("batch_scaling", "gross")].detail


def test_finding_numbers_are_the_data(holding_dir):
    results = {(r["model"], r["quant"], r["batch_size"]): float(r["energy_j_per_1k_mean"])
               for r in read_csv(holding_dir / "results.csv") if r["status"] == "ok"}
    delta = 100 * (results[("tinyllama", "nf4", "1")] / results[("tinyllama", "fp16", "1")] - 1)
    found = verdicts(check_dataset(load_results_dir(holding_dir), ("native",)))
    assert f"tinyllama (1.1B) {delta:+.1f} %" in found[("nf4_crossover", "gross")].detail
    sizes = [1, 4, 8]
    e = [results[("mistral", "fp16", str(b))] for b in sizes]
    slope = np.polyfit(np.log(sizes), np.log(e), 1)[0]
    assert f"mistral fp16: slope {slope:.2f} over bs 1, 4, 8" in found[("batch_scaling", "gross")].detail


@pytest.mark.parametrize("method", ["native", "ref"])
def test_findings_do_not_hold(failing_dir, method):
    found = verdicts(check_dataset(load_results_dir(failing_dir), ("native", "ref")), method)
    for key in ("nf4_crossover", "int8_penalty", "int8_pure_recovery", "batch_scaling"):
        for basis in ("gross", "net"):
            assert found[(key, basis)].verdict == "does not hold", found[(key, basis)].detail
    assert "against the claim: tinyllama (1.1B) -" in found[("nf4_crossover", "gross")].detail
    assert "recovers 1" in found[("int8_pure_recovery", "gross")].detail  # ~12.5 %


def test_findings_not_testable(tmp_path):
    root = write_results_dir(tmp_path, [FixtureConfig("tiny-llama-test", 0.0005, q) for q in ("fp16", "bf16")])
    found = check_dataset(load_results_dir(root), ("native",))
    assert {f.verdict for f in found} == {"not testable here"}
    details = {f.key: f.detail for f in found}
    assert "nf4 and fp16" in details["nf4_crossover"]
    assert "int8 and fp16" in details["int8_penalty"]
    assert "two or more batch sizes" in details["batch_scaling"]


def test_crossover_needs_both_sides(tmp_path):
    root = write_results_dir(tmp_path, [FixtureConfig("mistral", 7.2, q, energy_j_per_1k=e)
                                        for q, e in (("fp16", 4000.0), ("nf4", 3000.0))])
    found = verdicts(check_dataset(load_results_dir(root), ("native",)))
    f = found[("nf4_crossover", "gross")]
    assert f.verdict == "not testable here" and "below 5B" in f.detail and "mistral (7.2B)" in f.detail


# files and plots ---------------------------------------------------------------------------
def test_every_file_written(holding_report):
    for name in FILES:
        path = holding_report / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in PNGS:
        assert (holding_report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (holding_report / "report.md").read_text()
    for name in PNGS:
        assert f"]({name})" in md
    assert "power trace of" in md and "not plotted" not in md


def test_plots_written_without_data(tmp_path):
    """With only failed rows there is nothing to draw; every file is still written."""
    root = write_results_dir(tmp_path / "r", [FAILED])
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    for name in PNGS:
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "not plotted" in (tmp_path / "out" / "report.md").read_text()


def test_tables_in_seed_format(holding_dir, holding_report):
    rows = [r for r in read_csv(holding_report / "tables.csv") if r["method"] == "native"]
    results = {(r["model"], r["quant"], r["batch_size"]): r for r in read_csv(holding_dir / "results.csv")}
    assert len(rows) == 14  # 3 models x 4 quants + mistral fp16 at bs 4 and 8
    for r in rows:
        source = results[(r["model"], r["quant"], r["batch_size"])]
        for column in ("energy_j_per_1k_mean", "energy_net_j_per_1k_mean", "throughput_tok_s_mean",
                       "power_w_mean", "idle_power_w"):
            assert float(r[column]) == pytest.approx(float(source[column]), rel=1e-9)
        if source["delta_vs_fp16_pct"]:
            assert float(r["delta_vs_fp16_pct"]) == pytest.approx(float(source["delta_vs_fp16_pct"]), rel=1e-6)
    md = (holding_report / "report.md").read_text()
    mistral = next(r for r in rows if (r["model"], r["quant"], r["batch_size"]) == ("mistral", "fp16", "1"))
    mean, sd = float(mistral["energy_j_per_1k_mean"]), float(mistral["energy_j_per_1k_std"])
    assert f"{mean:,.0f} ± {sd:,.0f}" in md  # thousands separators, like the seed's "1,659 ± 18"
    assert f"{float(mistral['throughput_tok_s_mean']):.2f} ± " in md
    assert "#### native meter (headline figure)" in md and "#### 10 Hz reference method" in md


def test_failed_rows_listed_not_used(holding_report):
    md = (holding_report / "report.md").read_text()
    assert "## Failed configurations (not used)" in md and "CUDA out of memory (fixture)" in md
    failed = [r for r in read_csv(holding_report / "tables.csv") if r["status"] == "failed"]
    assert [(r["model"], r["quant"]) for r in failed] == [("qwen2-7b", "nf4")]
    assert all(r["model"] != "qwen2-7b" for r in read_csv(holding_report / "statistics.csv"))


def test_method_choice(holding_dir, tmp_path):
    assert main([str(holding_dir), "--method", "ref", "--out", str(tmp_path)]) == 0
    assert {r["method"] for r in read_csv(tmp_path / "tables.csv") if r["status"] == "ok"} == {"ref"}
    assert {r["method"] for r in read_csv(tmp_path / "statistics.csv")} == {"ref"}
    assert {r["method"] for r in read_csv(tmp_path / "findings.csv")} == {"ref"}


def test_latest_rerun_is_used(tmp_path):
    configs = [FixtureConfig("tinyllama", 1.1, "fp16", energy_j_per_1k=1000.0),
               FixtureConfig("tinyllama", 1.1, "nf4", energy_j_per_1k=1100.0),
               FixtureConfig("tinyllama", 1.1, "fp16", energy_j_per_1k=2000.0)]
    dataset = load_results_dir(write_results_dir(tmp_path, configs))
    assert len(dataset.superseded) == 1
    [gross] = [c for c in compare_dataset(dataset, ("native",)) if c.basis == "gross"]
    assert gross.baseline.mean == pytest.approx(2000.0, rel=0.05)
    assert gross.delta_pct == pytest.approx(-45.0, abs=3.0)


def test_rows_of_other_protocols_do_not_replace_each_other(tmp_path):
    root = write_results_dir(tmp_path, [FixtureConfig("tinyllama", 1.1, "fp16")], iterations=2)
    (first,) = read_csv(root / "results.csv")
    first["regime"] = ""  # as written before the regime column
    variants = [{"new_tokens": "64"}, {"device": "cpu"}, {"regime": "graph"},
                {"regime": "eager"}]  # no regime column = eager: this one replaces the first
    with open(root / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*first, "regime"])
        writer.writeheader()
        writer.writerows([first, *({**first, **v} for v in variants)])
    dataset = load_results_dir(root)
    assert [(c.row["new_tokens"], c.row["device"], c.row.get("regime")) for c in dataset.configs] == [
        ("64", "cuda", ""), ("256", "cpu", ""), ("256", "cuda", "graph"), ("256", "cuda", "eager")]
    assert [c.row.get("regime") for c in dataset.superseded] == [""]


# several directories, several GPUs, the seed ----------------------------------------------
def test_several_dirs_side_by_side(tmp_path, monkeypatch):
    a = write_results_dir(tmp_path / "h100", holding_configs("NVIDIA H100 80GB HBM3"))
    b = write_results_dir(tmp_path / "h200", failing_configs("NVIDIA H200"))
    monkeypatch.chdir(tmp_path)
    assert main(["h100", "h200", "--include-seed"]) == 0
    out = tmp_path / "report"  # the default for several directories
    for name in FILES:
        assert (out / name).stat().st_size > 0
    md = (out / "report.md").read_text()
    assert "## Side by side" in md
    header = next(line for line in md.splitlines() if line.startswith("| Model | Config | BS | "))
    for column in ("NVIDIA H100 80GB HBM3 · native · h100", "NVIDIA H200 · ref · h200",
                   f"NVIDIA GeForce RTX 5090 · published · {SEED_LABEL}"):
        assert column in header
    datasets = {r["dataset"] for r in read_csv(out / "tables.csv")}
    assert datasets == {"h100", "h200", SEED_LABEL}
    findings = read_csv(out / "findings.csv")
    assert {(r["dataset"], r["verdict"]) for r in findings if r["finding"] == "int8_penalty"
            and r["method"] == "native" and r["basis"] == "gross"} == {("h100", "holds"),
                                                                         ("h200", "does not hold")}
    assert a.exists() and b.exists()


def test_one_dir_several_gpus(tmp_path):
    root = write_results_dir(tmp_path, holding_configs("GPU A") + failing_configs("GPU B"))
    dataset = load_results_dir(root)
    assert dataset.gpus() == ["GPU A", "GPU B"] and not dataset.notes
    found = check_dataset(dataset, ("native",))
    by_gpu = {f.gpu_name: f.verdict for f in found if f.key == "nf4_crossover" and f.basis == "gross"}
    assert by_gpu == {"GPU A": "holds", "GPU B": "does not hold"}
    # iterations.csv has no GPU column: each block must have gone to its own GPU's row
    for c in dataset.ok:
        assert np.mean(c.iteration_energy_per_1k("native", "gross")) == pytest.approx(
            c.energy_per_1k("native", "gross"), rel=1e-9)


def test_seed_dataset():
    seed = load_seed()
    assert seed.is_seed and seed.label == SEED_LABEL and seed.methods == ("published",)
    assert len(seed.configs) == 30 and all(c.ok and c.dataset == SEED_LABEL for c in seed.configs)
    assert {c.row["source"] for c in seed.configs} == {"seed memo 2026-02-13"}
    assert seed.gpus() == ["NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090D", "NVIDIA A800 80GB PCIe"]
    by = {(c.gpu_name.split()[-1], c.model, c.quant, c.batch_size): c for c in seed.configs}
    assert by[("5090", "tinyllama", "nf4", 1)].energy_per_1k("published", "gross") == 2098
    assert math.isnan(by[("4090D", "mistral", "int8", 1)].energy_per_1k("published", "gross"))
    assert by[("4090D", "mistral", "int8", 1)].energy_per_1k("published", "net") == 7401
    assert by[("PCIe", "mistral", "fp16", 8)].energy_per_1k("published", "gross") == 628
    # published deltas agree with the published means to the memo's rounding
    for c in seed.configs:
        for basis, column in (("gross", "delta_vs_fp16_pct"), ("net", "delta_vs_fp16_net_pct")):
            published = c.value(column)
            if math.isfinite(published):
                base = next(b for b in seed.ok_on(c.gpu_name) if b.quant == "fp16"
                            and b.model == c.model and b.batch_size == c.batch_size)
                mine = 100 * (c.energy_per_1k("published", basis) / base.energy_per_1k("published", basis) - 1)
                assert mine == pytest.approx(published, abs=0.6)
    assert compare_dataset(seed, ("native", "ref")) == []
    found = {(f.gpu_name.split()[-1], f.key, f.basis): f.verdict for f in check_dataset(seed, ("native",))}
    assert found[("5090", "nf4_crossover", "gross")] == "holds"
    assert found[("4090D", "nf4_crossover", "net")] == "does not hold"  # Phi-3 (3.8B) saves 8.1 %
    assert found[("4090D", "int8_penalty", "net")] == "holds"
    assert found[("PCIe", "int8_pure_recovery", "gross")] == "holds"
    assert found[("PCIe", "batch_scaling", "gross")] == "holds"


def test_seed_only_report(tmp_path):
    report = build_report([load_seed()], tmp_path)
    assert report.comparisons == [] and all(p.stat().st_size > 0 for p in report.files)
    md = (tmp_path / "report.md").read_text()
    assert md.count(SEED_LABEL) >= 5 and "1,659 ± 18" in md
    assert all(r["dataset"] == SEED_LABEL for r in read_csv(tmp_path / "tables.csv"))


# the command line --------------------------------------------------------------------------
def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--out", "--include-seed", "--method"):
        assert option in out


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such directory"),
    (lambda d: d.mkdir(), "no results.csv"),
    (lambda d: (d.mkdir(), (d / "results.csv").write_text("")), "is empty"),
    (lambda d: (d.mkdir(), (d / "results.csv").write_text(",".join(RESULT_COLUMNS) + "\n")), "has no rows"),
    (lambda d: (d.mkdir(), (d / "results.csv").write_text("a,b\n1,2\n")), "missing columns"),
    (lambda d: (d.mkdir(), (d / "results.csv").write_bytes(b"\xff\xfe\x00garbage")), "malformed"),
])
def test_bad_input_exits_2(tmp_path, capsys, setup, message):
    d = tmp_path / "results"
    setup(d)
    assert main([str(d)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecomeasure.report: error: ") and message in err
    assert err.count("\n") == 1


def test_malformed_rows_exit_2(tmp_path, capsys):
    root = write_results_dir(tmp_path / "r", [FixtureConfig("tinyllama", 1.1, "fp16")])
    text = (root / "results.csv").read_text().replace(",fp16,1,", ",fp16,one,")
    (root / "results.csv").write_text(text)
    assert main([str(root)]) == 2
    assert f"{root / 'results.csv'}, line 2, column batch_size: 'one' is not a number" in capsys.readouterr().err
    (root / "results.csv").write_text(text.splitlines()[0] + "\nok,too,few\n")
    assert main([str(root)]) == 2
    assert "wrong number of fields" in capsys.readouterr().err


@pytest.mark.parametrize("name, column", [("results.csv", "energy_j_per_1k_mean"), ("iterations.csv", "energy_j")])
def test_a_non_numeric_figure_stops_the_report(tmp_path, capsys, name, column):
    root = write_results_dir(tmp_path / "r", [FixtureConfig("tinyllama", 1.1, "fp16")], iterations=2)
    rows = read_csv(root / name)
    rows[-1][column] = "12,5 J"  # a hand-edited cell
    with open(root / name, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main([str(root)]) == 2
    err = capsys.readouterr().err
    assert err == f"ecomeasure.report: error: {root / name}, line {len(rows) + 1}, column {column}: " \
                  "'12,5 J' is not a number\n"


def test_no_dirs_is_an_error(capsys):
    assert main([]) == 2
    assert "at least one results directory" in capsys.readouterr().err


def test_fixture_columns_follow_the_benchmark():
    """The fixture writes docs/results-format.md's columns; so must the benchmark."""
    results = pytest.importorskip("ecomeasure.bench.results")
    assert tuple(results.RESULT_COLUMNS) == RESULT_COLUMNS
    assert tuple(results.ITERATION_COLUMNS) == ITERATION_COLUMNS


def test_fixture_is_labelled(holding_dir):
    rows = read_csv(holding_dir / "results.csv")
    assert {r["gpu_name"] for r in rows} == {FIXTURE_GPU} and {r["weights"] for r in rows} == {"random"}


def test_quants_are_compared_with_fp16_of_the_same_card_only(tmp_path):
    # Two H200 cards differed by ~11 % in energy per token for the same work: a delta across
    # cards would measure the cards. fp16 on card A, nf4 on A and B, bs 8 on B.
    configs = [FixtureConfig("tinyllama", 1.1, "fp16", energy_j_per_1k=1000.0, card="A"),
               FixtureConfig("tinyllama", 1.1, "nf4", energy_j_per_1k=900.0, card="A"),
               FixtureConfig("mistral", 7.2, "fp16", energy_j_per_1k=4000.0, card="A"),
               FixtureConfig("mistral", 7.2, "nf4", energy_j_per_1k=3000.0, card="B"),
               FixtureConfig("mistral", 7.2, "fp16", batch_size=8, energy_j_per_1k=500.0, card="B")]
    dataset = load_results_dir(write_results_dir(tmp_path, configs))
    compared = {(c.model, c.quant) for c in compare_dataset(dataset, ("native",))}
    assert compared == {("tinyllama", "nf4")}
    found = verdicts(check_dataset(dataset, ("native",)))
    nf4 = found[("nf4_crossover", "gross")]
    assert nf4.verdict == "not testable here" and "mistral" not in nf4.detail, nf4.detail
    assert found[("batch_scaling", "gross")].verdict == "not testable here"  # bs 1 and 8 on two cards
