"""The report's plots, one function each, written as PNG with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, never through
pyplot, so making a report neither needs a display nor changes the caller's backend.
A plot without data is still written, saying what it lacks, so every file always exists.
Each function returns (path, caption).
"""
from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..schema import vs_baseline_pct
from .findings import CROSSOVER_PARAMS_B
from .load import Config, Dataset, parse_float
from .stats import baseline_of
from .tables import QUANT_ORDER, config_order

ENERGY_BY_CONFIG_PNG = "energy_by_config.png"
NF4_CROSSOVER_PNG = "nf4_crossover.png"
THROUGHPUT_VS_ENERGY_PNG = "throughput_vs_energy.png"
ENERGY_VS_FLOOR_PNG = "energy_vs_bandwidth_floor.png"
POWER_TRACE_PNG = "power_trace.png"

DPI = 110
MARKERS = "osD^v<>pPX*h"
POWER_SOURCES = ("samples", "instant", "average")
Group = tuple[Dataset, str, str]  # (dataset, gpu_name, method)


def _figure(rows: int = 1, width_in: float = 9.0, height_in: float = 4.0) -> tuple[Figure, list]:
    fig = Figure(figsize=(width_in, height_in * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, 1, k + 1) for k in range(rows)]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _placeholder(path: Path, title: str, reason: str) -> tuple[Path, str]:
    fig, (ax,) = _figure(height_in=2.5)
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, f"not plotted: {reason}", ha="center", va="center", wrap=True)
    return _save(fig, path), f"not plotted: {reason}"


def _color(quant: str) -> str:
    """One colour per quant, the same in every plot and every run."""
    if quant in QUANT_ORDER:
        return f"C{QUANT_ORDER.index(quant)}"
    return f"C{(len(QUANT_ORDER) + sum(map(ord, quant))) % 10}"


def _basis_for(configs: Sequence[Config], method: str) -> str:
    """Gross where the data has it (the seed's RTX 4090D table is net only)."""
    gross = any(math.isfinite(c.energy_per_1k(method, "gross")) for c in configs)
    return "gross" if gross else "net"


def _title(dataset: Dataset, gpu: str, method: str) -> str:
    return f"{gpu} - {dataset.label} ({method})"


def plot_energy_by_config(groups: Sequence[Group], path: Path) -> tuple[Path, str]:
    """Energy per 1k tokens of every configuration, bars per quant grouped by model (and
    batch size), error bars ±1 SD over iterations; one panel per GPU of each dataset."""
    groups = [g for g in groups if g[0].ok_on(g[1])]
    if not groups:
        return _placeholder(path, "Energy per configuration", "no successful configurations")
    fig, axes = _figure(len(groups), width_in=10.0, height_in=3.6)
    for ax, (dataset, gpu, method) in zip(axes, groups):
        configs = sorted(dataset.ok_on(gpu), key=config_order)
        basis = _basis_for(configs, method)
        slots = list(dict.fromkeys((c.model, c.batch_size) for c in configs))
        quants = list(dict.fromkeys(c.quant for c in configs))
        width = 0.8 / max(len(quants), 1)
        for k, quant in enumerate(quants):
            xs, ys, errs = [], [], []
            for c in configs:
                if c.quant == quant:
                    xs.append(slots.index((c.model, c.batch_size)) + (k - (len(quants) - 1) / 2) * width)
                    ys.append(c.energy_per_1k(method, basis))
                    errs.append(c.energy_std(method, basis))
            ax.bar(xs, ys, width, color=_color(quant), label=quant)
            known = np.isfinite(errs) & np.isfinite(ys)  # no bar where no SD was published
            if np.any(known):
                ax.errorbar(np.asarray(xs)[known], np.asarray(ys)[known],
                            yerr=np.asarray(errs)[known], fmt="none", ecolor="black", capsize=3)
        ax.set_xticks(range(len(slots)),
                      [f"{m}\nbs{bs}" if bs != 1 else m for m, bs in slots], fontsize=8)
        ax.set_ylabel(f"energy, {basis} (J / 1k tokens)")
        ax.set_title(_title(dataset, gpu, method), fontsize=9)
        ax.legend(fontsize=8, ncols=min(len(quants), 7))
    fig.suptitle("Energy per 1k generated tokens (error bars: ±1 SD over iterations)")
    return _save(fig, path), "energy per 1k tokens per configuration, ±1 SD over iterations"


