"""Plays the schedule on a workload, then measures every window by every method and sets
it against the truth."""
from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..meter import SOURCES, Meter
from ..reference import ReferenceMeter
from .analysis import SummaryRow, summarize
from .methods import window_energies
from .plan import Item, PlanSettings, Schedule
from .truth import DifferentialTruth, Diagnostics, diagnostics, differential_truth, interior_bias
from .workloads import CounterReader, Workload

_NS = 1_000_000_000
NAN = float("nan")


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
        return (self.end_ns - self.start_ns) / _NS


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
                workload.idle((a1 - a0) / _NS)
            else:
                workload.idle(op.duration_s)
        else:
            raise ValueError(f"unknown operation {op.kind!r}")
    rec.end_ns = workload.now_ns()
    return rec


@dataclass
class WindowResult:
    """One window: where it lies, its truth, and every method's energy (J)."""
    kind: str
    label: str
    length_s: float
    """Nominal length (a burst's real length, ``duration_s``, comes from its marks)."""
    item: int
    index: int
    start_ns: int
    end_ns: int
    truth_j: float
    exact_j: float
    """The exact energy where the workload knows it (the scripted fake), else NaN."""
    energy_j: dict[str, float]
    headline_method: str
    complete: bool
    events_s: float = NAN
    """The burst's length by CUDA events beside its marks (NaN for steady windows, the fake)."""
    tail_s: float = NAN
    """tau of the tail-inclusive view (NaN where the window has none: steady windows, and
    bursts with less than tau of idle after or before them, e.g. fast square waves)."""
    energy_tail_j: dict[str, float] = field(default_factory=dict)
    """Each method over [start, end + tau] less the idle power (the truth's, from run B) times
    tau: the energy the burst caused, tail included, like the truth (NaN where not defined)."""

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / _NS

    def error(self, method: str, truth: str = "truth", view: str = "window") -> float:
        """(method - truth) / truth; ``truth``: ``truth`` (differential) or ``exact``;
        ``view``: ``window`` (the window alone) or ``tail`` (the window plus its tail)."""
        reference = self.truth_j if truth == "truth" else self.exact_j
        energy = self.energy_j if view == "window" else self.energy_tail_j
        return (energy.get(method, NAN) - reference) / reference


@dataclass
class ItemResult:
    """One item as run: its runs, bursts, truth and the truth's diagnostics."""
    item: Item
    index: int
    run_a: tuple[int, int]
    run_b: tuple[int, int] | None
    bursts: list[BurstRecord]
    truth: DifferentialTruth | None
    diagnostics: Diagnostics | None
    interior_bias: float = NAN
    """Steady load only: how much the truth of windows inside the load is too high because
    it uses the whole load's mean power, start-up included; from the driver samples."""


@dataclass
class StepTrace:
    """The step's traces, times in s from the step's start: per source (counter as power
    between consecutive readings), the reference's readings, and the burst's marks."""
    sources: dict[str, tuple[np.ndarray, np.ndarray]]
    reference: tuple[np.ndarray, np.ndarray]
    burst_s: tuple[float, float]


TAIL_S = 0.3
"""tau: how long after a burst the tail-inclusive view extends each window."""


@dataclass
class Validation:
    """Everything one validation produced; the outputs are written from this alone."""
    info: dict[str, Any]
    settings: PlanSettings
    items: list[ItemResult]
    windows: list[WindowResult]
    summary: list[SummaryRow]
    step: StepTrace | None
    counter_update_s: float
    summary_tail: list[SummaryRow] = field(default_factory=list)
    """The same per method, each window extended by its tail (``WindowResult.energy_tail_j``)."""
    tail_s: float = TAIL_S
    meter_settings: dict[str, Any] = field(default_factory=dict)
    """The meter's ``settings`` (how it read NVML) as it ran."""
    recording: Recording | None = None
    """What was played (runs, bursts): with the traces, all a re-analysis needs (run.json)."""


