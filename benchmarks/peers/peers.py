"""ecomeasure beside the meters users would pick instead: Zeus and CodeCarbon, same windows, one run.

    python -m benchmarks.peers.peers --out peers-run            # ~5 min of GPU time at the defaults

On one GPU, every window is measured by every method at once, nested (the nesting order
rotates from window to window, so no method is always the outermost):

- ``ecomeasure``: ``Meter.begin_window`` / ``end_window`` (host edges on the steady load, the
  CUDA stream's marks on bursts), the headline figure;
- ``zeus_monitor``: ``ZeusMonitor.begin_window`` / ``end_window`` with its default
  synchronisation (``torch.cuda.synchronize``), ``Measurement.gpu_energy``: the energy counter
  read at the window's edges;
- ``zeus_power``: ``PowerMonitor`` (its default, inferred update period) and
  ``get_energy(start, end)`` called as the window ends, with ``time.time()`` edges;
- ``codecarbon_15s`` / ``codecarbon_1s``: an ``OfflineEmissionsTracker`` per window
  (``stop()`` ends a tracker for good), ``start()`` / ``stop()``,
  ``final_emissions_data.gpu_energy`` (kWh), at its default ``measure_power_secs`` (15 s) and at
  1 s (the period of its own power monitor; it documents no shorter one);
- ``seed_10hz``: the seed's method, ``nvmlDeviceGetPowerUsage`` polled at 10 Hz
  (``ecomeasure.reference``), integrated over the window after the run.

Two workloads, each window's truth set against each method's *own* window length:

- ``steady``: a matmul loop kept on the GPU by another process; truth = the local steady
  power (a least-squares line through the energy counter's readings within ``--fit-reach-s``
  of the window's centre, all inside the load) times the method's own window length;
- ``bursts``: isolated bursts of matmuls (``MatmulWorkload`` of the validation), each window
  around one burst; truth = the validation's differential truth (``differential_truth``: run A
  of bursts, run B of idle, the counter over the long runs only) for the burst, plus the idle
  power times the rest of the method's window. Windows end when the work does, so the ~0.1 s
  above idle after a burst (counted by the truth) lies outside every method's window.

Each method's per-window **caller cost** is the caller's time inside its begin and end calls
(``time.perf_counter``); its **time to result** adds the first read of the window's energy,
made right after the window (ecomeasure's ``end_window`` returns at once and computes when read,
waiting for readings past the end; the 10 Hz method waits for one reading past the end; Zeus
and CodeCarbon compute inside their end call). Zeus and CodeCarbon are optional (``pip install "ecomeasure[peers]"``);
a missing one is said in one line and its columns read "not installed". Zeus imports
scikit-learn for one function, ``sklearn.metrics.auc`` (the trapezoid rule); where scikit-learn
is missing, this script registers a stand-in with the same function (``_stand_in_for_sklearn``).

Output under ``--out``: ``windows.csv`` (every window, method, energy, own length, truth and its
inputs), ``summary.csv``, ``table.md`` (printed last, ready to paste), ``run.json``, and the
meter's traces ``traces.npz`` (``ecomeasure.load_traces``), from which every truth is recomputed.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.machinery
import importlib.metadata
import json
import logging
import math
import multiprocessing as mp
import platform
import random
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ecomeasure import errors
from ecomeasure.units import NAN, NS_PER_S

PEERS = {"zeus": "zeus==0.16.0", "codecarbon": "codecarbon==3.3.2"}
METHODS = ("ecomeasure", "zeus_monitor", "zeus_power", "codecarbon_15s", "codecarbon_1s", "seed_10hz")
PACKAGE_OF = {"zeus_monitor": "zeus", "zeus_power": "zeus", "codecarbon_15s": "codecarbon",
              "codecarbon_1s": "codecarbon"}
DEFAULT_LENGTHS_S = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
CALIBRATION_SPAN_S = 30.0
"""ecomeasure's headline scales the driver samples to the counter once its readings span 30 s."""


# --- optional peers ----------------------------------------------------------------------------

