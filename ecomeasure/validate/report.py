"""The validation's markdown report: the card, the truth and its bounds, the table, the
plots and whether the goals hold."""
from __future__ import annotations

import math
from pathlib import Path

from .analysis import check_goals
from .methods import DESCRIPTION, METHODS
from .tables import SHORT, pct, table_rows
from .run import Validation

TRUTH_TEXT = """\
The truth for a burst must not come from any method under test at the burst's own time
scale. It comes from the GPU's energy counter (`nvmlDeviceGetTotalEnergyConsumption`, the
hardware's own integrator) read over long runs only:

- **Run A** repeats the burst R times, each followed by an idle gap; **run B**, right after
  it, is idle for as long as A took (same thermal state). Both runs begin and end in idle,
  at least {edge:g} s from any change of power, so each run boundary is interpolated between
  two counter readings taken at idle power.
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
  although it lies outside the window; every method then reads low by about this much.
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


def markdown(validation: Validation, plots: dict[str, str] | None = None) -> str:
    """The report; ``plots`` maps plot names to the file names the report links."""
    v, info = validation, validation.info
    plots = plots or {}
    lines = [f"# Validation on {info.get('gpu', 'an unknown GPU')}", ""]
    facts = [("GPU", f"{info.get('gpu', '?')} (NVML index {info.get('nvml_index', '?')}, "
                     f"{info.get('uuid', '?')})"),
             ("driver", info.get("driver", "?")), ("date", info.get("date", "?")),
             ("workload", info.get("workload", "?")), ("versions", info.get("versions", "?")),
             ("command", f"`{info['command']}`" if info.get("command") else "?"),
             ("recording", f"{info.get('recording_s', math.nan):.0f} s, {info.get('windows', 0)} windows"),
             ("meter", info.get("meter", "?"))]
    lines += [f"- **{k}**: {val}" for k, val in facts]
    if info.get("marks_vs_events_us"):
        median_us, worst_us = info["marks_vs_events_us"]
        lines.append(f"- **windows**: cut by stream marks; a burst's length by its marks vs by CUDA events "
                     f"beside them differs by {median_us:.0f} us (median |difference|), {worst_us:+.0f} us at worst")
    if info.get("skipped_windows"):
        lines.append(f"- **left out**: {len(info['skipped_windows'])} window(s): "
                     + "; ".join(info["skipped_windows"][:5]))
    lines.append("")

    lines += ["## Goals", "",
              "The native headline within 2 % of the truth for windows of 1 s and longer, within 5 % at "
              "0.25 s (isolated bursts; judged on the median |error|, the worst shown beside it), and the 10 Hz "
              "reference (the seed's method) at the same lengths:", "",
              "| length | headline median (worst) | goal | met (median) | met (worst) | 10 Hz reference median (worst) |",
              "|---|---|---|---|---|---|"]
    checks = check_goals(v.summary)
    for g in checks:
        ref = g.reference
        ref_text = f"{pct(ref.median_error)} ({pct(ref.worst_error)})" if ref and ref.n else "-"
        lines.append(f"| {g.length_s:g} s | {pct(g.headline.median_error)} ({pct(g.headline.worst_error)}) | "
                     f"{g.limit:.0%} | {'yes' if g.met else '**no**'} | {'yes' if g.met_by_worst else 'no'} | "
                     f"{ref_text} |")
    if not checks:
        lines.append("| - | no isolated bursts at 0.25 s or >= 1 s were run | | | | |")
    verdict = all(g.met for g in checks) if checks else False
    lines += ["", f"**Goals {'met' if verdict else 'not met'}** on this card (median |error|).", ""]

    lines += ["## Methods", ""] + [f"- `{m}`: {DESCRIPTION[m]}" for m in METHODS] + [""]

    interior = next((pct(r.interior_bias) for r in v.items if r.item.kind == "steady"), "-")
    lines += ["## Truth", "", TRUTH_TEXT.format(edge=v.settings.edge_idle_s, settle=v.settings.steady_settle_s,
                                                 u=v.counter_update_s, interior=interior), "",
              "| workload | R | burst time | run A | idle power | burst power | counter bound | tail | idle mismatch |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in v.items:
        t, d = r.truth, r.diagnostics
        if t is None or d is None:
            continue
        lines.append(f"| {r.item.label} | {t.repetitions} | {_format(t.burst_s, ' s', 2)} | "
                     f"{_format(t.active_s, ' s')} | {_format(t.idle_w, ' W')} | {_format(t.burst_w, ' W')} | "
                     f"{pct(t.counter_bound, False)} | {pct(d.tail_fraction)} | {pct(d.idle_mismatch_fraction)} |")
    lines.append("")

    header, rows = table_rows(v)
    lines += ["## Error against the truth", "",
              "Median error and, in brackets, the worst (signed), over n windows; error = (method - truth) / "
              "truth. Squares: windows are the waves' high parts. `ctr@edges` exists only where the host "
              "sees a window's edges (bursts, not windows inside the steady load).", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Every window's numbers: `windows.csv`; per method: `validation.csv`; the truth's runs: "
              "`truth.csv`; raw traces: `traces.npz` (`ecomeasure.load_traces`) and `reference.csv`.", ""]

    if "error_vs_length" in plots:
        lines += ["## Error vs window length", "", f"![error vs window length]({plots['error_vs_length']})", "",
                  "Median |error| per method (log scale), the bar reaching the worst window; dashed: the goals.", ""]
    if "step_trace" in plots:
        lines += ["## A step, every source", "", f"![step trace]({plots['step_trace']})", "",
                  "Idle -> load -> idle. The 1 s average power lags the step by about a second each way, which "
                  "is the 10 Hz reference's error on short windows; the driver samples follow it at their ~20 ms "
                  "spacing; the counter, read every 0.5 s, shows only its average between readings.",
                  ""]
    short = ", ".join(f"`{SHORT[m]}` = `{m}`" for m in METHODS if SHORT[m] != m)
    lines += [f"Column names: {short}.", ""]
    return "\n".join(lines)


def write_markdown(validation: Validation, path: Path, plots: dict[str, str] | None = None) -> Path:
    path.write_text(markdown(validation, plots))
    return path
