"""The seed study's 10 Hz power method, done right: the baseline the native meter is set beside.

A Python thread reads ``nvmlDeviceGetPowerUsage`` through nvidia-ml-py every 100 ms *while*
the generation runs (the seed's script only polled after it had finished), stamps every
reading with ``time.monotonic()``, and integrates by the trapezoid rule over any window
(the seed multiplied mean power by time). The study: "Energy Efficiency of Quantized LLM
Inference", Hongping Zhang, https://github.com/hongping-zh/ecocompute-ai.

On Ampere and newer GPUs this call returns a ~1 s moving average, so the method lags short
windows; that error is what the comparison with the native meter shows.
"""
from __future__ import annotations

import csv
import ctypes
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import _native
from .units import NAN, NS_PER_S


class ReferenceEnergy(NamedTuple):
    """Energy over a window by the reference method."""
    energy_j: float
    samples: int
    """Readings inside the window."""
    complete: bool
    """Whether readings exist on both sides of the window (else its edges were extrapolated)."""


class ReferenceUnavailableError(RuntimeError):
    """nvidia-ml-py or NVML cannot be used."""


def bind_library(pynvml: Any, path: str) -> None:
    """Makes pynvml use the NVML library file ``path`` (e.g. ``ECOMEASURE_NVML_LIBRARY``),
    so that the reference reads the same library as the native meter. pynvml itself only
    ever opens ``libnvidia-ml.so.1`` from the loader's search path."""
    with pynvml.libLoadLock:
        if pynvml.nvmlLib is None:
            pynvml.nvmlLib = ctypes.CDLL(path)


class ReferenceMeter:
    """Polls ``nvmlDeviceGetPowerUsage`` of one GPU every ``interval_s`` in a Python thread.

    >>> ref = ReferenceMeter(nvml_index=0).start()          # doctest: +SKIP
    >>> ...; ref.energy_j(t0_s, t1_s).energy_j; ref.stop()
    """

    def __init__(self, nvml_index: int = 0, interval_s: float = 0.1,
                 nvml_library: str | os.PathLike[str] | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.nvml_index = int(nvml_index)
        self.interval_s = float(interval_s)
        self.nvml_library = os.fspath(nvml_library) if nvml_library else None
        self.errors = 0
        """NVML errors met while sampling (counted, not fatal)."""
        self.last_error = ""
        self._t_ns: list[int] = []
        self._power_w: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None  # pynvml (untyped) while running

    # lifecycle -----------------------------------------------------------------------
    def start(self) -> ReferenceMeter:
        """Initializes NVML and starts the sampling thread. Raises ReferenceUnavailableError."""
        if self._thread is not None:
            return self
        try:
            import pynvml
        except ImportError as exc:
            raise ReferenceUnavailableError("nvidia-ml-py is not installed: pip install nvidia-ml-py") from exc
        try:
            if self.nvml_library:
                bind_library(pynvml, self.nvml_library)
            pynvml.nvmlInit()
        except (pynvml.NVMLError, OSError) as exc:
            raise ReferenceUnavailableError(f"NVML could not be initialized by nvidia-ml-py: {exc}") from exc
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.nvml_index)
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise ReferenceUnavailableError(f"NVML device {self.nvml_index}: {exc}") from exc
        self._nvml = pynvml
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(pynvml, handle),
                                        name="ecomeasure-reference", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the thread and shuts NVML down; idempotent. Samples stay readable."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> ReferenceMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, pynvml: Any, handle: object) -> None:
        # An absolute schedule (k * interval) so the rate does not drift with call costs;
        # after a stall it resumes from now rather than firing a burst of late reads.
        next_s = time.monotonic()
        while not self._stop.is_set():
            try:
                power_mw = pynvml.nvmlDeviceGetPowerUsage(handle)
                t_ns = time.monotonic_ns()
                with self._lock:
                    self._t_ns.append(t_ns)
                    self._power_w.append(power_mw / 1000.0)
            except pynvml.NVMLError as exc:
                self.errors += 1
                self.last_error = str(exc)
            next_s += self.interval_s
            delay_s = next_s - time.monotonic()
            if delay_s < 0:
                next_s, delay_s = time.monotonic(), 0.0
            self._stop.wait(delay_s)

    # readings ------------------------------------------------------------------------
    def samples_ns(self) -> tuple[np.ndarray, np.ndarray]:
        """(time ns on the monotonic clock, power W) of every reading so far."""
        with self._lock:
            return np.array(self._t_ns, dtype=np.int64), np.array(self._power_w, dtype=np.float64)

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(time s on ``time.monotonic()``, power W) of every reading so far."""
        t_ns, power_w = self.samples_ns()
        return t_ns / NS_PER_S, power_w

    def wait_past(self, t_s: float, timeout_s: float | None = None) -> bool:
        """Waits until a reading later than ``t_s`` exists (at most ``timeout_s``, default
        three intervals); True if one does."""
        deadline = time.monotonic() + (3 * self.interval_s if timeout_s is None else timeout_s)
        t_ns = int(round(t_s * NS_PER_S))
        while True:
            with self._lock:
                if self._t_ns and self._t_ns[-1] > t_ns:
                    return True
            if not self.running or time.monotonic() >= deadline:
                return False
            time.sleep(min(self.interval_s / 4, 0.02))

    def energy_j(self, t0_s: float, t1_s: float) -> ReferenceEnergy:
        """Trapezoid energy of the readings over [t0_s, t1_s] (monotonic seconds), the curve
        interpolated at the edges (integration by ``ecomeasure._native.trapezoid``)."""
        if t1_s < t0_s:
            raise ValueError("a window cannot end before it begins")
        t_ns, power_w = self.samples_ns()
        if len(t_ns) == 0:
            return ReferenceEnergy(NAN, 0, False)
        energy_j, inside, covered = _native.trapezoid(t_ns, power_w, int(round(t0_s * NS_PER_S)),
                                                      int(round(t1_s * NS_PER_S)))
        return ReferenceEnergy(float(energy_j), int(inside), bool(covered))

    def power_w(self, t0_s: float, t1_s: float) -> float:
        """Mean power over [t0_s, t1_s]: ``energy_j / duration``."""
        duration_s = t1_s - t0_s
        return self.energy_j(t0_s, t1_s).energy_j / duration_s if duration_s > 0 else NAN

    def save_csv(self, path: str | os.PathLike[str]) -> Path:
        """Writes every reading as ``time_s,power_w`` (monotonic seconds, watts)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        t_ns, power_w = self.samples_ns()
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["time_s", "power_w"])
            writer.writerows((f"{t / NS_PER_S:.9f}", f"{p:.3f}") for t, p in zip(t_ns.tolist(), power_w.tolist()))
        return path
