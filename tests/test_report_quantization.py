"""Which quantization saves energy and why (ecomeasure/report/floor.py), on synthetic results
directories (report_fixture) whose energies, powers and bytes per step are chosen so that each
decision can be made to go either way."""
from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ecomeasure.report import floor, load_results_dir
from ecomeasure.report.__main__ import main
from report_fixture import FixtureConfig, write_results_dir

H200, H100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"
PARAMS_B = 7.2
INT4_BYTES = 0.55  # per parameter: 4-bit weights plus group scales


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def sweep(gpu: str, *, int4: tuple[float, float] | None = (1100.0, 300.0), nf4_energy: float = 3400.0,
          bf16: bool = True, model: str = "mistral", card: str = "GPU-fixture") -> list[FixtureConfig]:
    """fp16 and bf16 at 4000 J/1k and 300 W; nf4 at ``nf4_energy`` and 300 W (its step then
    takes nf4_energy / 4000 of fp16's while reading a quarter of the bytes: far from the floor);
    int4wo at (energy, power); all measured by ``card``. At a fixed power the step time is proportional to energy, so
    int4wo at 1100 J/1k and 300 W keeps fp16's floor fraction and saves in proportion."""
    configs = [FixtureConfig(model, PARAMS_B, "fp16", energy_j_per_1k=4000.0, power_w=300.0, gpu_name=gpu)]
    if bf16:
        configs.append(FixtureConfig(model, PARAMS_B, "bf16", energy_j_per_1k=4000.0, power_w=300.0,
                                     gpu_name=gpu))
    configs.append(FixtureConfig(model, PARAMS_B, "nf4", energy_j_per_1k=nf4_energy, power_w=300.0,
                                 gpu_name=gpu))
    if int4 is not None:
        configs.append(FixtureConfig(model, PARAMS_B, "int4wo", energy_j_per_1k=int4[0], power_w=int4[1],
                                     gpu_name=gpu, bytes_per_param=INT4_BYTES))
    return [replace(c, card=card) for c in configs]


def figures(root: Path, method: str = "native", basis: str = "gross") -> dict[str, floor.SchemeFigure]:
    dataset = load_results_dir(root)
    found = floor.figures_of([dataset], (method,))
    return {f.config.quant: f for f in found if f.basis == basis}


def per_1k(root: Path, quant: str) -> np.ndarray:
    """Energy per 1k tokens of each iteration, straight from iterations.csv."""
    return np.array([float(r["energy_j"]) / float(r["tokens"]) * 1000.0
                     for r in read_csv(root / "iterations.csv") if r["quant"] == quant])


# the figures -------------------------------------------------------------------------------
def test_changes_against_fp16_and_bf16_from_the_iterations(tmp_path):
    root = write_results_dir(tmp_path, sweep(H200))
    found = figures(root)
    int4 = found["int4wo"]
    x, fp16, bf16 = per_1k(root, "int4wo"), per_1k(root, "fp16"), per_1k(root, "bf16")
    for quant, base in (("fp16", fp16), ("bf16", bf16)):
        change = int4.vs[quant]
        assert change.pct == pytest.approx(100 * (x.mean() / base.mean() - 1), rel=1e-9)
        assert change.low < change.pct < change.high
    assert int4.energy.mean == pytest.approx(x.mean(), rel=1e-9)
    # The prediction is bf16's where there is one; bf16 itself is compared with fp16 only.
    assert int4.baseline == "bf16" and set(found["bf16"].vs) == {"fp16"}
    rows = {r["quant"]: r for r in read_csv(root / "results.csv")}
    expected = 100 * (float(rows["int4wo"]["bytes_per_step"]) / float(rows["bf16"]["bytes_per_step"]) - 1)
    assert int4.predicted_pct == pytest.approx(expected) and int4.predicted_pct == pytest.approx(-72.5, abs=0.01)
    assert int4.floor_fraction == pytest.approx(float(rows["int4wo"]["bandwidth_floor_fraction"]))
    assert "fp16" not in found["fp16"].vs and not found["fp16"].removes_bytes


def test_fp16_predicts_where_there_is_no_bf16_row(tmp_path):
    found = figures(write_results_dir(tmp_path, sweep(H200, bf16=False)))
    assert found["int4wo"].baseline == "fp16" and "bf16" not in found["int4wo"].vs
    assert math.isfinite(found["int4wo"].realized_share)


def test_floor_fraction_recomputed_where_the_row_lacks_it(tmp_path):
    root = write_results_dir(tmp_path, sweep(H200))
    config = next(c for c in load_results_dir(root).ok if c.quant == "int4wo")
    row = dict(config.row, bandwidth_floor_fraction="")
    bare = type(config)(**{**config.__dict__, "row": row})
    expected = (float(row["bytes_per_step"]) / (float(row["memory_bandwidth_gb_s"]) * 1e9)
                / (float(row["decode_ms_per_step_mean"]) / 1e3))
    assert floor.floor_fraction(bare) == pytest.approx(expected, rel=1e-6)
    assert floor.floor_fraction(bare) == pytest.approx(floor.floor_fraction(config), rel=1e-6)


