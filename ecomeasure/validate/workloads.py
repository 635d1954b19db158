"""The workload interface the validation drives, and the scripted workload that plays the
schedule against the fake NVML (tests). The GPU workloads are in gpu.py."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .plan import Schedule

_NS = 1_000_000_000
NAN = float("nan")
CounterReader = Callable[[], float]
"""Reads the GPU's energy counter now, in joules (the Zeus/CodeCarbon way)."""


class MarkLike(Protocol):
    """A point on the meter's clock: ``ecomeasure.Mark`` or a ``ScheduledMark``."""

    def time_ns(self, timeout_s: float = 60.0) -> int: ...

    def span_ns(self, end: "MarkLike", timeout_s: float = 60.0) -> tuple[int, int]: ...


@dataclass(frozen=True)
class ScheduledMark:
    """A mark whose time is known in advance (the scripted workload's bursts)."""
    t_ns: int

    def time_ns(self, timeout_s: float = 60.0) -> int:
        return self.t_ns

    def span_ns(self, end: "MarkLike", timeout_s: float = 60.0) -> tuple[int, int]:
        return self.t_ns, end.time_ns(timeout_s)


@dataclass(frozen=True)
class Burst:
    """One burst of work: its marks, the energy counter read on the host just before it was
    launched and just after the host saw it finish, and its length by CUDA events beside the
    marks, a check on the marks (NaN where not read)."""
    start: MarkLike
    end: MarkLike
    counter_before_j: float = NAN
    counter_after_j: float = NAN
    events_s: float = NAN


class Workload(Protocol):
    """What the validation drives: bursts of work and idle, on the meter's clock."""

    def now_ns(self) -> int:
        """The current time on the meter's clock (``time.monotonic_ns()``)."""

    def burst(self, duration_s: float, read_counter_j: CounterReader | None = None) -> Burst:
        """Runs ``duration_s`` of work between two marks; returns when the work is done.
        ``read_counter_j`` is called right before launching and right after finishing."""

    def idle(self, duration_s: float) -> None:
        """Does nothing for ``duration_s``."""


def _sleep_until(t_ns: int) -> None:
    while (left := t_ns - time.monotonic_ns()) > 0:
        time.sleep(left / _NS)


class ScriptedWorkload:
    """Plays a schedule in real time against the fake NVML, whose power profile it writes.

    Bursts are at ``load_w`` and everything else at ``idle_w``; the schedule starts
    ``lead_s`` after ``t0_ns`` (the fake's profile time 0, ``FAKE_NVML_T0_NS``). Marks carry
    the scheduled times, so the profile and the windows line up exactly and the exact energy
    of any interval is known (``exact_energy_j``).
    """

    def __init__(self, plan: Schedule, *, t0_ns: int, idle_w: float, load_w: float,
                 lead_s: float = 0.5) -> None:
        self.t0_ns = int(t0_ns)
        self.idle_w, self.load_w = float(idle_w), float(load_w)
        self.start_ns = self.t0_ns + round(lead_s * _NS)
        self._cursor_ns = self.start_ns
        self._load_intervals_ns = self._simulate(plan)
        self.end_ns = self._end_ns

    def _simulate(self, plan: Schedule) -> list[tuple[int, int]]:
        """Burst intervals in ns, walking the schedule as ``burst``/``idle`` will (idle runs
        that match run A last exactly as long as planned, as they will here)."""
        cursor, intervals, active = self.start_ns, [], {}
        for op in plan.ops:
            if op.kind in ("begin", "end") and op.run == "A":
                active[(op.item, op.kind)] = cursor
            step = (active[(op.item, "end")] - active[(op.item, "begin")] if op.match_run
                    else round(op.duration_s * _NS))
            if op.kind == "burst":
                intervals.append((cursor, cursor + step))
            if op.kind in ("burst", "idle"):
                cursor += step
        self._end_ns = cursor
        return intervals

    def breakpoints(self) -> list[tuple[float, float]]:
        """The power profile as (profile seconds, watts) breakpoints for the fake NVML."""
        points = [(0.0, self.idle_w)]
        for a, b in self._load_intervals_ns:
            points += [((a - self.t0_ns) / _NS, self.load_w), ((b - self.t0_ns) / _NS, self.idle_w)]
        return points

    def exact_energy_j(self, t0_ns: int, t1_ns: int) -> float:
        """The profile's exact energy over [t0_ns, t1_ns]."""
        busy_ns = sum(max(0, min(b, t1_ns) - max(a, t0_ns)) for a, b in self._load_intervals_ns)
        return (self.idle_w * (t1_ns - t0_ns - busy_ns) + self.load_w * busy_ns) / _NS

    def now_ns(self) -> int:
        return self._cursor_ns

    def idle(self, duration_s: float) -> None:
        self._cursor_ns += round(duration_s * _NS)
        _sleep_until(self._cursor_ns)

    def burst(self, duration_s: float, read_counter_j: CounterReader | None = None) -> Burst:
        _sleep_until(self._cursor_ns)
        before = read_counter_j() if read_counter_j else NAN
        start = self._cursor_ns
        self._cursor_ns += round(duration_s * _NS)
        _sleep_until(self._cursor_ns)
        after = read_counter_j() if read_counter_j else NAN
        return Burst(ScheduledMark(start), ScheduledMark(self._cursor_ns), before, after)
