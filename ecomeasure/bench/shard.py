"""Sharing a sweep's configurations among ranks (``torchrun``), balanced by expected cost.

A configuration is a :class:`ConfigKey`. The configurations still to run are assigned by
greedy longest-processing-time (LPT): most expensive first, each to the rank that would finish
it soonest, ties to the lowest rank and the key order. A rank loads a (model, quantization)
once for all its batch sizes, so a configuration costs its model's load only on a rank that
does not hold that model yet: batch sizes of one model stay together unless balance needs them
apart (splitting them would load the model twice). It is deterministic, so every rank can
check the plan; without loads its longest rank is within 4/3 of the best possible.

The cost model only orders and balances work; its numbers are ROUGH ESTIMATES, not
measurements to quote. Their sources:

- Time per decode step grows with the parameter count: ~41 ms for Mistral-7B fp16 at batch
  size 1 in eager mode on an H200 (the README's results table, 24.5 tok/s), where HuggingFace
  eager generation is host-bound, so a fixed ~10 ms plus ~4 ms per billion parameters.
- Quantization: default int8 ran ~3x slower than fp16 per token (README: 9.0 vs 24.5 tok/s;
  the seed memo reports the same "int8 paradox"), pure int8 ~1.7x, nf4/fp4 ~0.85x.
- Batch size: host-bound steps cost nearly the same for a batch of 8 as for 1 (README: 270 vs
  24.5 tok/s), so a step costs 5 % more per extra sequence.
- Regime (once the sweep has one): a CUDA-graph decode step skips the per-kernel launch cost
  that dominates eager decode at small batch sizes; taken as ~4x faster at batch size 1,
  converging towards eager as the batch grows.
- Fixed per configuration: the idle baseline plus ~3 s of setup (the 1 s settle before the
  idle window, the prompt, warmup and capture, writing the rows).
- Loading, once per (model, quantization) on a rank: ~0.35 s per billion parameters in fp16,
  ~0.8 in nf4, ~1.8 in int8 (bitsandbytes quantizes on load) - the "loaded in" lines of the
  H200 logs under docs/runs (random weights from local disk; 7B: fp16 2.1-2.7 s, nf4 5.1-7.5 s,
  int8/int8_pure 11.6-18.6 s).
- Default int8 cannot be captured in a CUDA graph (all eight seed models, H200, 2026-11-30): in
  the graph and compiled regimes it costs its load and setup alone, then its row says unavailable.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from .. import models
from .runner import Protocol


class ConfigKey(NamedTuple):
    """One configuration of the sweep: what a results.csv row is about.

    A tuple, so it compares equal to the ``(model, quant, batch_size, regime)`` tuples the
    sweep keeps.
    """
    model: str
    quant: str
    batch_size: int
    regime: str = "eager"


STEP_FIXED_S = 0.010
"""Rough: host time of one eager decode step that does not grow with the model."""
STEP_PER_BILLION_PARAMS_S = 0.004
"""Rough: eager decode step time per billion parameters."""
QUANT_STEP_FACTOR: dict[str, float] = {
    "fp16": 1.0, "bf16": 1.0, "nf4": 0.85, "nf4_dq": 0.85, "fp4": 0.85, "int8": 3.0, "int8_pure": 1.7}
"""Rough: decode step time relative to fp16 (unknown quantizations count as fp16)."""
PER_EXTRA_SEQUENCE = 0.05
"""Rough: extra step time per sequence beyond the first."""
GRAPH_SPEEDUP_AT_BS1 = 4.0
"""Rough: how much faster a CUDA-graph decode step is than an eager one at batch size 1."""
SETUP_S = 3.0
"""Rough: settling before the idle window, building the prompt, warmup and capture, writing rows."""
COMPILE_S = 60.0
"""Rough: torch.compile of a 7B model's decode step (the ``compiled`` regime)."""
LOAD_S_PER_BILLION_PARAMS: dict[str, float] = {"fp16": 0.35, "bf16": 0.35, "nf4": 0.8, "nf4_dq": 0.8,
                                               "fp4": 0.8, "int8": 1.8, "int8_pure": 1.8}
