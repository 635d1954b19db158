"""The validation's text outputs: the CSV files, the table on screen, and the markdown
report (the card, the truth and its bounds, the tables, the plots, whether the goals hold)."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from ..fmt import fraction_pct, significant
from ..units import NS_PER_S
from .analysis import SummaryRow, Validation, check_goals
from .methods import DESCRIPTION, METHODS
from .plan import EDGE_MARGIN_S
from .truth import FIT_REACH_S, TAIL_GUARD_S

SHORT = {"headline": "headline", "samples": "samples", "instant": "instant", "average": "average",
         "counter": "counter", "reference_10hz": "ref 10 Hz", "counter_at_edges": "ctr@edges"}


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
            w.writerow([row.kind, row.label, significant(row.length_s), row.method, row.n, significant(row.median_error),
                        significant(row.median_abs_error), significant(row.worst_error), significant(row.mean_duration_s),
                        significant(truth.counter_bound) if truth else "",
                        significant(diag.tail_fraction) if diag else "", significant(diag.idle_mismatch_fraction) if diag else ""])
    return path


def write_windows_csv(validation: Validation, path: Path) -> Path:
    """Every window's raw numbers: times on the meter's clock (monotonic s), truth, energies."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "label", "length_s", "index", "start_s", "end_s", "duration_s", "truth_j",
                    "exact_j"] + [f"{m}_j" for m in METHODS] + ["headline_method", "complete", "events_s",
                                                               "tail_s"] + [f"{m}_tail_j" for m in METHODS])
        for win in validation.windows:
            w.writerow([win.kind, win.label, significant(win.length_s), win.index, f"{win.start_ns / NS_PER_S:.9f}",
                        f"{win.end_ns / NS_PER_S:.9f}", significant(win.duration_s, 9), significant(win.truth_j, 9),
                        significant(win.exact_j, 9)] + [significant(win.energy_j[m], 9) for m in METHODS]
                       + [win.headline_method, int(win.complete), significant(win.events_s, 9), significant(win.tail_s)]
                       + [significant(win.energy_tail_j.get(m, math.nan), 9) for m in METHODS])
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
            w.writerow([r.item.kind, r.item.label, t.repetitions, significant(t.burst_s), significant(t.active_s),
                        significant(t.active_j), significant(t.idle_s), significant(t.idle_j), significant(t.idle_w), significant(t.burst_w),
                        significant(t.counter_bound), significant(d.idle_samples_w), significant(d.gap_samples_w), significant(d.tail_j),
                        significant(d.tail_fraction), significant(d.idle_mismatch_fraction), " ".join(
                            how.replace(" ", "") for how in t.boundaries)])
    return path


def table_rows(validation: Validation, view: str = "window") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the on-screen table: per workload and length, each method's
    median error and, in brackets, its worst; ``view``: ``window`` or ``tail``."""
    header = ["workload", "length", "n"] + [SHORT[m] for m in METHODS]
    rows: list[list[str]] = []
    seen: dict[tuple[int, str, float], dict[str, SummaryRow]] = {}
    for row in (validation.summary if view == "window" else validation.summary_tail):
        seen.setdefault((row.item, row.label, row.length_s), {})[row.method] = row
    for (_, label, length), by_method in seen.items():
        n = max(r.n for r in by_method.values())
        cells = [f"{fraction_pct(by_method[m].median_error)} ({fraction_pct(by_method[m].worst_error)})"
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
            ref_text = (f"10 Hz reference median {fraction_pct(ref.median_error)}, worst {fraction_pct(ref.worst_error)}"
                        if ref and ref.n else "10 Hz reference: no data")
            lines.append(f"{name}, {g.length_s:g} s: headline median |error| "
                         f"{fraction_pct(g.headline.median_abs_error, False)} (worst {fraction_pct(g.headline.worst_error)}) vs goal "
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


# --- validation.md ----------------------------------------------------------------------------
TRUTH_TEXT = """\
The truth for a burst must not come from any method under test at the burst's own time
scale. It comes from the GPU's energy counter (`nvmlDeviceGetTotalEnergyConsumption`, the
hardware's own integrator) read over long runs only:

