"""The seed's findings, checked on the data at hand: holds / does not hold, with the numbers.

Each finding is evaluated per GPU of each dataset, per method and basis (gross or net of
idle), on the mean energy per 1k tokens; where the data lacks what a finding needs, it says
"not testable here" and what is missing.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import fmt
from ..schema import BASES, vs_baseline_pct
from .load import Config, Dataset

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_TESTABLE = "not testable here"

CROSSOVER_PARAMS_B = 5.0
SLOPE_RANGE = (-1.2, -0.8)
MOST_RECOVERED_PCT = 50.0

CLAIMS: dict[str, str] = {
    "nf4_crossover": "nf4 costs more energy than fp16 below ~5B parameters, and less above",
    "int8_penalty": "default int8 (bitsandbytes, threshold 6.0) costs more energy than fp16",
    "int8_pure_recovery": "pure int8 (threshold 0.0) recovers most of default int8's energy loss",
    "batch_scaling": "energy per token falls ~1/batch size (seed: BS=8 ~85 % less than BS=1)",
    "bytes_at_floor": "a weight quantization saves energy per token in proportion to the bytes it "
                      "removes only when its kernels stay near the bandwidth floor",
    "gpu_dependence": "savings depend on the GPU (the study's sixth finding): one scheme's saving "
                      "against the 16-bit baseline differs between cards",
}
"""The seed memo's findings, by key, in its words as near as a check allows."""


@dataclass(frozen=True)
class Finding:
    """One claim checked on one GPU of one dataset, by one method and basis."""
    key: str
    dataset: str
    gpu_name: str
    method: str
    basis: str
    verdict: str
    detail: str

    @property
    def claim(self) -> str:
        return CLAIMS[self.key]


Energies = dict[tuple[str, str, int], tuple[Config, float]]


def _energies(configs: Sequence[Config], method: str, basis: str) -> Energies:
    out: Energies = {}
    for c in configs:
        e = c.energy_per_1k(method, basis)
        if math.isfinite(e):
            out[(c.model, c.quant, c.batch_size)] = (c, e)
    return out


def _name(config: Config, batch: bool = True) -> str:
    name = f"{config.model} ({fmt.params(config.params_b)})"
    return f"{name} bs{config.batch_size}" if batch and config.batch_size != 1 else name


def _deltas(energies: Energies, quant: str) -> list[tuple[Config, float]]:
    """(config, % vs fp16) for every ``quant`` row with an fp16 row of the same model and bs,
    measured on the same card."""
    out = []
    for (model, q, bs), (config, e) in energies.items():
        base = energies.get((model, "fp16", bs))
        if (q == quant and base is not None and config.card == base[0].card
                and math.isfinite(vs_baseline_pct(e, base[1]))):
            out.append((config, vs_baseline_pct(e, base[1])))
    return sorted(out, key=lambda item: (item[0].params_b, item[0].model, item[0].batch_size))


def _listing(items: Sequence[tuple[Config, float]]) -> str:
    return ", ".join(f"{_name(c)} {fmt.pct(d)}" for c, d in items)


def nf4_crossover(energies: Energies) -> tuple[str, str]:
    pairs = [(c, d) for c, d in _deltas(energies, "nf4") if math.isfinite(c.params_b)]
    below = [(c, d) for c, d in pairs if c.params_b < CROSSOVER_PARAMS_B]
    above = [(c, d) for c, d in pairs if c.params_b >= CROSSOVER_PARAMS_B]
    if not pairs:
        return NOT_TESTABLE, "needs nf4 and fp16 runs of the same model on one card (none here)"
    if not below or not above:
        side = "below" if not below else "at or above"
        return NOT_TESTABLE, (f"needs nf4/fp16 pairs of models {side} {CROSSOVER_PARAMS_B:g}B "
                              f"(have: {_listing(pairs)})")
    against = [(c, d) for c, d in below if not d > 0] + [(c, d) for c, d in above if not d < 0]
    detail = f"nf4 vs fp16: {_listing(pairs)}"
    if against:
        return DOES_NOT_HOLD, f"{detail}; against the claim: {_listing(against)}"
    return HOLDS, detail


def int8_penalty(energies: Energies) -> tuple[str, str]:
    pairs = _deltas(energies, "int8")
    if not pairs:
        return NOT_TESTABLE, "needs int8 and fp16 runs of the same model and batch size on one card (none here)"
    detail = f"int8 vs fp16: {_listing(pairs)} (seed: +17 to +147 %)"
    against = [(c, d) for c, d in pairs if not d > 0]
    if against:
        return DOES_NOT_HOLD, f"{detail}; against the claim: {_listing(against)}"
    return HOLDS, detail