def missing_line(package: str, error: BaseException | str) -> str:
    """The one line said when a peer cannot be imported."""
    return (f"peers: {package} is not available ({error}); its columns say 'not installed'. "
            f"Install it with: pip install \"ecomeasure[peers]\" (or {PEERS[package]})")


def _stand_in_for_sklearn() -> bool:
    """Registers ``sklearn.metrics.auc`` (the trapezoid rule, as scikit-learn computes it) where
    scikit-learn is not installed; zeus.monitor.power imports it for nothing else. Runs when this
    file is imported, so that PowerMonitor's pollers, spawned processes that re-import it, get it
    too. Returns whether the stand-in was registered."""
    try:
        import sklearn.metrics  # noqa: F401
        return False
    except ImportError:
        pass

    def auc(x, y) -> float:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.shape[0] < 2:
            raise ValueError(f"At least 2 points are needed to compute area under curve, but x.shape = {x.shape[0]}")
        step = np.diff(x)
        direction = 1.0
        if np.any(step < 0):
            if not np.all(step <= 0):
                raise ValueError(f"x is neither increasing nor decreasing : {x}.")
            direction = -1.0
        trapezoid = getattr(np, "trapezoid", None) or np.trapz
        return float(direction * trapezoid(y, x))

    sklearn, metrics = types.ModuleType("sklearn"), types.ModuleType("sklearn.metrics")
    sklearn.__spec__ = importlib.machinery.ModuleSpec("sklearn", None, is_package=True)
    metrics.__spec__ = importlib.machinery.ModuleSpec("sklearn.metrics", None)
    metrics.auc = auc
    sklearn.metrics = metrics
    sklearn.__ecomeasure_stand_in__ = True
    sys.modules["sklearn"], sys.modules["sklearn.metrics"] = sklearn, metrics
    return True


# As a script only (and in the processes it spawns, which import it as __mp_main__): a test
# importing this file must not leave a stand-in scikit-learn behind.
SKLEARN_STAND_IN = _stand_in_for_sklearn() if __name__ in ("__main__", "__mp_main__") else False


def import_peers() -> dict[str, object]:
    """{package: module, or the reason it is missing (a str)}."""
    found: dict[str, object] = {}
    try:
        import zeus.monitor
        found["zeus"] = zeus.monitor
    except Exception as exc:  # ImportError, or a broken install
        found["zeus"] = errors.summarize(exc)
    try:
        import codecarbon
        found["codecarbon"] = codecarbon
    except Exception as exc:
        found["codecarbon"] = errors.summarize(exc)
    return found


# --- the methods ---------------------------------------------------------------------------------

Result = Callable[[], tuple[float, float]]
"""Called right after the window: its (energy J, the method's own window length s)."""


class EcoMethod:
    def __init__(self, meter, stream=None) -> None:
        self.meter, self.stream, self.n = meter, stream, 0

    def begin(self) -> None:
        self.n += 1
        self.meter.begin_window(f"w{self.n}", stream=self.stream)

    def end(self) -> Result:
        # Closing costs only the end mark; the figures are computed when the result is read.
        m = self.meter.end_window(f"w{self.n}", stream=self.stream)

        def result() -> tuple[float, float]:
            self.last_method = m.method
            return m.energy_j, m.duration_s
        return result


class ZeusMonitorMethod:
    def __init__(self, zeus_monitor, cuda_index: int) -> None:
        self.index = cuda_index
        self.monitor = zeus_monitor.ZeusMonitor(gpu_indices=[cuda_index], cpu_indices=[])

    def begin(self) -> None:
        self.monitor.begin_window("w")

    def end(self) -> Result:
        m = self.monitor.end_window("w")
        energy, length = m.gpu_energy[self.index], m.time
        return lambda: (energy, length)


class ZeusPowerMethod:
    def __init__(self, zeus_monitor, cuda_index: int) -> None:
        self.index = cuda_index
        self.monitor = zeus_monitor.PowerMonitor(gpu_indices=[cuda_index])

    def begin(self) -> None:
        self.t0 = time.time()

    def end(self) -> Result:
        t1 = time.time()
        energy = (self.monitor.get_energy(self.t0, t1) or {}).get(self.index, NAN)
        length = t1 - self.t0
        return lambda: (energy, length)


