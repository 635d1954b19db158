"""Tables: results in the seed's format, the side-by-side comparison, statistics and findings,
each as rows of numbers (for the CSV files) and as markdown (for report.md)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .. import fmt
from ..generation import REGIMES
from ..schema import BASELINE_QUANT, vs_baseline_pct
from .findings import CLAIMS, Finding
from .load import METHOD_TITLES, Config, Dataset
from .stats import Comparison, baseline_of

QUANT_ORDER = ("fp16", "bf16", "nf4", "nf4_dq", "fp4", "int8", "int8_pure", "int4wo", "int8wo", "fp8wo", "fp8dq",
               "int8dq")


def config_order(config: Config) -> tuple:
    """Rows by model size, model, batch size, quant in the seed's order, then regime."""
    quant = QUANT_ORDER.index(config.quant) if config.quant in QUANT_ORDER else len(QUANT_ORDER)
    size = config.params_b if math.isfinite(config.params_b) else math.inf
    regime = REGIMES.index(config.regime) if config.regime in REGIMES else len(REGIMES)
    return (size, config.model, config.batch_size, quant, config.quant, regime, config.regime)


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table; pipes in cells are escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


# results -------------------------------------------------------------------------------
TABLE_COLUMNS: tuple[str, ...] = (
    "dataset", "gpu_name", "method", "model", "params_b", "quant", "batch_size", "regime", "status",
    "iterations", "throughput_tok_s_mean", "throughput_tok_s_std", "throughput_cv_pct",
    "bandwidth_floor_fraction", "gpu_busy_share_mean",
    "power_w_mean", "power_w_std", "idle_power_w", "energy_j_per_1k_mean", "energy_j_per_1k_std",
    "delta_vs_fp16_pct", "energy_net_j_per_1k_mean", "energy_net_j_per_1k_std",
    "delta_vs_fp16_net_pct", "energy_cv_pct", "error",
)
"""Columns of tables.csv: one row per configuration and method (failed rows once)."""


def result_row(config: Config, method: str, configs: Sequence[Config]) -> dict[str, Any]:
    """One configuration's figures by ``method``, with deltas against its fp16 run."""
    row: dict[str, Any] = {
        "dataset": config.dataset, "gpu_name": config.gpu_name, "method": method,
        "model": config.model, "params_b": config.params_b, "quant": config.quant,
        "batch_size": config.batch_size, "regime": config.regime, "status": config.status,
        "error": config.error,
        "iterations": len(config.iterations) or config.value("iterations"),
    }
    if not config.ok:
        return row
    base = baseline_of(config, configs)
    energy = {b: config.energy_per_1k(method, b) for b in ("gross", "net")}
    base_energy = {b: base.energy_per_1k(method, b) if base else math.nan for b in ("gross", "net")}
    energy_sd = config.energy_std(method, "gross")
    row.update({
        "throughput_tok_s_mean": config.value("throughput_tok_s_mean"),
        "throughput_tok_s_std": config.value("throughput_tok_s_std"),
        "throughput_cv_pct": config.value("throughput_cv_pct"),
        "bandwidth_floor_fraction": config.value("bandwidth_floor_fraction"),
        "gpu_busy_share_mean": config.value("gpu_busy_share_mean"),
        "power_w_mean": config.power_w(method), "power_w_std": config.power_std_w(method),
        "idle_power_w": config.idle_power_w(method),
        "energy_j_per_1k_mean": energy["gross"], "energy_j_per_1k_std": energy_sd,
        "delta_vs_fp16_pct": vs_baseline_pct(energy["gross"], base_energy["gross"]),
        "energy_net_j_per_1k_mean": energy["net"],
        "energy_net_j_per_1k_std": config.energy_std(method, "net"),
        "delta_vs_fp16_net_pct": vs_baseline_pct(energy["net"], base_energy["net"]),
        "energy_cv_pct": 100.0 * energy_sd / energy["gross"]
        if math.isfinite(energy_sd) and energy["gross"] else math.nan,
    })
    return row


def result_rows(dataset: Dataset, gpu_name: str, method: str) -> list[dict[str, Any]]:
    """Ok configurations of one GPU, in the seed's order."""
    configs = dataset.ok_on(gpu_name)
    return [result_row(c, method, configs) for c in sorted(configs, key=config_order)]


def _delta(row: dict[str, Any], energy: str, delta: str) -> str:
    """The seed's Δ cell: a dash for fp16 itself and where there is no energy."""
    if row["quant"] == BASELINE_QUANT or not fmt.finite(row[energy]):
        return fmt.DASH
    return fmt.pct(row[delta])


