"""What the validation runs: the workloads (items) and, from them, the exact sequence of
operations (bursts of GPU work, idle stretches, run boundaries) that both the GPU workload
and the scripted fake play."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

DEFAULT_LENGTHS_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
QUICK_LENGTHS_S: tuple[float, ...] = (0.1, 0.25, 1.0, 2.0, 5.0)
# (period s, duty): tens of ms to a second, the fast end below every source's update period.
DEFAULT_SQUARES: tuple[tuple[float, float], ...] = ((0.05, 0.5), (0.2, 0.5), (1.0, 0.5), (0.2, 0.25))
QUICK_SQUARES: tuple[tuple[float, float], ...] = ((0.2, 0.5),)


@dataclass(frozen=True)
class PlanSettings:
    """The knobs of a validation plan; ``default_settings`` gives the CLI's values."""
    lengths_s: tuple[float, ...] = DEFAULT_LENGTHS_S
    burst_target_s: float = 4.0
    """Total burst time per length: repetitions = ceil(burst_target_s / length), at least 1.
    The truth's counter-edge error shrinks as 1 / (total burst time)."""
    gap_s: float = 0.5
    """Idle after each isolated burst (before jitter)."""
    long_gap_s: float = 1.0
    """Idle after bursts of ``long_from_s`` or longer."""
    long_from_s: float = 5.0
    jitter: float = 0.2
    """Isolated bursts' gaps are gap * U(1, 1 + jitter), so burst edges fall at every phase
    of the sources' ~100 ms updates and of the 1 s average."""
    squares: tuple[tuple[float, float], ...] = DEFAULT_SQUARES
    square_target_s: float = 2.0
    steady_s: float = 10.0
    steady_settle_s: float = 0.5
    """Steady windows start this long after the load does (past the start-up transient) and
    end this long before it ends."""
    step_s: tuple[float, float, float] = (1.0, 3.0, 2.0)
    """The step recorded for the trace plot: idle, load, idle."""
    edge_idle_s: float = 1.2
    """Idle on each side of every run boundary: ``edge_idle_for(counter_interval_s)``, the
    meter's counter reading interval plus 0.2 s (1.2 s for ``Meter()``'s 1 s reads), so that a
    reading lies in idle on either side of every boundary, past a burst's ~0.1 s tail and the
    counter's ~0.1 s staleness. The boundary's value comes from its idle side (truth.py)."""


EDGE_MARGIN_S = 0.2
"""Idle at a run boundary beyond one counter reading interval."""


def meter_counter_interval_s() -> float:
    """``Meter()``'s default counter reading interval (its constructor's default)."""
    import inspect

    from ..meter import Meter
    return float(inspect.signature(Meter.__init__).parameters["counter_interval_s"].default)


def edge_idle_for(counter_interval_s: float) -> float:
    """The idle margin around run boundaries for a meter reading the counter this often."""
    return round(float(counter_interval_s) + EDGE_MARGIN_S, 9)


def default_settings(lengths_s: tuple[float, ...] | None = None, quick: bool = False,
                     counter_interval_s: float | None = None) -> PlanSettings:
    """The CLI's plan: ~4.5 min by default, ~1.5 min with ``quick``. ``counter_interval_s``:
    how often the meter in use reads the counter (``meter.settings["counter_interval_s"]``;
    default: ``Meter()``'s), which sizes the idle margin at run boundaries."""
    interval = meter_counter_interval_s() if counter_interval_s is None else counter_interval_s
    edge = edge_idle_for(interval)
    if quick:
        return PlanSettings(lengths_s=tuple(lengths_s or QUICK_LENGTHS_S), burst_target_s=1.5,
                            squares=QUICK_SQUARES, square_target_s=1.0, steady_s=4.0, edge_idle_s=edge)
    return PlanSettings(lengths_s=tuple(lengths_s or DEFAULT_LENGTHS_S), edge_idle_s=edge)