class CodeCarbonMethod:
    def __init__(self, codecarbon, nvml_index: int, interval_s: float) -> None:
        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it logs each tracker's init
        self.make = lambda: codecarbon.OfflineEmissionsTracker(
            country_iso_code="USA", measure_power_secs=interval_s, gpu_ids=[nvml_index],
            save_to_file=False, log_level="error")
        warm = self.make()  # the first tracker detects the hardware (~1 s); later ones reuse it
        warm.start()
        warm.stop()

    def begin(self) -> None:
        self.tracker = self.make()
        self.tracker.start()

    def end(self) -> Result:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        energy, length = data.gpu_energy * 3.6e6, data.duration  # kWh -> J
        return lambda: (energy, length)


class SeedMethod:
    def __init__(self, reference) -> None:
        self.reference = reference

    def begin(self) -> None:
        self.t0 = time.monotonic()

    def end(self) -> Result:
        t0, t1 = self.t0, time.monotonic()

        def result() -> tuple[float, float]:
            self.reference.wait_past(t1)  # its trapezoid needs a reading past the end
            return self.reference.energy_j(t0, t1).energy_j, t1 - t0
        return result


# --- the truth and the analysis (pure) --------------------------------------------------------

def local_power_w(counter_t_s: np.ndarray, counter_j: np.ndarray, center_s: float, reach_s: float,
                  lo_s: float, hi_s: float) -> float:
    """The slope of a least-squares line through the cumulative counter readings within
    ``reach_s`` of ``center_s`` and inside [lo_s, hi_s] (the steady load): its local power.
    NaN with fewer than three readings."""
    t, e = np.asarray(counter_t_s, dtype=float), np.asarray(counter_j, dtype=float)
    keep = (t >= max(lo_s, center_s - reach_s)) & (t <= min(hi_s, center_s + reach_s))
    if np.count_nonzero(keep) < 3:
        return NAN
    return float(np.polyfit(t[keep] - center_s, e[keep], 1)[0])


def burst_window_truth_j(burst_w: float, idle_w: float, burst_s: float, window_s: float) -> float:
    """A window around one burst: the burst at the truth's burst power, the rest of the window
    at its idle power."""
    return burst_w * burst_s + idle_w * max(0.0, window_s - burst_s)


@dataclass(frozen=True)
class Row:
    """One method's measurement of one window."""
    workload: str
    length_s: float
    window: int
    method: str
    energy_j: float
    own_length_s: float
    truth_j: float
    begin_s: float
    end_s: float
    truth_power_w: float = NAN
    """Steady: the local power; bursts: the truth's burst power."""
    idle_w: float = NAN
    burst_s: float = NAN
    read_s: float = NAN
    """The first read of the result, right after the window (NaN in runs made before it was timed)."""
    note: str = ""

    @property
    def error(self) -> float:
        return (self.energy_j - self.truth_j) / self.truth_j if self.truth_j else NAN


@dataclass(frozen=True)
class Summary:
    workload: str
    length_s: float
    method: str
    n: int
    median_abs_error: float
    worst_error: float
    """The signed error of largest magnitude."""
    median_overhead_ms: float
    """Median of begin + end, ms: the caller's cost."""
    median_result_ms: float = NAN
    """Median of end + the first read: from the window's end to its energy, ms."""
    note: str = ""


