"""The results directory's schema (``docs/results-format.md``): what the benchmark writes and
the report reads - file names, columns, the configuration a row is about, and the one rule for
a figure's change against a baseline.

Pure Python, no imports from the package: the bench (``ecomeasure.bench``), the report
(``ecomeasure.report``) and the merge tool all stand on it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

# files -----------------------------------------------------------------------------------
RESULTS_CSV = "results.csv"
"""One row per configuration (``RESULT_COLUMNS``)."""
ITERATIONS_CSV = "iterations.csv"
"""One row per measured iteration (``ITERATION_COLUMNS``)."""
TRACES_DIR = "traces"
"""The native traces (.npz) and reference samples (.csv) of each configuration."""

# columns ---------------------------------------------------------------------------------
RESULT_COLUMNS: tuple[str, ...] = (
    "date", "status", "error", "model", "model_id", "params_b", "weights", "quant", "batch_size",
    "regime", "new_tokens", "iterations", "prompt_tokens", "prompt_tokens_source", "tokens_generated",
    "throughput_tok_s_mean", "throughput_tok_s_std", "throughput_cv_pct", "power_w_mean",
    "power_w_std", "energy_j_per_1k_mean", "energy_j_per_1k_std", "energy_cv_pct",
    "energy_net_j_per_1k_mean", "energy_net_j_per_1k_std", "ref_power_w_mean",
    "ref_energy_j_per_1k_mean", "ref_energy_j_per_1k_std", "ref_energy_net_j_per_1k_mean",
    "native_vs_ref_pct", "native_vs_counter_pct", "native_vs_counter_s", "idle_power_w", "ref_idle_power_w",
    "delta_vs_fp16_pct",
    "delta_vs_fp16_net_pct", "method", "energy_j_per_1k_samples", "energy_j_per_1k_instant",
    "energy_j_per_1k_average", "energy_j_per_1k_counter", "prefill_s_mean", "prefill_energy_j_mean",
    "decode_s_mean", "decode_energy_j_mean", "decode_ms_per_step_mean", "bytes_per_step",
    "memory_bandwidth_gb_s", "bandwidth_source", "bandwidth_floor_ms_per_step", "bandwidth_floor_fraction",
    "gpu_busy_share_mean", "outlier_iterations", "same_tokens_as_eager", "gpu_name", "gpu_uuid", "driver", "device",
    "torch_version", "transformers_version", "bitsandbytes_version", "torchao_version", "ecomeasure_version",
    "traces", "notes",
)
"""Columns of ``results.csv``, in order: one row per (model, quant, batch_size, regime)."""

ITERATION_COLUMNS: tuple[str, ...] = (
    "model", "quant", "batch_size", "regime", "iteration", "start_s", "end_s", "duration_s", "tokens",
    "throughput_tok_s", "energy_j", "energy_net_j", "method", "energy_j_samples", "energy_j_instant",
    "energy_j_average", "energy_j_counter", "ref_energy_j", "ref_energy_net_j", "ref_samples",
    "prefill_s", "prefill_energy_j", "decode_s", "decode_energy_j", "idle_power_w", "ref_idle_power_w",
    "gpu_busy_share", "outlier", "notes",
)
"""Columns of ``iterations.csv``: one row per measured iteration."""

TEXT_COLUMNS: frozenset[str] = frozenset({
    "date", "status", "error", "model", "model_id", "weights", "quant", "prompt_tokens_source",
    "method", "gpu_name", "gpu_uuid", "driver", "device", "regime", "torch_version",
    "transformers_version", "bitsandbytes_version", "torchao_version", "ecomeasure_version", "traces", "notes",
    "bandwidth_source", "outlier_iterations", "same_tokens_as_eager", "outlier",
})
"""Columns of either file that hold text; every other one holds a number or nothing."""

PROTOCOL_COLUMNS: tuple[str, ...] = ("gpu_name", "model", "quant", "batch_size", "new_tokens", "device", "regime")
"""What makes two results.csv rows measurements of the same thing: a later row of the same
values replaces an earlier one (the report, the merge)."""

CONFIG_COLUMNS: tuple[str, ...] = ("model", "quant", "batch_size", "regime")
"""The columns of a :class:`ConfigKey`, in both files (iterations.csv names its rows by them)."""

DEFAULT_REGIME = "eager"
"""The regime of rows written before the ``regime`` column."""


def parse_float(cell: str | None) -> float:
    """A CSV cell back as a float (NaN if empty or not a number)."""
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


# the configuration -----------------------------------------------------------------------
class ConfigKey(NamedTuple):
    """One configuration: what a results.csv row is about, and what the sweep plans, runs and
    shares among ranks."""
    model: str
    quant: str
    batch_size: int
    regime: str = DEFAULT_REGIME

    def columns(self) -> dict[str, Any]:
        """The key as results.csv columns (``CONFIG_COLUMNS``)."""
        return self._asdict()

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> ConfigKey:
        """The key of a results.csv or iterations.csv row (text cells); an empty regime is
        ``DEFAULT_REGIME``. Raises KeyError or ValueError for a row without a valid key."""
        return cls(row["model"], row["quant"], int(row["batch_size"]), row.get("regime") or DEFAULT_REGIME)

    def label(self) -> str:
        """``model quant bs=N regime``, as log lines name a configuration."""
        return f"{self.model} {self.quant} bs={self.batch_size} {self.regime}"


# change against a baseline ---------------------------------------------------------------
BASELINE_QUANT = "fp16"
"""The quantization every other one is compared with, unless a comparison names another."""

BASES: tuple[str, ...] = ("gross", "net")
"""Energy including idle power (gross), or net of it."""


def vs_baseline_pct(value: float, baseline: float) -> float:
    """100 * (value - baseline) / baseline: the one rule for "vs fp16" (or vs any baseline).

    NaN where either is not finite, and where the baseline is zero or negative: a net energy
    within noise of idle has no meaningful ratio."""
    if not (math.isfinite(value) and math.isfinite(baseline)) or baseline <= 0:
        return math.nan
    return 100.0 * (value - baseline) / baseline


def delta_column(baseline: str = BASELINE_QUANT, basis: str = "gross") -> str:
    """The column of the change vs ``baseline`` on ``basis``: ``delta_vs_fp16_pct``,
    ``delta_vs_fp16_net_pct``, ``delta_vs_bf16_pct``..."""
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, not {basis!r}")
    return f"delta_vs_{baseline}{'_net' if basis == 'net' else ''}_pct"
