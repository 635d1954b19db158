"""Which quantization saves energy per token, and why: each scheme against the 16-bit baselines,
against the bytes a decode step must read and against the bandwidth floor those bytes set.

Per configuration (card, regime, model, batch size, scheme), by one method and basis:

- energy per 1k tokens with its 95 % CI (``stats.mean_ci`` over iterations), and its change
  against the fp16 and the bf16 row of the same card, model, batch size and regime
  (``stats.baseline_of``, ``schema.vs_baseline_pct``) with a 95 % CI of that change (delta method,
  ``change_ci``);
- the bytes a decode step reads (``bytes_per_step``) and the fraction of the bandwidth floor
  reached (``bandwidth_floor_fraction`` = (bytes_per_step / memory bandwidth) / measured step
  time, as the bench writes it; recomputed from those columns where a row lacks it);
- the change the bytes predict, ``vs_baseline_pct(bytes, bytes of the 16-bit row)``: what energy
  per token would do if the scheme's step ran as close to the floor as the 16-bit step, at the
  same power.

Two findings are decided from these (``check_bytes_at_floor``, ``check_gpu_dependence``); the
rules are in their docstrings and in docs/quantization.md.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from .. import fmt
from ..schema import BASES, vs_baseline_pct
from .findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, Finding
from .load import Config, Dataset
from .stats import CONFIDENCE, MeanCI, baseline_of, mean_ci

BASELINES: tuple[str, ...] = ("fp16", "bf16")
"""The 16-bit schemes every other scheme is compared with."""
PREDICTION_BASELINES: tuple[str, ...] = ("bf16", "fp16")
"""Which 16-bit row predicts a scheme's saving from its bytes: bf16 where the card has one
(the compute type of torchao's weight-only kernels), else fp16 (the same bytes)."""

NEAR_FLOOR_SHARE = 0.8
"""A scheme stays near the bandwidth floor when its floor fraction is at least this share of
its 16-bit baseline's (same card, model, batch size and regime)."""
PROPORTIONAL_SHARE = 0.8
"""A scheme saves in proportion to the bytes it removes when its measured saving is at least
this share of the saving its bytes predict."""

QUANTIZATION_CSV = "quantization.csv"
ENERGY_VS_BYTES_PNG = "energy_vs_bytes_per_step.png"

# States of one scheme against the rule "saves in proportion to its bytes".
PROPORTIONAL = "proportional"
SHORT = "short of it"
UNDECIDED = "undecided"  # the CI spans the threshold


@dataclass(frozen=True)
class Change:
    """A configuration's energy change against one baseline row, in %, with a 95 % CI."""
    baseline: str
    pct: float
    low: float
    high: float

    def overlaps(self, other: Change) -> bool:
        """Whether the two CIs share a point; without CIs, whether the point values are equal."""
        lo_a, hi_a = (self.low, self.high) if math.isfinite(self.low) else (self.pct, self.pct)
        lo_b, hi_b = (other.low, other.high) if math.isfinite(other.low) else (other.pct, other.pct)
        return lo_a <= hi_b and lo_b <= hi_a


NO_CHANGE = Change("", math.nan, math.nan, math.nan)


def change_ci(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """CI of 100 (mean(x) / mean(y) - 1), x a scheme's per-iteration energies and y its
    baseline's: the delta method's standard error of the ratio, sqrt(s_x²/(n_x ȳ²) +
    x̄² s_y²/(n_y ȳ⁴)), with a t quantile at the Welch-Satterthwaite degrees of freedom of its
    two terms. NaN for fewer than two values per side or a baseline mean at or below zero;
    a zero-width interval where neither side varies."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.size < 2 or ya.size < 2:
        return math.nan, math.nan
    mx, my = float(np.mean(xa)), float(np.mean(ya))
    if not (math.isfinite(mx) and math.isfinite(my)) or my <= 0:
        return math.nan, math.nan
    ratio = mx / my
    a = float(np.var(xa, ddof=1)) / xa.size / my ** 2
    b = mx ** 2 * float(np.var(ya, ddof=1)) / ya.size / my ** 4
    if a + b == 0.0:
        return 100.0 * (ratio - 1.0), 100.0 * (ratio - 1.0)
    df = (a + b) ** 2 / (a ** 2 / (xa.size - 1) + b ** 2 / (ya.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(a + b)
    return 100.0 * (ratio - half - 1.0), 100.0 * (ratio + half - 1.0)


def energy_ci(config: Config, method: str, basis: str) -> tuple[MeanCI, np.ndarray]:
    """Mean energy per 1k tokens with its CI from the iterations; the results row's mean
    (no CI) where there are none."""
    x = config.iteration_energy_per_1k(method, basis)
    if x.size:
        return mean_ci(x.tolist()), x
    return MeanCI(0, config.energy_per_1k(method, basis), math.nan, math.nan), x


def floor_fraction(config: Config) -> float:
    """Fraction of the bandwidth floor a decode step reached: the row's
    ``bandwidth_floor_fraction``, else bytes_per_step / bandwidth / decode step time."""
    written = config.value("bandwidth_floor_fraction")
    if math.isfinite(written):
        return written
    bandwidth_b_s = config.value("memory_bandwidth_gb_s") * 1e9
    step_s = config.value("decode_ms_per_step_mean") / 1e3
    if not (bandwidth_b_s > 0 and step_s > 0):
        return math.nan
    return config.value("bytes_per_step") / bandwidth_b_s / step_s


@dataclass(frozen=True)
class SchemeFigure:
    """One configuration by one method and basis, against the 16-bit baselines and the floor."""
    config: Config
    method: str
    basis: str
    energy: MeanCI
    vs: dict[str, Change]        # baseline quant -> change (only those the card has)
    bytes_per_step: float
    floor_fraction: float
    baseline: str                # the 16-bit row the bytes prediction uses ("" if none)
    baseline_floor_fraction: float
    predicted_pct: float         # vs_baseline_pct(bytes, baseline bytes)

    @property
    def measured(self) -> Change:
        return self.vs.get(self.baseline, NO_CHANGE)

    @property
    def removes_bytes(self) -> bool:
        return self.predicted_pct < 0

    @property
    def realized_share(self) -> float:
        """Measured saving / predicted saving (1.0 = in proportion to the bytes removed)."""
        if not self.removes_bytes or not math.isfinite(self.measured.pct):
            return math.nan
        return self.measured.pct / self.predicted_pct

    @property
    def floor_share(self) -> float:
        """Floor fraction as a share of the 16-bit baseline's."""
        if not (self.baseline_floor_fraction > 0 and math.isfinite(self.floor_fraction)):
            return math.nan
        return self.floor_fraction / self.baseline_floor_fraction

    @property
    def near_floor(self) -> bool | None:
        share = self.floor_share
        return None if not math.isfinite(share) else share >= NEAR_FLOOR_SHARE

    @property
    def proportional(self) -> str | None:
        """PROPORTIONAL if the whole CI of the measured change saves at least
        PROPORTIONAL_SHARE of the predicted saving, SHORT if none of it does, UNDECIDED
        otherwise; the mean decides where there is no CI. None if not applicable."""
        change = self.measured
        if not self.removes_bytes or not math.isfinite(change.pct):
            return None
        threshold = PROPORTIONAL_SHARE * self.predicted_pct  # negative: a saving
        low, high = (change.low, change.high) if math.isfinite(change.low) else (change.pct, change.pct)
        if high <= threshold:
            return PROPORTIONAL
        if low > threshold:
            return SHORT
        return UNDECIDED


def scheme_figures(configs: Sequence[Config], method: str, basis: str) -> list[SchemeFigure]:
    """Every ok configuration of ``configs`` (one GPU of one dataset) that has a 16-bit row of
    the same card, model, batch size and regime, by ``method`` and ``basis``."""
    out = []
    for config in configs:
        bases = {q: b for q in BASELINES if (b := baseline_of(config, configs, q)) is not None}
        if not bases:
            continue
        energy, x = energy_ci(config, method, basis)
        vs = {}
        for quant, base in bases.items():
            if base is config:
                continue
            base_energy, y = energy_ci(base, method, basis)
            vs[quant] = Change(quant, vs_baseline_pct(energy.mean, base_energy.mean), *change_ci(x, y))
        predictor = next((q for q in PREDICTION_BASELINES if q in bases and bases[q] is not config), "")
        reference = bases.get(predictor)
        out.append(SchemeFigure(
            config=config, method=method, basis=basis, energy=energy, vs=vs,
            bytes_per_step=config.value("bytes_per_step"), floor_fraction=floor_fraction(config),
            baseline=predictor,
            baseline_floor_fraction=floor_fraction(reference) if reference else math.nan,
            predicted_pct=vs_baseline_pct(config.value("bytes_per_step"), reference.value("bytes_per_step"))
            if reference else math.nan))
    return out


def _key(config: Config) -> tuple:
    from .tables import config_order
    return config_order(config)


def figures_of(datasets: Sequence[Dataset], methods: Sequence[str]) -> list[SchemeFigure]:
    """scheme_figures for every GPU of every measured dataset (the seed has no bytes), per
    method it has and basis, in table order."""
    out = []
    for d in datasets:
        if d.is_seed:
            continue
        for gpu in d.gpus():
            configs = sorted(d.ok_on(gpu), key=_key)
            for method in [m for m in d.methods if m in methods]:
                for basis in BASES:
                    out += scheme_figures(configs, method, basis)
    return out


# findings ----------------------------------------------------------------------------------
def _name(f: SchemeFigure) -> str:
    c = f.config
    return f"{c.model}{f' bs{c.batch_size}' if c.batch_size != 1 else ''} {c.quant}"


def _pct_of(fraction: float) -> str:
    """A fraction as a percentage, with a decimal below 10 %: ``41 %``, ``0.4 %``."""
    if not math.isfinite(fraction):
        return fmt.DASH
    return f"{fmt.plain(100 * fraction, 0 if fraction >= 0.1 else 1)} %"


def _change(change: Change) -> str:
    interval = (f" [{fmt.pct(change.low)}, {fmt.pct(change.high)}]" if math.isfinite(change.low)
                else " [no CI]")
    return fmt.pct(change.pct) + interval


def _scheme_text(f: SchemeFigure) -> str:
    return (f"{_name(f)}: {_change(f.measured)} vs {f.baseline}, bytes predict "
            f"{fmt.pct(f.predicted_pct)}, floor {_pct_of(f.floor_fraction)} "
            f"({fmt.plain(f.floor_share, 2)} of {f.baseline}'s)")


def decide_bytes_at_floor(figures: Sequence[SchemeFigure]) -> tuple[str, str]:
    """The rule for "a weight quantization saves energy per token in proportion to the bytes
    it removes only when its kernels stay near the bandwidth floor", on the schemes of one
    GPU, dataset, method and basis that read fewer bytes per step than their 16-bit row:

    - near the floor: floor fraction >= NEAR_FLOOR_SHARE x the 16-bit row's;
    - in proportion: the measured change's whole 95 % CI saves at least PROPORTIONAL_SHARE
      of the predicted saving (short of it: none of the CI does; undecided otherwise).

    Holds when every decided scheme agrees with the claim (near and in proportion, or not near
    and short of it) and at least one scheme is decided; does not hold when any decided scheme
    is a counter-example (a scheme away from the floor that saves in proportion contradicts
    "only when"; one near it that falls short contradicts "when"); not testable otherwise.
    """
    candidates = [f for f in figures if f.removes_bytes and f.proportional is not None
                  and f.near_floor is not None]
    if not candidates:
        return NOT_TESTABLE, ("needs a scheme that reads fewer bytes per step than a 16-bit row "
                              "of the same card, model, batch size and regime, with bytes_per_step "
                              "and floor fractions on both")
    decided = [f for f in candidates if f.proportional != UNDECIDED]
    agree = [f for f in decided if (f.proportional == PROPORTIONAL) == f.near_floor]
    against = [f for f in decided if f not in agree]
    rule = (f"near = floor fraction >= {NEAR_FLOOR_SHARE:g} x the 16-bit row's; in proportion = "
            f"whole 95 % CI saves >= {PROPORTIONAL_SHARE:g} x the bytes' saving")
    parts = [f"{_scheme_text(f)} -> {'near' if f.near_floor else 'not near'}, {f.proportional}"
             for f in candidates]
    detail = f"{rule}: " + "; ".join(parts)
    if against:
        return DOES_NOT_HOLD, f"{detail}; against the claim: {', '.join(map(_name, against))}"
    if not decided:
        return NOT_TESTABLE, f"{detail}; no scheme decided"
    near = {bool(f.near_floor) for f in decided}
    if near == {False}:
        return HOLDS, f"{detail}; only 'only when' is tested: no decided scheme stays near the floor"
    if near == {True}:
        return HOLDS, f"{detail}; only 'when' is tested: every decided scheme stays near the floor"
    return HOLDS, detail


def check_bytes_at_floor(figures: Sequence[SchemeFigure]) -> list[Finding]:
    """decide_bytes_at_floor per dataset, regime, GPU, method and basis (a dataset holding
    several regimes is labelled ``<label> · <regime>``, as split_by_regime does)."""
    out = []

    def key(f: SchemeFigure) -> tuple[str, str, str, str, str]:
        return f.config.dataset, f.config.regime, f.config.gpu_name, f.method, f.basis

    regimes: dict[str, set[str]] = {}
    for f in figures:
        regimes.setdefault(f.config.dataset, set()).add(f.config.regime)
    for dataset, regime, gpu, method, basis in dict.fromkeys(map(key, figures)):
        verdict, detail = decide_bytes_at_floor(
            [f for f in figures if key(f) == (dataset, regime, gpu, method, basis)])
        label = dataset if len(regimes[dataset]) == 1 else f"{dataset} · {regime}"
        out.append(Finding("bytes_at_floor", label, gpu, method, basis, verdict, detail))
    return out


def decide_gpu_dependence(pairs: Sequence[tuple[SchemeFigure, SchemeFigure, str]],
                          card_spread: CardSpread | None = None) -> tuple[str, str]:
    """The study's sixth finding between two GPUs: each scheme (model, batch size, regime)
    measured on both, its change against the same 16-bit baseline (the third item, one both
    cards measured) on each card with 95 % CIs. A scheme's saving depends on the GPU when the
    two CIs do not overlap and, where two cards of one GPU model measured a scheme, the
    difference also exceeds ``card_spread`` (how far two cards of one model differ: without it,
    a difference between two cards is not told apart from one between two GPU models). Holds
    when at least one scheme's saving depends on the GPU; does not hold when none does; not
    testable without a scheme on both cards."""
    if not pairs:
        return NOT_TESTABLE, ("needs one scheme and a 16-bit row measured on both GPUs (same "
                              "model, batch size and regime)")
    spread = card_spread.points if card_spread is not None else math.nan
    parts, differ = [], []
    for a, b, base in pairs:
        on_a, on_b = a.vs[base], b.vs[base]
        apart = not on_a.overlaps(on_b)
        within_spread = apart and abs(on_a.pct - on_b.pct) <= spread
        if apart and not within_spread:
            differ.append(_name(a))
        parts.append(f"{_name(a)} vs {base} in {a.config.regime}: {_change(on_a)} on "
                     f"{a.config.gpu_name}, {_change(on_b)} on {b.config.gpu_name}"
                     + (" (CIs apart, within the card spread)" if within_spread
                        else " (differ)" if apart else " (CIs overlap)"))
    detail = "; ".join(parts)
    detail += (f"; {card_spread.text()}" if card_spread is not None
               else "; card spread unknown: one card of each GPU model measured these schemes, "
                    "so a difference between the two cards is not told apart from one between the models")
    if differ:
        return HOLDS, f"{detail}; differ beyond their CIs: {', '.join(differ)}"
    return DOES_NOT_HOLD, detail


@dataclass(frozen=True)
class CardSpread:
    """How far two cards of one GPU model differ in one scheme's saving: the largest such
    difference over the schemes two of its cards measured (same model, batch size, regime,
    method, basis and 16-bit baseline), in percentage points."""
    points: float
    gpu_name: str
    scheme: str          # the scheme of the largest difference, as ``_name`` writes it
    schemes: int         # how many schemes two cards of the model both measured

    def text(self) -> str:
        return (f"card spread {self.points:.1f} points (two cards of {self.gpu_name}, largest of "
                f"{self.schemes} scheme{'s' if self.schemes != 1 else ''}: {self.scheme})")


def _schemes_by_card(figures: Sequence[SchemeFigure]) -> dict[tuple, dict[str, dict[str, SchemeFigure]]]:
    """{(regime, method, basis, model, batch size, quant): {gpu_name: {card: figure}}} of every
    scheme but the 16-bit baselines (they are what a scheme's saving is measured against), in
    table order; the first figure of a card stands for it."""
    by_key: dict[tuple, dict[str, dict[str, SchemeFigure]]] = {}
    for f in figures:
        if not f.vs or f.config.quant in BASELINES:
            continue
        c = f.config
        key = (c.regime, f.method, f.basis, c.model, c.batch_size, c.quant)
        by_key.setdefault(key, {}).setdefault(c.gpu_name, {}).setdefault(c.card, f)
    return by_key


def card_spreads(figures: Sequence[SchemeFigure]) -> dict[tuple[str, str, str, str], CardSpread]:
    """{(gpu_name, regime, method, basis): CardSpread} for every GPU model of which two or more
    cards (``gpu_uuid``) measured the same scheme."""
    found: dict[tuple[str, str, str, str], list[tuple[float, str]]] = {}
    for key, models in _schemes_by_card(figures).items():
        for gpu_name, cards in models.items():
            named = [f for card, f in cards.items() if card]  # a row without gpu_uuid names no card
            differences = [abs(a.vs[base].pct - b.vs[base].pct)
                           for a, b in itertools.combinations(named, 2)
                           if (base := _common_baseline(a, b))]
            if differences:
                found.setdefault((gpu_name, *key[:3]), []).append(
                    (max(differences), _name(next(iter(cards.values())))))
    return {key: CardSpread(max(diffs)[0], key[0], max(diffs)[1], len(diffs)) for key, diffs in found.items()}


def _common_baseline(a: SchemeFigure, b: SchemeFigure) -> str:
    """The 16-bit baseline both cards measured this scheme against (bf16 before fp16), or ""."""
    return next((q for q in PREDICTION_BASELINES
                 if q in a.vs and q in b.vs and math.isfinite(a.vs[q].pct) and math.isfinite(b.vs[q].pct)), "")


def check_gpu_dependence(figures: Sequence[SchemeFigure]) -> list[Finding]:
    """decide_gpu_dependence for every pair of GPU models (by ``gpu_name``) among the
    datasets, per regime, method and basis: N cards give N (N - 1) / 2 pairs. The schemes
    compared are every one but the 16-bit baselines, each against a baseline both cards have
    (one card's fp16-only dataset is compared with another's bf16-and-fp16 one against fp16).
    Where several cards of one model measured a scheme, the first in table order stands for
    the model, and the larger of the two models' card spreads (``card_spreads``) is the
    difference a saving must exceed."""
    out = []
    by_key = {key: {gpu: next(iter(cards.values())) for gpu, cards in models.items()}  # first of a model
              for key, models in _schemes_by_card(figures).items()}
    gpus = list(dict.fromkeys(f.config.gpu_name for f in figures))
    method_bases = dict.fromkeys((f.method, f.basis) for f in figures)
    datasets = ", ".join(dict.fromkeys(f.config.dataset for f in figures))
    if len(gpus) == 1:
        return [Finding("gpu_dependence", datasets, gpus[0], method, basis, NOT_TESTABLE,
                        "needs the same scheme and its 16-bit row measured on two GPU models "
                        "(results directories of two cards)")
                for method, basis in method_bases]
    groups = dict.fromkeys((f.config.regime, f.method, f.basis) for f in figures)
    spreads = card_spreads(figures)
    for gpu_a, gpu_b in itertools.combinations(gpus, 2):
        decided: set[tuple[str, str]] = set()
        for regime, method, basis in groups:
            pairs = [(on[gpu_a], on[gpu_b], base) for key, on in by_key.items()
                     if key[:3] == (regime, method, basis) and gpu_a in on and gpu_b in on
                     and (base := _common_baseline(on[gpu_a], on[gpu_b]))]
            if not pairs:
                continue
            known = [sp for gpu in (gpu_a, gpu_b) if (sp := spreads.get((gpu, regime, method, basis)))]
            verdict, detail = decide_gpu_dependence(pairs, max(known, key=lambda sp: sp.points, default=None))
            decided.add((method, basis))
            names = ", ".join(dict.fromkeys(f.config.dataset for pair in pairs for f in pair[:2]))
            out.append(Finding("gpu_dependence", names, f"{gpu_a} vs {gpu_b}", method, basis,
                               verdict, f"{regime}: {detail}"))
        out += [Finding("gpu_dependence", datasets, f"{gpu_a} vs {gpu_b}", method, basis, NOT_TESTABLE,
                        "no scheme measured on both GPUs with a 16-bit row of each (same model, "
                        "batch size and regime)")
                for method, basis in method_bases if (method, basis) not in decided]
    return out


# tables ------------------------------------------------------------------------------------
QUANTIZATION_COLUMNS: tuple[str, ...] = (
    "dataset", "gpu_name", "card", "regime", "model", "params_b", "batch_size", "quant", "method",
    "basis", "n", "energy_j_per_1k_mean", "ci95_low", "ci95_high",
    "vs_fp16_pct", "vs_fp16_ci95_low", "vs_fp16_ci95_high",
    "vs_bf16_pct", "vs_bf16_ci95_low", "vs_bf16_ci95_high",
    "bytes_per_step", "memory_bandwidth_gb_s", "decode_ms_per_step_mean", "bandwidth_floor_fraction",
    "prediction_baseline", "predicted_vs_baseline_pct", "realized_share", "floor_share",
    "near_floor", "proportional",
)
"""Columns of quantization.csv: one row per configuration, method and basis."""


def quantization_row(f: SchemeFigure) -> dict:
    c = f.config
    row = {
        "dataset": c.dataset, "gpu_name": c.gpu_name, "card": c.card, "regime": c.regime,
        "model": c.model, "params_b": c.params_b, "batch_size": c.batch_size, "quant": c.quant,
        "method": f.method, "basis": f.basis, "n": f.energy.n,
        "energy_j_per_1k_mean": f.energy.mean, "ci95_low": f.energy.low, "ci95_high": f.energy.high,
        "bytes_per_step": f.bytes_per_step, "memory_bandwidth_gb_s": c.value("memory_bandwidth_gb_s"),
        "decode_ms_per_step_mean": c.value("decode_ms_per_step_mean"),
        "bandwidth_floor_fraction": f.floor_fraction, "prediction_baseline": f.baseline,
        "predicted_vs_baseline_pct": f.predicted_pct, "realized_share": f.realized_share,
        "floor_share": f.floor_share,
        "near_floor": "" if f.near_floor is None else str(f.near_floor).lower(),
        "proportional": f.proportional or "",
    }
    for quant in BASELINES:
        change = f.vs.get(quant, NO_CHANGE)
        row.update({f"vs_{quant}_pct": change.pct, f"vs_{quant}_ci95_low": change.low,
                    f"vs_{quant}_ci95_high": change.high})
    return row


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f}" if math.isfinite(x) else fmt.DASH


def _cell(f: SchemeFigure, quant: str) -> str:
    change = f.vs.get(quant)
    return _change(change) if change is not None and math.isfinite(change.pct) else fmt.DASH


def quantization_markdown(figures: Sequence[SchemeFigure]) -> str:
    from .tables import markdown
    header = ["Model", "BS", "Config", "n", "J/1k [95 % CI]", "vs fp16 [95 % CI]", "vs bf16 [95 % CI]",
              "GB / step", "of floor", "bytes predict", "realized", "near floor", "in proportion"]
    body = [[f.config.model, str(f.config.batch_size), f.config.quant, str(f.energy.n),
             fmt.energy(f.energy.mean) + (f" [{fmt.energy(f.energy.low)}, {fmt.energy(f.energy.high)}]"
                                          if math.isfinite(f.energy.low) else ""),
             _cell(f, "fp16"), _cell(f, "bf16"), _gb(f.bytes_per_step),
             _pct_of(f.floor_fraction),
             f"{fmt.pct(f.predicted_pct)} vs {f.baseline}" if f.removes_bytes else fmt.DASH,
             fmt.plain(f.realized_share, 2),
             fmt.DASH if f.near_floor is None or not f.removes_bytes else ("yes" if f.near_floor else "no"),
             f.proportional or fmt.DASH] for f in figures]
    return markdown(header, body)


NOTE = f"""\
Each scheme against the 16-bit rows of the same card, model, batch size and regime, with 95 %
CIs: of the mean energy per 1k tokens (t interval over iterations) and of its change (delta
method, Welch-Satterthwaite degrees of freedom). **GB / step**: the bytes a decode step must
read (`bytes_per_step`); **of floor**: (bytes / memory bandwidth) / measured step time;
**bytes predict**: the change in bytes per step against bf16 (fp16 where the card has no bf16
row), the energy change if the step stayed as close to the floor as the 16-bit one at the same
power; **realized**: measured change / predicted change. **near floor**: floor fraction at
least {NEAR_FLOOR_SHARE:g} of the 16-bit row's; **in proportion**: the whole CI of the measured
change saves at least {PROPORTIONAL_SHARE:g} of the predicted saving. The rules:
docs/quantization.md. All methods and both bases: `{QUANTIZATION_CSV}`."""


def section(figures: Sequence[SchemeFigure], findings: Sequence[Finding], method: str,
            basis: str = "gross") -> list[str]:
    """The report.md section: one table per GPU of each dataset (``method``, ``basis``), then
    the two findings."""
    from .tables import findings_markdown
    lines = ["## Which quantization saves energy per token, and why", "", NOTE]
    shown = [f for f in figures if (f.method, f.basis) == (method, basis)]
    if not shown:
        lines += ["", "No configuration has a 16-bit row of the same card to compare with."]
    for dataset, gpu in dict.fromkeys((f.config.dataset, f.config.gpu_name) for f in shown):
        mine = [f for f in shown if (f.config.dataset, f.config.gpu_name) == (dataset, gpu)]
        lines += ["", f"### {gpu} - {dataset} ({method}, {basis})", "", quantization_markdown(mine)]
    if findings:  # one heading level below this section's
        lines += ["", "\n".join("#" + line if line.startswith("### ") else line
                                for line in findings_markdown(findings).splitlines())]
    return lines


# plot --------------------------------------------------------------------------------------
def plot_energy_vs_bytes(figures: Sequence[SchemeFigure], path: Path) -> tuple[Path, str]:
    """J/1k tokens against bytes per decode step, one point per scheme, one panel per GPU of
    each dataset (regime) and batch size; per model, the dashed line through its 16-bit point
    is energy in proportion to bytes (the 16-bit row's floor fraction and power kept)."""
    from . import plots
    usable = [f for f in figures if f.bytes_per_step > 0 and f.energy.mean > 0]
    # Only models and batch sizes with a scheme that reads fewer bytes than its 16-bit row.
    compared = {(f.config.dataset, f.config.gpu_name, f.config.model, f.config.batch_size)
                for f in usable if f.removes_bytes}
    usable = [f for f in usable if (f.config.dataset, f.config.gpu_name, f.config.model,
                                    f.config.batch_size) in compared]
    panels = list(dict.fromkeys((f.config.dataset, f.config.gpu_name) for f in usable))
    title = "Energy per token vs bytes per decode step"
    if not panels:
        return plots._placeholder(path, title, "no configuration with bytes_per_step and a 16-bit row")
    fig, axes = plots._figure(len(panels), width_in=9.0, height_in=4.5)
    for ax, (dataset, gpu) in zip(axes, panels):
        mine = [f for f in usable if (f.config.dataset, f.config.gpu_name) == (dataset, gpu)]
        series = list(dict.fromkeys((f.config.model, f.config.batch_size) for f in mine))
        for k, (model, bs) in enumerate(series):
            points = [f for f in mine if (f.config.model, f.config.batch_size) == (model, bs)]
            base = next((f for q in PREDICTION_BASELINES for f in points if f.config.quant == q), None)
            marker = plots.MARKERS[k % len(plots.MARKERS)]
            for f in points:
                yerr = None
                if math.isfinite(f.energy.low):
                    yerr = [[f.energy.mean - f.energy.low], [f.energy.high - f.energy.mean]]
                ax.errorbar([f.bytes_per_step / 1e9], [f.energy.mean], yerr=yerr, fmt=marker,
                            color=plots._color(f.config.quant), capsize=2)
                ax.annotate(f"{f.config.quant} ({_pct_of(f.floor_fraction)})",
                            (f.bytes_per_step / 1e9, f.energy.mean), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
            if base is not None:
                xs = np.array([min(f.bytes_per_step for f in points), base.bytes_per_step])
                ax.plot(xs / 1e9, base.energy.mean * xs / base.bytes_per_step, "--", color="grey",
                        linewidth=0.8)
            ax.scatter([], [], marker=marker, color="grey", label=model if bs == 1 else f"{model} bs{bs}")
        for quant in dict.fromkeys(f.config.quant for f in mine):
            ax.scatter([], [], marker="s", color=plots._color(quant), label=quant)
        ax.plot([], [], "--", color="grey", linewidth=0.8, label="in proportion to bytes, through 16-bit")
        xs_gb = [f.bytes_per_step / 1e9 for f in mine]
        ys = [f.energy.mean for f in mine]
        if max(xs_gb) > 10 * min(xs_gb):
            ax.set_xscale("log")
        if max(ys) > 10 * min(ys):
            ax.set_yscale("log")
        ax.set_xlabel("bytes a decode step reads (GB)")
        ax.set_ylabel(f"energy, {mine[0].basis} (J / 1k tokens)")
        ax.set_title(f"{gpu} - {dataset} ({mine[0].method}); in brackets: fraction of the floor",
                     fontsize=9)
        ax.legend(fontsize=6, ncols=2)
    fig.suptitle(title)
    return plots._save(fig, path), (f"energy per 1k tokens vs bytes per decode step, one point per scheme "
                                    f"({len(usable)} configurations), dashed: in proportion to bytes")
