"""The Python face of the native meter: Meter, Window, Mark and Measurement.

Everything here is thin: the sampler thread, the marks and the integration live in the
native core (``ecomeasure._native``). Nothing here imports torch or any CUDA library.
"""
from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _native
from .cpu import CpuEnergy, CpuSampler, CpuTraces, cpu_sampler
from .devices import DeviceSelection, select_devices
from .units import NAN
from .units import NS_PER_S as _NS

SOURCES: tuple[str, ...] = tuple(_native.SOURCES)
"""NVML sources the meter reads, in order: driver sample buffer, instant power (field 186),
average power (nvmlDeviceGetPowerUsage), energy counter (nvmlDeviceGetTotalEnergyConsumption)."""

ARCHITECTURES = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere",
                 8: "Ada", 9: "Hopper", 10: "Blackwell"}

DEFAULT_WAIT_S = 2.0


TRACES: tuple[str, ...] = tuple(_native.TRACES)
"""Every trace the meter keeps: the energy SOURCES, then ``utilization`` (NVML's GPU
utilization samples: the percent of each sample period, 200 ms on the H200, in which a kernel
ran; not power)."""


def _source_index(source: str) -> int:
    try:
        return SOURCES.index(source)
    except ValueError:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}") from None


def _trace_index(trace: str) -> int:
    try:
        return TRACES.index(trace)
    except ValueError:
        raise ValueError(f"unknown trace {trace!r}; choose from {', '.join(TRACES)}") from None


def stream_handle(stream: Any) -> int | None:
    """The CUstream handle of ``stream`` as an int, or None for host-time marks.

    Accepts None, an int, an object with the ``__cuda_stream__`` protocol, or one with a
    ``cuda_stream`` (torch) or ``ptr`` (CuPy) attribute. Never imports a framework.
    """
    if stream is None:
        return None
    if isinstance(stream, (bool, float)):
        raise TypeError(f"a stream handle must be an int, not {type(stream).__name__}")
    if isinstance(stream, int):
        if stream < 0:
            raise ValueError(f"a stream handle cannot be negative ({stream})")
        return stream
    protocol = getattr(stream, "__cuda_stream__", None)
    if protocol is not None:
        value = protocol() if callable(protocol) else protocol
        # The protocol returns (version, handle).
        return int(value[1]) if isinstance(value, tuple) else int(value)
    for attribute in ("cuda_stream", "ptr"):
        handle = getattr(stream, attribute, None)
        if isinstance(handle, int):
            return handle
    raise TypeError(
        f"cannot find a CUDA stream handle in {type(stream).__name__}: pass a torch or CuPy "
        "stream, an object with __cuda_stream__ or cuda_stream, or an int handle")


@dataclass(frozen=True)
class DeviceInfo:
    """One GPU as NVML names it."""
    index: int
    name: str
    uuid: str
    architecture: str

    def has_uuid(self, uuid: object) -> bool:
        """Whether ``uuid`` (NVML's "GPU-..." or e.g. torch's device uuid) names this GPU: the
        way to find a CUDA device's NVML index, since CUDA_VISIBLE_DEVICES renumbers CUDA's
        devices and not NVML's."""
        def bare(u: object) -> str:
            text = str(u).strip().lower()
            return text[4:] if text.startswith("gpu-") else text
        return bare(self.uuid) == bare(uuid)


@dataclass(frozen=True)
class SourceEnergy:
    """One source's energy over a window, on one device."""
    source: str
    energy_j: float
    power_w: float
    samples: int
    complete: bool


@dataclass(frozen=True)
class DeviceEnergy:
    """A window's energy on one device: the headline figure and each source."""
    device: int
    energy_j: float
    power_w: float
    method: str
    calibration: float
    complete: bool
    sources: Mapping[str, SourceEnergy] = field(default_factory=dict)
    gpu_busy_share: float = NAN
    """Share (0..1) of the window in which a kernel ran, from NVML's utilization samples
    (time-weighted, each sample covering the period since the one before); NaN where the GPU
    gives none or none covers the window."""


