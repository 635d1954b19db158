"""The validation's tables: CSV files and the table on screen."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from .analysis import SummaryRow, check_goals
from .methods import METHODS
from .run import Validation

_NS = 1_000_000_000
SHORT = {"headline": "headline", "samples": "samples", "instant": "instant", "average": "average",
         "counter": "counter", "reference_10hz": "ref 10 Hz", "counter_at_edges": "ctr@edges"}


def _num(x: float, digits: int = 6) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def pct(x: float, signed: bool = True) -> str:
    """A fraction as a percentage for tables: 0.0123 -> "+1.2%"; NaN -> "-"."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"


def write_summary_csv(summary: list[SummaryRow], validation: Validation, path: Path) -> Path:
    """One row per workload x length x method, with the truth's bound and diagnostics;
    ``summary``: ``validation.summary`` (windows alone) or ``validation.summary_tail``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "label", "length_s", "method", "n", "median_error", "median_abs_error",
                    "worst_error", "mean_duration_s", "truth_counter_bound", "truth_tail_fraction",
                    "truth_idle_mismatch_fraction"])
        for row in summary:
            result = validation.items[row.item]
            truth, diag = result.truth, result.diagnostics
            w.writerow([row.kind, row.label, _num(row.length_s), row.method, row.n, _num(row.median_error),
                        _num(row.median_abs_error), _num(row.worst_error), _num(row.mean_duration_s),
                        _num(truth.counter_bound) if truth else "",
                        _num(diag.tail_fraction) if diag else "", _num(diag.idle_mismatch_fraction) if diag else ""])
    return path


def write_windows_csv(validation: Validation, path: Path) -> Path:
    """Every window's raw numbers: times on the meter's clock (monotonic s), truth, energies."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "label", "length_s", "index", "start_s", "end_s", "duration_s", "truth_j",
                    "exact_j"] + [f"{m}_j" for m in METHODS] + ["headline_method", "complete", "events_s",
                                                               "tail_s"] + [f"{m}_tail_j" for m in METHODS])
        for win in validation.windows:
            w.writerow([win.kind, win.label, _num(win.length_s), win.index, f"{win.start_ns / _NS:.9f}",
                        f"{win.end_ns / _NS:.9f}", _num(win.duration_s, 9), _num(win.truth_j, 9),
                        _num(win.exact_j, 9)] + [_num(win.energy_j[m], 9) for m in METHODS]
                       + [win.headline_method, int(win.complete), _num(win.events_s, 9), _num(win.tail_s)]
                       + [_num(win.energy_tail_j.get(m, math.nan), 9) for m in METHODS])
    return path


def write_truth_csv(validation: Validation, path: Path) -> Path:
    """Per workload: the runs and counter energies the truth came from, and its bounds."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "label", "repetitions", "burst_s", "active_s", "active_j", "idle_s", "idle_j",
                    "idle_w", "burst_w", "counter_bound", "idle_samples_w", "gap_samples_w", "tail_j",
                    "tail_fraction", "idle_mismatch_fraction", "boundaries"])
        for r in validation.items:
            t, d = r.truth, r.diagnostics
            if t is None or d is None:
                continue
            w.writerow([r.item.kind, r.item.label, t.repetitions, _num(t.burst_s), _num(t.active_s),
                        _num(t.active_j), _num(t.idle_s), _num(t.idle_j), _num(t.idle_w), _num(t.burst_w),
                        _num(t.counter_bound), _num(d.idle_samples_w), _num(d.gap_samples_w), _num(d.tail_j),
                        _num(d.tail_fraction), _num(d.idle_mismatch_fraction), " ".join(
                            how.replace(" ", "") for how in t.boundaries)])
    return path


def table_rows(validation: Validation, view: str = "window") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the on-screen table: per workload and length, each method's
    median error and, in brackets, its worst; ``view``: ``window`` or ``tail``."""
    header = ["workload", "length", "n"] + [SHORT[m] for m in METHODS]
    rows, seen = [], {}
    for row in (validation.summary if view == "window" else validation.summary_tail):
        seen.setdefault((row.item, row.label, row.length_s), {})[row.method] = row
    for (_, label, length), by_method in seen.items():
        n = max(r.n for r in by_method.values())
        cells = [f"{pct(by_method[m].median_error)} ({pct(by_method[m].worst_error)})"
                 if m in by_method and by_method[m].n else "-" for m in METHODS]
        rows.append([label, f"{length:g} s", str(n)] + cells)
    return header, rows


def goal_lines(validation: Validation) -> list[str]:
    """The goals, one line per length and view: met or not, and the 10 Hz reference beside it."""
    lines = []
    views = [("window only", validation.summary),
             (f"burst plus its tail ({validation.tail_s:g} s)", validation.summary_tail)]
    for name, summary in views:
        for g in check_goals(summary):
            ref = g.reference
            ref_text = (f"10 Hz reference median {pct(ref.median_error)}, worst {pct(ref.worst_error)}"
                        if ref and ref.n else "10 Hz reference: no data")
            lines.append(f"{name}, {g.length_s:g} s: headline median |error| "
                         f"{pct(g.headline.median_abs_error, False)} (worst {pct(g.headline.worst_error)}) vs goal "
                         f"{g.limit:.0%}: {'MET' if g.met else 'NOT MET'}; {ref_text}")
    return lines


def print_table(validation: Validation, console: Any = None) -> None:
    """The table with rich (plain text without it), then the goals."""
    header, rows = table_rows(validation)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[k]) for r in [header] + rows) for k in range(len(header))]
        for r in [header] + rows:
            print("  ".join(c.rjust(wd) for c, wd in zip(r, widths)))
        for line in goal_lines(validation):
            print(line)
        return
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))  # logs: do not squeeze the columns
    table = Table(title="Error vs truth: median (worst), per workload and window length",
                  caption="error = (method - truth) / truth; truth from long counter runs (see validation.md)")
    for k, name in enumerate(header):
        table.add_column(name, justify="left" if k == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for line in goal_lines(validation):
        console.print(line)
