"""Statistics between each configuration and its baseline (fp16 unless named), from
per-iteration data.

Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``), Cohen's d with the pooled
standard deviation, and 95 % confidence intervals of each mean (``scipy.stats.t.interval``).
Anything needing two or more iterations per side is NaN ("n/a") with fewer.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from ..schema import BASELINE_QUANT, BASES, vs_baseline_pct
from .load import Config, Dataset

CONFIDENCE = 0.95


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values and its 95 % confidence interval (t distribution)."""
    n: int
    mean: float
    low: float
    high: float


def mean_ci(values: npt.ArrayLike, confidence: float = CONFIDENCE) -> MeanCI:
    """Mean and t-interval of the mean; the interval is NaN for fewer than two values."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return MeanCI(0, math.nan, math.nan, math.nan)
    mean = float(np.mean(x))
    if x.size < 2:
        return MeanCI(1, mean, math.nan, math.nan)
    sem = float(stats.sem(x))
    if sem == 0.0:  # identical values: t.interval would divide by zero
        return MeanCI(int(x.size), mean, mean, mean)
    low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=sem)
    return MeanCI(int(x.size), mean, float(low), float(high))


def cohens_d(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """(mean(x) - mean(y)) / s_pooled, s_pooled = sqrt(((nx-1) sx^2 + (ny-1) sy^2) / (nx+ny-2)),
    with sample variances; NaN for fewer than two values per side or no spread at all."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or y.size < 2:
        return math.nan
    pooled_var = ((x.size - 1) * np.var(x, ddof=1) + (y.size - 1) * np.var(y, ddof=1)) \
        / (x.size + y.size - 2)
    if pooled_var == 0.0:
        return math.nan
    return float((np.mean(x) - np.mean(y)) / math.sqrt(pooled_var))


def welch(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value; NaN for fewer than two values per side or
    when neither side varies (the test is undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or y.size < 2 or (np.var(x) == 0.0 and np.var(y) == 0.0):
        return math.nan, math.nan
    with warnings.catch_warnings():
        # Nearly identical samples make scipy warn about precision; the result stands.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(x, y, equal_var=False)
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class Comparison:
    """One configuration against the baseline run (``baseline_quant``) of the same model, batch
    size and GPU."""
    dataset: str
    gpu_name: str
    model: str
    params_b: float
    batch_size: int
    quant: str
    method: str
    basis: str
    config: MeanCI
    baseline: MeanCI
    delta_pct: float
    welch_t: float
    welch_p: float
    cohens_d: float
    baseline_quant: str = BASELINE_QUANT


def compare(config: Config, baseline: Config, method: str, basis: str) -> Comparison:
    """Statistics of ``config`` against ``baseline`` from their per-iteration energy per 1k."""
    x = config.iteration_energy_per_1k(method, basis)
    y = baseline.iteration_energy_per_1k(method, basis)
    a, b = mean_ci(x), mean_ci(y)
    t, p = welch(x, y)
    return Comparison(
        dataset=config.dataset, gpu_name=config.gpu_name, model=config.model,
        params_b=config.params_b, batch_size=config.batch_size, quant=config.quant,
        method=method, basis=basis, config=a, baseline=b, delta_pct=vs_baseline_pct(a.mean, b.mean),
        welch_t=t, welch_p=p, cohens_d=cohens_d(x, y), baseline_quant=baseline.quant)


def baseline_of(config: Config, configs: Iterable[Config], baseline: str = BASELINE_QUANT) -> Config | None:
    """The ok ``baseline`` configuration of the same GPU model and card, model, batch size and
    regime, if any."""
    for other in configs:
        if (other.ok and other.quant == baseline and other.gpu_name == config.gpu_name
                and other.card == config.card and other.model == config.model
                and other.batch_size == config.batch_size and other.regime == config.regime):
            return other
    return None


def compare_dataset(dataset: Dataset, methods: Sequence[str], baseline_quant: str = BASELINE_QUANT
                    ) -> list[Comparison]:
    """Every other configuration against its ``baseline_quant`` run, per method and basis.
    The seed's published dataset has no iterations and yields nothing."""
    if dataset.is_seed:
        return []
    out = []
    for config in dataset.ok:
        if config.quant == baseline_quant:
            continue
        baseline = baseline_of(config, dataset.ok, baseline_quant)
        if baseline is None or not (config.iterations or baseline.iterations):
            continue
        for method in methods:
            for basis in BASES:
                comparison = compare(config, baseline, method, basis)
                if comparison.config.n or comparison.baseline.n:
                    out.append(comparison)
    return out
