"""The methods under test, each giving a window's energy in joules.

- ``headline``: the native meter's figure (driver samples scaled to the energy counter);
- ``samples``, ``instant``, ``average``, ``counter``: the native meter per NVML source;
- ``reference_10hz``: the seed's method done right, ``nvmlDeviceGetPowerUsage`` polled at
  10 Hz by a Python thread and integrated by the trapezoid rule (``ecomeasure.reference``);
- ``counter_at_edges``: the energy counter read on the host right before the work is
  launched and right after the host sees it finish, no interpolation (what Zeus and
  CodeCarbon do). Only for bursts: a steady load's inner windows have no host-side edges.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..meter import DEFAULT_WAIT_S, Measurement
from ..reference import ReferenceEnergy, ReferenceUnavailableError, bind_library
from ..units import NAN, NS_PER_S


class MeterTraces(Protocol):
    """What the evaluation reads of a meter: a running or stopped ``Meter``, or saved traces
    (``saved.SavedMeter``)."""

    def trace(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def trace_ns(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def measure_ns(self, start_ns: int, end_ns: int, name: str = "",
                   wait_s: float = DEFAULT_WAIT_S) -> Measurement: ...


class ReferenceReadings(Protocol):
    """What the evaluation reads of the 10 Hz reference: a ``ReferenceMeter``, or its saved
    readings (``saved.SavedReference``)."""

    def samples(self) -> tuple[np.ndarray, np.ndarray]: ...

    def energy_j(self, t0_s: float, t1_s: float) -> ReferenceEnergy: ...

METHODS: tuple[str, ...] = ("headline", "samples", "instant", "average", "counter",
                            "reference_10hz", "counter_at_edges")
DESCRIPTION = {
    "headline": "native meter, headline (driver samples scaled to the counter)",
    "samples": "native meter, driver sample buffer (~20 ms)",
    "instant": "native meter, instant power (field 186)",
    "average": "native meter, average power (nvmlDeviceGetPowerUsage, ~1 s average)",
    "counter": "native meter, energy counter interpolated at the window's edges",
    "reference_10hz": "10 Hz reference: nvmlDeviceGetPowerUsage polled in Python (the seed's)",
    "counter_at_edges": "energy counter read on the host at the edges, no interpolation (Zeus, CodeCarbon)",
}


class EdgeCounter:
    """Reads ``nvmlDeviceGetTotalEnergyConsumption`` through nvidia-ml-py, on the caller's
    thread, as Zeus and CodeCarbon do at the edges of a window. Each read costs ~3-4 ms."""

    def __init__(self, nvml_index: int, nvml_library: str | os.PathLike[str] | None = None) -> None:
        """Raises ReferenceUnavailableError where nvidia-ml-py or NVML cannot be used."""
        try:
            import pynvml
        except ImportError as exc:
            raise ReferenceUnavailableError("nvidia-ml-py is not installed: pip install nvidia-ml-py") from exc
        try:
            if nvml_library:
                bind_library(pynvml, os.fspath(nvml_library))  # the library the meter reads
            pynvml.nvmlInit()
        except (pynvml.NVMLError, OSError) as exc:
            raise ReferenceUnavailableError(f"NVML could not be initialized by nvidia-ml-py: {exc}") from exc
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(int(nvml_index))
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise ReferenceUnavailableError(f"NVML device {nvml_index}: {exc}") from exc
        self._pynvml = pynvml
        self._open = True

    def read_j(self) -> float:
        """The counter now, in joules (NaN if NVML refuses)."""
        try:
            return self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
        except self._pynvml.NVMLError:
            return NAN

    def close(self) -> None:
        if self._open:
            self._open = False
            self._pynvml.nvmlShutdown()


@dataclass(frozen=True)
class WindowEnergies:
    """Every method's energy of one window."""
    energy_j: dict[str, float]
    headline_method: str
    complete: bool
    """Whether the native meter's data cover the whole window (no lost driver samples)."""


def window_energies(meter: MeterTraces, reference: ReferenceReadings | None, start_ns: int, end_ns: int,
                    counter_edges_j: tuple[float, float] = (NAN, NAN)) -> WindowEnergies:
    """Every method's energy over [start_ns, end_ns] on the meter's clock."""
    m = meter.measure_ns(start_ns, end_ns)
    energy = {"headline": m.energy_j}
    for source in ("samples", "instant", "average", "counter"):
        energy[source] = m.source_energy_j(source)
    energy["reference_10hz"] = (reference.energy_j(start_ns / NS_PER_S, end_ns / NS_PER_S).energy_j
                                if reference is not None else NAN)
    before, after = counter_edges_j
    energy["counter_at_edges"] = after - before
    return WindowEnergies(energy, m.method, m.complete)