def test_change_ci_covers_the_true_ratio():
    """Over many pairs of samples of known means, the 95 % CI of the % change holds the true
    change about 95 % of the time."""
    rng = np.random.default_rng(7)
    true_pct = 100 * (700.0 / 1000.0 - 1)
    hits = 0
    trials = 2000
    for _ in range(trials):
        x = rng.normal(700.0, 20.0, 5)
        y = rng.normal(1000.0, 20.0, 5)
        low, high = floor.change_ci(x, y)
        hits += low <= true_pct <= high
    assert 0.93 <= hits / trials <= 0.97


def test_change_ci_undefined_cases():
    assert all(math.isnan(v) for v in floor.change_ci([1.0], [1.0, 2.0]))
    assert all(math.isnan(v) for v in floor.change_ci([1.0, 2.0], [-1.0, 0.5]))
    assert floor.change_ci([2.0, 2.0], [1.0, 1.0]) == (100.0, 100.0)


# the bytes-at-the-floor finding --------------------------------------------------------------
def verdict(root: Path, basis: str = "gross") -> tuple[str, str]:
    found = [f for f in figures(root, basis=basis).values()]
    return floor.decide_bytes_at_floor(found)


def test_holds_when_only_the_scheme_at_the_floor_saves_in_proportion(tmp_path):
    root = write_results_dir(tmp_path, sweep(H200))
    found = figures(root)
    assert found["int4wo"].near_floor and found["int4wo"].proportional == floor.PROPORTIONAL
    assert found["nf4"].near_floor is False and found["nf4"].proportional == floor.SHORT
    result, detail = verdict(root)
    assert result == "holds", detail
    assert "is tested" not in detail  # both sides of the claim tested


def test_does_not_hold_when_a_scheme_at_the_floor_falls_short(tmp_path):
    """int4wo's step keeps fp16's floor fraction, but at 2.18x the power: -40 % per token
    where its bytes predict -72.5 %."""
    root = write_results_dir(tmp_path, sweep(H200, int4=(2400.0, 300.0 * 2400.0 / 1100.0)))
    found = figures(root)
    assert found["int4wo"].near_floor and found["int4wo"].proportional == floor.SHORT
    result, detail = verdict(root)
    assert result == "does not hold" and "against the claim: mistral int4wo" in detail


def test_does_not_hold_when_a_scheme_away_from_the_floor_saves_in_proportion(tmp_path):
    """int4wo at a third of the power: it saves in proportion while its step stays slow."""
    root = write_results_dir(tmp_path, sweep(H200, int4=(1100.0, 100.0)))
    found = figures(root)
    assert found["int4wo"].near_floor is False and found["int4wo"].proportional == floor.PROPORTIONAL
    result, detail = verdict(root)
    assert result == "does not hold" and "against the claim: mistral int4wo" in detail


def test_one_sided_data_says_so(tmp_path):
    root = write_results_dir(tmp_path, sweep(H200, int4=None))
    result, detail = verdict(root)
    assert result == "holds" and "only 'only when' is tested" in detail


def test_not_testable_without_a_scheme_that_removes_bytes(tmp_path):
    root = write_results_dir(tmp_path, [c for c in sweep(H200) if c.quant in ("fp16", "bf16")])
    assert verdict(root)[0] == "not testable here"


def test_a_ci_across_the_threshold_is_undecided(tmp_path):
    """int4wo saving exactly 0.8 of its bytes' saving, with noise: the CI spans the threshold."""
    energy = 4000.0 * (1 - 0.8 * 0.725)
    configs = sweep(H200, int4=None) + [FixtureConfig("mistral", PARAMS_B, "int4wo", energy_j_per_1k=energy,
                                                      power_w=300.0, gpu_name=H200, bytes_per_param=INT4_BYTES,
                                                      noise=0.05)]
    found = figures(write_results_dir(tmp_path, configs))
    assert found["int4wo"].proportional == floor.UNDECIDED


# the GPU-dependence finding -----------------------------------------------------------------
def gpu_findings(roots: list[Path]) -> list:
    datasets = [load_results_dir(r) for r in roots]
    return floor.check_gpu_dependence(floor.figures_of(datasets, ("native",)))


def test_savings_depend_on_the_gpu(tmp_path):
    h200 = write_results_dir(tmp_path / "h200", sweep(H200, nf4_energy=3400.0), seed=1)
    h100 = write_results_dir(tmp_path / "h100", sweep(H100, nf4_energy=2800.0), seed=2)
    found = {f.basis: f for f in gpu_findings([h200, h100])}
    assert found["gross"].verdict == "holds", found["gross"].detail
    assert f"{H200} vs {H100}" == found["gross"].gpu_name
    assert "differ beyond their CIs: mistral nf4" in found["gross"].detail
    assert "mistral int4wo" not in found["gross"].detail.split("differ beyond their CIs")[-1]
    assert "mistral fp16" not in found["gross"].detail and "mistral bf16" not in found["gross"].detail


def test_savings_do_not_depend_on_the_gpu(tmp_path):
    h200 = write_results_dir(tmp_path / "h200", sweep(H200), seed=1)
    h100 = write_results_dir(tmp_path / "h100", sweep(H100), seed=2)
    found = {f.basis: f for f in gpu_findings([h200, h100])}
    assert found["gross"].verdict == "does not hold", found["gross"].detail
    assert "(CIs overlap)" in found["gross"].detail


