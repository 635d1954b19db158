"""Errors against the truth, per workload, window length and method, and the goals."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .methods import METHODS

if TYPE_CHECKING:
    from .run import WindowResult

HEADLINE_GOALS: tuple[tuple[float, float, float], ...] = ((1.0, math.inf, 0.02), (0.25, 0.25, 0.05))
"""(shortest, longest window s, limit): the native headline within 2 % of the truth for
windows of 1 s and longer, within 5 % at 0.25 s (issue 5), judged on isolated bursts."""


@dataclass(frozen=True)
class SummaryRow:
    """One method's errors over the windows of one workload and length. Errors are
    (method - truth) / truth; ``worst_error`` is the signed error of largest magnitude."""
    kind: str
    label: str
    item: int
    length_s: float
    method: str
    n: int
    median_error: float
    median_abs_error: float
    worst_error: float
    mean_duration_s: float


def summarize(windows: list[WindowResult], truth: str = "truth", view: str = "window") -> list[SummaryRow]:
    """One row per (workload, length, method), in the order the windows came; a method
    with no finite error (e.g. ``counter_at_edges`` on a steady load) has n = 0 and NaNs.
    ``view``: ``window`` (each window alone) or ``tail`` (each burst window plus its tail;
    only workloads that have it get rows)."""
    groups: dict[tuple[int, float], list[WindowResult]] = {}
    for w in windows:
        if view == "tail" and not math.isfinite(w.tail_s):
            continue
        groups.setdefault((w.item, w.length_s), []).append(w)
    rows = []
    for ws in groups.values():
        first = ws[0]
        duration = float(np.mean([w.duration_s for w in ws]))
        for method in METHODS:
            errors = np.array([w.error(method, truth, view) for w in ws], dtype=np.float64)
            errors = errors[np.isfinite(errors)]
            if len(errors) == 0:
                rows.append(SummaryRow(first.kind, first.label, first.item, first.length_s, method, 0,
                                       math.nan, math.nan, math.nan, duration))
                continue
            worst = errors[int(np.argmax(np.abs(errors)))]
            rows.append(SummaryRow(first.kind, first.label, first.item, first.length_s, method, len(errors),
                                   float(np.median(errors)), float(np.median(np.abs(errors))),
                                   float(worst), duration))
    return rows


def find(summary: list[SummaryRow], kind: str, length_s: float, method: str) -> SummaryRow | None:
    """The row of a workload kind, length and method (the first, if several labels)."""
    for row in summary:
        if row.kind == kind and row.method == method and math.isclose(row.length_s, length_s):
            return row
    return None


@dataclass(frozen=True)
class GoalCheck:
    """The headline's errors at one length against its goal, with the 10 Hz reference's."""
    length_s: float
    limit: float
    headline: SummaryRow
    reference: SummaryRow | None

    @property
    def met(self) -> bool:
        """Judged on the median |error| (the typical window)."""
        return self.headline.n > 0 and self.headline.median_abs_error <= self.limit

    @property
    def met_by_worst(self) -> bool:
        """Whether even the worst window is within the limit."""
        return self.headline.n > 0 and abs(self.headline.worst_error) <= self.limit


def check_goals(summary: list[SummaryRow], kind: str = "burst") -> list[GoalCheck]:
    """One check per measured length that a goal covers."""
    checks = []
    lengths = sorted({r.length_s for r in summary if r.kind == kind})
    for length in lengths:
        for low, high, limit in HEADLINE_GOALS:
            if low - 1e-9 <= length <= high + 1e-9:
                headline = find(summary, kind, length, "headline")
                if headline is not None:
                    checks.append(GoalCheck(length, limit, headline,
                                            find(summary, kind, length, "reference_10hz")))
                break
    return checks
