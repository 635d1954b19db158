"""Sharing a sweep's configurations among ranks (``torchrun``), balanced by expected cost.

A configuration is a :class:`ConfigKey`. A rank loads a (model, quantization) once for all
its batch sizes, so a rank's expected time is its configurations' costs plus one load per
model it holds: splitting a model's batch sizes over ranks loads it twice. The configurations
still to run are first dealt by greedy longest-processing-time (LPT: most expensive first, each
to the rank that would finish it soonest), then improved by moving one configuration or
swapping two between ranks while that shortens the ranks' times (longest first, compared in
whole milliseconds so that it ends). Alone, LPT splits most models over ranks when their
configurations cost alike (it balances first); the moves gather them. It is deterministic,
so every rank can check the plan.

The cost model only orders and balances work; its numbers are ROUGH ESTIMATES, not
measurements to quote. Their sources:

- Time per decode step grows with the parameter count: ~41 ms for Mistral-7B fp16 at batch
  size 1 in eager mode on an H200 (24.5 tok/s), where HuggingFace
  eager generation is host-bound, so a fixed ~10 ms plus ~4 ms per billion parameters.
- Quantization: default int8 is ~3x slower than fp16 per token (H200: 9.0 vs 24.5 tok/s; the
  study ecomeasure redoes calls it the "int8 paradox"), pure int8 ~1.7x, nf4/fp4 ~0.85x.
- Batch size: host-bound steps cost nearly the same for a batch of 8 as for 1 (H200: 270 vs
  24.5 tok/s), so a step costs 5 % more per extra sequence.
- Regime: a CUDA-graph decode step skips the per-kernel launch cost
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

from collections import Counter
from collections.abc import Callable, Sequence

from .. import models
from ..schema import ConfigKey
from .runner import Protocol

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
    """Each rank's share of ``keys``, balanced on ``cost`` with a model's ``load_s`` counted on
    each rank that runs it. The regimes of one (model, quant, batch size) stay on one rank: the
    graph's tokens are checked against the eager run's. Shares keep the order of ``keys`` (fp16
    before other quantizations, a model's batch sizes together)."""
    if ranks < 1:
        raise ValueError(f"need at least one rank, not {ranks}")
    members: dict[Unit, list[ConfigKey]] = {}
    ordered_keys = list(dict.fromkeys(keys))
    for key in ordered_keys:
        members.setdefault(key[:3], []).append(key)
    plan = _Plan(ranks, {unit: _ms(sum(cost(k) for k in keys_)) for unit, keys_ in members.items()},
                 {unit[:2]: _ms(load_s(*unit[:2])) for unit in members})
    for unit in sorted(members, key=lambda u: (-plan.cost_ms[u], u)):
        plan.put(unit, min(range(ranks), key=lambda r: (plan.busy_ms[r] + plan.added_ms(unit, r), r)))
    plan.improve()
    shares: list[list[ConfigKey]] = [[] for _ in range(ranks)]
    for key in ordered_keys:
        shares[plan.rank_of[key[:3]]].append(key)
    return shares


Unit = tuple[str, str, int]
"""(model, quant, batch size), a key's first three fields: the configurations that run together
on one rank."""


def _ms(seconds: float) -> int:
    """Whole milliseconds: exact sums, so moving a unit and back gives the same times."""
    return round(seconds * 1000)


class _Plan:
    """Units on ranks, and each rank's expected busy time: its units' costs plus one load per
    (model, quant) it holds."""

    def __init__(self, ranks: int, cost_ms: dict[Unit, int], load_ms: dict[tuple[str, str], int]):
        self.cost_ms, self.load_ms = cost_ms, load_ms
        self.busy_ms = [0] * ranks
        self.held: list[Counter[tuple[str, str]]] = [Counter() for _ in range(ranks)]
        self.rank_of: dict[Unit, int] = {}

    def added_ms(self, unit: Unit, rank: int) -> int:
        """What putting ``unit`` on ``rank`` adds to its time (its load, if the rank lacks it)."""
        return self.cost_ms[unit] + (0 if self.held[rank][unit[:2]] else self.load_ms[unit[:2]])

    def put(self, unit: Unit, rank: int) -> None:
        self.busy_ms[rank] += self.added_ms(unit, rank)
        self.held[rank][unit[:2]] += 1
        self.rank_of[unit] = rank

    def take(self, unit: Unit) -> int:
        """Removes ``unit`` from its rank; returns that rank."""
        rank = self.rank_of.pop(unit)
        self.held[rank][unit[:2]] -= 1
        self.busy_ms[rank] -= self.added_ms(unit, rank)
        return rank

    def move(self, unit: Unit, rank: int) -> int:
        """Moves ``unit`` to ``rank``; returns the rank it was on."""
        home = self.take(unit)
        self.put(unit, rank)
        return home

    def _times(self) -> list[int]:
        return sorted(self.busy_ms, reverse=True)

    def improve(self) -> None:
        """Applies the first move, else the first swap, that shortens the ranks' times (the
        longest first, then the next), until none does. Each one strictly shortens them, so
        it ends."""
        units = sorted(self.rank_of)
        while self._moved_one(units) or self._swapped_two(units):
            pass

    def _moved_one(self, units: list[Unit]) -> bool:
        """Moves the first unit whose move to another rank shortens the times; False if none."""
        best = self._times()
        for unit in units:
            home = self.rank_of[unit]
            for rank in range(len(self.busy_ms)):
                if rank != home:
                    self.move(unit, rank)
                    if self._times() < best:
                        return True
                    self.move(unit, home)
        return False

    def _swapped_two(self, units: list[Unit]) -> bool:
        """Swaps the first two units of two ranks whose swap shortens the times; False if none."""
        best = self._times()
        for i, unit in enumerate(units):
            for other in units[i + 1:]:
                if self._swap(unit, other):
                    if self._times() < best:
                        return True
                    self._swap(unit, other)  # back
        return False

    def _swap(self, unit: Unit, other: Unit) -> bool:
        """Exchanges the ranks of ``unit`` and ``other``; False (nothing done) if they share one."""
        if self.rank_of[unit] == self.rank_of[other]:
            return False
        self.move(other, self.move(unit, self.rank_of[other]))
        return True
