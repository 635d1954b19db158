"""One configuration (a loaded model at one batch size): warmup, idle baseline, measured
iterations, each measured by the native meter and by the 10 Hz reference method."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as _Protocol

import numpy as np

from .. import generation
from ..meter import DeviceInfo, Measurement, Meter
from ..reference import ReferenceMeter, ReferenceUnavailableError
from ..schema import vs_baseline_pct
from ..units import NAN, NS_PER_S
from .environment import EnergySetup


@dataclass(frozen=True)
class Protocol:
    """The measurement protocol (defaults are the seed's)."""
    new_tokens: int = 256
    warmup: int = 3
    warmup_tokens: int = 50
    iterations: int = 10
    idle_s: float = 10.0
    idle_settle_s: float = 1.0
    """Wait after the last iteration before the idle window starts."""


@dataclass
class Iteration:
    """One measured iteration: its windows on the meter's clock and their energies."""
    index: int
    start_ns: int
    first_token_ns: int
    end_ns: int
    tokens: int
    total: Measurement | None = None
    prefill: Measurement | None = None
    decode: Measurement | None = None
    ref_energy_j: float = NAN
    ref_samples: int = 0
    notes: list[str] = field(default_factory=list)
    """What a reader of this iteration's figures must know (``notes`` column)."""

    @property
    def gpu_busy_share(self) -> float:
        """Share of the iteration in which a kernel ran (NVML utilization samples); NaN
        where the meter has none."""
        return float(getattr(self.total, "gpu_busy_share", NAN)) if self.total is not None else NAN

    @property
    def start_s(self) -> float:
        return self.start_ns / NS_PER_S

    @property
    def end_s(self) -> float:
        return self.end_ns / NS_PER_S

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S

    @property
    def prefill_s(self) -> float:
        return (self.first_token_ns - self.start_ns) / NS_PER_S

    @property
    def decode_s(self) -> float:
        return (self.end_ns - self.first_token_ns) / NS_PER_S


@dataclass
class ConfigRun:
    """Everything one configuration measured; meters are stopped, traces still readable."""
    iterations: list[Iteration]
    idle_power_w: float = NAN
    ref_idle_power_w: float = NAN
    idle_window_s: tuple[float, float] = (NAN, NAN)
    meter: Meter | None = None
    reference: ReferenceMeter | None = None
    notes: list[str] = field(default_factory=list)
    """Notes on the whole configuration; each iteration carries its own."""
    token_ids: Any = None
    """The last iteration's generated ids (to compare regimes)."""
    same_tokens_as_eager: bool | None = None
    counter_check: CounterCheck | None = None
    """The native meter against the energy counter over the configuration's iterations."""

    def note(self, text: str, iteration: Iteration | None = None) -> None:
        """Records a note on the configuration, or on one iteration."""
        (iteration.notes if iteration is not None else self.notes).append(text)

    @property
    def all_notes(self) -> list[str]:
        """The configuration's notes, then every iteration's (prefixed with its index)."""
        return [*self.notes, *(f"iteration {it.index}: {n}" for it in self.iterations for n in it.notes)]


def host_stamped(timing: generation.Timing) -> bool:
    """True if a stream mark of ``timing`` lost its CUDA event (older than the core's event
    ring), so that host stamps, late by the driver's callback latency, placed its window."""
    return any(m.on_stream and not m.has_event for m in (timing.begin, timing.first_token, timing.end))


def _start_meters(energy: EnergySetup, notes: list[str]) -> tuple[Meter | None, ReferenceMeter | None]:
    index = energy.nvml_index
    if index is None:  # not energy.available: no GPU to measure
        return None, None
    meter = Meter(devices=[index])
    reference = ReferenceMeter(index, interval_s=0.1, nvml_library=energy.nvml_library)
    try:
        reference.start()
    except ReferenceUnavailableError as exc:
        notes.append(f"reference method unavailable: {exc}")
        return meter, None
    return meter, reference


def warmup_length(protocol: Protocol, k: int) -> int:
    """Tokens of warmup generation ``k``: the last one is as long as an iteration, so that no
    iteration meets a shape for the first time. (On the H200, after shorter warmups the first
    eager iteration runs at 0.36-0.66 of the median and later ones do not; the graph regime,
    whose shapes are fixed, has no such first iteration.)"""
    last = k == protocol.warmup - 1
    return max(protocol.warmup_tokens, protocol.new_tokens) if last else protocol.warmup_tokens


def run_configuration(generate: Callable[[int], generation.Timing], protocol: Protocol, energy: EnergySetup,
                      *, synchronize: Callable[[], None] = lambda: None,
                      step: Callable[[str], None] = lambda _what: None) -> ConfigRun:
    """Warmup, the measured iterations, then the idle baseline of one configuration.

    ``generate(new_tokens)`` runs one generation (either decode regime) and returns its
    marks. Both meters run from before the warmup to after the idle window, so their
    traces hold the whole configuration. No measured iteration starts cold: they follow
    the warmup directly (an idle window before them lets the clocks drop, and the first
    iteration then takes about twice as long). The idle baseline comes after them, once the GPU has
    settled for ``idle_settle_s`` (its power stays above idle ~100 ms after the last kernel,
    and the 1 s average that the reference reads lags a second), so it is read in the
    state the iterations ran in. ``step`` is called after each unit of work (progress).
    """
    notes: list[str] = []
    meter, reference = _start_meters(energy, notes)
    try:
        for k in range(protocol.warmup):
            generate(warmup_length(protocol, k))
            step("warmup")
        timings = []
        if meter is not None:
            synchronize()
            meter.read_now()  # a counter reading at the first iteration's start, for counter_check
        for _ in range(protocol.iterations):
            synchronize()  # the GPU is idle at each begin mark: iterations never overlap
            timings.append(generate(protocol.new_tokens))
            step("iteration")
        synchronize()
        if meter is not None:
            meter.read_now()  # and one at the last iteration's end
        iterations = [Iteration(k, *t.times_ns(), t.tokens) for k, t in enumerate(timings)]
        token_ids = timings[-1].token_ids
        if protocol.idle_s > 0:
            idle_start_s = max(time.monotonic(), iterations[-1].end_s + protocol.idle_settle_s)
            idle_end_s = idle_start_s + protocol.idle_s
            time.sleep(max(0.0, idle_end_s - time.monotonic()))
        else:
            idle_start_s = idle_end_s = time.monotonic()  # no baseline: net figures stay empty
        step("idle")
        run = ConfigRun(iterations, idle_window_s=(idle_start_s, idle_end_s), meter=meter,
                        reference=reference, notes=notes, token_ids=token_ids)
        for it, timing in zip(iterations, timings):
            if host_stamped(timing):
                run.note("a stream mark outlived the CUDA event ring: window placed by host stamps", it)
        _measure(run, meter, reference, idle_start_s, idle_end_s)
        return run
    finally:
        if meter is not None:
            meter.stop()
        if reference is not None:
            reference.stop()


def _measure(run: ConfigRun, meter: Meter | None, reference: ReferenceMeter | None,
             idle_start_s: float, idle_end_s: float) -> None:
    """Energies of the idle window and of every iteration's windows, by both methods.
    Anything that makes a figure less than it claims (no idle baseline, a window the data
    do not cover) becomes a note on the row."""
    idle_s = idle_end_s - idle_start_s
    if idle_s <= 0:
        run.note("no idle baseline (--idle-seconds 0): net-of-idle figures left empty")
    if meter is not None:
        if run.iterations:
            # Wait for readings past the last window, then stop: every figure below is then
            # what the saved traces give (the headline's calibration spans the whole trace).
            last_ns = max(run.iterations[-1].end_ns, int(idle_end_s * NS_PER_S))
            if not meter.measure_ns(last_ns, last_ns).complete:
                run.note("native meter: no reading past the last window's end before the wait timed out")
        meter.stop()
        if idle_s > 0:
            idle = meter.measure(idle_start_s, idle_end_s, "idle")
            run.idle_power_w = idle.energy_j / idle_s
            if not idle.complete:
                run.note("native meter: the data do not cover the whole idle window")
        for it in run.iterations:
            it.total = meter.measure_ns(it.start_ns, it.end_ns, f"iteration {it.index}")
            it.prefill = meter.measure_ns(it.start_ns, it.first_token_ns, f"prefill {it.index}")
            it.decode = meter.measure_ns(it.first_token_ns, it.end_ns, f"decode {it.index}")
            if not it.total.complete:
                run.note("the native meter's data do not cover the whole window", it)
        if run.iterations:
            run.counter_check = counter_check(meter, run.iterations[0].start_s, run.iterations[-1].end_s)
    if reference is not None and run.iterations:
        # The reference needs one reading past each window's end to interpolate it.
        if not reference.wait_past(max(run.iterations[-1].end_s, idle_end_s)):
            run.note("reference method: no reading past the last window's end before the wait timed out")
        if idle_s > 0:
            idle_ref = reference.energy_j(idle_start_s, idle_end_s)
            run.ref_idle_power_w = idle_ref.energy_j / idle_s
            if not idle_ref.complete:
                run.note("reference method: its readings do not cover the whole idle window")
        for it in run.iterations:
            ref = reference.energy_j(it.start_s, it.end_s)
            it.ref_energy_j, it.ref_samples = ref.energy_j, ref.samples
            if not ref.complete:
                run.note("reference method: its readings do not cover the whole window", it)
        if reference.errors:
            run.note(f"reference method: {reference.errors} NVML errors ({reference.last_error})")


def net(energy_j: float, idle_power_w: float, duration_s: float) -> float:
    """Energy net of idle: ``energy_j - idle_power_w * duration_s`` (NaN if either is)."""
    if math.isnan(energy_j) or math.isnan(idle_power_w):
        return NAN
    return energy_j - idle_power_w * duration_s


COUNTER_STEP_S = 0.1
"""How often the energy counter (nvmlDeviceGetTotalEnergyConsumption) changes on Volta and
later: each of its readings is up to this old, so a difference of two is uncertain by about
this much time at the power of the moment."""


@dataclass(frozen=True)
class CounterCheck:
    """The native meter's energy and the counter's difference over the same seconds."""
    native_j: float
    counter_j: float
    span_s: float
    """Seconds between the two counter readings compared (summed over GPUs: the shortest)."""

    @property
    def pct(self) -> float:
        """100 * (native - counter) / counter."""
        return vs_baseline_pct(self.native_j, self.counter_j)

    @property
    def resolution_pct(self) -> float:
        return counter_resolution_pct(self.span_s)


def counter_resolution_pct(span_s: float) -> float:
    """How far the counter alone can be off over ``span_s`` seconds, in percent."""
    return 100 * COUNTER_STEP_S / span_s if span_s > 0 else math.inf


class _Traces(_Protocol):
    """What counter_check reads: a live Meter or SavedTraces."""
    devices: list[DeviceInfo]

    def trace(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def measure(self, start_s: float, end_s: float, name: str = "") -> Measurement: ...


def counter_check(traces: _Traces, start_s: float, end_s: float) -> CounterCheck | None:
    """The native meter against the energy counter between each GPU's counter readings
    nearest ``start_s`` and ``end_s``: both measure exactly those seconds, so no reading is
    interpolated across a change of load (which biased a check over a few seconds by several
    percent when the counter is read once a second). None without two readings."""
    native_j = counter_j = 0.0
    span_s = math.inf
    for d in traces.devices:
        t_s, energy_j = traces.trace("counter", d.index)
        if len(t_s) < 2:
            return None
        a, z = int(np.argmin(np.abs(t_s - start_s))), int(np.argmin(np.abs(t_s - end_s)))
        if z <= a:
            return None
        native_j += traces.measure(float(t_s[a]), float(t_s[z])).devices[d.index].energy_j
        counter_j += float(energy_j[z] - energy_j[a])
        span_s = min(span_s, float(t_s[z] - t_s[a]))
    return CounterCheck(native_j, counter_j, span_s) if traces.devices else None


def source_energy_j(m: Measurement | None, source: str) -> float:
    """One NVML source's energy of a window (NaN where unmeasured)."""
    return m.source_energy_j(source) if m is not None else NAN

