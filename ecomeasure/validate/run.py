"""Plays the schedule on a workload and records what happened: each run's bounds and each
burst's marks (a ``Recording``); ``analysis`` measures it."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..meter import Meter
from ..reference import ReferenceMeter
from ..units import NAN, NS_PER_S
from .plan import Item, Schedule
from .workloads import CounterReader, Workload


@dataclass(frozen=True)
class BurstRecord:
    """One burst as it happened: mark times (meter clock, ns), the host's counter reads and
    the burst's length by CUDA events (NaN on the scripted fake)."""
    start_ns: int
    end_ns: int
    counter_before_j: float
    counter_after_j: float
    events_s: float = NAN

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass
class Recording:
    """What the schedule did: each run's bounds and each item's bursts."""
    schedule: Schedule
    runs: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    bursts: dict[int, list[BurstRecord]] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0


def execute(schedule: Schedule, workload: Workload, read_counter_j: CounterReader | None = None,
            on_item: Callable[[int, Item], None] | None = None) -> Recording:
    """Plays every operation of the schedule, in order, on the workload."""
    rec = Recording(schedule, bursts={i: [] for i in range(len(schedule.items))})
    begun: dict[tuple[int, str], int] = {}
    rec.start_ns = workload.now_ns()
    for op in schedule.ops:
        key = (op.item, op.run)
        if op.kind == "begin":
            if op.run == "A" and on_item is not None:
                on_item(op.item, schedule.items[op.item])
            begun[key] = workload.now_ns()
        elif op.kind == "end":
            rec.runs[key] = (begun.pop(key), workload.now_ns())
        elif op.kind == "burst":
            b = workload.burst(op.duration_s, read_counter_j)
            # The work is finished when burst() returns, so both marks have been reached.
            rec.bursts[op.item].append(BurstRecord(*b.start.span_ns(b.end),
                                                   b.counter_before_j, b.counter_after_j, b.events_s))
        elif op.kind == "idle":
            if op.match_run:
                a0, a1 = rec.runs[(op.item, "A")]
                workload.idle((a1 - a0) / NS_PER_S)
            else:
                workload.idle(op.duration_s)
        else:
            raise ValueError(f"unknown operation {op.kind!r}")
    rec.end_ns = workload.now_ns()
    return rec


def _wait_for_counter(meter: Meter, t_ns: int, timeout_s: float | None = None) -> None:
    """Waits until the meter holds a counter reading past ``t_ns`` (the fallback for a run
    boundary interpolates; the meter reads the counter every ``settings["counter_interval_s"]``)."""
    interval_s = float(getattr(meter, "settings", {}).get("counter_interval_s", 1.0))
    timeout_s = 3 * interval_s + 2.0 if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        t, _ = meter.trace_ns("counter")
        if len(t) and t[-1] > t_ns:
            return
        time.sleep(0.05)


def record(schedule: Schedule, workload: Workload, meter: Meter, reference: ReferenceMeter | None, *,
           read_counter_j: CounterReader | None = None,
           on_item: Callable[[int, Item], None] | None = None) -> Recording:
    """Plays the schedule, then stops the meter and the reference once each holds a reading
    past the recording, so the evaluation reads exactly the traces that are saved, and a
    re-analysis of them (``--from``) gives the same numbers. Both must be running (started
    once, before, so the headline's calibration spans the whole recording)."""
    recording = execute(schedule, workload, read_counter_j, on_item)
    _wait_for_counter(meter, recording.end_ns)
    if reference is not None:
        reference.wait_past(recording.end_ns / NS_PER_S, timeout_s=1.0)
        reference.stop()
    meter.stop()
    return recording