def _windows_of(result: ItemResult, meter: Meter, reference: ReferenceMeter | None,
                exact_energy_j: Callable[[int, int], float] | None, skipped: list[str],
                tail_s: float = TAIL_S) -> list[WindowResult]:
    item, truth = result.item, result.truth
    spans: list[tuple[float, int, int, tuple[float, float], float]] = []
    gaps_after: list[int] = []
    if item.kind in ("burst", "square"):
        spans = [(item.length_s, b.start_ns, b.end_ns, (b.counter_before_j, b.counter_after_j), b.events_s)
                 for b in result.bursts]
        nexts = [b.start_ns for b in result.bursts[1:]] + [result.run_a[1]]
        previous = [result.run_a[0]] + [b.end_ns for b in result.bursts[:-1]]
        # The tail view needs tau of idle after the window, and tau before it too: else the
        # window already holds the previous burst's tail, and extending it would count two.
        gaps_after = [min(n - b.end_ns, b.start_ns - e) for b, n, e in zip(result.bursts, nexts, previous)]
    elif item.kind == "steady":
        (burst,) = result.bursts
        for length in item.tile_lengths_s:
            step_ns = round(length * _NS)
            # Inside the load only: past its start-up, and clear of its end.
            t, last = burst.start_ns + round(item.settle_s * _NS), burst.end_ns - round(item.settle_s * _NS)
            while t + step_ns <= last:
                spans.append((length, t, t + step_ns, (NAN, NAN), NAN))
                t += step_ns
    out = []
    counters: dict[float, int] = {}
    for length, a, b, edges, events_s in spans:
        k = counters[length] = counters.get(length, -1) + 1
        if b <= a:  # marks out of order: impossible on one CUDA stream; never crash on it
            skipped.append(f"{item.label} #{k}: end mark {(a - b) / 1e3:.0f} us before its start mark")
            continue
        e = window_energies(meter, reference, a, b, edges)
        tau, tail = NAN, {m: NAN for m in e.energy_j}
        tau_ns = round(tail_s * _NS)
        if (truth is not None and k < len(gaps_after) and tail_s > 0 and gaps_after[k] >= tau_ns
                and math.isfinite(truth.idle_w)):
            # The window plus tau of the idle after it, less idle power times tau: what the
            # burst caused, tail included, as the truth counts it. Host edges cannot move.
            extended = window_energies(meter, reference, a, b + tau_ns)
            tau = tau_ns / _NS
            tail = {m: (v - truth.idle_w * tau if m != "counter_at_edges" else NAN)
                    for m, v in extended.energy_j.items()}
        out.append(WindowResult(
            kind=item.kind, label=item.label, length_s=length, item=result.index, index=k,
            start_ns=a, end_ns=b, truth_j=truth.energy_j((b - a) / _NS) if truth else NAN,
            exact_j=exact_energy_j(a, b) if exact_energy_j else NAN,
            energy_j=e.energy_j, headline_method=e.headline_method, complete=e.complete, events_s=events_s,
            tail_s=tau, energy_tail_j=tail))
    return out