def int8_pure_recovery(energies: Energies) -> tuple[str, str]:
    parts, verdicts = [], []
    for (model, quant, bs), (pure, e_pure) in sorted(energies.items()):
        if quant != "int8_pure":
            continue
        base, default = energies.get((model, "fp16", bs)), energies.get((model, "int8", bs))
        if base is None or default is None or not pure.card == base[0].card == default[0].card:
            continue
        e_base, e_default = base[1], default[1]
        loss = e_default - e_base
        versus = (f"int8 {fmt.pct(vs_baseline_pct(e_default, e_base))}, int8_pure "
                  f"{fmt.pct(vs_baseline_pct(e_pure, e_base))} vs fp16; int8_pure vs int8 "
                  f"{fmt.pct(vs_baseline_pct(e_pure, e_default))}")
        if not loss > 0:
            parts.append(f"{_name(pure)}: {versus}; int8 has no loss to recover")
            continue
        recovered_pct = 100.0 * (e_default - e_pure) / loss
        verdicts.append(recovered_pct > MOST_RECOVERED_PCT)
        parts.append(f"{_name(pure)}: {versus}; recovers {recovered_pct:.1f} % of int8's loss")
    if not parts:
        return NOT_TESTABLE, "needs fp16, int8 and int8_pure runs of the same model and batch size on one card"
    detail = "; ".join(parts) + " (seed: int8_pure -35 to -41 % vs int8)"
    if not verdicts:
        return NOT_TESTABLE, detail
    return (HOLDS if all(verdicts) else DOES_NOT_HOLD), detail


def batch_scaling(energies: Energies) -> tuple[str, str]:
    series: dict[tuple[str, str, str], dict[int, tuple[Config, float]]] = defaultdict(dict)
    for (model, quant, bs), item in energies.items():  # one series per card
        series[(model, quant, item[0].card)][bs] = item
    parts, verdicts = [], []
    for (model, quant, _), by_bs in sorted(series.items()):
        if len(by_bs) < 2:
            continue
        sizes = sorted(by_bs)
        e = np.array([by_bs[b][1] for b in sizes])
        label = f"{model} {quant}"
        if np.any(e <= 0):
            parts.append(f"{label}: non-positive energy, no fit")
            continue
        # Energy per token ~ bs^slope; slope -1 is the claimed 1/batch size.
        slope = float(np.polyfit(np.log(sizes), np.log(e), 1)[0])
        verdicts.append(SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1])
        text = f"{label}: slope {slope:.2f} over bs {', '.join(map(str, sizes))}"
        if 1 in by_bs and 8 in by_bs:
            text += f", bs8 vs bs1 {fmt.pct(vs_baseline_pct(by_bs[8][1], by_bs[1][1]))}"
        parts.append(text)
    if not parts:
        return NOT_TESTABLE, "needs one model and config run at two or more batch sizes on one card"
    detail = ("log(energy per token) vs log(batch size), holds for slopes in "
              f"[{SLOPE_RANGE[0]}, {SLOPE_RANGE[1]}]: " + "; ".join(parts)
              + " (seed: bs8 vs bs1 ~-85 %)")
    if not verdicts:
        return NOT_TESTABLE, detail
    return (HOLDS if all(verdicts) else DOES_NOT_HOLD), detail


CHECKS: dict[str, Callable[[Energies], tuple[str, str]]] = {
    "nf4_crossover": nf4_crossover,
    "int8_penalty": int8_penalty,
    "int8_pure_recovery": int8_pure_recovery,
    "batch_scaling": batch_scaling,
}


def check_dataset(dataset: Dataset, methods: Sequence[str]) -> list[Finding]:
    """Every finding on every GPU of ``dataset``, per method (those it has) and basis."""
    out = []
    for gpu in dataset.gpus():
        configs = dataset.ok_on(gpu)
        if not configs:  # only failed rows on this GPU: nothing to check
            continue
        for method in [m for m in dataset.methods if m in methods or dataset.is_seed]:
            for basis in BASES:
                energies = _energies(configs, method, basis)
                for key, check in CHECKS.items():
                    if energies:
                        verdict, detail = check(energies)
                    elif dataset.is_seed:
                        verdict, detail = NOT_TESTABLE, f"the seed published no {basis} energies for this GPU"
                    else:
                        verdict, detail = NOT_TESTABLE, f"no {basis} energies by this method"
                    out.append(Finding(key, dataset.label, gpu, method, basis, verdict, detail))
    return out