def summarize(rows: list[Row], unavailable: dict[str, str] | None = None) -> list[Summary]:
    """One line per (workload, length, method): workloads in the order met, lengths ascending;
    ``unavailable``: method -> why it has no rows (e.g. "not installed")."""
    unavailable = unavailable or {}
    groups: dict[tuple[str, float], dict[str, list[Row]]] = {}
    for r in rows:
        groups.setdefault((r.workload, r.length_s), {}).setdefault(r.method, []).append(r)
    workloads = list(dict.fromkeys(w for w, _ in groups))
    out = []
    for (workload, length), by_method in sorted(groups.items(), key=lambda g: (workloads.index(g[0][0]), g[0][1])):
        for method in METHODS:
            rs = by_method.get(method, [])
            errors = np.array([r.error for r in rs], dtype=float)
            errors = errors[np.isfinite(errors)]
            overhead = [1e3 * (r.begin_s + r.end_s) for r in rs]
            to_result = [1e3 * (r.end_s + r.read_s) for r in rs if math.isfinite(r.read_s)]
            result_ms = float(np.median(to_result)) if to_result else NAN
            if len(errors) == 0:
                note = unavailable.get(method) or ("failed: " + rs[0].note if rs and rs[0].note else "no data")
                out.append(Summary(workload, length, method, 0, NAN, NAN,
                                   float(np.median(overhead)) if overhead else NAN, result_ms, note))
                continue
            worst = float(errors[int(np.argmax(np.abs(errors)))])
            out.append(Summary(workload, length, method, len(errors), float(np.median(np.abs(errors))),
                               worst, float(np.median(overhead)), result_ms))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %" if abs(x) < 0.1 else f"{100 * x:.1f} %"


def markdown_table(summary: list[Summary]) -> str:
    """Median |error| (worst signed error) per workload and length, a column per method; then
    each method's median caller cost per window, and its median time to result."""
    head = "| workload | window | " + " | ".join(METHODS) + " |"
    lines = [head, "|" + "---|" * (len(METHODS) + 2)]
    cells: dict[tuple[str, float], dict[str, str]] = {}
    for s in summary:
        text = s.note if s.n == 0 else f"{_pct(s.median_abs_error)} ({_pct(s.worst_error)})"
        cells.setdefault((s.workload, s.length_s), {})[s.method] = text
    for (workload, length), row in cells.items():
        lines.append(f"| {workload} | {length:g} s | " + " | ".join(row.get(m, "-") for m in METHODS) + " |")
    for title, figure in (("caller cost per window (begin + end, median ms)", "median_overhead_ms"),
                          ("time to result (end + first read, median ms)", "median_result_ms")):
        lines += ["", f"| {title} | " + " | ".join(METHODS) + " |", "|" + "---|" * (len(METHODS) + 1)]
        for workload in dict.fromkeys(s.workload for s in summary):
            values = []
            for m in METHODS:
                ms = [getattr(s, figure) for s in summary if s.workload == workload and s.method == m
                      and s.n > 0 and math.isfinite(getattr(s, figure))]
                values.append(f"{np.median(ms):.2f}" if ms else "-")
            lines.append(f"| {workload} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def windows_per_length(length_s: float, repetitions: int, target_s: float) -> int:
    """At least ``repetitions`` windows, and at least ``target_s`` of windows per length."""
    return max(repetitions, math.ceil(target_s / length_s - 1e-9))


def planned_s(lengths_s, repetitions: int, target_s: float, gap_s: float, edge_s: float,
              warm_s: float = CALIBRATION_SPAN_S, after_s: float = 5.0) -> float:
    """The plan's duration, before per-window overheads and start-up: the steady load (warm
    up, windows, a tail for the fit), then per length a run A of bursts and gaps between idle
    edges and a run B of idle as long."""
    steady = warm_s + after_s + sum(windows_per_length(L, repetitions, target_s) * L for L in lengths_s)
    bursts = sum(2 * (2 * edge_s + windows_per_length(L, repetitions, target_s) * (L + gap_s * 1.1))
                 for L in lengths_s)
    return steady + bursts


# --- the run (GPU) -------------------------------------------------------------------------------

def _steady_load(backend_name: str, cuda_index: int, ready, stop) -> None:
    """Another process: matmuls back to back until told to stop."""
    from ecomeasure.validate import open_backend
    backend = open_backend(backend_name, cuda_index)
    backend.launch(10)
    backend.synchronize()
    ready.set()
    while not stop.is_set():
        backend.launch(20)
        backend.synchronize()


def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)