def test_one_card_of_each_model_says_the_card_spread_is_unknown(tmp_path):
    h200 = write_results_dir(tmp_path / "h200", sweep(H200, nf4_energy=3400.0), seed=1)
    h100 = write_results_dir(tmp_path / "h100", sweep(H100, nf4_energy=2800.0), seed=2)
    found = {f.basis: f for f in gpu_findings([h200, h100])}
    assert "card spread unknown" in found["gross"].detail


def two_h200_cards(tmp_path: Path, h100_nf4: float) -> list[Path]:
    """Two H200 cards whose nf4 saves -15 % and -35 % against fp16 (a card spread of 20 points),
    and an H100 whose nf4 costs ``h100_nf4`` J/1k against fp16's 4000."""
    return [write_results_dir(tmp_path / "h200-a", sweep(H200, nf4_energy=3400.0, card="GPU-a", int4=None,
                                                         bf16=False), seed=1),
            write_results_dir(tmp_path / "h200-b", sweep(H200, nf4_energy=2600.0, card="GPU-b", int4=None,
                                                         bf16=False), seed=2),
            write_results_dir(tmp_path / "h100", sweep(H100, nf4_energy=h100_nf4, card="GPU-c", int4=None,
                                                       bf16=False), seed=3)]


def test_the_card_spread_is_the_difference_between_two_cards_of_one_model(tmp_path):
    datasets = [load_results_dir(r) for r in two_h200_cards(tmp_path, 2800.0)]
    figures = [f for f in floor.figures_of(datasets, ("native",)) if f.basis == "gross"]
    nf4 = {f.config.card: f.vs["fp16"].pct for f in figures if f.config.quant == "nf4"}
    spreads = floor.card_spreads(figures)
    assert set(spreads) == {(H200, "eager", "native", "gross")}  # the fixture's rows are eager
    spread = spreads[(H200, "eager", "native", "gross")]
    assert spread.points == pytest.approx(abs(nf4["GPU-a"] - nf4["GPU-b"]))
    assert 17 < spread.points < 23 and spread.scheme == "mistral nf4" and spread.schemes == 1


def test_a_difference_within_the_card_spread_does_not_make_the_saving_depend_on_the_gpu(tmp_path):
    # The H100's nf4 (-30 %) lies 15 points from the first H200 card's (-15 %), beyond both CIs
    # but within the 20 points two H200 cards differ by.
    found = {f.basis: f for f in gpu_findings(two_h200_cards(tmp_path, 2800.0))}
    assert found["gross"].verdict == "does not hold", found["gross"].detail
    assert "(CIs apart, within the card spread)" in found["gross"].detail
    assert "card spread " in found["gross"].detail and "differ beyond" not in found["gross"].detail


def test_a_difference_beyond_the_card_spread_does(tmp_path):
    found = {f.basis: f for f in gpu_findings(two_h200_cards(tmp_path, 1400.0))}  # -65 %: 50 points away
    assert found["gross"].verdict == "holds", found["gross"].detail
    assert "differ beyond their CIs: mistral nf4" in found["gross"].detail
    assert "card spread" in found["gross"].detail and "card spread unknown" not in found["gross"].detail


def test_every_pair_of_n_gpus(tmp_path):
    roots = [write_results_dir(tmp_path / str(k), sweep(gpu), seed=k)
             for k, gpu in enumerate((H200, H100, "NVIDIA GH200"))]
    pairs = {f.gpu_name for f in gpu_findings(roots) if f.basis == "gross"}
    assert len(pairs) == 3


def test_a_card_without_bf16_is_compared_against_fp16(tmp_path):
    # One card measured fp16 and bitsandbytes' schemes only, the other bf16 and fp16 too: each
    # scheme on both is compared against the baseline both have.
    h200 = write_results_dir(tmp_path / "h200", [c for c in sweep(H200, nf4_energy=3400.0) if c.quant != "bf16"],
                             seed=1)
    h100 = write_results_dir(tmp_path / "h100", sweep(H100, nf4_energy=2800.0), seed=2)
    found = {f.basis: f for f in gpu_findings([h200, h100])}
    assert found["gross"].verdict == "holds", found["gross"].detail
    assert "mistral nf4 vs fp16 in eager" in found["gross"].detail
    assert " vs bf16 " not in found["gross"].detail


def test_two_gpus_without_a_common_scheme_are_not_testable(tmp_path):
    h200 = write_results_dir(tmp_path / "h200", [c for c in sweep(H200) if c.quant in ("fp16", "nf4")], seed=1)
    h100 = write_results_dir(tmp_path / "h100", [c for c in sweep(H100) if c.quant in ("fp16", "int4wo")], seed=2)
    found = gpu_findings([h200, h100])
    assert {f.verdict for f in found} == {"not testable here"}
    assert {f.gpu_name for f in found} == {f"{H200} vs {H100}"} and {f.basis for f in found} == {"gross", "net"}


def test_one_gpu_is_not_testable(tmp_path):
    found = gpu_findings([write_results_dir(tmp_path, sweep(H200))])
    assert {f.verdict for f in found} == {"not testable here"}


