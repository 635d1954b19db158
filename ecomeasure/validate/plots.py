"""The validation's two plots: error vs window length per method, and the step trace."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import HEADLINE_GOALS, StepTrace, Validation
from .methods import METHODS

STYLE = {  # method -> (colour, marker)
    "headline": ("black", "o"), "samples": ("tab:blue", "s"), "instant": ("tab:green", "^"),
    "average": ("tab:orange", "v"), "counter": ("tab:purple", "D"), "reference_10hz": ("tab:red", "X"),
    "counter_at_edges": ("tab:brown", "P"),
}
FLOOR_PCT = 0.01  # log axis: an error of exactly 0 is drawn here


def _figure(width: float, height: float, panels: int = 1):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def error_vs_length(validation: Validation, path: Path) -> Path:
    """Median |error| per method vs window length (log-log), the worst as the upper bar;
    one panel for isolated bursts (with the headline's tail-inclusive error, dashed) and one
    for windows inside a steady load."""
    kinds = [k for k in ("burst", "steady") if any(r.kind == k and r.n for r in validation.summary)]
    fig, axes = _figure(6.5 * max(1, len(kinds)), 4.8, max(1, len(kinds)))
    for ax, kind in zip(axes, kinds):
        for k, method in enumerate(METHODS):
            rows = sorted((r for r in validation.summary if r.kind == kind and r.method == method and r.n),
                          key=lambda r: r.length_s)
            if not rows:
                continue
            x = np.array([r.length_s for r in rows]) * 1.04 ** (k - len(METHODS) / 2)  # dodge
            median = np.maximum([100 * r.median_abs_error for r in rows], FLOOR_PCT)
            worst = np.maximum([100 * abs(r.worst_error) for r in rows], median)
            colour, marker = STYLE[method]
            ax.errorbar(x, median, yerr=[np.zeros_like(median), worst - median], color=colour, marker=marker,
                        capsize=3, linewidth=1.2, markersize=5, label=method)
        tail = sorted((r for r in validation.summary_tail if r.kind == kind and r.method == "headline" and r.n),
                      key=lambda r: r.length_s)
        if tail:
            ax.plot([r.length_s for r in tail], np.maximum([100 * r.median_abs_error for r in tail], FLOOR_PCT),
                    color="black", linestyle="--", marker="o", markerfacecolor="white", linewidth=1.2,
                    markersize=5, label=f"headline, burst + {validation.tail_s:g} s tail")
        for low, high, limit in HEADLINE_GOALS:
            xs = [low, min(high, 20.0)] if high > low else [low * 0.9, low * 1.1]
            ax.plot(xs, [100 * limit] * 2, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("window length (s)")
        ax.set_ylabel("|error| vs truth (%): median, bar to worst")
        ax.set_title({"burst": "isolated bursts", "steady": "windows inside a steady load"}[kind])
        ax.grid(True, which="both", alpha=0.3)
    if kinds:
        axes[0].legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=130)
    return path


def step_trace(step: StepTrace, path: Path, title: str = "") -> Path:
    """Every source across an idle -> load -> idle step, with the 10 Hz reference's readings
    and the window's edges (its stream marks)."""
    fig, (ax,) = _figure(9.0, 4.8)
    draw = [("samples", "driver samples (~20 ms)", "steps-post", 1.0),
            ("instant", "instant power (field 186)", "steps-post", 1.4),
            ("average", "average power (~1 s average)", "steps-post", 1.4),
            ("counter", "energy counter (power between readings)", "steps-mid", 1.4)]
    for source, label, drawstyle, width in draw:
        t, v = step.sources.get(source, (np.array([]), np.array([])))
        if len(t):
            ax.plot(t, v, drawstyle=drawstyle, linewidth=width, color=STYLE[source][0], label=label)
    t, v = step.reference
    if len(t):
        ax.plot(t, v, linestyle="none", marker="x", color=STYLE["reference_10hz"][0],
                label="10 Hz reference readings")
    for edge in step.burst_s:
        ax.axvline(edge, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("time from the start of the step (s); dotted: the window's stream marks")
    ax.set_ylabel("power (W)")
    ax.set_title(title or "an idle -> load -> idle step, every source")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=130)
    return path