def plot_nf4_crossover(groups: Sequence[Group], path: Path) -> tuple[Path, str]:
    """nf4's energy change against fp16 versus parameter count: the seed's ~5B crossover.
    Gross filled, net of idle hollow; one colour per GPU of each dataset."""
    fig, (ax,) = _figure(width_in=9.0, height_in=5.0)
    plotted = 0
    for k, (dataset, gpu, method) in enumerate(groups):
        configs = dataset.ok_on(gpu)
        for basis, style in (("gross", "-"), ("net", "--")):
            points = []
            for c in configs:
                base = baseline_of(c, configs)
                if c.quant != "nf4" or base is None or not math.isfinite(c.params_b):
                    continue
                delta = vs_baseline_pct(c.energy_per_1k(method, basis), base.energy_per_1k(method, basis))
                if math.isfinite(delta):
                    points.append((c.params_b, delta))
            if not points:
                continue
            points.sort()
            x, y = zip(*points)
            ax.plot(x, y, style, marker=MARKERS[k % len(MARKERS)], color=f"C{k % 10}",
                    markerfacecolor=f"C{k % 10}" if basis == "gross" else "none",
                    label=f"{gpu} ({basis}) - {dataset.label}")
            plotted += len(points)
    if not plotted:
        return _placeholder(path, "nf4 vs fp16 energy against model size",
                            "no model has both nf4 and fp16 runs")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(CROSSOVER_PARAMS_B, color="grey", linestyle=":", label="seed's ~5B crossover")
    ax.set_xlabel("parameters (billions)")
    ax.set_ylabel("nf4 energy vs fp16 (%)")
    ax.set_title("nf4 vs fp16 energy per token against model size (filled: gross, hollow: net)")
    ax.legend(fontsize=7)
    return _save(fig, path), f"nf4 vs fp16 energy change against parameter count ({plotted} points)"


def plot_throughput_vs_energy(groups: Sequence[Group], path: Path) -> tuple[Path, str]:
    """Throughput against energy per 1k tokens, colour by quant, marker by GPU/dataset;
    gross filled, net hollow (where only net is known)."""
    return _energy_scatter(groups, path, "throughput_tok_s_mean", "throughput (generated tokens / s)",
                           "Throughput vs energy per token", "throughput vs energy per 1k tokens")


def plot_energy_vs_floor(groups: Sequence[Group], path: Path) -> tuple[Path, str]:
    """Energy per 1k tokens against the fraction of the memory-bandwidth floor a decode
    step achieves, per configuration and regime (marker by dataset: one per regime)."""
    return _energy_scatter(groups, path, "bandwidth_floor_fraction",
                           "fraction of the memory-bandwidth floor achieved by a decode step",
                           "Energy per token vs closeness to the hardware",
                           "energy per 1k tokens vs fraction of the bandwidth floor")