- **Run A** repeats the burst R times, each followed by an idle gap; **run B**, right after
  it, is idle for as long as A took (same thermal state). Both runs begin and end in idle,
  at least {edge:g} s from any change of power{edge_note}.
- **The counter at each run boundary comes from its idle side only.** The meter reads the
  counter every {interval:g} s, so the two readings that bracket a boundary may straddle a
  change of power (a burst right after A starts, or one right before A ends, as seen from the
  reading on the far side); plain interpolation between them would leak that burst's energy
  into the boundary value. Every boundary has idle on at least one side: before A starts (the
  stretch before it), at A's end = B's start (all of B), at B's end (B). At steady idle power
  the cumulative energy is a straight line in time, so a least-squares line through the
  counter readings on that side, within {reach:g} s of the boundary (and from {guard:g} s after
  any burst's end: its tail and the counter's lag), evaluated at the boundary, gives the
  counter there without any burst's energy; a constant lag of the counter shifts all three
  boundaries alike and cancels in the differences below. With fewer than two such readings a
  boundary falls back to interpolation; column *boundaries* says so.
- With E_A, E_B the counter's energy over the runs and T_A, T_B their durations:
  `P_idle = E_B / T_B`, `excess = E_A - P_idle * T_A`, `P_burst = P_idle + excess / sum(d_i)`,
  and each window's truth is `P_burst * d_i` (d_i: its duration from its stream marks; gross,
  idle included, like every method).
- Windows inside the steady load get `P_steady * L` from the same estimate over the whole
  load; they lie {settle:g} s clear of its start and end, so the load's start-up is in its
  mean power but not in the windows. By the driver samples, the whole load's mean power
  differs from the windows' by {interior}: a bias of their truth.

What bounds it, per workload in the table below:

- **Counter staleness** at the run boundaries: a counter value is up to U = {u:g} s old when
  read. The estimator's coefficients on the boundaries sum to zero, so a common delay
  cancels, and the excess is off by at most `(1 + T_A/T_B) * U * P_idle` (worst case; the
  typical error is about a third of it). Column *counter bound*, relative to the bursts' energy.
- **Tail**: power above idle after a burst ends is part of the excess, so the truth counts it
  although it lies outside the window; every method then reads low by about this much in the
  window-only view, which the tail-inclusive view (below) corrects.
  Column *tail*: driver-sample energy in the 100 ms after each burst's end less that in the
  100 ms before its start (the samples' interpolation smears about as much out of the window
  at either edge, so this difference is the tail), relative to the burst's truth; only where
  the gaps leave 200 ms on both sides.
