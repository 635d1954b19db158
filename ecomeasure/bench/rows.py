"""From a measured configuration to its rows: one per iteration, one summary row.

Per-1k figures are per 1,000 generated tokens (all sequences of the batch). Standard
deviations are sample standard deviations (n - 1) over iterations; CV = std / mean.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from scipy.stats import median_abs_deviation

from .. import fmt
from ..meter import SOURCES  # a column each: ``energy_j_<source>``
from ..roofline import DecodeFloor
from ..schema import BASELINE_QUANT, parse_float, vs_baseline_pct
from ..units import NAN
from .runner import COUNTER_STEP_S, ConfigRun, CounterCheck, Iteration, counter_resolution_pct, net, source_energy_j


@dataclass(frozen=True)
class RowContext:
    """What a row is about, besides its measurements."""
    model: str
    model_id: str
    quant: str
    batch_size: int
    regime: str
    new_tokens: int
    iterations: int
    device: str
    gpu_name: str = ""
    gpu_uuid: str = ""
    driver: str = ""
    versions: Mapping[str, str] | None = None
    params_b: float = NAN
    weights: str = ""
    prompt_tokens: int | None = None
    prompt_tokens_source: str = ""
    floor: DecodeFloor | None = None
    """The memory-bandwidth floor of a decode step (None: unknown)."""

    def columns(self) -> dict[str, Any]:
        versions = dict(self.versions or {})
        floor = self.floor
        return {
            "model": self.model, "model_id": self.model_id, "params_b": self.params_b,
            "weights": self.weights, "quant": self.quant, "batch_size": self.batch_size,
            "regime": self.regime, "new_tokens": self.new_tokens,
            "bytes_per_step": round(floor.bytes_per_step) if floor else None,
            "memory_bandwidth_gb_s": floor.bandwidth.bytes_per_s / 1e9 if floor else NAN,
            "bandwidth_source": floor.bandwidth.source if floor else "",
            "bandwidth_floor_ms_per_step": floor.floor_s_per_step * 1e3 if floor else NAN, "iterations": self.iterations,
            "prompt_tokens": self.prompt_tokens, "prompt_tokens_source": self.prompt_tokens_source,
            "gpu_name": self.gpu_name, "gpu_uuid": self.gpu_uuid, "driver": self.driver,
            "device": self.device,
            **{k: versions.get(k, "") for k in ("torch_version", "transformers_version",
                                                  "bitsandbytes_version", "torchao_version",
                                                  "ecomeasure_version")},
        }


def utc_now() -> str:
    """ISO-8601 UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def mean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN if any value is NaN or there are none (a figure
    missing for one iteration is missing for the configuration)."""
    if not values or len(_finite(values)) != len(values):
        return NAN
    return statistics.fmean(values)


def std(values: Sequence[float]) -> float:
    """Sample standard deviation; NaN for fewer than two values or any NaN."""
    if len(values) < 2 or len(_finite(values)) != len(values):
        return NAN
    return statistics.stdev(values)


def cv_pct(values: Sequence[float]) -> float:
    m = mean(values)
    return 100.0 * std(values) / m if m and not math.isnan(m) else NAN


def tokens_per_iteration(tokens: Sequence[int]) -> float:
    """Tokens an iteration generated: the count itself where every iteration made the same
    (the forced length makes them; written as a whole number), else the mean."""
    return tokens[0] if len(set(tokens)) == 1 else mean([float(t) for t in tokens])


def join_notes(notes: Sequence[str]) -> str:
    """The ``notes`` cell: notes separated by "; " (a ";" inside a note becomes ",")."""
    return "; ".join(n.replace(";", ",") for n in notes)


def per_1k(energy_j: float, tokens: int) -> float:
    return energy_j * 1000.0 / tokens if tokens else NAN


OUTLIER_MADS = 3.0
"""An iteration whose throughput lies further than this many (normal-scaled) median absolute
deviations from the median is flagged; it is kept in every figure."""
OUTLIER_MIN_FRACTION = 0.01
"""...and further than this fraction of the median: in the graph regime the spread is a few
hundredths of a percent, and an iteration 0.1 % off is no outlier in any figure."""


def outliers(values: Sequence[float], mads: float = OUTLIER_MADS,
             min_fraction: float = OUTLIER_MIN_FRACTION) -> list[bool]:
    """Which values lie beyond ``mads`` scaled MADs of the median and beyond ``min_fraction``
    of it (none if the MAD is 0 or there are fewer than three values)."""
    finite = _finite(values)
    if len(finite) < 3:
        return [False] * len(values)
    center = statistics.median(finite)
    spread = float(median_abs_deviation(finite, scale="normal"))
    reach = max(mads * spread, min_fraction * abs(center))
    return [spread > 0 and not math.isnan(v) and abs(v - center) > reach for v in values]


COUNTER_AGREEMENT_PCT = 0.5
"""How close a row's native energy must come to the energy counter's over its iterations,
where the counter resolves that much (spans of 20 s and more; see runner.COUNTER_STEP_S)."""


def native_vs_counter_pct(check: CounterCheck | None) -> float:
    """100 * (native - counter) / counter between the counter readings nearest the first
    iteration's start and the last one's end; NaN without a counter."""
    return check.pct if check is not None else NAN


def counter_verdict(pct: Any, span_s: Any) -> str:
    """The console's words on a row's counter check: within or beyond COUNTER_AGREEMENT_PCT
    where the counter resolves it, else the figure with what the counter can resolve."""
    if not fmt.finite(pct):
        return "no counter"
    if not fmt.finite(span_s) or span_s <= 0:
        return f"{pct + 0.0:+.2f} % vs counter"
    resolution_pct = counter_resolution_pct(float(span_s))
    if resolution_pct > COUNTER_AGREEMENT_PCT:
        return (f"{pct + 0.0:+.2f} % vs counter over {span_s:.1f} s "
                f"(its {COUNTER_STEP_S * 1000:.0f} ms steps resolve only +-{resolution_pct:.1f} % there)")
    verdict = "within" if abs(pct) <= COUNTER_AGREEMENT_PCT else "BEYOND"
    return f"{pct + 0.0:+.2f} % vs counter over {span_s:.1f} s ({verdict} {COUNTER_AGREEMENT_PCT} %)"


def iteration_row(ctx: RowContext, run: ConfigRun, it: Iteration, outlier: bool = False) -> dict[str, Any]:
    """One row of iterations.csv."""
    energy_j = it.total.energy_j if it.total is not None else NAN
    return {
        "model": ctx.model, "quant": ctx.quant, "batch_size": ctx.batch_size, "regime": ctx.regime,
        "iteration": it.index,
        "start_s": it.start_s, "end_s": it.end_s, "duration_s": it.duration_s, "tokens": it.tokens,
        "throughput_tok_s": it.tokens / it.duration_s if it.duration_s > 0 else NAN,
        "energy_j": energy_j, "energy_net_j": net(energy_j, run.idle_power_w, it.duration_s),
        "method": it.total.method if it.total is not None else "unavailable",
        **{f"energy_j_{s}": source_energy_j(it.total, s) for s in SOURCES},
        "ref_energy_j": it.ref_energy_j,
        "ref_energy_net_j": net(it.ref_energy_j, run.ref_idle_power_w, it.duration_s),
        "ref_samples": it.ref_samples if run.reference is not None else None,
        "prefill_s": it.prefill_s,
        "prefill_energy_j": it.prefill.energy_j if it.prefill is not None else NAN,
        "decode_s": it.decode_s,
        "decode_energy_j": it.decode.energy_j if it.decode is not None else NAN,
        "idle_power_w": run.idle_power_w, "ref_idle_power_w": run.ref_idle_power_w,
        "gpu_busy_share": it.gpu_busy_share, "outlier": outlier,
        "notes": join_notes([*run.notes, *it.notes]),
    }


def iteration_rows(ctx: RowContext, run: ConfigRun) -> list[dict[str, Any]]:
    """The iterations.csv rows of a configuration, throughput outliers flagged."""
    flags = outliers([it.tokens / it.duration_s if it.duration_s > 0 else NAN for it in run.iterations])
    return [iteration_row(ctx, run, it, flag) for it, flag in zip(run.iterations, flags)]


def summary_row(ctx: RowContext, run: ConfigRun, iteration_rows: Sequence[Mapping[str, Any]],
                fp16_row: Mapping[str, str] | None, traces: str) -> dict[str, Any]:
    """The results.csv row of a completed configuration."""
    def col(name: str) -> list[float]:
        return [float(r[name]) if r[name] is not None else NAN for r in iteration_rows]

    tokens = [r["tokens"] for r in iteration_rows]
    # A decode step makes one token per sequence: the first token comes from the prefill.
    steps = ctx.new_tokens - 1
    step_ms = [1e3 * d / steps if steps > 0 else NAN for d in col("decode_s")]
    step_ms_mean = mean(step_ms)
    floor_fraction = ctx.floor.fraction(step_ms_mean / 1e3) if ctx.floor and steps > 0 else NAN
    def col_per_1k(name: str) -> list[float]:
        return [per_1k(e, t) for e, t in zip(col(name), tokens)]

    durations = col("duration_s")
    throughput = col("throughput_tok_s")
    power = [e / d if d > 0 else NAN for e, d in zip(col("energy_j"), durations)]
    ref_power = [e / d if d > 0 else NAN for e, d in zip(col("ref_energy_j"), durations)]
    energy, energy_net = col_per_1k("energy_j"), col_per_1k("energy_net_j")
    ref_energy, ref_net = col_per_1k("ref_energy_j"), col_per_1k("ref_energy_net_j")
    methods = {r["method"] for r in iteration_rows}
    energy_mean, energy_net_mean = mean(energy), mean(energy_net)
    # The fp16 row is its own baseline (0 %); other rows compare with the latest fp16 row.
    if ctx.quant == BASELINE_QUANT:
        base_gross, base_net = energy_mean, energy_net_mean
    else:
        base_gross = parse_float((fp16_row or {}).get("energy_j_per_1k_mean"))
        base_net = parse_float((fp16_row or {}).get("energy_net_j_per_1k_mean"))
    return {
        **ctx.columns(),
        "date": utc_now(), "status": "ok", "error": "",
        "tokens_generated": tokens_per_iteration(tokens),
        "throughput_tok_s_mean": mean(throughput), "throughput_tok_s_std": std(throughput),
        "throughput_cv_pct": cv_pct(throughput),
        "power_w_mean": mean(power), "power_w_std": std(power),
        "energy_j_per_1k_mean": energy_mean, "energy_j_per_1k_std": std(energy),
        "energy_cv_pct": cv_pct(energy),
        "energy_net_j_per_1k_mean": energy_net_mean, "energy_net_j_per_1k_std": std(energy_net),
        "ref_power_w_mean": mean(ref_power),
        "ref_energy_j_per_1k_mean": mean(ref_energy), "ref_energy_j_per_1k_std": std(ref_energy),
        "ref_energy_net_j_per_1k_mean": mean(ref_net),
        "native_vs_ref_pct": vs_baseline_pct(mean(ref_energy), energy_mean),
        "native_vs_counter_pct": native_vs_counter_pct(run.counter_check),
        "native_vs_counter_s": run.counter_check.span_s if run.counter_check is not None else NAN,
        "idle_power_w": run.idle_power_w, "ref_idle_power_w": run.ref_idle_power_w,
        "delta_vs_fp16_pct": vs_baseline_pct(energy_mean, base_gross),
        "delta_vs_fp16_net_pct": vs_baseline_pct(energy_net_mean, base_net),
        "method": methods.pop() if len(methods) == 1 else "mixed",
        **{f"energy_j_per_1k_{s}": mean(col_per_1k(f"energy_j_{s}")) for s in SOURCES},
        "prefill_s_mean": mean(col("prefill_s")), "prefill_energy_j_mean": mean(col("prefill_energy_j")),
        "decode_s_mean": mean(col("decode_s")), "decode_energy_j_mean": mean(col("decode_energy_j")),
        "decode_ms_per_step_mean": step_ms_mean, "bandwidth_floor_fraction": floor_fraction,
        "gpu_busy_share_mean": mean(col("gpu_busy_share")),
        "outlier_iterations": ";".join(str(r["iteration"]) for r in iteration_rows if r["outlier"]),
        "same_tokens_as_eager": run.same_tokens_as_eager,
        "traces": traces, "notes": join_notes(run.all_notes),
    }


def failed_row(ctx: RowContext, error: str, status: str = "failed") -> dict[str, Any]:
    """The results.csv row of a configuration that could not be measured (``failed``) or
    that its regime cannot run (``unavailable``)."""
    return {**ctx.columns(), "date": utc_now(), "status": status, "error": error}
