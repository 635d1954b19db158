"""The one number formatter (``ecomeasure.fmt``): every figure reads back as the number it
stands for, to the digits it promises, and a missing figure is marked, never printed as "nan"."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecomeasure import fmt
from ecomeasure.bench import display, sweep

numbers = st.floats(-1e9, 1e9, allow_nan=False)
MISSING = [None, math.nan, math.inf, -math.inf]


def _back(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").replace(" ", ""))


@given(x=numbers, digits=st.integers(0, 3))
def test_grouped_reads_back_as_the_rounded_number(x, digits):
    text = fmt.grouped(x, digits)
    assert _back(text) == pytest.approx(round(x, digits), abs=10.0 ** -digits / 2)
    assert not text.startswith("-0") or _back(text) != 0
    whole = text.split(".")[0].lstrip("-")
    assert all(len(group) == 3 for group in whole.split(",")[1:])  # thousands, and only them


def test_console_figures_never_print_a_negative_zero():
    assert fmt.grouped(-0.4) == "0" and fmt.grouped(-0.004, 2) == "0.00"
    assert fmt.signed_pct(-0.04) == "+0.0 %" and fmt.signed_pct(-0.06) == "-0.1 %"
    assert fmt.grouped(1659.4) == "1,659" and fmt.grouped(94.871, 2) == "94.87"


@pytest.mark.parametrize("x", MISSING)
def test_a_missing_figure_is_marked(x):
    assert fmt.grouped(x) == fmt.signed_pct(x) == fmt.share_pct(x) == fmt.MISSING
    assert fmt.energy(x) == fmt.rate(x) == fmt.plain(x) == fmt.DASH
    assert fmt.pct(x) == fmt.p_value(x) == fmt.number(x) == fmt.NA
    assert "nan" not in fmt.significant(x) and "nan" not in fmt.fraction_pct(x)


@given(x=numbers)
def test_signed_pct_has_its_sign_and_one_decimal(x):
    text = fmt.signed_pct(x)
    assert text[0] in "+-" and text.endswith(" %")
    assert _back(text) == pytest.approx(round(x, 1), abs=0.051)


@given(x=st.floats(0, 1))
def test_share_pct_is_a_whole_percentage(x):
    assert fmt.share_pct(x).endswith(" %") and abs(_back(fmt.share_pct(x)) - 100 * x) <= 0.5 + 1e-9


@given(x=st.floats(-1e12, 1e12, allow_nan=False).filter(lambda v: v != 0), digits=st.integers(1, 9))
def test_significant_keeps_its_digits(x, digits):
    assert float(fmt.significant(x, digits)) == pytest.approx(x, rel=10.0 ** (1 - digits))


def test_significant_leaves_a_missing_cell_empty():
    assert fmt.significant(None) == fmt.significant(math.nan) == ""


@given(x=st.floats(-10, 10, allow_nan=False))
def test_fraction_pct_is_the_fraction_in_percent(x):
    assert _back(fmt.fraction_pct(x)) == pytest.approx(100 * x, abs=0.051)
    assert fmt.fraction_pct(abs(x), signed=False)[0] != "+"


def test_the_report_formats_as_the_seed_writes():
    assert fmt.energy(1659.4) == "1,659" and fmt.energy(42.25) == "42.2" and fmt.energy(0.01234) == "0.0123"
    assert fmt.energy_sd(1659.4, 18.2) == "1,659 ± 18" and fmt.energy_sd(42.0, math.nan) == "42.0"
    assert fmt.pct(26.54) == "+26.5 %" and fmt.params(7.24) == "7.2B" and fmt.params(0.000139) == "0.00014B"
    assert fmt.p_value(0.0312) == "0.031" and fmt.p_value(1e-6) == "1.0e-06"
    assert fmt.csv_cell(None) == fmt.csv_cell(math.nan) == "" and fmt.csv_cell(1 / 3) == "0.3333333333"


def test_the_console_and_the_log_line_use_it():
    row = {"model": "m", "quant": "int8", "batch_size": "1", "throughput_tok_s_mean": "1234.567",
           "delta_vs_fp16_pct": "-0.01", "bandwidth_floor_fraction": "0.5", "energy_j_per_1k_mean": ""}
    assert display._num(row["throughput_tok_s_mean"], 2) == "1,234.57"
    assert display._pct(row["delta_vs_fp16_pct"]) == "+0.0 %" and display._pct_of("0.5") == "50 %"
    assert display._num(row["energy_j_per_1k_mean"]) == "-"
    line = sweep._one_line("m int8 bs=1 eager", {"throughput_tok_s_mean": 1234.567, "energy_j_per_1k_mean": math.nan,
                                                  "method": "counter", "energy_net_j_per_1k_mean": -0.2,
                                                  "ref_energy_j_per_1k_mean": None})
    assert line == "m int8 bs=1 eager: 1,234.57 tok/s, - J/1k native (counter), net 0, ref -, no counter"