@dataclass(frozen=True)
class Item:
    """One workload: ``repetitions`` bursts of ``length_s`` of GPU work, each followed by
    ``gap_s`` of idle, between run boundaries; with ``idle_run`` an idle run of the same
    duration follows, for the differential truth (see truth.py)."""
    kind: str
    label: str
    length_s: float
    repetitions: int = 1
    gap_s: float = 0.5
    jitter: float = 0.0
    lead_idle_s: float = 0.7
    tail_idle_s: float = 0.7
    idle_run: bool = True
    tile_lengths_s: tuple[float, ...] = ()
    """Steady items only: lengths of the windows tiled inside the load."""
    settle_s: float = 0.0

    @property
    def planned_s(self) -> float:
        """Planned duration of the item (both runs), before jitter and launch overheads."""
        active = (self.lead_idle_s + self.repetitions * (self.length_s + self.gap_s * (1 + self.jitter / 2))
                  + max(0.0, self.tail_idle_s - self.gap_s))
        return active * (2 if self.idle_run else 1)


def _repetitions(target_s: float, length_s: float) -> int:
    return max(1, math.ceil(target_s / length_s - 1e-9))


def build_plan(settings: PlanSettings) -> list[Item]:
    """The items in the order they run: step (it also warms the GPU), steady load, isolated
    bursts by length, square waves."""
    s = settings
    if not s.lengths_s or any(not (length > 0) for length in s.lengths_s):
        raise ValueError(f"window lengths must be positive, not {s.lengths_s}")
    idle, load, after = s.step_s
    edge = s.edge_idle_s
    items = [Item("step", f"step {load:g} s", load, 1, after, lead_idle_s=idle, tail_idle_s=after,
                  idle_run=False)]
    if s.steady_s > 0:
        inside_s = s.steady_s - 2 * s.steady_settle_s
        tiles = tuple(sorted(length for length in s.lengths_s if length <= inside_s + 1e-9))
        items.append(Item("steady", f"steady {s.steady_s:g} s", s.steady_s, 1, max(edge, s.long_gap_s),
                          lead_idle_s=edge, tail_idle_s=edge, tile_lengths_s=tiles,
                          settle_s=s.steady_settle_s))
    for length in sorted(set(s.lengths_s)):
        gap = s.long_gap_s if length >= s.long_from_s else s.gap_s
        items.append(Item("burst", f"burst {length:g} s", length, _repetitions(s.burst_target_s, length),
                          gap, jitter=s.jitter, lead_idle_s=edge, tail_idle_s=edge))
    for period, duty in s.squares:
        if not (period > 0 and 0 < duty < 1):
            raise ValueError(f"square wave needs period > 0 and 0 < duty < 1, not {(period, duty)}")
        length = period * duty
        items.append(Item("square", f"square {period:g} s @{duty:.0%}", length,
                          _repetitions(s.square_target_s, length), period - length,
                          lead_idle_s=edge, tail_idle_s=edge))
    return items


@dataclass(frozen=True)
class Op:
    """One step of the schedule. ``kind``: ``begin``/``end`` (a run boundary), ``burst``
    (GPU work), ``idle``. ``run``: ``A`` (the workload run), ``B`` (the idle run). An idle
    op with ``match_run`` lasts as long as run A of its item actually took."""
    kind: str
    item: int
    run: str
    duration_s: float = 0.0
    match_run: bool = False


@dataclass
class Schedule:
    """The plan expanded into operations; seeded, so the GPU and the fake play the same."""
    items: list[Item]
    ops: list[Op] = field(default_factory=list)

    @property
    def planned_s(self) -> float:
        return sum(op.duration_s for op in self.ops if op.kind in ("burst", "idle"))


def schedule(items: list[Item], seed: int = 0) -> Schedule:
    """Expands the items into operations. Gaps get their jitter here (from ``seed``)."""
    rng = random.Random(seed)
    out = Schedule(list(items))
    for i, item in enumerate(items):
        ops = [Op("begin", i, "A"), Op("idle", i, "A", item.lead_idle_s)]
        for r in range(item.repetitions):
            gap = item.gap_s * (1.0 + item.jitter * rng.random())
            if r == item.repetitions - 1:
                gap = max(gap, item.tail_idle_s)
            ops += [Op("burst", i, "A", item.length_s), Op("idle", i, "A", gap)]
        ops.append(Op("end", i, "A"))
        if item.idle_run:
            active_s = sum(op.duration_s for op in ops)
            ops += [Op("begin", i, "B"), Op("idle", i, "B", active_s, match_run=True), Op("end", i, "B")]
        out.ops += ops
    return out