def _step_trace(result: ItemResult, meter: Meter, reference: ReferenceMeter | None) -> StepTrace:
    a0, a1 = result.run_a
    t0 = a0 / _NS

    def cut(t_s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (t_s >= t0) & (t_s <= a1 / _NS)
        return t_s[keep] - t0, v[keep]

    sources = {}
    for source in SOURCES:
        t, v = meter.trace(source)
        if source == "counter" and len(t) >= 2:
            # Power between consecutive readings, placed at their midpoints.
            dt = np.diff(t)
            ok = dt > 0
            t, v = ((t[1:] + t[:-1]) / 2)[ok], (np.diff(v)[ok] / dt[ok])
        sources[source] = cut(t, v)
    ref = cut(*reference.samples()) if reference is not None else (np.array([]), np.array([]))
    (burst,) = result.bursts
    return StepTrace(sources, ref, (burst.start_ns / _NS - t0, burst.end_ns / _NS - t0))


def evaluate(recording: Recording, meter: Meter, reference: ReferenceMeter | None, *,
             counter_update_s: float = 0.1,
             exact_energy_j: Callable[[int, int], float] | None = None,
             skipped: list[str] | None = None, tail_s: float = TAIL_S
             ) -> tuple[list[ItemResult], list[WindowResult], StepTrace | None]:
    """The truth of every item, and every window's energy by every method (the window alone,
    and the window plus ``tail_s``). Windows that cannot be measured are left out and
    described in ``skipped``. ``meter`` may be a running or stopped ``Meter`` or saved traces
    (``saved.SavedMeter``); ``reference`` a ``ReferenceMeter`` or ``saved.SavedReference``."""
    skipped = skipped if skipped is not None else []
    counter_t_ns, counter_j = meter.trace_ns("counter")
    if len(counter_t_ns) < 2:
        raise RuntimeError("the meter has no energy counter readings: the truth needs the counter")

    def samples_j(a: int, b: int) -> float:
        return meter.measure_ns(a, b).source_energy_j("samples")

    busy_ns = sorted((b.start_ns, b.end_ns) for bs in recording.bursts.values() for b in bs)
    items, windows, step = [], [], None
    for i, item in enumerate(recording.schedule.items):
        run_a, run_b = recording.runs[(i, "A")], recording.runs.get((i, "B"))
        bursts = recording.bursts[i]
        truth = diag = None
        if run_b is not None:
            truth = differential_truth(counter_t_ns, counter_j, run_a, run_b,
                                       [b.duration_s for b in bursts], counter_update_s, busy_ns)
            diag = diagnostics(samples_j, truth, run_a, run_b, [(b.start_ns, b.end_ns) for b in bursts])
        result = ItemResult(item, i, run_a, run_b, bursts, truth, diag)
        if item.kind == "steady" and truth is not None:
            (b,) = bursts
            result.interior_bias = interior_bias(samples_j, (b.start_ns, b.end_ns), item.settle_s)
        items.append(result)
        if item.kind == "step":
            step = _step_trace(result, meter, reference)
        else:
            windows += _windows_of(result, meter, reference, exact_energy_j, skipped, tail_s)
    return items, windows, step


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


def analyse(recording: Recording, settings: PlanSettings, meter: Meter, reference: ReferenceMeter | None, *,
            counter_update_s: float = 0.1, info: dict[str, Any] | None = None,
            meter_settings: dict[str, Any] | None = None, tail_s: float = TAIL_S,
            exact_energy_j: Callable[[int, int], float] | None = None) -> Validation:
    """Evaluates a recording against the meter's traces: what a run and a re-analysis of its
    saved files (``python -m ecomeasure.validate --from``) share."""
    skipped: list[str] = []
    items, windows, step = evaluate(recording, meter, reference, counter_update_s=counter_update_s,
                                    exact_energy_j=exact_energy_j, skipped=skipped, tail_s=tail_s)
    info = dict(info or {})
    info["skipped_windows"] = skipped
    differences_s = np.array([b.duration_s - b.events_s for bs in recording.bursts.values() for b in bs])
    differences_s = differences_s[np.isfinite(differences_s)]
    if len(differences_s):
        info["marks_vs_events_us"] = (float(np.median(np.abs(differences_s))) * 1e6,
                                      float(differences_s[np.argmax(np.abs(differences_s))]) * 1e6)
    info["recording_s"] = (recording.end_ns - recording.start_ns) / _NS
    info["windows"] = len(windows)
    fallbacks = [f"{r.item.label}: {r.truth.boundary_note}" for r in items
                 if r.truth is not None and not r.truth.boundary_note.startswith("idle fit")]
    info["boundary_fallbacks"] = fallbacks
    return Validation(info, settings, items, windows, summarize(windows), step, counter_update_s,
                      summary_tail=summarize(windows, view="tail"), tail_s=tail_s,
                      meter_settings=dict(meter_settings if meter_settings is not None
                                          else getattr(meter, "settings", {}) or {}),
                      recording=recording)


def run_validation(schedule: Schedule, settings: PlanSettings, workload: Workload, meter: Meter,
                   reference: ReferenceMeter | None, *, read_counter_j: CounterReader | None = None,
                   counter_update_s: float = 0.1, info: dict[str, Any] | None = None,
                   on_item: Callable[[int, Item], None] | None = None) -> Validation:
    """Plays the schedule, then evaluates it. The meter and the reference must be running
    (started once, before, so the headline's calibration spans the whole recording); once the
    recording is over and the meter holds a counter reading past it, both are stopped, so the
    evaluation reads exactly the traces that are saved (``write_outputs``), and a re-analysis
    of them (``--from``) gives the same numbers."""
    started = _dt.datetime.now(_dt.timezone.utc)
    recording = execute(schedule, workload, read_counter_j, on_item)
    _wait_for_counter(meter, recording.end_ns)
    if reference is not None:
        reference.wait_past(recording.end_ns / _NS, timeout_s=1.0)
        reference.stop()
    meter.stop()
    info = dict(info or {})
    info.setdefault("date", started.strftime("%Y-%m-%d %H:%M UTC"))
    return analyse(recording, settings, meter, reference, counter_update_s=counter_update_s, info=info,
                   exact_energy_j=getattr(workload, "exact_energy_j", None))