def _energy_scatter(groups: Sequence[Group], path: Path, x_column: str, x_label: str, title: str,
                    what: str) -> tuple[Path, str]:
    fig, (ax,) = _figure(width_in=9.0, height_in=5.5)
    xs, ys = [], []
    for k, (dataset, gpu, method) in enumerate(groups):
        configs = dataset.ok_on(gpu)
        basis = _basis_for(configs, method)
        marker = MARKERS[k % len(MARKERS)]
        for c in configs:
            x, y = c.value(x_column), c.energy_per_1k(method, basis)
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            ax.scatter([x], [y], marker=marker, edgecolors=_color(c.quant),
                       facecolors=_color(c.quant) if basis == "gross" else "none")
            ax.annotate(f"{c.model}" + (f" bs{c.batch_size}" if c.batch_size != 1 else ""),
                        (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
            xs.append(x)
            ys.append(y)
        ax.scatter([], [], marker=marker, color="grey",
                   label=f"{gpu} ({basis}) - {dataset.label}")
    if not xs:
        return _placeholder(path, title, "no configuration with both figures")
    for quant in dict.fromkeys(c.quant for d, g, _ in groups for c in d.ok_on(g)):
        ax.scatter([], [], marker="s", color=_color(quant), label=quant)
    # Seed data spans over a decade on both axes; log scales keep small models readable.
    if max(xs) > 10 * min(xs) and min(xs) > 0:
        ax.set_xscale("log")
    if min(ys) > 0 and max(ys) > 10 * min(ys):
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("energy (J / 1k tokens)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path), f"{what} ({len(xs)} configurations)"


def _reference_samples(traces_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference method's ``time_s,power_w`` samples beside a traces file, if present."""
    path = traces_path.with_name(traces_path.stem + "_reference.csv")
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    t = np.array([parse_float(r.get("time_s")) for r in rows])
    w = np.array([parse_float(r.get("power_w")) for r in rows])
    keep = np.isfinite(t) & np.isfinite(w)
    return t[keep], w[keep]


def _trace_candidate(dataset: Dataset) -> tuple[Config, Path, Any] | None:
    """The configuration whose trace is drawn, with its loaded traces: fp16 first (the
    baseline), then table order; a traces file that cannot be read is passed over."""
    from .. import load_traces  # the meter's own reader of its traces files

    configs = sorted(dataset.ok, key=lambda c: (c.quant != "fp16", config_order(c)))
    for c in configs:
        path = dataset.traces_path(c)
        if path is None or not c.iterations:
            continue
        try:
            return c, path, load_traces(path)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            continue
    return None


def _window(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Indices of samples in [lo, hi], plus the one before lo, which holds at lo."""
    first = max(int(np.searchsorted(t, lo)) - 1, 0)
    last = int(np.searchsorted(t, hi, side="right"))
    return np.arange(first, last)


def plot_power_trace(datasets: Sequence[Dataset], path: Path) -> tuple[Path, str]:
    """One iteration's power by each NVML source, with the prefill and decode windows
    shaded and the 10 Hz reference samples overlaid; one panel per results directory."""
    picks = [(d, *pick) for d in datasets if not d.is_seed and (pick := _trace_candidate(d))]
    if not picks:
        return _placeholder(path, "Power trace of one iteration",
                            "no results directory has a traces file and iterations")
    fig, axes = _figure(len(picks), width_in=10.0, height_in=4.0)
    captions = []
    for ax, (dataset, config, traces_path, traces) in zip(axes, picks):
        iteration = config.iterations[len(config.iterations) // 2]
        start_s, end_s = parse_float(iteration.get("start_s")), parse_float(iteration.get("end_s"))
        prefill_s = parse_float(iteration.get("prefill_s"))
        pad_s = max(0.25 * (end_s - start_s), 0.2)
        lo, hi = start_s - pad_s, end_s + pad_s
        for source in POWER_SOURCES:
            t, w = traces.trace(source)
            keep = _window(t, lo, hi)
            if keep.size:
                ax.step(np.clip(t[keep], lo, None) - start_s, w[keep], where="post",
                        linewidth=1.0, label=f"native: {source}")
        reference = _reference_samples(traces_path)
        if reference is not None:
            t, w = reference
            keep = (t >= lo) & (t <= hi)
            ax.plot(t[keep] - start_s, w[keep], "o", markersize=4, color="black",
                    label="10 Hz reference")
        if math.isfinite(prefill_s):
            ax.axvspan(0.0, prefill_s, color="tab:orange", alpha=0.25, label="prefill")
            ax.axvspan(prefill_s, end_s - start_s, color="tab:green", alpha=0.12, label="decode")
        else:
            ax.axvspan(0.0, end_s - start_s, color="tab:green", alpha=0.12, label="iteration")
        name = (f"{config.model} {config.quant} bs{config.batch_size}, iteration "
                f"{iteration.get('iteration', '?')}")
        ax.set_title(f"{name} - {config.gpu_name} - {dataset.label}", fontsize=9)
        ax.set_xlabel("time from iteration start (s)")
        ax.set_ylabel("power (W)")
        ax.legend(fontsize=7, loc="upper right")
        captions.append(f"{name} ({dataset.label})")
    return _save(fig, path), "power trace of " + "; ".join(captions)