def measure_window(methods: dict[str, object], shift: int, body: Callable[[], object]):
    """Begins every method (rotated by ``shift``), runs ``body``, ends them in reverse order,
    then reads each result in that order. Returns body's value and {method: (result or None,
    begin s, end s, error text, first read s)}."""
    order = list(methods)
    order = order[shift % len(order):] + order[:shift % len(order)]
    timing: dict[str, list] = {}
    for name in order:
        t = time.perf_counter()
        try:
            methods[name].begin()
            error = ""
        except Exception as exc:
            error = errors.summarize(exc)
        timing[name] = [None, time.perf_counter() - t, NAN, error, NAN]
    value = body()
    for name in reversed(order):
        if timing[name][3]:
            continue
        t = time.perf_counter()
        try:
            timing[name][0] = methods[name].end()
        except Exception as exc:
            timing[name][3] = errors.summarize(exc)
        timing[name][2] = time.perf_counter() - t
    for name in reversed(order):
        result = timing[name][0]
        if result is None:
            continue
        t = time.perf_counter()
        try:
            figures = result()
        except Exception as exc:
            timing[name][0], timing[name][3] = None, errors.summarize(exc)
        else:
            timing[name][0] = lambda figures=figures: figures
        timing[name][4] = time.perf_counter() - t
    return value, timing


def _rows(workload: str, length: float, index: int, timing: dict, truth: Callable[[float], float],
          **extra) -> list[Row]:
    out = []
    for name, (result, begin_s, end_s, error, read_s) in timing.items():
        energy, own = result() if result is not None else (NAN, NAN)
        out.append(Row(workload, length, index, name, float(energy), float(own),
                       truth(own) if math.isfinite(own) else NAN, begin_s, end_s, read_s=read_s, note=error,
                       **extra))
    return out


class PeersError(RuntimeError):
    """The comparison cannot run here (no GPU, no NVML, no pynvml, ...): one line, exit 1."""


def note_missing_peers(peers: dict[str, object]) -> dict[str, str]:
    """Prints a line per peer package that is not installed; returns their methods, each
    marked "not installed" (its columns say so)."""
    unavailable = {}
    for package, found in peers.items():
        if isinstance(found, str):
            print(missing_line(package, found), flush=True)
            unavailable.update({m: "not installed" for m, p in PACKAGE_OF.items() if p == package})
    if SKLEARN_STAND_IN and not isinstance(peers["zeus"], str):
        print("peers: scikit-learn is not installed; zeus runs with a stand-in for sklearn.metrics.auc "
              "(the trapezoid rule), the one function it imports from it", flush=True)
    return unavailable


def open_gpu(args: argparse.Namespace):
    """The matmul backend on CUDA device ``args.device`` and the NVML GPU that is that device."""
    from ecomeasure import Meter, NVMLUnavailableError
    from ecomeasure.validate import open_backend

    try:
        backend = open_backend(args.backend, args.device)
        probe = Meter(devices="all", start=False)
    except (RuntimeError, NVMLUnavailableError) as error:
        raise PeersError(str(error)) from error
    gpus = [d for d in probe.devices if backend.matches(d)]
    probe.close()
    if not gpus:
        raise PeersError(f"CUDA device {args.device} is not among NVML's GPUs")
    return backend, gpus[0]


def start_reference(nvml_index: int):
    """The seed's 10 Hz method on that GPU, started."""
    from ecomeasure.reference import ReferenceMeter, ReferenceUnavailableError

    reference = ReferenceMeter(nvml_index, interval_s=0.1)
    try:
        reference.start()
    except ReferenceUnavailableError as error:
        raise PeersError(f"the seed's 10 Hz method needs nvidia-ml-py: {error}") from error
    return reference