@dataclass(frozen=True)
class Measurement:
    """The energy of one window, per device and per source.

    ``energy_j`` is the headline figure summed over devices and ``method`` says what made
    it: ``calibrated`` (driver samples scaled to the energy counter), ``counter``,
    ``samples``, ``instant`` or ``average``.
    """
    name: str
    start_s: float
    end_s: float
    devices: Mapping[int, DeviceEnergy]
    cpu: CpuEnergy | None = None
    """The CPU's energy per RAPL zone, for a meter made with ``cpu=``; not in ``energy_j``."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def energy_j(self) -> float:
        return float(sum(d.energy_j for d in self.devices.values()))

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else NAN

    @property
    def method(self) -> str:
        methods = {d.method for d in self.devices.values()}
        return methods.pop() if len(methods) == 1 else "mixed"

    @property
    def complete(self) -> bool:
        return all(d.complete for d in self.devices.values())

    @property
    def gpu_busy_share(self) -> float:
        """Share (0..1) of the window in which a kernel ran, the mean over devices; NaN if any
        device lacks it (see DeviceEnergy.gpu_busy_share)."""
        shares = [d.gpu_busy_share for d in self.devices.values()]
        return float(sum(shares) / len(shares)) if shares else NAN

    def source_energy_j(self, source: str) -> float:
        """Energy by one source, summed over devices; NaN where a device lacks it."""
        _source_index(source)
        total = 0.0
        for d in self.devices.values():
            if source not in d.sources:
                return NAN
            total += d.sources[source].energy_j
        return total

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["devices"] = {str(k): v for k, v in out["devices"].items()}
        out.update(duration_s=self.duration_s, energy_j=self.energy_j, method=self.method,
                   gpu_busy_share=self.gpu_busy_share)
        out["cpu"] = self.cpu.to_dict() if self.cpu is not None else None
        return out


def _measurement(name: str, t0_ns: int, t1_ns: int,
                 per_device: Iterable[tuple[int, dict[str, Any]]]) -> Measurement:
    duration_s = (t1_ns - t0_ns) / _NS
    def power(e: float) -> float:
        return e / duration_s if duration_s > 0 else NAN
    devices = {}
    for index, raw in per_device:
        sources = {name_: SourceEnergy(name_, s["energy_j"], power(s["energy_j"]), s["samples"],
                                       s["complete"]) for name_, s in raw["sources"].items()}
        devices[index] = DeviceEnergy(index, raw["energy_j"], power(raw["energy_j"]), raw["method"],
                                      raw["calibration"], raw["complete"], sources,
                                      raw["gpu_busy_share"])
    return Measurement(name, t0_ns / _NS, t1_ns / _NS, devices)


class _PendingDeviceEnergy(DeviceEnergy):
    """A window's DeviceEnergy whose ``gpu_busy_share`` waits, when first read, for the
    utilization samples past the window's end (~200 ms periods); its energy does not."""

    @property
    def gpu_busy_share(self) -> float:
        return float(self.__dict__["_result"].busy_share(self.device))

    def __reduce__(self) -> tuple[Any, ...]:
        return DeviceEnergy, tuple(getattr(self, f.name) for f in fields(DeviceEnergy))


class _PendingMeasurement(Measurement):
    """A window's Measurement computed when first read: reading any figure waits for the GPU
    to pass the window's marks and for the energy sources to hold readings past its end."""

    def __getattr__(self, attribute: str) -> Any:
        # Called only for attributes not set yet: the fields, until the first read fills them.
        result = self.__dict__.get("_result")
        if result is None or attribute not in Measurement.__dataclass_fields__:
            raise AttributeError(attribute)
        result.fill(self)
        return object.__getattribute__(self, attribute)

    def __reduce__(self) -> tuple[Any, ...]:
        return Measurement, tuple(getattr(self, f.name) for f in fields(Measurement))


