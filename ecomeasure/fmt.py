"""Every number as text: the report's tables (as the seed's tables write them, "n/a" or a dash
for anything missing), the benchmark's console summary and log lines, and the validation's
tables and CSV files."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeGuard

NA = "n/a"
DASH = "—"
MISSING = "-"
"""A missing figure in the console and the validation's tables (ASCII)."""


def finite(x: object) -> TypeGuard[float]:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def energy(x: float) -> str:
    """J per 1k tokens with thousands separators, no decimals: ``1,659`` (one decimal
    below 100, so small CPU-run figures still read)."""
    if not finite(x):
        return DASH
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 1 else f"{x:.3g}"


def rate(x: float) -> str:
    """Tokens per second (or watts) with two decimals: ``94.87``."""
    return f"{x:,.2f}" if finite(x) else DASH


def with_sd(text_of: Callable[[float], str], mean: float, sd: float) -> str:
    """``mean ± sd`` in the given format; the ± part only where the SD is known."""
    if not finite(mean):
        return DASH
    return f"{text_of(mean)} ± {text_of(sd)}" if finite(sd) else text_of(mean)


def energy_sd(mean: float, sd: float) -> str:
    """``1,659 ± 18``: the SD with as many decimals as the mean."""
    if not finite(mean):
        return DASH
    decimals = 0 if abs(mean) >= 100 else 1
    text = f"{mean:,.{decimals}f}"
    return f"{text} ± {sd:,.{decimals}f}" if finite(sd) else text


def pct(x: float, decimals: int = 1) -> str:
    """A signed percentage: ``+26.5 %``."""
    return f"{x:+.{decimals}f} %" if finite(x) else NA


def plain(x: float, decimals: int = 1) -> str:
    return f"{x:.{decimals}f}" if finite(x) else DASH


def params(x: float) -> str:
    """Parameters in billions: ``7.2B`` (``0.00014B`` for test-sized models)."""
    if not finite(x):
        return "?B"
    return f"{x:.1f}B" if x >= 1 else f"{x:.2g}B"


def p_value(p: float) -> str:
    if not finite(p):
        return NA
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def number(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if finite(x) else NA


def csv_cell(x: object) -> str:
    """A CSV cell: empty for None/NaN, floats to 10 significant digits."""
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.10g}"
    return str(x)


# the console (``python -m ecomeasure.bench``) -------------------------------------------------
def _without_negative_zero(x: float, digits: int) -> float:
    """``x`` rounded to ``digits``, with -0.0 made 0.0: a tiny negative figure prints "0"."""
    return round(x, digits) + 0.0


def grouped(x: float | None, digits: int = 0) -> str:
    """``1,659`` or ``94.87``: thousands separators, ``digits`` decimals, never "-0"; "-" if missing."""
    if not finite(x):
        return MISSING
    return f"{_without_negative_zero(x, digits):,.{digits}f}"


def signed_pct(x: float | None) -> str:
    """A change in percent, ``+26.5 %``, never "-0.0 %"; "-" if missing."""
    return f"{_without_negative_zero(x, 1):+.1f} %" if finite(x) else MISSING


def share_pct(x: float | None) -> str:
    """A share (0..1) in whole percent: ``0.87`` -> ``87 %``; "-" if missing."""
    return f"{100 * x:.0f} %" if finite(x) else MISSING


# the validation (``python -m ecomeasure.validate``) -------------------------------------------
def significant(x: float | None, digits: int = 6) -> str:
    """A CSV cell to ``digits`` significant digits; empty if missing."""
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def fraction_pct(x: float | None, signed: bool = True) -> str:
    """A fraction in percent for tables: 0.0123 -> ``+1.2%``; "-" if missing."""
    if x is None or not math.isfinite(x):
        return MISSING
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"