# the report --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_card_report(tmp_path_factory) -> Path:
    """The report of an H200 and an H100 directory given as relative paths."""
    cwd = tmp_path_factory.mktemp("cwd")
    write_results_dir(cwd / "runs" / "h200", sweep(H200), seed=1)
    write_results_dir(cwd / "runs" / "h100", sweep(H100, nf4_energy=2800.0), seed=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        assert main(["runs/h200", "runs/h100", "--out", "out", "--method", "native"]) == 0
    return cwd


def test_report_has_the_section_plot_and_csv(two_card_report):
    out = two_card_report / "out"
    md = (out / "report.md").read_text()
    assert "## Which quantization saves energy per token, and why" in md
    assert f"### {H100} - runs/h100 (native, gross)" in md
    assert f"]({floor.ENERGY_VS_BYTES_PNG})" in md
    assert (out / floor.ENERGY_VS_BYTES_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(out / floor.QUANTIZATION_CSV)
    int4 = [r for r in rows if r["quant"] == "int4wo" and r["basis"] == "gross"]
    assert {r["gpu_name"] for r in int4} == {H200, H100}
    assert all(r["prediction_baseline"] == "bf16" and r["vs_bf16_pct"] and r["vs_fp16_ci95_low"] for r in int4)
    findings = {(r["finding"], r["gpu_name"], r["basis"]): r["verdict"] for r in read_csv(out / "findings.csv")}
    assert findings[("bytes_at_floor", H200, "gross")] == "holds"
    assert findings[("gpu_dependence", f"{H200} vs {H100}", "gross")] == "holds"


def test_report_headings_keep_relative_inputs(two_card_report):
    out = two_card_report / "out"
    for name in ("report.md", floor.QUANTIZATION_CSV, "findings.csv"):
        assert str(two_card_report) not in (out / name).read_text(), name
    headings = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("#")]
    assert all("/tmp" not in h and not h.split(" - ")[-1].startswith("/") for h in headings)


def test_plot_says_why_without_a_scheme_that_removes_bytes(tmp_path):
    root = write_results_dir(tmp_path / "r", [c for c in sweep(H200) if c.quant in ("fp16", "bf16")])
    path, caption = floor.plot_energy_vs_bytes(list(figures(root).values()), tmp_path / "p.png")
    assert caption.startswith("not plotted") and path.stat().st_size > 0


# the prose of README.md and docs/quantization.md: every figure from the committed dataset --------
ROOT = Path(__file__).resolve().parent.parent


def one_line(path: str) -> str:
    """A committed page with its whitespace collapsed, so that prose may wrap anywhere."""
    return " ".join((ROOT / path).read_text().split())


def quantization_doc() -> str:
    return one_line("docs/quantization.md")


def committed_results(name: str):
    """A results directory under docs/results."""
    return load_results_dir(ROOT / "docs" / "results" / name)


def test_the_h200_figures_in_the_prose_are_the_data():
    dataset = committed_results("2026-11-30-h200")
    graph = [f for f in floor.figures_of([dataset], ("native",))
             if (f.basis, f.config.regime, f.config.batch_size) == ("gross", "graph", 1)]

    def span(quant: str, value, digits: int, sep: str = "-") -> str:
        values = sorted(value(f) for f in graph if f.config.quant == quant and f.removes_bytes)
        return f"{values[0]:.{digits}f}{sep}{values[-1]:.{digits}f}"

    nf4_bytes = span("nf4", lambda f: -f.predicted_pct, 0)
    nf4_floor = span("nf4", lambda f: f.floor_share, 2)
    nf4_realized = span("nf4", lambda f: f.realized_share, 2)
    readme = one_line("README.md")
    for phrase in (f"nf4 reads {nf4_bytes} % fewer bytes", f"reaches {nf4_floor} of fp16's fraction",
                   f"saves {nf4_realized} of what its bytes predict"):
        assert phrase in readme, phrase
    doc = quantization_doc()
    for phrase in (f"nf4 reads {nf4_bytes} % fewer bytes", f"costs {span('nf4', lambda f: -f.measured.pct, 1)} % less",
                   f"{nf4_realized} of its bytes' saving",
                   f"reach {span('nf4', lambda f: 100 * f.floor_fraction, 0)} % of the floor",
                   f"{nf4_floor} of fp16's fraction",
                   f"Pure int8 reads {span('int8_pure', lambda f: -f.predicted_pct, 0)} % fewer bytes",
                   f"realizes {span('int8_pure', lambda f: f.realized_share, 2, ' to ')} of",
                   f"at {span('int8_pure', lambda f: f.floor_share, 2)} of fp16's floor fraction"):
        assert phrase in doc, phrase
    verdicts = {(f.dataset.split(" · ")[-1], f.basis): f for f in floor.check_bytes_at_floor(
        floor.figures_of([dataset], ("native",)))}
    for regime in ("eager", "graph"):
        for basis in ("gross", "net"):
            f = verdicts[(regime, basis)]
            assert f.verdict == "holds" and "only 'only when' is tested" in f.detail, (regime, basis)


H100_0612, H100_0712 = "GPU-d6be36fb-", "GPU-d708aa51-"  # the cards both ran bf16 and fp16 beside a scheme
NAMES = {"tinyllama": "TinyLlama", "qwen2-1.5b": "Qwen2-1.5B", "qwen2.5-3b": "Qwen2.5-3B", "phi3-mini": "Phi-3-mini",
         "yi-1.5-6b": "Yi-1.5-6B", "mistral": "Mistral-7B", "qwen2-7b": "Qwen2-7B", "qwen2.5-7b": "Qwen2.5-7B"}


def test_the_2026_12_07_h100_rows_in_the_prose_are_the_data():
    """Two cards in one directory: GPU-3ca0ca23's rows are quoted as measured and said to have
    no saving (no 16-bit row on that card); GPU-d708aa51's eight models are quoted per scheme."""
    from ecomeasure import fmt
    results = committed_results("2026-12-07-h100")
    by_card: dict[str, list] = {}
    for c in results.configs:
        by_card.setdefault(c.card[:13], []).append(c)
    assert set(by_card) == {"GPU-3ca0ca23-", H100_0712}
    lone = {(c.model, c.quant, c.regime): c for c in by_card["GPU-3ca0ca23-"]}
    assert not [c for c in lone.values() if c.quant in ("fp16", "bf16")]
    doc = quantization_doc()
    int4 = lone["mistral", "int4wo", "compiled"]
    assert int4.value("throughput_tok_s_mean") >= 250
    assert (f"Mistral-7B int4wo runs {int4.value('throughput_tok_s_mean'):.1f} tok/s at "
            f"{int4.value('energy_j_per_1k_mean'):,.0f} J/1k gross (GPU busy "
            f"{100 * int4.value('gpu_busy_share_mean'):.0f} %, {100 * int4.value('bandwidth_floor_fraction'):.0f} % "
            f"of the floor)") in doc
    eager = [lone["qwen2-1.5b", q, "eager"] for q in ("fp8wo", "fp8dq", "int8dq")]
    assert ("({}, {} and {} tok/s; {}, {} and {} J/1k)".format(
        *(f"{c.value('throughput_tok_s_mean'):.1f}" for c in eager),
        *(f"{c.value('energy_j_per_1k_mean'):,.0f}" for c in eager))) in doc

    figures = [f for f in floor.figures_of([results], ("native",)) if f.basis == "gross"]
    assert {f.config.card[:13] for f in figures} == {H100_0712}  # the lone card's rows compare with nothing
    mine = [f for f in figures if (f.config.regime, f.config.batch_size) == ("graph", 1)]
    assert len({f.config.model for f in mine}) == 8

    def of(quant: str, base: str) -> dict[str, float]:
        return {f.config.model: f.vs[base].pct for f in mine if f.config.quant == quant}

    def span(values: dict[str, float], named: bool = False) -> str:
        lo, hi = max(values, key=values.__getitem__), min(values, key=values.__getitem__)  # least to most saved
        if named:
            return f"from {fmt.pct(values[lo])} ({NAMES[lo]}) to {fmt.pct(values[hi])} ({NAMES[hi]})"
        return f"{fmt.pct(values[lo])} to {fmt.pct(values[hi])}"

    int4wo, nf4, pure = of("int4wo", "bf16"), of("nf4", "fp16"), of("int8_pure", "fp16")
    assert len(int4wo) == len(nf4) == 8 and all(v < 0 for v in (*int4wo.values(), *nf4.values()))
    rows = {(f.config.model, f.config.quant): f for f in mine}
    m4, mb = rows["mistral", "int4wo"].config, rows["mistral", "bf16"].config
    speed = m4.value("throughput_tok_s_mean") / mb.value("throughput_tok_s_mean")
    int4_figs = [f for f in mine if f.config.quant == "int4wo"]
    floors = [f.floor_fraction for f in int4_figs]
    shares = [f.floor_share for f in int4_figs]
    realized = [f.realized_share for f in int4_figs]
    small = {m: pure[m] for m in ("tinyllama", "qwen2-1.5b", "qwen2.5-3b")}
    large = {m: v for m, v in pure.items() if m not in small}
    quantized = [f for f in mine if f.config.quant not in ("fp16", "bf16")]
    closest = max(quantized, key=lambda f: f.floor_share)
    for phrase in (
            f"{span(int4wo, named=True)} against bf16, {fmt.pct(int4wo['qwen2-7b'])} on both 7.6B Qwen models",
            f"runs {m4.value('throughput_tok_s_mean'):.1f} tok/s against bf16's "
            f"{mb.value('throughput_tok_s_mean'):.1f} ({speed:.2f}x)",
            f"reach {100 * min(floors):.0f}-{100 * max(floors):.0f} % of the bandwidth floor, "
            f"{min(shares):.2f}-{max(shares):.2f} of bf16's fraction, and realize "
            f"{min(realized):.2f}-{max(realized):.2f} of what its bytes predict",
            f"{fmt.pct(max(nf4.values()))} to {fmt.pct(min(nf4.values()))} against fp16",
            f"{fmt.pct(small['tinyllama'])} (TinyLlama) and {fmt.pct(small['qwen2-1.5b'])} (Qwen2-1.5B), "
            f"{fmt.pct(small['qwen2.5-3b'])} (Qwen2.5-3B), and {span(large)} on the four larger models",
            "cost {} to {} and {} to {} against bf16".format(
                *(fmt.pct(f(of(q, "bf16").values())) for q in ("int8wo", "fp8wo") for f in (min, max))),
            f"fp8dq ranges {span(of('fp8dq', 'bf16'), named=True)}",
            f"is {closest.floor_share:.2f} ({NAMES[closest.config.model]} "
            f"{'pure int8' if closest.config.quant == 'int8_pure' else closest.config.quant})"):
        assert phrase in doc, phrase
    assert int4wo["qwen2-7b"] == pytest.approx(int4wo["qwen2.5-7b"], abs=0.05)
    readme = one_line("README.md")
    assert (f"cheapest token on all eight models ({fmt.pct(max(int4wo.values())).removesuffix(' %')} to "
            f"{fmt.pct(min(int4wo.values()))} vs bf16)") in readme
    assert len(large) == 4 and all(v < 0 for v in large.values())
    int8dq = {c.model: c.status for c in by_card[H100_0712] if c.quant == "int8dq"}
    assert int8dq == dict.fromkeys(set(NAMES) - {"mistral", "qwen2-1.5b"}, "unavailable")
    assert "int8dq is `unavailable` at batch size 1 on the six other models" in doc


def test_two_h100_cards_bound_the_card_spread_and_the_gpu_models_differ_beyond_it():
    from ecomeasure import fmt
    dirs = [committed_results(d)
            for d in ("2026-11-30-h200", "2026-12-06-h100", "2026-12-07-h100")]
    figures = floor.figures_of(dirs, ("native",))
    doc = quantization_doc()
    spreads = {key[3]: s for key, s in floor.card_spreads(figures).items() if key[1] == "graph"}
    assert {s.gpu_name for s in spreads.values()} == {H100}
    assert f"({spreads['gross'].points:.1f} points gross, {spreads['net'].points:.1f} net; native meter)" in doc

    gross = [f for f in figures if f.basis == "gross" and (f.config.regime, f.config.batch_size) == ("graph", 1)]
    both_cards: dict[tuple[str, str], dict[str, float]] = {}
    for f in gross:
        if f.config.card[:13] in (H100_0612, H100_0712) and f.config.quant not in ("fp16", "bf16"):
            both_cards.setdefault((f.config.model, f.config.quant), {})[f.config.card[:13]] = f.vs["bf16"].pct
    differences = [abs(v[H100_0612] - v[H100_0712]) for v in both_cards.values() if len(v) == 2]
    assert len(differences) == 5
    assert f"differ by {min(differences):.1f} to {max(differences):.1f} points between the cards" in doc
    mistral = both_cards["mistral", "int4wo"]
    assert f"Mistral-7B int4wo {fmt.pct(mistral[H100_0612])} and {fmt.pct(mistral[H100_0712])}" in doc

    found = {f.basis: f for f in floor.check_gpu_dependence(figures) if f.detail.startswith("graph: ")}
    assert found["gross"].verdict == found["net"].verdict == "holds"
    for basis, f in found.items():
        pairs = f.detail.count(" vs fp16 in graph: ")
        differ = f.detail.count("(differ)")
        assert f"{'Gross' if basis == 'gross' else 'Net of idle'}, {differ} of the {pairs} " in doc, basis
    differ_gross = found["gross"].detail.split("differ beyond their CIs: ")[-1].split(", ")
    nf4_models = [d.split()[0] for d in differ_gross if d.endswith(" nf4")]
    assert len(nf4_models) == 7 and "qwen2-1.5b" not in nf4_models
    assert "nf4 saves more on the H100 on seven of the eight models" in doc
    assert {"tinyllama int8_pure", "qwen2-1.5b bs8 int8_pure"} <= set(differ_gross)

    def change(model: str, quant: str, gpu: str) -> floor.Change:
        """The first card of a GPU model in table order stands for it, as in the verdict."""
        return [f.vs["fp16"] for f in gross if f.config.gpu_name == gpu
                and (f.config.model, f.config.quant) == (model, quant) and "fp16" in f.vs][0]

    def pair(model: str, quant: str) -> str:
        return f"{fmt.pct(change(model, quant, H200).pct)} and {fmt.pct(change(model, quant, H100).pct)}"

    h200_nf4, h100_nf4 = change("mistral", "nf4", H200), change("mistral", "nf4", H100)
    for phrase in (f"Mistral-7B {fmt.pct(h200_nf4.pct)} [{fmt.pct(h200_nf4.low)}, {fmt.pct(h200_nf4.high)}] on the "
                   f"H200 and {fmt.pct(h100_nf4.pct)} [{fmt.pct(h100_nf4.low)}, {fmt.pct(h100_nf4.high)}] on the H100",
                   f"Yi-1.5-6B {pair('yi-1.5-6b', 'nf4')}", f"only Qwen2-1.5B's overlaps ({pair('qwen2-1.5b', 'nf4')})",
                   f"Qwen2.5-3B {pair('qwen2.5-3b', 'int8_pure')}", f"Qwen2.5-7B {pair('qwen2.5-7b', 'int8_pure')}"):
        assert phrase in doc, phrase
    readme = one_line("README.md")
    assert f"(Mistral-7B {fmt.pct(h200_nf4.pct)} and {fmt.pct(h100_nf4.pct)} vs fp16)" in readme
    assert (f"nf4 saves more on the H100 than on the H200 on seven of the eight models, beyond the "
            f"{spreads['gross'].points:.1f} points two H100 cards differ by") in readme

    def tok_s(gpu: str, quant: str) -> str:
        rows = [f.config for f in gross if f.config.gpu_name == gpu and (f.config.model, f.config.quant)
                == ("mistral", quant)]
        return f"{rows[0].value('throughput_tok_s_mean'):.1f}"

    assert (f"Mistral-7B {tok_s(H200, 'nf4')} tok/s on the H200, {tok_s(H100, 'nf4')} on the H100) while "
            f"fp16's falls with the bandwidth ({tok_s(H200, 'fp16')} and {tok_s(H100, 'fp16')} tok/s)") in doc


def test_the_h100_figures_in_the_prose_are_the_data():
    from ecomeasure import fmt
    h100 = committed_results("2026-12-06-h100")
    figures = [f for f in floor.figures_of([h100], ("native",)) if f.basis == "gross"]

    def one(model: str, quant: str, batch_size: int = 1, regime: str = "graph") -> floor.SchemeFigure:
        found = [f for f in figures if (f.config.model, f.config.quant, f.config.batch_size, f.config.regime)
                 == (model, quant, batch_size, regime)]
        assert len(found) == 1, (model, quant, batch_size, regime)
        return found[0]

    def ci(f: floor.SchemeFigure) -> str:
        m = f.measured
        return f"{fmt.pct(m.pct)} [{fmt.pct(m.low)}, {fmt.pct(m.high)}]"

    int4, bf16 = one("mistral", "int4wo"), one("mistral", "bf16")
    assert int4.baseline == "bf16"
    speed = f"{int4.config.value('throughput_tok_s_mean') / bf16.config.value('throughput_tok_s_mean'):.2f}x"
    doc = quantization_doc()
    for phrase in (f"{int4.config.value('throughput_tok_s_mean'):.1f} tok/s against bf16's "
                   f"{bf16.config.value('throughput_tok_s_mean'):.1f} ({speed})",
                   f"costs {ci(int4)} per token", f"Qwen2-1.5B int4wo {ci(one('qwen2-1.5b', 'int4wo'))}",
                   f"reach only {100 * int4.floor_fraction:.0f} % of the bandwidth floor (bf16: "
                   f"{100 * int4.baseline_floor_fraction:.0f} %)",
                   f"realizes {int4.realized_share:.2f} of what its bytes predict",
                   f"nf4 {fmt.pct(one('mistral', 'nf4').measured.pct)}, pure int8 "
                   f"{fmt.pct(one('mistral', 'int8_pure').measured.pct)}",
                   f"int8wo {fmt.pct(one('mistral', 'int8wo').measured.pct)}, fp8wo "
                   f"{fmt.pct(one('mistral', 'fp8wo').measured.pct)}",
                   f"reach {100 * one('mistral', 'int8wo').floor_fraction:.0f} % and "
                   f"{100 * one('mistral', 'fp8wo').floor_fraction:.0f} % of the floor",
                   f"(fp8dq) saves {fmt.pct(one('mistral', 'fp8dq').measured.pct)}",
                   f"pure int8 is the cheapest ({fmt.pct(one('mistral', 'int8_pure', 8).measured.pct)})",
                   f"int4wo saves {fmt.pct(one('mistral', 'int4wo', 8).measured.pct)}, and nf4 costs "
                   f"{fmt.pct(one('mistral', 'nf4', 8).measured.pct)}",
                   f"Mistral-7B int4wo is {ci(one('mistral', 'int4wo', 1, 'eager'))} against bf16",
                   f"it costs {fmt.pct(one('mistral', 'int8dq', 1, 'eager').measured.pct)}",
                   f"with {int4.floor_share:.2f} of bf16's floor fraction"):
        assert phrase in doc, phrase
    readme = one_line("README.md")
    for phrase in (f"Mistral-7B {speed} faster than bf16 at {fmt.pct(int4.measured.pct)}",
                   f"{int4.realized_share:.2f} of its bytes' saving",
                   f"cost {fmt.pct(one('mistral', 'int8wo').measured.pct)} and "
                   f"{fmt.pct(one('mistral', 'fp8wo').measured.pct)}",
                   f"at batch size 8 int4wo saves {fmt.pct(one('mistral', 'int4wo', 8).measured.pct)}"):
        assert phrase in readme, phrase
    verdicts = [f for f in floor.check_bytes_at_floor(floor.figures_of([h100], ("native",)))]
    assert verdicts and all(f.verdict == "holds" and "only 'only when' is tested" in f.detail for f in verdicts)


def test_the_compiled_rows_beside_bf16_on_one_card_in_the_prose_are_the_data():
    """GPU-1a03b07d measured Mistral-7B bf16 and int4wo compiled and graph: the savings, the
    speeds, the regimes against each other and the powers quoted are those rows'."""
    from ecomeasure import fmt
    results = committed_results("2026-12-07-h100-compiled")
    assert {c.card[:13] for c in results.configs} == {"GPU-1a03b07d-"}
    rows = {(c.quant, c.regime): c for c in results.configs}
    assert set(rows) == {(q, r) for q in ("bf16", "int4wo") for r in ("graph", "compiled")}
    figs = {f.config.regime: f for f in floor.figures_of([results], ("native",))
            if f.basis == "gross" and f.config.quant == "int4wo"}

    def tok_s(quant: str, regime: str) -> float:
        return rows[quant, regime].value("throughput_tok_s_mean")

    def energy(quant: str, regime: str) -> float:
        return rows[quant, regime].value("energy_j_per_1k_mean")

    def watts(quant: str, regime: str) -> str:
        return f"{rows[quant, regime].value('power_w_mean'):.0f} W"

    def saving(regime: str) -> str:
        change = figs[regime].vs["bf16"]
        return f"{fmt.pct(change.pct)} [{fmt.pct(change.low)}, {fmt.pct(change.high)}]"

    doc = quantization_doc()
    for phrase in (
            f"{tok_s('int4wo', 'compiled'):.1f} tok/s against bf16's {tok_s('bf16', 'compiled'):.1f} "
            f"({tok_s('int4wo', 'compiled') / tok_s('bf16', 'compiled'):.2f}x), at {saving('compiled')} per token, "
            f"{figs['compiled'].realized_share:.2f} of what its bytes predict",
            f"{tok_s('int4wo', 'graph'):.1f} against {tok_s('bf16', 'graph'):.1f} tok/s "
            f"({tok_s('int4wo', 'graph') / tok_s('bf16', 'graph'):.2f}x), {saving('graph')}, "
            f"{figs['graph'].realized_share:.2f} of the bytes' saving",
            f"{tok_s('bf16', 'compiled') / tok_s('bf16', 'graph'):.2f}x its graph speed, at "
            f"{fmt.pct(100 * (energy('bf16', 'compiled') / energy('bf16', 'graph') - 1))} energy per token",
            f"move to {100 * rows['bf16', 'compiled'].value('bandwidth_floor_fraction'):.0f} % of the bandwidth "
            f"floor (graph: {100 * rows['bf16', 'graph'].value('bandwidth_floor_fraction'):.0f} %)",
            f"rises from {watts('bf16', 'graph')} to {watts('bf16', 'compiled')}",
            f"Compiled int4wo costs {fmt.pct(100 * (energy('int4wo', 'compiled') / energy('int4wo', 'graph') - 1))} "
            "against its graph row",
            f"int4wo draws {watts('int4wo', 'graph')} against bf16's {watts('bf16', 'compiled')} and spends "
            f"{100 * (1 - energy('int4wo', 'graph') / energy('bf16', 'compiled')):.1f} % less per token",
            f"reaches {100 * figs['compiled'].floor_fraction:.0f} % of the floor, "
            f"{figs['compiled'].floor_share:.2f} of compiled bf16's fraction",
            "part from the uncaptured prefill's at token 5"):
        assert phrase in doc, phrase
    assert f"{tok_s('bf16', 'compiled'):.1f}" == f"{tok_s('int4wo', 'graph'):.1f}"  # "both run" the same speed
    readme = one_line("README.md")
    assert (f"Compiled, on one H100, int4wo runs {tok_s('int4wo', 'compiled') / tok_s('bf16', 'compiled'):.2f}x "
            f"bf16's speed at {fmt.pct(figs['compiled'].vs['bf16'].pct)}; compiling bf16 makes it "
            f"{tok_s('bf16', 'compiled') / tok_s('bf16', 'graph'):.2f}x faster but "
            f"{fmt.pct(100 * (energy('bf16', 'compiled') / energy('bf16', 'graph') - 1))} per token") in readme
    assert "at token 5" in rows["bf16", "compiled"].row["notes"]
    verdicts = {r["dataset"]: r["verdict"] for r in read_csv(ROOT / "docs" / "report-quantization" / "findings.csv")
                if r["finding"] == "bytes_at_floor" and (r["method"], r["basis"]) == ("native", "gross")}
    assert verdicts["docs/results/2026-12-07-h100-compiled · compiled"] == "holds"  # "holds here too"


def test_the_cards_that_measured_torchao_and_int4wo_range_in_the_prose_are_the_data():
    torchao = ("int4wo", "int8wo", "fp8wo", "fp8dq", "int8dq")
    dirs = [committed_results(d) for d in ("2026-11-30-h200", "2026-12-06-h100", "2026-12-07-h100",
                                           "2026-12-07-h100-compiled")]
    configs = [c for d in dirs for c in d.configs if c.ok and c.quant in torchao]
    assert {c.gpu_name for c in configs} == {H100}
    cards = {c.card for c in configs}
    words = {3: "three", 4: "four", 5: "five"}
    figures = [f for f in floor.figures_of(dirs, ("native",))
               if f.basis == "gross" and (f.config.model, f.config.quant, f.config.regime, f.config.batch_size)
               == ("mistral", "int4wo", "graph", 1)]
    pcts = [f.vs["bf16"].pct for f in figures]
    assert len(pcts) == 3
    assert (f"measured on H100s only ({words[len(cards)]} cards): whether int4wo's "
            f"{math.ceil(max(pcts)):.0f} to {math.floor(min(pcts)):.0f} % on Mistral-7B") in quantization_doc()