def results_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The seed's table (throughput, power, energy J/1k ± SD, delta vs fp16, CV), with the
    net-of-idle energy and the idle power beside the gross figures."""
    header = ["Model", "Params", "Config", "BS", "n", "Throughput (tok/s)", "Power (W)",
              "Energy (J/1k)", "Δ Energy", "Energy net (J/1k)", "Δ net", "Idle (W)",
              "CV tok/s (%)", "CV energy (%)"]
    body = []
    for r in rows:
        body.append([
            r["model"], fmt.params(r["params_b"]), r["quant"], str(r["batch_size"]),
            fmt.plain(r["iterations"], 0),
            fmt.with_sd(fmt.rate, r["throughput_tok_s_mean"], r["throughput_tok_s_std"]),
            fmt.with_sd(fmt.rate, r["power_w_mean"], r["power_w_std"]),
            fmt.energy_sd(r["energy_j_per_1k_mean"], r["energy_j_per_1k_std"]),
            _delta(r, "energy_j_per_1k_mean", "delta_vs_fp16_pct"),
            fmt.energy_sd(r["energy_net_j_per_1k_mean"], r["energy_net_j_per_1k_std"]),
            _delta(r, "energy_net_j_per_1k_mean", "delta_vs_fp16_net_pct"),
            fmt.rate(r["idle_power_w"]), fmt.plain(r["throughput_cv_pct"]),
            fmt.plain(r["energy_cv_pct"]),
        ])
    return markdown(header, body)


def failed_rows(dataset: Dataset) -> list[dict[str, Any]]:
    """tables.csv rows of failed configurations (method left empty)."""
    return [result_row(c, "", dataset.configs) for c in dataset.failed]


# side by side --------------------------------------------------------------------------
def comparison_markdown(columns: Sequence[tuple[Dataset, str, str]], basis: str) -> str:
    """Energy per 1k tokens (Δ vs fp16) of each configuration, one column per
    (dataset, GPU, method): several GPUs or datasets side by side."""
    cells: dict[tuple, dict[int, str]] = {}
    order: dict[tuple, tuple] = {}
    for k, (dataset, gpu, method) in enumerate(columns):
        configs = dataset.ok_on(gpu)
        for c in configs:
            key = (c.model, c.quant, c.batch_size)
            order.setdefault(key, config_order(c))
            energy = c.energy_per_1k(method, basis)
            if not math.isfinite(energy):
                continue
            base = baseline_of(c, configs)
            delta = vs_baseline_pct(energy, base.energy_per_1k(method, basis)) if base else math.nan
            text = fmt.energy(energy)
            if c.quant != BASELINE_QUANT and math.isfinite(delta):
                text += f" ({fmt.pct(delta)})"
            cells.setdefault(key, {})[k] = text
    header = ["Model", "Config", "BS"] + [f"{gpu} · {method} · {dataset.label}"
                                         for dataset, gpu, method in columns]
    body = [[model, quant, str(bs)] + [cells[(model, quant, bs)].get(k, fmt.DASH)
                                       for k in range(len(columns))]
            for model, quant, bs in sorted(cells, key=lambda key: order[key])]
    return markdown(header, body)


# statistics ----------------------------------------------------------------------------
STATISTICS_COLUMNS: tuple[str, ...] = (
    "dataset", "gpu_name", "model", "params_b", "batch_size", "quant", "method", "basis", "n",
    "energy_j_per_1k_mean", "ci95_low", "ci95_high", "fp16_n", "fp16_energy_j_per_1k_mean",
    "fp16_ci95_low", "fp16_ci95_high", "delta_vs_fp16_pct", "welch_t", "welch_p", "cohens_d",
)
"""Columns of statistics.csv: one row per configuration, method and basis against fp16."""


def statistics_row(c: Comparison) -> dict[str, Any]:
    return {
        "dataset": c.dataset, "gpu_name": c.gpu_name, "model": c.model, "params_b": c.params_b,
        "batch_size": c.batch_size, "quant": c.quant, "method": c.method, "basis": c.basis,
        "n": c.config.n, "energy_j_per_1k_mean": c.config.mean, "ci95_low": c.config.low,
        "ci95_high": c.config.high, "fp16_n": c.baseline.n,
        "fp16_energy_j_per_1k_mean": c.baseline.mean, "fp16_ci95_low": c.baseline.low,
        "fp16_ci95_high": c.baseline.high, "delta_vs_fp16_pct": c.delta_pct, "welch_t": c.welch_t,
        "welch_p": c.welch_p, "cohens_d": c.cohens_d,
    }


def _mean_ci(mean: float, low: float, high: float) -> str:
    if not fmt.finite(mean):
        return fmt.NA
    interval = f"[{fmt.energy(low)}, {fmt.energy(high)}]" if fmt.finite(low) else "[n/a]"
    return f"{fmt.energy(mean)} {interval}"


def statistics_markdown(comparisons: Sequence[Comparison]) -> str:
    header = ["Model", "BS", "Config", "Method", "Basis", "n", "Mean J/1k [95 % CI]", "fp16 n",
              "fp16 mean J/1k [95 % CI]", "Δ vs fp16", "Welch p", "Cohen's d"]
    body = [[c.model, str(c.batch_size), c.quant, c.method, c.basis, str(c.config.n),
             _mean_ci(c.config.mean, c.config.low, c.config.high), str(c.baseline.n),
             _mean_ci(c.baseline.mean, c.baseline.low, c.baseline.high), fmt.pct(c.delta_pct),
             fmt.p_value(c.welch_p), fmt.number(c.cohens_d)] for c in comparisons]
    return markdown(header, body)


# findings ------------------------------------------------------------------------------
FINDINGS_COLUMNS: tuple[str, ...] = (
    "finding", "claim", "dataset", "gpu_name", "method", "basis", "verdict", "detail",
)
"""Columns of findings.csv."""


def finding_row(f: Finding) -> dict[str, Any]:
    return {"finding": f.key, "claim": f.claim, "dataset": f.dataset, "gpu_name": f.gpu_name,
            "method": f.method, "basis": f.basis, "verdict": f.verdict, "detail": f.detail}


def findings_markdown(findings: Sequence[Finding]) -> str:
    """One sub-section per claim: each GPU, method and basis with its verdict and numbers."""
    parts = []
    for key, claim in CLAIMS.items():
        mine = [f for f in findings if f.key == key]
        if not mine:
            continue
        body = [[f.gpu_name, f.dataset, f.method, f.basis, f"**{f.verdict}**", f.detail]
                for f in mine]
        parts.append(f"### {claim}\n\n"
                     + markdown(["GPU", "Dataset", "Method", "Basis", "Verdict", "Numbers"], body))
    return "\n\n".join(parts)


def method_title(method: str) -> str:
    return METHOD_TITLES.get(method, method)