def start_methods(peers: dict[str, object], args: argparse.Namespace, nvml_index: int, meter, reference,
                  unavailable: dict[str, str]) -> dict[str, object]:
    """Every method, created once (CodeCarbon: a tracker per window, see CodeCarbonMethod); one
    that cannot start is marked "failed" in ``unavailable`` and left out."""
    factories = {
        "zeus_monitor": lambda: ZeusMonitorMethod(peers["zeus"], args.device),
        "zeus_power": lambda: ZeusPowerMethod(peers["zeus"], args.device),
        "codecarbon_15s": lambda: CodeCarbonMethod(peers["codecarbon"], nvml_index, 15.0),
        "codecarbon_1s": lambda: CodeCarbonMethod(peers["codecarbon"], nvml_index, 1.0),
        "seed_10hz": lambda: SeedMethod(reference),
    }
    methods: dict[str, object] = {"ecomeasure": EcoMethod(meter)}
    for name, make in factories.items():
        if name in unavailable:
            continue
        try:
            methods[name] = make()
        except Exception as exc:
            print(f"peers: {name} could not start ({errors.summarize(exc)}); its columns say 'failed'", flush=True)
            unavailable[name] = "failed"
    return methods


def measure_steady(args: argparse.Namespace, backend, methods: dict[str, object], order: list[float],
                   meter_start: float) -> tuple[list[tuple], float, float]:
    """Windows of the given lengths (in that order) under a steady load kept by another process;
    returns them as (length, index, timing, centre s) and the load's start and end."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    load = ctx.Process(target=_steady_load, args=(backend.name, args.device, ready, stop), daemon=True)
    load.start()
    if not ready.wait(180):
        load.kill()
        raise PeersError("the steady-load process did not start")
    load_start = time.monotonic()
    _sleep_until(max(load_start + args.settle_s + args.fit_reach_s / 2, meter_start + CALIBRATION_SPAN_S + 1))
    windows = []
    for i, length in enumerate(order):
        t0 = time.monotonic()
        _, timing = measure_window(methods, i, lambda length=length: time.sleep(length))
        windows.append((length, i, timing, (t0 + time.monotonic()) / 2))
    _sleep_until(time.monotonic() + args.fit_reach_s / 2)
    load_end = time.monotonic()
    stop.set()
    load.join(30)
    return windows, load_start, load_end


def measure_bursts(args: argparse.Namespace, methods: dict[str, object], workload, counts: dict[float, int],
                   rng: random.Random) -> list[tuple]:
    """Isolated bursts: per length, run A (bursts in gaps) then run B (idle as long); returns
    (length, run A ns, run B ns, [(burst, timing)]) per length."""
    time.sleep(args.edge_s + 2)  # the load's tail: away from run A's start
    items = []
    index = 0
    for length in args.lengths:
        a0 = time.monotonic_ns()
        time.sleep(args.edge_s)
        windows = []
        for _ in range(counts[length]):
            burst, timing = measure_window(methods, index, lambda length=length: workload.burst(length))
            windows.append((burst, timing))
            index += 1
            time.sleep(args.gap_s * rng.uniform(1.0, 1.2))
        time.sleep(max(0.0, args.edge_s - args.gap_s))
        a1 = time.monotonic_ns()
        time.sleep((a1 - a0) / NS_PER_S)
        items.append((length, (a0, a1), (a1, time.monotonic_ns()), windows))
        print(f"bursts {length:g} s: {len(windows)} windows done", flush=True)
    return items


def score(meter, args: argparse.Namespace, steady: list[tuple], load_s: tuple[float, float],
          bursts: list[tuple]) -> list[Row]:
    """Each window's truth (steady: the counter's local slope; bursts: the differential truth of
    its run pair), then every method's result against it."""
    from ecomeasure.validate import differential_truth

    t_s, e_j = meter.trace("counter")
    t_ns, _ = meter.trace_ns("counter")
    rows: list[Row] = []
    lo, hi = load_s[0] + args.settle_s, load_s[1] - 1.0
    for length, i, timing, centre in steady:
        power = local_power_w(t_s, e_j, centre, args.fit_reach_s, lo, hi)
        rows += _rows("steady", length, i, timing, lambda own, p=power: p * own, truth_power_w=power)
    spans = [b.start.span_ns(b.end) for _, _, _, ws in bursts for b, _ in ws]
    index = 0
    for length, run_a, run_b, windows in bursts:
        durations = [(b - a) / NS_PER_S for a, b in (w.start.span_ns(w.end) for w, _ in windows)]
        truth = differential_truth(t_ns, e_j, run_a, run_b, durations, busy_ns=spans)
        for (_burst, timing), d in zip(windows, durations):
            index += 1
            rows += _rows("bursts", length, index, timing,
                          lambda own, d=d, truth=truth: burst_window_truth_j(truth.burst_w, truth.idle_w, d, own),
                          truth_power_w=truth.burst_w, idle_w=truth.idle_w, burst_s=d)
    return rows


