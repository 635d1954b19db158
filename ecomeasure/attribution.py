"""Energy per request: the energy of overlapping windows, split among them.

In a server, requests overlap in a batch, so their windows overlap: measuring each window on
its own counts a shared interval once per request, and the parts add up to more than the GPU
spent. Here every interval of time is given out once. The windows' edges (and the steps'
edges, see below) cut the run into elementary intervals; an interval in which k windows are
open gives each of them a share of its energy, and an interval in which none is open is "not
attributed". So the parts add up, to floating-point rounding, to the energy of the union of
the windows, and with the not-attributed part to the energy of the whole span.

Shares are equal unless the caller gives weights: a :class:`Step` is an interval of time with
a weight per request (e.g. the tokens each request produced, or processed, in one step of the
serving loop). Within a step, an interval's energy goes to the open windows the step names,
in proportion to their weights; an open window the step does not name gets nothing of it (it
did no work in that step: it had just finished, or was waiting). Where no window the step
names is open, and outside every step, the open windows share equally. Weights must be
positive and finite: a request that did nothing in a step is left out of it, not given 0.

The energy of each interval comes from the meter's own integration (the native trapezoid rule
over a power trace, or the difference of the cumulative energy counter). With a ``Meter`` or
saved traces, each GPU's parts follow the same method as the headline figure of the whole
span (:meth:`Meter.measure_ns`): where the headline is ``calibrated`` (driver samples scaled
to the energy counter), every interval is the samples' trapezoid times the span's one
calibration factor, so the parts add up to the span's headline. (A request's own window,
measured alone, may get a slightly different calibration factor, from the counter readings
near it: its figure then differs from its part here by that factor's difference.)

Offline, from edges you already have::

    windows = [RequestWindow("a", t0, t1), RequestWindow("b", t2, t3)]
    result = attribute(meter, windows, steps)      # or attribute_trace(t_ns, power_w, windows)
    result.energy_j["a"], result.union_j, result.not_attributed_j, result.total_j

Online, in a serving loop (marks cost microseconds; times are resolved at the end)::

    attributor = Attributor()
    attributor.open("a")
    attributor.open("b")
    ...   # one step of the batch
    attributor.step({"a": 1, "b": 17})   # tokens each request produced or processed
    attributor.close("a")
    ...
    attributor.close("b")
    result = attributor.attribute(meter)
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _native
from .meter import Mark
from .units import NAN, NS_PER_S

# The trace that each headline method integrates, and whether it is cumulative (J) or power (W).
_METHOD_TRACE = {"calibrated": ("samples", False), "samples": ("samples", False),
                 "instant": ("instant", False), "average": ("average", False),
                 "counter": ("counter", True)}


@dataclass(frozen=True)
class RequestWindow:
    """The time a request was being served: [start_ns, end_ns] on the meter's clock
    (CLOCK_MONOTONIC ns, ``time.monotonic_ns()``). A request may have several windows (it
    left the batch and came back); they must not overlap."""
    request_id: Hashable
    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass(frozen=True)
class Step:
    """An interval [start_ns, end_ns] with a positive weight per request: the interval's energy
    goes to the open windows it names in proportion to their weights (see the module's doc)."""
    start_ns: int
    end_ns: int
    weights: Mapping[Hashable, float]


@dataclass(frozen=True)
class Attribution:
    """How the energy of a span of time was given out.

    ``energy_j``: each request's part (J), in the order the windows were given. ``union_j``:
    the energy of the time in which at least one window was open; the parts sum to it.
    ``not_attributed_j``: the energy of the rest of the span. ``total_j``: the span's energy,
    ``union_j + not_attributed_j``. ``method``: what measured the energy (a meter's headline
    method, or ``trace``). ``devices``: the same per GPU where a meter or saved traces gave it
    (``energy_j`` and the rest are then sums over devices); ``headline_j`` is what the meter
    reports for the whole span, which ``total_j`` matches.
    """
    energy_j: Mapping[Hashable, float]
    union_j: float
    not_attributed_j: float
    total_j: float
    start_ns: int
    end_ns: int
    method: str
    windows: tuple[RequestWindow, ...] = ()
    steps: int = 0
    headline_j: float = NAN
    calibration: float = NAN
    devices: Mapping[int, Attribution] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S

    @property
    def attributed_j(self) -> float:
        """The sum of the parts (equal to ``union_j`` to rounding)."""
        return math.fsum(self.energy_j.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: request ids as strings, windows as name/start_ns/end_ns (the
        form ``python -m ecomeasure.export --windows`` reads)."""
        return {
            "energy_j": {str(k): v for k, v in self.energy_j.items()},
            "attributed_j": self.attributed_j, "union_j": self.union_j,
            "not_attributed_j": self.not_attributed_j, "total_j": self.total_j,
            "headline_j": self.headline_j, "method": self.method, "calibration": self.calibration,
            "start_ns": self.start_ns, "end_ns": self.end_ns, "duration_s": self.duration_s,
            "steps": self.steps,
            "windows": [{"name": str(w.request_id), "start_ns": w.start_ns, "end_ns": w.end_ns}
                        for w in self.windows],
            "devices": {str(k): {key: value for key, value in d.to_dict().items() if key != "windows"}
                        for k, d in self.devices.items()},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes ``to_dict()`` as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True))
        return path


# checking the input ---------------------------------------------------------------------
def _check_windows(windows: Iterable[RequestWindow | tuple[Hashable, int, int]]) -> tuple[RequestWindow, ...]:
    out = []
    for w in windows:
        if not isinstance(w, RequestWindow):
            try:
                request_id, start_ns, end_ns = w
            except (TypeError, ValueError):
                raise TypeError(f"a window is a RequestWindow or (request_id, start_ns, end_ns), not {w!r}") from None
            w = RequestWindow(request_id, start_ns, end_ns)
        if isinstance(w.start_ns, float) or isinstance(w.end_ns, float):
            raise TypeError(f"window of {w.request_id!r}: times are int nanoseconds, not float")
        start_ns, end_ns = int(w.start_ns), int(w.end_ns)
        if end_ns < start_ns:
            raise ValueError(f"window of {w.request_id!r} ends before it begins ({start_ns} > {end_ns})")
        out.append(RequestWindow(w.request_id, start_ns, end_ns))
    by_id: dict[Hashable, list[RequestWindow]] = {}
    for w in out:
        by_id.setdefault(w.request_id, []).append(w)
    for request_id, ws in by_id.items():
        ws = sorted(ws, key=lambda w: w.start_ns)
        for a, b in zip(ws, ws[1:]):
            if b.start_ns < a.end_ns:
                raise ValueError(f"request {request_id!r} has overlapping windows "
                                 f"([{a.start_ns}, {a.end_ns}] and [{b.start_ns}, {b.end_ns}])")
    return tuple(out)


def _check_steps(steps: Iterable[Step], known: set[Hashable]) -> list[Step]:
    out = []
    for s in steps:
        if not isinstance(s, Step):
            raise TypeError(f"a step is a Step(start_ns, end_ns, weights), not {s!r}")
        if not s.end_ns > s.start_ns:
            raise ValueError(f"a step must have positive length ([{s.start_ns}, {s.end_ns}])")
        weights = {}
        for request_id, weight in s.weights.items():
            if request_id not in known:
                raise ValueError(f"a step weighs request {request_id!r}, which has no window")
            try:
                value = float(weight)
            except (TypeError, ValueError):
                raise TypeError(f"the weight of request {request_id!r} is not a number ({weight!r})") from None
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"the weight of request {request_id!r} must be positive and finite, not "
                                 f"{weight!r} (leave a request that did nothing out of the step)")
            weights[request_id] = value
        out.append(Step(int(s.start_ns), int(s.end_ns), weights))
    out.sort(key=lambda s: s.start_ns)
    for a, b in zip(out, out[1:]):
        if b.start_ns < a.end_ns:
            raise ValueError(f"steps overlap ([{a.start_ns}, {a.end_ns}] and [{b.start_ns}, {b.end_ns}])")
    return out


def _span(windows: Sequence[RequestWindow], span_ns: tuple[int, int] | None) -> tuple[int, int]:
    if span_ns is None:
        if not windows:
            raise ValueError("no windows and no span: nothing to attribute")
        return min(w.start_ns for w in windows), max(w.end_ns for w in windows)
    start_ns, end_ns = int(span_ns[0]), int(span_ns[1])
    if end_ns < start_ns:
        raise ValueError(f"the span ends before it begins ({start_ns} > {end_ns})")
    outside = [w.request_id for w in windows if w.start_ns < start_ns or w.end_ns > end_ns]
    if outside:
        raise ValueError(f"windows of {outside[:5]!r} reach outside the span [{start_ns}, {end_ns}]")
    return start_ns, end_ns


# the split ------------------------------------------------------------------------------
def split(energy_between: Callable[[int, int], float], windows: Iterable[RequestWindow | tuple[Hashable, int, int]],
          steps: Iterable[Step] = (), *, span_ns: tuple[int, int] | None = None,
          method: str = "given") -> Attribution:
    """Splits the energy of ``span_ns`` (default: first window start to last window end) among
    ``windows`` (RequestWindow or (request_id, start_ns, end_ns)), weighted within ``steps``.

    ``energy_between(a_ns, b_ns)`` gives the energy of [a, b]; it must be additive over
    adjacent intervals (every integration of the meter is) for the parts to add up to the
    span's energy. It is called once per elementary interval, in time order.
    """
    windows = _check_windows(windows)
    steps = _check_steps(steps, {w.request_id for w in windows})
    start_ns, end_ns = _span(windows, span_ns)
    # Every edge inside the span cuts it; steps reaching outside it are clipped.
    edges = {start_ns, end_ns}
    for w in windows:
        edges.update((w.start_ns, w.end_ns))
    for s in steps:
        edges.update(t for t in (s.start_ns, s.end_ns) if start_ns < t < end_ns)
    cuts = sorted(edges)
    starting: dict[int, list[int]] = {}
    ending: dict[int, list[int]] = {}
    for k, w in enumerate(windows):
        if w.end_ns > w.start_ns:  # a zero-length window is open during no interval
            starting.setdefault(w.start_ns, []).append(k)
            ending.setdefault(w.end_ns, []).append(k)
    shares: dict[Hashable, list[float]] = {w.request_id: [] for w in windows}
    union: list[float] = []
    alone: list[float] = []
    open_now: dict[int, Hashable] = {}
    step_index = 0
    for a, b in zip(cuts, cuts[1:]):
        for k in ending.get(a, ()):
            del open_now[k]
        for k in starting.get(a, ()):
            open_now[k] = windows[k].request_id
        energy_j = float(energy_between(a, b))
        if not open_now:
            alone.append(energy_j)
            continue
        union.append(energy_j)
        while step_index < len(steps) and steps[step_index].end_ns <= a:
            step_index += 1
        step = steps[step_index] if step_index < len(steps) and steps[step_index].start_ns <= a else None
        named = [(rid, step.weights[rid]) for rid in open_now.values() if rid in step.weights] if step else []
        if named:
            total_weight = math.fsum(weight for _, weight in named)
            for rid, weight in named:
                shares[rid].append(energy_j * (weight / total_weight))
        else:
            for rid in open_now.values():
                shares[rid].append(energy_j / len(open_now))
    union_j, not_attributed_j = math.fsum(union), math.fsum(alone)
    return Attribution({rid: math.fsum(parts) for rid, parts in shares.items()}, union_j, not_attributed_j,
                       math.fsum(union + alone), start_ns, end_ns, method, windows, len(steps))


def trace_integral(t_ns: np.ndarray, values: np.ndarray, *, cumulative: bool = False) -> Callable[[int, int], float]:
    """``energy_between(a_ns, b_ns)`` over one trace, by the meter's native integration: the
    trapezoid rule over a power trace (W), or the difference of a cumulative energy trace (J)
    where ``cumulative``. Each call passes the core only the points around [a, b], which give
    the same integral as the whole trace, so many short intervals cost no more than one pass."""
    t_ns = np.ascontiguousarray(t_ns, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if t_ns.ndim != 1 or t_ns.shape != values.shape:
        raise ValueError("times and values must be 1-D arrays of the same length")
    if len(t_ns) == 0:
        raise ValueError("the trace is empty")
    if np.any(np.diff(t_ns) < 0):
        raise ValueError("time stamps must be in ascending order")
    integrate = _native.cumulative_delta if cumulative else _native.trapezoid
    n = len(t_ns)

    def energy_between(a_ns: int, b_ns: int) -> float:
        # The point at or before a (the last of equal stamps) through the point after the last
        # stamp equal to b: all that interpolation at the edges and the points inside use.
        lo = max(int(np.searchsorted(t_ns, a_ns, side="right")) - 1, 0)
        hi = min(int(np.searchsorted(t_ns, b_ns, side="right")) + 1, n)
        return float(integrate(t_ns[lo:hi], values[lo:hi], a_ns, b_ns)[0])

    return energy_between


def attribute_trace(t_ns: np.ndarray, values: np.ndarray,
                    windows: Iterable[RequestWindow | tuple[Hashable, int, int]], steps: Iterable[Step] = (), *,
                    cumulative: bool = False, span_ns: tuple[int, int] | None = None) -> Attribution:
    """Splits the energy of one trace (power in W, or cumulative energy in J where
    ``cumulative``; times in monotonic ns) among ``windows``; see :func:`split`."""
    return split(trace_integral(t_ns, values, cumulative=cumulative), windows, steps,
                 span_ns=span_ns, method="counter" if cumulative else "trace")


def attribute(meter: Any, windows: Iterable[RequestWindow | tuple[Hashable, int, int]], steps: Iterable[Step] = (),
              *, span_ns: tuple[int, int] | None = None) -> Attribution:
    """Splits the energy that ``meter`` (a :class:`Meter`, or :class:`SavedTraces` from
    ``load_traces``) measured over the span among ``windows``, per GPU by the method of the
    span's headline figure, then summed over GPUs; see the module's doc."""
    windows = _check_windows(windows)
    start_ns, end_ns = _span(windows, span_ns)
    steps = list(steps)
    if hasattr(meter, "measure_ns"):
        measurement = meter.measure_ns(start_ns, end_ns, "attribution")
    else:
        measurement = meter.measure(start_ns / NS_PER_S, end_ns / NS_PER_S, "attribution")
    per_device: dict[int, Attribution] = {}
    for index, device in measurement.devices.items():
        if device.method not in _METHOD_TRACE:
            per_device[index] = Attribution({w.request_id: NAN for w in windows}, NAN, NAN, NAN,
                                            start_ns, end_ns, device.method, windows, len(steps), device.energy_j)
            continue
        trace, cumulative = _METHOD_TRACE[device.method]
        t_ns, values = meter.trace_ns(trace, index)
        scale = device.calibration if device.method == "calibrated" else 1.0
        part = split(_scaled(trace_integral(t_ns, values, cumulative=cumulative), scale), windows, steps,
                     span_ns=(start_ns, end_ns), method=device.method)
        per_device[index] = Attribution(part.energy_j, part.union_j, part.not_attributed_j, part.total_j,
                                        start_ns, end_ns, device.method, windows, part.steps,
                                        device.energy_j, device.calibration)
    def total(values: Iterable[float]) -> float:
        return math.fsum(values)
    parts = per_device.values()
    methods = {d.method for d in parts}
    calibrations = {d.calibration for d in parts}
    return Attribution(
        {rid: total(d.energy_j[rid] for d in parts) for rid in dict.fromkeys(w.request_id for w in windows)},
        total(d.union_j for d in parts), total(d.not_attributed_j for d in parts), total(d.total_j for d in parts),
        start_ns, end_ns, methods.pop() if len(methods) == 1 else "mixed", windows, len(steps),
        measurement.energy_j, calibrations.pop() if len(calibrations) == 1 else NAN, per_device)


def _scaled(energy_between: Callable[[int, int], float], scale: float) -> Callable[[int, int], float]:
    return lambda a_ns, b_ns: energy_between(a_ns, b_ns) * scale


# online ---------------------------------------------------------------------------------
class Attributor:
    """Collects windows and steps in a serving loop; :meth:`attribute` splits the energy.

    ``open(request_id)`` when a request joins the batch, ``close(request_id)`` when it leaves,
    ``step(weights)`` after each step of the loop with what each request did in it (e.g. tokens
    produced; prompt tokens for a prefill): the step covers the time since the previous step
    (or since the first ``open``). ``step()`` without weights cuts there and splits equally.
    Each call takes a mark (a few microseconds): now, or where ``stream`` gets to on the GPU
    (a torch or CuPy stream, for a loop that does not wait for the GPU); times are resolved
    when the result is asked for.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self._open: dict[Hashable, Mark] = {}
        self._closed: list[tuple[Hashable, Mark, Mark]] = []
        self._steps: list[tuple[Mark, dict[Hashable, float] | None]] = []
        self._first: Mark | None = None
        self._known: set[Hashable] = set()

    def _mark(self, stream: Any) -> Mark:
        return Mark(self.stream if stream is ... else stream)

    @property
    def open_requests(self) -> list[Hashable]:
        return list(self._open)

    def open(self, request_id: Hashable, stream: Any = ...) -> None:
        """The request joins the batch now."""
        if request_id in self._open:
            raise ValueError(f"request {request_id!r} is already open")
        mark = self._mark(stream)
        self._open[request_id] = mark
        self._known.add(request_id)
        if self._first is None:
            self._first = mark

    def close(self, request_id: Hashable, stream: Any = ...) -> None:
        """The request leaves the batch now."""
        try:
            begin = self._open.pop(request_id)
        except KeyError:
            raise KeyError(f"request {request_id!r} is not open; open: {list(self._open)[:10]}") from None
        self._closed.append((request_id, begin, self._mark(stream)))

    def step(self, weights: Mapping[Hashable, float] | None = None, stream: Any = ...) -> None:
        """Ends a step: the time since the previous step is split by ``weights`` (request id ->
        positive weight) among the requests it names, equally where None."""
        if weights is not None:
            weights = dict(weights)
            for request_id, weight in weights.items():
                if request_id not in self._known:
                    raise ValueError(f"a step weighs request {request_id!r}, which was never opened")
                if isinstance(weight, bool) or not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
                    raise ValueError(f"the weight of request {request_id!r} must be positive and finite, "
                                     f"not {weight!r}")
        self._steps.append((self._mark(stream), weights))

    def windows(self, timeout_s: float = 60.0) -> list[RequestWindow]:
        """The closed requests' windows (waits for the GPU to reach stream marks)."""
        return [RequestWindow(rid, begin.time_ns(timeout_s), end.time_ns(timeout_s))
                for rid, begin, end in self._closed]

    def steps(self, timeout_s: float = 60.0) -> list[Step]:
        """The weighted steps, each from the previous step's mark (or the first open) to its own."""
        out = []
        previous = self._first.time_ns(timeout_s) if self._first is not None else None
        for mark, weights in self._steps:
            t_ns = mark.time_ns(timeout_s)
            if previous is not None and weights and t_ns > previous:
                out.append(Step(previous, t_ns, weights))
            previous = t_ns
        return out

    def attribute(self, meter: Any = None, *, span_ns: tuple[int, int] | None = None,
                  energy_between: Callable[[int, int], float] | None = None) -> Attribution:
        """Splits what ``meter`` (a Meter or SavedTraces) measured among the closed requests;
        or, with ``energy_between``, the energy that function gives (see :func:`split`)."""
        if self._open:
            raise RuntimeError(f"requests still open: {list(self._open)[:10]}; close them first")
        if (meter is None) == (energy_between is None):
            raise TypeError("give either a meter or energy_between")
        if energy_between is not None:
            return split(energy_between, self.windows(), self.steps(), span_ns=span_ns)
        return attribute(meter, self.windows(), self.steps(), span_ns=span_ns)
