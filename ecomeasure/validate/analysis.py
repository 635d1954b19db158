"""Measures a recording: the truth of every item, every window's energy by every method,
the errors per workload, window length and method, and the goals. Data flow one way:
``plan`` -> ``run`` (a ``Recording``) -> here (a ``Validation``) -> ``report`` / ``plots`` /
``saved`` (the files)."""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..meter import SOURCES, Meter
from ..reference import ReferenceMeter
from ..units import NAN, NS_PER_S
from .methods import METHODS, MeterTraces, ReferenceReadings, window_energies
from .plan import Item, PlanSettings, Schedule
from .run import BurstRecord, Recording, record
from .truth import Diagnostics, DifferentialTruth, diagnostics, differential_truth, interior_bias
from .workloads import CounterReader, Workload


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
        return (self.end_ns - self.start_ns) / NS_PER_S

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


def _windows_of(result: ItemResult, meter: MeterTraces, reference: ReferenceReadings | None,
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
            step_ns = round(length * NS_PER_S)
            # Inside the load only: past its start-up, and clear of its end.
            t, last = burst.start_ns + round(item.settle_s * NS_PER_S), burst.end_ns - round(item.settle_s * NS_PER_S)
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
        tau_ns = round(tail_s * NS_PER_S)
        if (truth is not None and k < len(gaps_after) and tail_s > 0 and gaps_after[k] >= tau_ns
                and math.isfinite(truth.idle_w)):
            # The window plus tau of the idle after it, less idle power times tau: what the
            # burst caused, tail included, as the truth counts it. Host edges cannot move.
            extended = window_energies(meter, reference, a, b + tau_ns)
            tau = tau_ns / NS_PER_S
            tail = {m: (v - truth.idle_w * tau if m != "counter_at_edges" else NAN)
                    for m, v in extended.energy_j.items()}
        out.append(WindowResult(
            kind=item.kind, label=item.label, length_s=length, item=result.index, index=k,
            start_ns=a, end_ns=b, truth_j=truth.energy_j((b - a) / NS_PER_S) if truth else NAN,
            exact_j=exact_energy_j(a, b) if exact_energy_j else NAN,
            energy_j=e.energy_j, headline_method=e.headline_method, complete=e.complete, events_s=events_s,
            tail_s=tau, energy_tail_j=tail))
    return out


def _step_trace(result: ItemResult, meter: MeterTraces, reference: ReferenceReadings | None) -> StepTrace:
    a0, a1 = result.run_a
    t0 = a0 / NS_PER_S

    def cut(t_s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (t_s >= t0) & (t_s <= a1 / NS_PER_S)
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
    return StepTrace(sources, ref, (burst.start_ns / NS_PER_S - t0, burst.end_ns / NS_PER_S - t0))


def evaluate(recording: Recording, meter: MeterTraces, reference: ReferenceReadings | None, *,
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



HEADLINE_GOALS: tuple[tuple[float, float, float], ...] = ((1.0, math.inf, 0.02), (0.25, 0.25, 0.05))
"""(shortest, longest window s, limit): the native headline within 2 % of the truth for
windows of 1 s and longer, within 5 % at 0.25 s (issue 5), judged on isolated bursts."""


@dataclass(frozen=True)
class SummaryRow:
    """One method's errors over the windows of one workload and length. Errors are
    (method - truth) / truth; ``worst_error`` is the signed error of largest magnitude."""
    kind: str
    label: str
    item: int
    length_s: float
    method: str
    n: int
    median_error: float
    median_abs_error: float
    worst_error: float
    mean_duration_s: float


def summarize(windows: list[WindowResult], truth: str = "truth", view: str = "window") -> list[SummaryRow]:
    """One row per (workload, length, method), in the order the windows came; a method
    with no finite error (e.g. ``counter_at_edges`` on a steady load) has n = 0 and NaNs.
    ``view``: ``window`` (each window alone) or ``tail`` (each burst window plus its tail;
    only workloads that have it get rows)."""
    groups: dict[tuple[int, float], list[WindowResult]] = {}
    for w in windows:
        if view == "tail" and not math.isfinite(w.tail_s):
            continue
        groups.setdefault((w.item, w.length_s), []).append(w)
    rows = []
    for ws in groups.values():
        first = ws[0]
        duration = float(np.mean([w.duration_s for w in ws]))
        for method in METHODS:
            errors = np.array([w.error(method, truth, view) for w in ws], dtype=np.float64)
            errors = errors[np.isfinite(errors)]
            if len(errors) == 0:
                rows.append(SummaryRow(first.kind, first.label, first.item, first.length_s, method, 0,
                                       math.nan, math.nan, math.nan, duration))
                continue
            worst = errors[int(np.argmax(np.abs(errors)))]
            rows.append(SummaryRow(first.kind, first.label, first.item, first.length_s, method, len(errors),
                                   float(np.median(errors)), float(np.median(np.abs(errors))),
                                   float(worst), duration))
    return rows


def find(summary: list[SummaryRow], kind: str, length_s: float, method: str) -> SummaryRow | None:
    """The row of a workload kind, length and method (the first, if several labels)."""
    for row in summary:
        if row.kind == kind and row.method == method and math.isclose(row.length_s, length_s):
            return row
    return None


@dataclass(frozen=True)
class GoalCheck:
    """The headline's errors at one length against its goal, with the 10 Hz reference's."""
    length_s: float
    limit: float
    headline: SummaryRow
    reference: SummaryRow | None

    @property
    def met(self) -> bool:
        """Judged on the median |error| (the typical window)."""
        return self.headline.n > 0 and self.headline.median_abs_error <= self.limit

    @property
    def met_by_worst(self) -> bool:
        """Whether even the worst window is within the limit."""
        return self.headline.n > 0 and abs(self.headline.worst_error) <= self.limit


def check_goals(summary: list[SummaryRow], kind: str = "burst") -> list[GoalCheck]:
    """One check per measured length that a goal covers."""
    checks = []
    lengths = sorted({r.length_s for r in summary if r.kind == kind})
    for length in lengths:
        for low, high, limit in HEADLINE_GOALS:
            if low - 1e-9 <= length <= high + 1e-9:
                headline = find(summary, kind, length, "headline")
                if headline is not None:
                    checks.append(GoalCheck(length, limit, headline,
                                            find(summary, kind, length, "reference_10hz")))
                break
    return checks


def analyse(recording: Recording, settings: PlanSettings, meter: MeterTraces,
            reference: ReferenceReadings | None, *,
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
    info["recording_s"] = (recording.end_ns - recording.start_ns) / NS_PER_S
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
    """Plays the schedule (``run.record``: the meter and the reference must be running; both
    are stopped at the end), then evaluates it."""
    started = _dt.datetime.now(_dt.timezone.utc)
    recording = record(schedule, workload, meter, reference, read_counter_j=read_counter_j, on_item=on_item)
    info = dict(info or {})
    info.setdefault("date", started.strftime("%Y-%m-%d %H:%M UTC"))
    return analyse(recording, settings, meter, reference, counter_update_s=counter_update_s, info=info,
                   exact_energy_j=getattr(workload, "exact_energy_j", None))