def run_info(args: argparse.Namespace, gpu, driver: str, backend, seconds_per_matmul: float,
             unavailable: dict[str, str]) -> dict:
    """What run.json says of the run besides its timing: card, versions, settings, command."""
    from ecomeasure import __version__

    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "gpu": gpu.name,
            "driver": driver, "nvml_index": gpu.index, "cuda_index": args.device,
            "seconds_per_matmul": seconds_per_matmul, "command": " ".join(sys.argv),
            "versions": {"ecomeasure": __version__, "python": platform.python_version(),
                         **{p: _version(p) for p in ("zeus", "codecarbon", "nvidia-ml-py")},
                         **backend.versions()},
            "sklearn_stand_in": SKLEARN_STAND_IN, "unavailable": unavailable, "settings": vars(args)}


@dataclass
class Rig:
    """What the comparison measures with: the GPU's workload and every method's meter."""
    backend: object
    gpu: object
    meter: object
    reference: object
    workload: object
    methods: dict[str, object]
    seconds_per_matmul: float
    meter_start: float
    """When the native meter started (monotonic s): its traces begin there."""


def set_up(args: argparse.Namespace, peers: dict[str, object], unavailable: dict[str, str]) -> Rig:
    """Opens the GPU, starts the native meter (with a user's defaults) and the 10 Hz
    reference, calibrates the matmul workload, and starts the peers' methods."""
    from ecomeasure import Meter
    from ecomeasure.validate import MatmulWorkload

    backend, gpu = open_gpu(args)
    meter = Meter(devices=[gpu.index])  # defaults: what a user gets
    reference = start_reference(gpu.index)
    meter_start = time.monotonic()
    workload = MatmulWorkload(backend, meter)
    seconds_per_matmul = workload.calibrate()
    methods = start_methods(peers, args, gpu.index, meter, reference, unavailable)
    warnings.filterwarnings("ignore", message="The energy consumption of one or more GPUs was measured as zero")
    return Rig(backend, gpu, meter, reference, workload, methods, seconds_per_matmul, meter_start)


def plan_windows(args: argparse.Namespace, rig: Rig, rng: random.Random) -> tuple[dict[float, int], list[float]]:
    """Windows per length, and the steady load's window lengths in a shuffled order; prints
    the plan."""
    counts = {L: windows_per_length(L, args.repetitions, args.target_s) for L in args.lengths}
    print(f"peers: {rig.gpu.name} (NVML {rig.gpu.index}, cuda:{args.device}), driver {rig.meter.driver_version}; "
          f"methods {', '.join(rig.methods)}; {sum(counts.values())} windows per workload; "
          f"~{planned_s(args.lengths, args.repetitions, args.target_s, args.gap_s, args.edge_s):.0f} s planned "
          f"after start-up", flush=True)
    order = [L for L in args.lengths for _ in range(counts[L])]
    rng.shuffle(order)
    return counts, order


def wait_for_readings(rig: Rig) -> float:
    """Waits until the native meter's counter and the reference have read past now (every
    window then has readings on both sides); returns now, the recording's end."""
    end = time.monotonic()
    while rig.meter.trace("counter")[0][-1] < end + 0.2:
        time.sleep(0.1)
    rig.reference.wait_past(end, timeout_s=1.0)
    return end


def report(args: argparse.Namespace, rig: Rig, rows: list[Row], unavailable: dict[str, str],
           extra: dict[str, object]) -> None:
    """Writes the output folder and prints the table."""
    summary = summarize(rows, unavailable)
    table = markdown_table(summary)
    info = run_info(args, rig.gpu, rig.meter.driver_version, rig.backend, rig.seconds_per_matmul,
                    unavailable) | extra
    write_outputs(Path(args.out), rows, summary, table, info, rig.meter)
    print(f"\n{info['gpu']}, driver {info['driver']}, {info['date']}: median |error| (worst) per window; "
          f"`{info['command']}`\n")
    print(table)


