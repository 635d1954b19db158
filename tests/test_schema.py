"""The results schema the bench writes and the report reads: one rule for a change against a
baseline (the bench's rows and the report's tables agree on it, cell for cell), one
configuration type, one set of file and column names."""
import math
import pickle
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecomeasure.bench.results import ResultsDir, format_value
from ecomeasure.bench.rows import RowContext, iteration_rows, summary_row
from ecomeasure.bench.runner import ConfigRun, Iteration
from ecomeasure.report import tables
from ecomeasure.report.load import load_results_dir
from ecomeasure.schema import (
    CONFIG_COLUMNS,
    ITERATION_COLUMNS,
    ITERATIONS_CSV,
    PROTOCOL_COLUMNS,
    RESULT_COLUMNS,
    RESULTS_CSV,
    TEXT_COLUMNS,
    ConfigKey,
    delta_column,
    parse_float,
    vs_baseline_pct,
)

finite = st.floats(-1e6, 1e6, allow_nan=False)
positive = st.floats(1e-6, 1e6, allow_nan=False)


# the rule --------------------------------------------------------------------------------
@given(value=finite, baseline=positive)
def test_change_against_a_positive_baseline_is_its_percentage(value, baseline):
    got = vs_baseline_pct(value, baseline)
    assert got == pytest.approx(100.0 * (value - baseline) / baseline)
    # Back from the percentage to the value: the sign and size of the change are right.
    assert baseline * (1 + got / 100) == pytest.approx(value, rel=1e-9, abs=1e-9 * baseline)


@pytest.mark.parametrize("baseline", [0.0, -0.0, -1.0, -1e-9, math.nan, math.inf, -math.inf])
def test_no_change_against_a_baseline_that_is_not_a_positive_number(baseline):
    # A net energy within noise of idle (zero or below) has no meaningful ratio.
    assert math.isnan(vs_baseline_pct(5.0, baseline))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_no_change_of_a_value_that_is_not_a_number(value):
    assert math.isnan(vs_baseline_pct(value, 5.0))


def test_a_baseline_under_one_is_still_a_baseline():
    assert vs_baseline_pct(0.75, 0.5) == pytest.approx(50.0)
    assert vs_baseline_pct(90.0, 100.0) == pytest.approx(-10.0)


def test_delta_columns_are_named_by_their_baseline():
    assert delta_column() == "delta_vs_fp16_pct" and delta_column(basis="net") == "delta_vs_fp16_net_pct"
    assert delta_column("bf16", "net") == "delta_vs_bf16_net_pct"
    for basis in ("gross", "net"):
        assert delta_column(basis=basis) in RESULT_COLUMNS and delta_column(basis=basis) in tables.TABLE_COLUMNS
    with pytest.raises(ValueError):
        delta_column(basis="idle")


# the bench and the report agree ------------------------------------------------------------
def _run(energies_j: list[float], idle_power_w: float, tokens: int = 100) -> ConfigRun:
    """Iterations of 1 s each, of known (gross) energy, measured by a stand-in meter."""
    its = []
    for k, energy_j in enumerate(energies_j):
        it = Iteration(k, (k + 1) * 10**9, (k + 1) * 10**9 + 10**7, (k + 2) * 10**9, tokens)
        it.total = SimpleNamespace(energy_j=energy_j, method="counter", source_energy_j=lambda _s: math.nan)
        its.append(it)
    return ConfigRun(its, idle_power_w=idle_power_w, ref_idle_power_w=idle_power_w)