"""Rough: seconds to load and quantize a billion parameters (unknown quantizations as fp16)."""
UNKNOWN_PARAMS_B = 7.0
"""Parameter count assumed (billions) for a model that is not one of the listed aliases."""


def params_b(model: str) -> float:
    """Parameters in billions of a listed alias (counted from its spec); a guess otherwise."""
    spec = models.lookup(model)
    return models.spec_parameter_count(spec.alias) / 1e9 if spec is not None else UNKNOWN_PARAMS_B


def regime_factor(regime: str, batch_size: int) -> float:
    """Step time relative to eager (``eager`` 1; ``graph`` 1/4 at batch size 1, -> 1 with batch)."""
    if regime == "eager":
        return 1.0
    return 1.0 - (1.0 - 1.0 / GRAPH_SPEEDUP_AT_BS1) / batch_size ** 0.5


UNCAPTURABLE_QUANTS = frozenset({"int8"})
"""Quantizations whose decode step cannot be captured: their graph rows end at the capture."""


def expected_cost_s(key: ConfigKey, protocol: Protocol) -> float:
    """A rough estimate of the seconds ``key`` takes to measure under ``protocol``."""
    if key.regime != "eager" and key.quant in UNCAPTURABLE_QUANTS:
        return SETUP_S
    step_s = (STEP_FIXED_S + STEP_PER_BILLION_PARAMS_S * params_b(key.model)) \
        * QUANT_STEP_FACTOR.get(key.quant, 1.0) * (1.0 + PER_EXTRA_SEQUENCE * (key.batch_size - 1)) \
        * regime_factor(key.regime, key.batch_size)
    steps = protocol.warmup * protocol.warmup_tokens + protocol.iterations * protocol.new_tokens
    return SETUP_S + (COMPILE_S if key.regime == "compiled" else 0.0) + protocol.idle_s + steps * step_s


def expected_load_s(model: str, quant: str) -> float:
    """A rough estimate of the seconds loading ``model`` in ``quant`` takes (once per rank)."""
    return params_b(model) * LOAD_S_PER_BILLION_PARAMS.get(quant, LOAD_S_PER_BILLION_PARAMS["fp16"])


def assign(keys: Sequence[ConfigKey], ranks: int, cost: Callable[[ConfigKey], float],
           load_s: Callable[[str, str], float] = lambda model, quant: 0.0) -> list[list[ConfigKey]]:
    """Each rank's share of ``keys`` by greedy LPT on ``cost``, a model's ``load_s`` counted on
    each rank that runs it. The regimes of one (model, quant, batch size) stay on one rank: the
    graph's tokens are checked against the eager run's. Shares keep the order of ``keys`` (fp16
    before other quantizations, a model's batch sizes together)."""
    if ranks < 1:
        raise ValueError(f"need at least one rank, not {ranks}")
    units: dict[tuple[str, str, int], list[ConfigKey]] = {}
    for key in dict.fromkeys(keys):
        units.setdefault((key.model, key.quant, key.batch_size), []).append(key)
    unit_cost = {unit: sum(cost(k) for k in members) for unit, members in units.items()}
    busy_s = [0.0] * ranks
    holds: list[set[tuple[str, str]]] = [set() for _ in range(ranks)]
    rank_of: dict[tuple[str, str, int], int] = {}
    for unit in sorted(units, key=lambda u: (-unit_cost[u], u)):
        loaded = unit[:2]

        def finish_s(r: int) -> float:
            return busy_s[r] + unit_cost[unit] + (0.0 if loaded in holds[r] else load_s(*loaded))
        rank = min(range(ranks), key=lambda r: (finish_s(r), r))
        busy_s[rank] = finish_s(rank)
        holds[rank].add(loaded)
        rank_of[unit] = rank
    shares: list[list[ConfigKey]] = [[] for _ in range(ranks)]
    for unit, members in units.items():
        shares[rank_of[unit]].extend(members)
    return shares