def run(args: argparse.Namespace) -> int:
    """The whole comparison on the GPU: steady windows, then bursts, then the table and files."""
    peers = import_peers()
    unavailable = note_missing_peers(peers)
    rng = random.Random(args.seed)
    try:
        rig = set_up(args, peers, unavailable)
        counts, order = plan_windows(args, rig, rng)
        steady, load_start, load_end = measure_steady(args, rig.backend, rig.methods, order, rig.meter_start)
    except PeersError as error:
        print(f"peers: {error}", file=sys.stderr)
        return 1
    eco = rig.methods["ecomeasure"]
    print(f"steady: {len(order)} windows done; ecomeasure's headline method: {getattr(eco, 'last_method', '?')}",
          flush=True)
    eco.stream = rig.backend.stream
    bursts = measure_bursts(args, rig.methods, rig.workload, counts, rng)
    end = wait_for_readings(rig)
    rows = score(rig.meter, args, steady, (load_start, load_end), bursts)
    rig.meter.stop()
    rig.reference.stop()
    report(args, rig, rows, unavailable, {
        "steady_load_s": [load_start, load_end], "burst_runs_ns": [(L, a, b) for L, a, b, _ in bursts],
        "recording_s": end - rig.meter_start})
    return 0


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def write_outputs(out: Path, rows: list[Row], summary: list[Summary], table: str, info: dict, meter=None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (("windows.csv", rows), ("summary.csv", summary)):
        with open(out / name, "w", newline="") as f:
            fields = list(asdict(items[0])) + (["error"] if name == "windows.csv" else [])
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for item in items:
                writer.writerow({**asdict(item), **({"error": item.error} if name == "windows.csv" else {})})
    (out / "table.md").write_text(table + "\n")
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    if meter is not None:
        meter.save(out / "traces.npz")


def read_rows(path: Path) -> list[Row]:
    """The rows of a saved ``windows.csv`` (its ``error`` column is recomputed, not read)."""
    kinds = {f.name: f.type for f in fields(Row)}
    with open(path, newline="") as f:
        return [Row(**{k: (v if kinds[k] in ("str", str) else int(v) if kinds[k] in ("int", int) else float(v))
                       for k, v in r.items() if k in kinds}) for r in csv.DictReader(f)]


def reanalyse(folder: Path) -> str:
    """The table of a saved run, from its ``windows.csv`` alone (no GPU)."""
    return markdown_table(summarize(read_rows(folder / "windows.csv")))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="peers-run", help="output folder (default: peers-run)")
    p.add_argument("--lengths", type=float, nargs="+", default=list(DEFAULT_LENGTHS_S),
                   help="window lengths, s (default: %(default)s)")
    p.add_argument("--repetitions", type=int, default=2,
                   help="windows per length and workload, at least (default: %(default)s)")
    p.add_argument("--target-s", type=float, default=4.0,
                   help="and at least this much window time per length (default: %(default)s)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default: 0)")
    p.add_argument("--backend", default="torch", choices=("torch", "cupy", "auto"))
    p.add_argument("--gap-s", type=float, default=0.5, help="idle after each burst (x U(1, 1.2))")
    p.add_argument("--edge-s", type=float, default=1.2, help="idle at each burst run's edges")
    p.add_argument("--settle-s", type=float, default=5.0, help="steady load: ignored after its start")
    p.add_argument("--fit-reach-s", type=float, default=10.0,
                   help="steady load: counter readings this far from a window's centre give its power")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from", dest="from_dir", type=Path, default=None,
                   help="no GPU: print the table of a saved run (its windows.csv)")
    args = p.parse_args(argv)
    if not args.lengths or min(args.lengths) <= 0 or args.repetitions < 1:
        p.error("lengths must be positive and repetitions at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_dir is not None:
        print(reanalyse(args.from_dir))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