class _FilledOnRead:
    """A field with a default (e.g. ``cpu``) is a class attribute of Measurement, so
    __getattr__ never sees it: this non-data descriptor fills the pending measurement first."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        obj.__dict__["_result"].fill(obj)
        return obj.__dict__[self.name]


for _field in fields(Measurement):
    if _field.name not in _PendingMeasurement.__dict__ and hasattr(Measurement, _field.name):
        _descriptor = _FilledOnRead()
        setattr(_PendingMeasurement, _field.name, _descriptor)
        _descriptor.__set_name__(_PendingMeasurement, _field.name)


class _WindowResult:
    """Computes a closed window's figures once, on whichever thread reads them first."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self._lock = threading.RLock()
        self._filled = False
        self._busy: dict[int, float] | None = None

    def fill(self, target: _PendingMeasurement) -> None:
        with self._lock:
            if self._filled:
                return
            meter = self.window.meter
            t0_ns, t1_ns = self.window.edges_ns()
            meter._wait_for_data(t1_ns, DEFAULT_WAIT_S, utilization=False)
            plain = meter._measurement_now(self.window.name, t0_ns, t1_ns)
            for f in fields(Measurement):
                if f.name != "devices":
                    object.__setattr__(target, f.name, getattr(plain, f.name))
            devices = {}
            for index, d in plain.devices.items():
                pending = object.__new__(_PendingDeviceEnergy)
                for f in fields(DeviceEnergy):
                    if f.name != "gpu_busy_share":
                        object.__setattr__(pending, f.name, getattr(d, f.name))
                pending.__dict__["_result"] = self
                devices[index] = pending
            object.__setattr__(target, "devices", devices)
            self._filled = True

    def busy_share(self, device: int) -> float:
        with self._lock:
            if self._busy is None:
                meter = self.window.meter
                t0_ns, t1_ns = self.window.edges_ns()
                meter._wait_for_data(t1_ns, DEFAULT_WAIT_S, utilization=True)
                self._busy = {d.index: meter._sampler.energy(k, t0_ns, t1_ns)["gpu_busy_share"]
                              for k, d in enumerate(meter.devices)}
            return float(self._busy[device])


class Mark:
    """A point on the meter's clock: now, or when the GPU reaches a point in a stream."""

    def __init__(self, stream: Any = None) -> None:
        handle = stream_handle(stream)
        self.on_stream = handle is not None
        self._id = _native.mark_now() if handle is None else _native.mark_on_stream(handle)

    @property
    def reached(self) -> bool:
        return _native.mark_time_ns(self._id) >= 0

    @property
    def has_event(self) -> bool:
        """Whether this stream mark still owns its CUDA event. A mark older than the ring of
        1,024 events has lost it: a window it cuts is then placed by host stamps alone (late
        by the driver's callback latency). False for host marks."""
        return self.on_stream and _native.mark_has_event(self._id)

    def time_ns(self, timeout_s: float = 60.0) -> int:
        """The mark's time (monotonic ns); waits, without the GIL, for the GPU to get there."""
        t = _native.mark_wait(self._id, int(timeout_s * _NS))
        if t < 0:
            raise TimeoutError(f"the GPU did not reach the mark within {timeout_s} s")
        return t

    @property
    def time_s(self) -> float:
        return self.time_ns() / _NS

    def span_ns(self, end: Mark, timeout_s: float = 60.0) -> tuple[int, int]:
        """This mark's and a later mark's times (monotonic ns), waiting for both. Between two
        stream marks the GPU's own clock (CUDA events recorded with them) gives the time
        between them, and the earlier-looking of the two host stamps places the pair, since
        the driver runs a mark's host function a little late (now and then by a millisecond)."""
        t0_ns, t1_ns = _native.mark_wait_pair(self._id, end._id, int(timeout_s * _NS))
        if t0_ns < 0:
            raise TimeoutError(f"the GPU did not reach both marks within {timeout_s} s")
        return t0_ns, t1_ns


