"""Constants shared by every module: time on the meter's clock is integer nanoseconds."""
from __future__ import annotations

NS_PER_S = 1_000_000_000
"""Nanoseconds per second: the meter's clock counts integer ns, figures are in seconds."""

NAN = float("nan")
"""A figure that is missing or undefined (written as an empty CSV cell)."""