- **Idle mismatch**: idle power in A's gaps differing from idle in B (idle power depends on
  history) biases the truth the same way. Column *idle mismatch*: (gap power - B's power)
  x A's idle time, relative to the bursts' energy, both powers from the driver samples.
- Tail and idle mismatch are estimated, shown, and not corrected for. The counter's own gain
  error cannot be seen without an external power meter; the headline is scaled to the same
  counter over the whole recording, so it shares that gain."""


def _format(x: float, unit: str = "", digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}{unit}"


GOALS_TEXT = """\
The native headline within 2 % of the truth for windows of 1 s and longer, within 5 % at
0.25 s (isolated bursts; judged on the median |error|, the worst shown beside it), with the
10 Hz reference (the seed's method) at the same lengths. Both views are judged against the
same truth:

- **window only**: each method's energy over the burst's window, from its first stream mark to
  its last: what a meter reports for that window.
- **burst plus its tail**: each method over the window and the {tau:g} s after it, less the
  idle power (the truth's, from the counter in idle run B, not from the method) times {tau:g} s:
  the energy the work caused. The GPU draws power above idle for ~100 ms after its last
  kernel; the differential truth counts it (the burst caused it), but it lies outside the
  window, so in the window-only view every method reads low on short bursts by about the
  truth table's *tail*. Only bursts with at least {tau:g} s of idle after and before them;
  `ctr@edges` (the counter read on the host at the window's edges) cannot be extended and
  shows "-"."""


def _goal_table(checks) -> list[str]:
    lines = ["| length | headline median (worst) | goal | met (median) | met (worst) | 10 Hz reference median (worst) |",
             "|---|---|---|---|---|---|"]
    for g in checks:
        ref = g.reference
        ref_text = f"{fraction_pct(ref.median_error)} ({fraction_pct(ref.worst_error)})" if ref and ref.n else "-"
        lines.append(f"| {g.length_s:g} s | {fraction_pct(g.headline.median_error)} ({fraction_pct(g.headline.worst_error)}) | "
                     f"{g.limit:.0%} | {'yes' if g.met else '**no**'} | {'yes' if g.met_by_worst else 'no'} | "
                     f"{ref_text} |")
    if not checks:
        lines.append("| - | no isolated bursts at 0.25 s or >= 1 s were run | | | | |")
    return lines


def _verdict(checks) -> str:
    return "met" if checks and all(g.met for g in checks) else "not met"


def _error_table(v: Validation, view: str) -> list[str]:
    header, rows = table_rows(v, view)
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _edge_note(edge_s: float, interval_s: float) -> str:
    if math.isfinite(interval_s) and math.isclose(edge_s, interval_s + EDGE_MARGIN_S, abs_tol=1e-6):
        return f" (one counter reading interval, {interval_s:g} s, plus {EDGE_MARGIN_S:g} s)"
    return ""


def _meter_text(v: Validation) -> str:
    m = v.meter_settings
    if not m:
        return "?"
    return (f"`Meter()` defaults (counter read every {m.get('counter_interval_s', math.nan):g} s, driver buffer "
            f"drained every {m.get('drain_interval_s', math.nan):g} s, instant and average power polled every "
            f"{m.get('poll_interval_s', math.nan) * 1e3:g} ms); reference polled every 0.1 s")


def markdown(validation: Validation, plots: dict[str, str] | None = None) -> str:
    """The report; ``plots`` maps plot names to the file names the report links."""
    v, info = validation, validation.info
    plots = plots or {}
    interval = float(v.meter_settings.get("counter_interval_s", math.nan))
    lines = [f"# Validation on {info.get('gpu', 'an unknown GPU')}", ""]
    facts = [("GPU", f"{info.get('gpu', '?')} (NVML index {info.get('nvml_index', '?')}, "
                     f"{info.get('uuid', '?')})"),
             ("driver", info.get("driver", "?")), ("date", info.get("date", "?")),
             ("workload", info.get("workload", "?")), ("versions", info.get("versions", "?")),
             ("command", f"`{info['command']}`" if info.get("command") else "?"),
             ("recording", f"{info.get('recording_s', math.nan):.0f} s, {info.get('windows', 0)} windows"),
             ("meter", _meter_text(v))]
    lines += [f"- **{k}**: {val}" for k, val in facts]
    if info.get("marks_vs_events_us"):
        median_us, worst_us = info["marks_vs_events_us"]
        lines.append(f"- **windows**: cut by stream marks; a burst's length by its marks vs by CUDA events "
                     f"beside them differs by {median_us:.0f} us (median |difference|), {worst_us:+.0f} us at worst")
    if info.get("skipped_windows"):
        lines.append(f"- **left out**: {len(info['skipped_windows'])} window(s): "
                     + "; ".join(info["skipped_windows"][:5]))
    if info.get("reanalysis"):
        lines.append(f"- **re-analysed** {info.get('reanalysis_date', '')} from the run's saved traces "
                     f"(`traces.npz`, `reference.csv`) with `{info['reanalysis']}`; no GPU involved")
    lines.append("- **a fresh run**: `python -m ecomeasure.validate` (on a GPU; `--help` for options); "
                 "re-analyse a run's folder: `python -m ecomeasure.validate --from DIR --out DIR2`")
    lines.append("")

    window_checks, tail_checks = check_goals(v.summary), check_goals(v.summary_tail)
    lines += ["## Goals", "", GOALS_TEXT.format(tau=v.tail_s), "",
              "**Window only** (what the meter reports for the window):", ""] + _goal_table(window_checks)
    lines += ["", f"**Burst plus its tail** (window + {v.tail_s:g} s, less idle x {v.tail_s:g} s: the energy the "
              "work caused):", ""] + _goal_table(tail_checks)
    lines += ["", f"**Goals {_verdict(window_checks)}** on this card in the window-only view, "
              f"**{_verdict(tail_checks)}** in the tail-inclusive view (median |error|).", ""]

    lines += ["## Methods", ""] + [f"- `{m}`: {DESCRIPTION[m]}" for m in METHODS] + [""]

    interior = next((fraction_pct(r.interior_bias) for r in v.items if r.item.kind == "steady"), "-")
    lines += ["## Truth", "", TRUTH_TEXT.format(edge=v.settings.edge_idle_s, settle=v.settings.steady_settle_s,
                                                 u=v.counter_update_s, interior=interior, interval=interval,
                                                 reach=FIT_REACH_S, guard=TAIL_GUARD_S,
                                                 edge_note=_edge_note(v.settings.edge_idle_s, interval)), "",
              "| workload | R | burst time | run A | idle power | burst power | counter bound | tail | idle mismatch "
              "| boundaries |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in v.items:
        t, d = r.truth, r.diagnostics
        if t is None or d is None:
            continue
        lines.append(f"| {r.item.label} | {t.repetitions} | {_format(t.burst_s, ' s', 2)} | "
                     f"{_format(t.active_s, ' s')} | {_format(t.idle_w, ' W')} | {_format(t.burst_w, ' W')} | "
                     f"{fraction_pct(t.counter_bound, False)} | {fraction_pct(d.tail_fraction)} | {fraction_pct(d.idle_mismatch_fraction)} | "
                     f"{t.boundary_note} |")
    lines.append("")

    lines += ["## Error against the truth: window only", "",
              "Median error and, in brackets, the worst (signed), over n windows; error = (method - truth) / "
              "truth. Each method over the window alone. Squares: windows are the waves' high parts. `ctr@edges` "
              "exists only where the host sees a window's edges (bursts, not windows inside the steady load).", ""]
    lines += _error_table(v, "window")
    lines += ["", "## Error against the truth: burst plus its tail", "",
              f"The same truth; each method over the window and the {v.tail_s:g} s after it, less the truth's idle "
              f"power x {v.tail_s:g} s. Only burst and square windows with at least {v.tail_s:g} s of idle after "
              "them and before them (else the window already holds the previous burst's tail, and extending it "
              "would count two; so none of the faster square waves); `ctr@edges` cannot be extended (host "
              "reads).", ""]
    lines += _error_table(v, "tail")
    lines += ["", "Every window's numbers, both views: `windows.csv`; per method: `validation.csv` (window only), "
              "`validation_with_tail.csv`; the truth's runs: `truth.csv`. `run.json`, the raw traces `traces.npz` "
              "(`ecomeasure.load_traces`) and `reference.csv` alone reproduce every table here "
              "(`python -m ecomeasure.validate --from DIR`): commit those three.", ""]

    if "error_vs_length" in plots:
        lines += ["## Error vs window length", "", f"![error vs window length]({plots['error_vs_length']})", "",
                  "Median |error| per method (log scale), the bar reaching the worst window, window only; dashed "
                  "black: the headline with its tail; dashed grey: the goals.", ""]
    if "step_trace" in plots:
        lines += ["## A step, every source", "", f"![step trace]({plots['step_trace']})", "",
                  "Idle -> load -> idle. The 1 s average power lags the step by about a second each way, which "
                  "is the 10 Hz reference's error on short windows; the driver samples follow it at their ~20 ms "
                  f"spacing; the counter, read every {interval:g} s, shows only its average between readings.",
                  ""]
    short = ", ".join(f"`{SHORT[m]}` = `{m}`" for m in METHODS if SHORT[m] != m)
    lines += [f"Column names: {short}.", ""]
    return "\n".join(lines)


def write_markdown(validation: Validation, path: Path, plots: dict[str, str] | None = None) -> Path:
    path.write_text(markdown(validation, plots))
    return path