class Window:
    """A named interval between two marks. Use as a context manager, or begin/end.

    Closing a window costs only its end mark: ``measurement`` is a Measurement whose figures
    are computed when first read (see docs/meter-windows.md); ``ready`` says, without
    blocking, whether reading them would return at once."""

    def __init__(self, meter: Meter, name: str, stream: Any = None) -> None:
        self.meter, self.name, self.stream = meter, name, stream
        self.begin = Mark(stream)
        self.end_mark: Mark | None = None
        self._measurement: Measurement | None = None

    def end(self, stream: Any = ...) -> Window:
        """Closes the window (on the stream it began on unless another is given)."""
        if self.end_mark is not None:
            raise RuntimeError(f"window {self.name!r} is already closed")
        self.end_mark = Mark(self.stream if stream is ... else stream)
        # Wake the sampler now rather than at its next period, so the readings past the end
        # are there sooner; a stream mark's time is not known yet, so ask for now at least.
        t_ns = _native.mark_time_ns(self.end_mark._id)
        self.meter._request(t_ns if t_ns >= 0 else time.monotonic_ns(), None if t_ns >= 0 else self.end_mark)
        return self

    def __enter__(self) -> Window:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.end_mark is None:
            self.end()

    @property
    def measurement(self) -> Measurement:
        """The window's energy, returned at once: its figures are computed when first read,
        which waits for the GPU to pass the marks and for the energy sources (not the
        utilization samples: ``gpu_busy_share`` waits for those when read) past the end."""
        if self.end_mark is None:
            raise RuntimeError(f"window {self.name!r} is still open")
        if self._measurement is None:
            pending = object.__new__(_PendingMeasurement)
            object.__setattr__(pending, "name", self.name)
            pending.__dict__["_result"] = _WindowResult(self)
            self._measurement = pending
        return self._measurement

    @property
    def ready(self) -> bool:
        """Whether the window's energy can be read without waiting (never blocks)."""
        if self.end_mark is None or not (self.begin.reached and self.end_mark.reached):
            return False
        if self._measurement is not None and "devices" in self._measurement.__dict__:
            return True
        end_ns = _native.mark_time_ns(self.end_mark._id)
        return not self.meter.running or self.meter._sampler.has_data(end_ns, False)

    def edges_ns(self, timeout_s: float = 60.0) -> tuple[int, int]:
        """The window's begin and end on the meter's clock (monotonic ns); see Mark.span_ns."""
        if self.end_mark is None:
            raise RuntimeError(f"window {self.name!r} is still open")
        return self.begin.span_ns(self.end_mark, timeout_s)