def _rows(store: ResultsDir, quant: str, energies_j: list[float], idle_power_w: float) -> dict:
    ctx = RowContext(model="m", model_id="m", quant=quant, batch_size=1, regime="eager", new_tokens=100,
                     iterations=len(energies_j), device="cuda", gpu_name="GPU", gpu_uuid="GPU-1", params_b=1.0)
    run = _run(energies_j, idle_power_w)
    its = iteration_rows(ctx, run)
    base = store.find(model="m", quant="fp16", batch_size=1, regime="eager")
    row = summary_row(ctx, run, its, base[-1] if base else None, "")
    store.append_iterations(its)
    store.append_result(row)
    return row


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fp16_j=st.lists(st.floats(50.0, 200.0), min_size=2, max_size=4),
       int8_j=st.lists(st.floats(50.0, 400.0), min_size=2, max_size=4),
       idle_w=st.sampled_from([0.0, 40.0, 100.0, 150.0, 500.0]))
def test_bench_rows_and_report_tables_agree_on_the_change_vs_fp16(tmp_path_factory, fp16_j, int8_j, idle_w):
    # Idle power from none to above the iterations' power: net baselines positive, zero-ish and
    # negative, where the rule says NaN.
    root = tmp_path_factory.mktemp("results")
    store = ResultsDir(root)
    _rows(store, "fp16", fp16_j, idle_w)
    bench = _rows(store, "int8", int8_j, idle_w)
    dataset = load_results_dir(root)
    config = next(c for c in dataset.ok if c.quant == "int8")
    report = tables.result_row(config, "native", dataset.ok)
    for basis in ("gross", "net"):
        column = delta_column(basis=basis)
        assert _same(bench[column], report[column]), (basis, bench[column], report[column])
        assert _same(parse_float(config.row[column]), report[column])
    if sum(fp16_j) <= idle_w * len(fp16_j):  # the fp16 row's net energy is not above zero
        assert math.isnan(bench[delta_column(basis="net")])
    else:
        assert math.isfinite(bench[delta_column(basis="net")])


# the configuration ---------------------------------------------------------------------------
@given(model=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
       quant=st.sampled_from(["fp16", "bf16", "int8", "nf4"]), batch_size=st.integers(1, 512),
       regime=st.sampled_from(["eager", "graph", "compiled"]))
def test_a_configuration_round_trips_through_its_csv_cells(model, quant, batch_size, regime):
    key = ConfigKey(model, quant, batch_size, regime)
    cells = {column: format_value(value) for column, value in key.columns().items()}
    assert tuple(cells) == CONFIG_COLUMNS
    assert ConfigKey.from_row(cells) == key
    assert key == (model, quant, batch_size, regime)  # a tuple: sets of keys and plain tuples mix
    assert pickle.loads(pickle.dumps(key)) == key  # ranks send their shares pickled


def test_a_row_from_before_regimes_is_eager_and_a_bad_row_is_no_key():
    assert ConfigKey.from_row({"model": "m", "quant": "fp16", "batch_size": "8"}) == ("m", "fp16", 8, "eager")
    assert ConfigKey.from_row({"model": "m", "quant": "fp16", "batch_size": "8", "regime": ""}).regime == "eager"
    with pytest.raises(ValueError):
        ConfigKey.from_row({"model": "m", "quant": "fp16", "batch_size": "eight", "regime": "graph"})
    with pytest.raises(KeyError):
        ConfigKey.from_row({"model": "m", "batch_size": "8"})


# names ---------------------------------------------------------------------------------------
def test_the_bench_writes_the_files_and_columns_the_report_reads(tmp_path):
    store = ResultsDir(tmp_path)
    assert (store.results_csv.name, store.iterations_csv.name) == (RESULTS_CSV, ITERATIONS_CSV)
    from ecomeasure.report import load
    assert set(load.REQUIRED_RESULT_COLUMNS) <= set(RESULT_COLUMNS)
    assert set(load.REQUIRED_ITERATION_COLUMNS) <= set(ITERATION_COLUMNS)
    assert set(PROTOCOL_COLUMNS) <= set(RESULT_COLUMNS) and set(CONFIG_COLUMNS) <= set(ITERATION_COLUMNS)
    assert TEXT_COLUMNS <= set(RESULT_COLUMNS) | set(ITERATION_COLUMNS)
