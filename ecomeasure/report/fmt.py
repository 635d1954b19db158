"""Numbers as the seed's tables write them; "n/a" for anything missing."""
from __future__ import annotations

import math

NA = "n/a"
DASH = "—"


def finite(x: float | None) -> bool:
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


def with_sd(text_of, mean: float, sd: float) -> str:
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