class Meter:
    """Measures GPU energy with a native sampler thread that reads every NVML source.

    devices: the GPUs to read: by default those this process was given (CUDA_VISIBLE_DEVICES,
    every GPU when it is unset), ``"all"``, or a list of NVML indices; ``selection`` says
    which and why, and a device that cannot be read raises DeviceSelectionError. The thread polls instant and average
    power every ``poll_interval_s``, drains the driver's sample buffer every
    ``drain_interval_s`` (its ring holds ~2.4 s on Hopper) and reads the energy counter
    every ``counter_interval_s`` (a read costs ~4 ms of CPU); a window that ends asks for
    fresh readings at once. The defaults keep the thread near 1 % of one core.
    ``counter_lag_s``: how old a counter value is on average when read (half its ~100 ms
    update period). ``calibration_min_span_s``, ``calibration_reach_s``: the headline scales the driver
    samples to the counter readings within ``calibration_reach_s`` of the window on each
    side, once those span at least ``calibration_min_span_s``: each end of the span may be off by ~50 ms of power, so a short span would
    make the scale worse than none (until then the headline is the driver samples alone).
    Bounded so that a window costs the same at hour 24 as at hour 1; an interval's headline
    is final once the run is ``calibration_reach_s`` past its end (a returned Measurement never changes).
    ``trace_keep_s``: traces keep about the newest this much (up to 1.25x; ~4.7 MB per
    GPU-hour), so a day-long run stays bounded; windows must be measured (and traces saved)
    within it, older readings are gone (``capabilities()[...]["dropped"]`` counts them);
    0 keeps everything. ``nvml_library``: another
    libnvidia-ml (default $ECOMEASURE_NVML_LIBRARY, else libnvidia-ml.so.1).

    >>> with Meter() as meter:                                   # doctest: +SKIP
    ...     with meter.window("decode", stream=torch.cuda.current_stream()) as w:
    ...         model.generate(...)
    ...     print(w.measurement.energy_j, w.measurement.method)
    """

    def __init__(self, devices: Iterable[int] | str | None = None, *, poll_interval_s: float = 0.01,
                 drain_interval_s: float = 0.2, counter_interval_s: float = 1.0,
                 keepalive_s: float = 0.1, gap_threshold_s: float = 0.25,
                 calibration_min_span_s: float = 30.0, counter_lag_s: float = 0.05,
                 calibration_reach_s: float = 60.0, trace_keep_s: float = 4 * 3600.0,
                 nvml_library: str | os.PathLike[str] | None = None,
                 start: bool = True, cpu: bool | str | CpuSampler = False) -> None:
        for label, value in [("poll_interval_s", poll_interval_s), ("drain_interval_s", drain_interval_s),
                             ("counter_interval_s", counter_interval_s)]:
            if not value > 0:
                raise ValueError(f"{label} must be positive, not {value}")
        self._pid = os.getpid()
        library = os.fspath(nvml_library) if nvml_library is not None else ""
        self.selection: DeviceSelection = select_devices(devices, nvml_library=library)
        """Which GPUs this meter reads, and why (see ecomeasure.devices)."""
        options = _native.SamplerOptions()
        options.devices = list(self.selection.indices)
        options.poll_interval_ns = int(poll_interval_s * _NS)
        options.drain_interval_ns = int(drain_interval_s * _NS)
        options.counter_interval_ns = int(counter_interval_s * _NS)
        options.keepalive_ns = int(keepalive_s * _NS)
        options.gap_threshold_ns = int(gap_threshold_s * _NS)
        options.calibration_min_span_ns = int(calibration_min_span_s * _NS)
        options.counter_lag_ns = int(counter_lag_s * _NS)
        options.calibration_reach_ns = int(calibration_reach_s * _NS)
        options.trace_keep_ns = int(trace_keep_s * _NS)
        options.nvml_library = library
        self._sampler = _native.Sampler(options)
        self._calibration_min_span_ns = int(calibration_min_span_s * _NS)
        self.settings: dict[str, float] = {
            "poll_interval_s": poll_interval_s, "drain_interval_s": drain_interval_s,
            "counter_interval_s": counter_interval_s, "keepalive_s": keepalive_s,
            "gap_threshold_s": gap_threshold_s, "calibration_min_span_s": calibration_min_span_s,
            "counter_lag_s": counter_lag_s, "calibration_reach_s": calibration_reach_s,
            "trace_keep_s": trace_keep_s}
        """How this meter reads NVML (the constructor's arguments)."""
        self.devices: list[DeviceInfo] = [
            DeviceInfo(d["index"], d["name"], d["uuid"],
                       ARCHITECTURES.get(d["architecture"], f"unknown ({d['architecture']})"))
            for d in self._sampler.devices]
        self.driver_version: str = self._sampler.driver_version
        self._position = {d.index: k for k, d in enumerate(self.devices)}
        self._open: dict[str, Window] = {}
        self._latest_end_ns = -1  # the latest end of a closed window (see stop)
        self._pending_ends: list[Mark] = []  # closed windows' end marks the GPU has not reached
        # Stops the thread when the meter is dropped or at interpreter exit; holds the
        # native object, not self, so it does not keep the meter alive.
        self._finalizer = weakref.finalize(self, self._sampler.close)
        # CPU energy (ecomeasure.cpu): RAPL read on its own thread, measured by the same windows.
        self.cpu: CpuSampler | None = cpu_sampler(cpu)
        """The CPU sampler (``cpu=True``, ``"auto"`` or a CpuSampler; see ecomeasure.cpu), or None."""
        if self.cpu is not None:
            weakref.finalize(self, self.cpu.stop)
        if start:
            self.start()

    # lifecycle -----------------------------------------------------------------------
    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError("this Meter was created in another process (before fork()); its "
                               "sampler thread does not exist here. Create a new Meter in this process.")

    def start(self) -> Meter:
        self._check_process()
        self._sampler.start()
        if self.cpu is not None:
            self.cpu.start()
        return self

    def read_now(self) -> None:
        """Asks the sampler for a fresh reading of every source at once, without waiting:
        the energy counter is otherwise read every ``counter_interval_s``, and a comparison
        with it at a known moment (the start of a run) wants a reading there."""
        self._sampler.request(time.monotonic_ns())

    def _request(self, end_ns: int, pending: Mark | None) -> None:
        """Asks the sampler for readings past a window's end now, without waiting; ``pending``:
        the end mark when the GPU has not reached it yet (its time is known later)."""
        self._latest_end_ns = max(self._latest_end_ns, end_ns)
        if pending is not None:
            self._pending_ends.append(pending)
            if len(self._pending_ends) > 64:
                self._take_reached_ends()
        self._sampler.request(end_ns)

    def _take_reached_ends(self, timeout_s: float = 0.0) -> None:
        """Moves the end marks the GPU has reached into _latest_end_ns; with a timeout, waits
        for them (all of them within it) and lets go of those never reached."""
        waiting = []
        deadline_ns = time.monotonic_ns() + int(timeout_s * _NS)
        for mark in self._pending_ends:
            t_ns = _native.mark_wait(mark._id, max(0, deadline_ns - time.monotonic_ns())) if timeout_s else \
                _native.mark_time_ns(mark._id)
            if t_ns >= 0:
                self._latest_end_ns = max(self._latest_end_ns, t_ns)
            elif not timeout_s:
                waiting.append(mark)
        self._pending_ends = waiting

    def _settle(self) -> None:
        # Windows closed before a stop are read later: let the sampler first hold every
        # trace (utilization too) past the latest of their ends.
        if not self.running:
            return
        self._take_reached_ends(DEFAULT_WAIT_S)
        if self._latest_end_ns >= 0:
            self._sampler.wait_for_data(self._latest_end_ns, int(DEFAULT_WAIT_S * _NS), True)

    def stop(self) -> None:
        """Stops the sampler thread; idempotent. Traces stay readable; start() resumes.
        Waits first (up to DEFAULT_WAIT_S) for readings past the end of every closed window."""
        if os.getpid() == self._pid:
            self._settle()
            self._sampler.stop()
            if self.cpu is not None:
                self.cpu.stop()

    def close(self) -> None:
        """Stops the thread and lets go of NVML; traces and measurements stay readable."""
        if os.getpid() == self._pid:
            self._settle()
            self._sampler.close()
            if self.cpu is not None:
                self.cpu.stop()

    @property
    def running(self) -> bool:
        return self._sampler.running

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # windows -------------------------------------------------------------------------
    def window(self, name: str, stream: Any = None) -> Window:
        """A window that begins now (or when ``stream`` gets here); a context manager."""
        self._check_process()
        return Window(self, name, stream)

    def begin_window(self, name: str, stream: Any = None) -> Window:
        """Begins a named window; names of open windows must be unique."""
        if name in self._open:
            raise ValueError(f"a window named {name!r} is already open")
        window = self.window(name, stream)
        self._open[name] = window
        return window

    def end_window(self, name: str, stream: Any = ...) -> Measurement:
        """Ends the named window and returns its Measurement at once; its figures are computed
        when first read (see Window.measurement), so ending costs only the end mark."""
        try:
            window = self._open.pop(name)
        except KeyError:
            raise KeyError(f"no open window named {name!r}; open: {sorted(self._open)}") from None
        return window.end(stream).measurement

    def mark(self, stream: Any = None) -> Mark:
        self._check_process()
        return Mark(stream)

    def measure(self, start_s: float, end_s: float, name: str = "",
                wait_s: float = DEFAULT_WAIT_S) -> Measurement:
        """Energy over any interval of the meter's clock (``time.monotonic()`` seconds)."""
        return self.measure_ns(int(round(start_s * _NS)), int(round(end_s * _NS)), name, wait_s)

    def measure_ns(self, start_ns: int, end_ns: int, name: str = "",
                   wait_s: float = DEFAULT_WAIT_S) -> Measurement:
        if end_ns < start_ns:
            raise ValueError("a window cannot end before it begins")
        self._check_process()
        self._wait_for_data(end_ns, wait_s, utilization=True)
        return self._measurement_now(name, start_ns, end_ns)

    def _wait_for_data(self, end_ns: int, wait_s: float, utilization: bool) -> None:
        if self.running and end_ns <= time.monotonic_ns() + int(wait_s * _NS):
            self._sampler.wait_for_data(end_ns, int(wait_s * _NS), utilization)

    def _measurement_now(self, name: str, start_ns: int, end_ns: int) -> Measurement:
        measurement = _measurement(name, start_ns, end_ns,
                                   ((d.index, self._sampler.energy(k, start_ns, end_ns))
                                    for k, d in enumerate(self.devices)))
        if self.cpu is not None:
            measurement = replace(measurement, cpu=self.cpu.energy_ns(start_ns, end_ns))
        return measurement

    # traces and state ------------------------------------------------------------------
    def _device_position(self, device: int | None) -> int:
        if device is None:
            return 0
        try:
            return self._position[device]
        except KeyError:
            raise ValueError(f"this meter does not read GPU {device}; it reads "
                             f"{sorted(self._position)}") from None

    def trace(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(time_s, value) of one trace (see TRACES): W, for the counter J since the first
        reading, for ``utilization`` percent busy over the period ending at each stamp."""
        t_ns, value = self.trace_ns(source, device)
        return t_ns / _NS, value

    def trace_ns(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like trace, with times in monotonic ns."""
        return self._sampler.trace(self._device_position(device), _trace_index(source))

    def capabilities(self) -> dict[int, dict[str, dict[str, Any]]]:
        """Per device and trace (SOURCES and ``utilization``): whether it answers (else
        ``reason``), its observed update period, errors and lost-sample gaps."""
        return {d.index: {s: self._sampler.status(k, i) for i, s in enumerate(TRACES)}
                for k, d in enumerate(self.devices)}

    def stats(self) -> dict[str, float]:
        """The sampler thread's CPU time, running time and loop count."""
        return dict(self._sampler.stats())

    def report(self) -> dict[str, Any]:
        """What the meter is and what it saw, for results files."""
        return {
            # Places the monotonic traces on the wall clock (torch.profiler's): docs/timeline.md.
            "realtime_minus_monotonic_ns": time.time_ns() - time.monotonic_ns(),
            "driver_version": self.driver_version,
            "devices": [asdict(d) for d in self.devices],
            "device_selection": list(self.selection.reasons),
            "capabilities": {str(k): v for k, v in self.capabilities().items()},
            "stats": self.stats(),
            "settings": self.settings,
            "calibration_min_span_ns": self._calibration_min_span_ns,
            "calibration_reach_ns": int(self.settings["calibration_reach_s"] * _NS),
            **({"cpu": self.cpu.report()} if self.cpu is not None else {}),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes every trace and the capability report to one ``.npz`` file."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for k, d in enumerate(self.devices):
            for i, s in enumerate(TRACES):
                t_ns, value = self._sampler.trace(k, i)
                arrays[f"{d.index}/{s}/t_ns"] = t_ns
                arrays[f"{d.index}/{s}/value"] = value
        if self.cpu is not None:
            arrays.update(self.cpu.snapshot().arrays())
        arrays["report"] = np.array(json.dumps(self.report()))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, allow_pickle=False, **arrays)
        return path


class SavedTraces:
    """Traces written by ``Meter.save``, loaded back; measures windows the same way."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        with np.load(Path(path), allow_pickle=False) as data:
            self.report: dict[str, Any] = json.loads(str(data["report"]))
            self._arrays = {k: data[k] for k in data.files if k != "report"}
        self.devices = [DeviceInfo(**d) for d in self.report["devices"]]
        self._sets: dict[int, Any] = {}  # device index -> _native.TraceSet, made on first use
        self.cpu: CpuTraces | None = CpuTraces.from_arrays(
            self._arrays, tuple(self.report.get("cpu", {}).get("problems", ())))
        """The CPU's RAPL traces where the meter read them (``Meter(cpu=...)``), else None."""

    def _trace_set(self, d: DeviceInfo) -> Any:
        if d.index not in self._sets:
            caps = self.report["capabilities"][str(d.index)]
            # Files from before utilization was recorded have no entry for it.
            traces: dict[str, tuple[npt.ArrayLike, npt.ArrayLike]] = {
                s: self.trace_ns(s, d.index) for s in TRACES if caps.get(s, {}).get("available")}
            gaps = [tuple(g) for g in caps["samples"]["gaps"]]
            self._sets[d.index] = _native.TraceSet(traces, gaps)
        return self._sets[d.index]

    def trace_ns(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(time ns, value) of one trace (see TRACES) as saved."""
        _trace_index(source)
        index = self.devices[0].index if device is None else device
        return self._arrays[f"{index}/{source}/t_ns"], self._arrays[f"{index}/{source}/value"]

    def trace(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        t_ns, value = self.trace_ns(source, device)
        return t_ns / _NS, value

    def measure(self, start_s: float, end_s: float, name: str = "") -> Measurement:
        t0, t1 = int(round(start_s * _NS)), int(round(end_s * _NS))
        span_ns = self.report["calibration_min_span_ns"]
        # Files from before the bounded calibration span get the default reach.
        reach = {"calibration_reach_ns": self.report["calibration_reach_ns"]} \
            if "calibration_reach_ns" in self.report else {}
        measurement = _measurement(name, t0, t1, ((d.index, self._trace_set(d).energy(t0, t1, span_ns, **reach))
                                                  for d in self.devices))
        return measurement if self.cpu is None else replace(measurement, cpu=self.cpu.energy_ns(t0, t1))


def load_traces(path: str | os.PathLike[str]) -> SavedTraces:
    """Loads a file written by ``Meter.save``."""
    return SavedTraces(path)
