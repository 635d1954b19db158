"""The workloads the validation drives: their interface, the scripted workload that plays the
schedule against the fake NVML (tests), and the GPU's: chains of large fp16 matmuls queued
between two stream marks.

Only the launch loop runs in Python; the host does not wait for the GPU until the end mark
is queued, so the burst on the GPU is one uninterrupted stretch of work. Two backends, torch
and CuPy; each is imported only when chosen."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import SetupError
from ..meter import Meter
from ..units import NAN, NS_PER_S
from .plan import Schedule

if TYPE_CHECKING:
    from typing_extensions import Self

CounterReader = Callable[[], float]
"""Reads the GPU's energy counter now, in joules (the Zeus/CodeCarbon way)."""


class MarkLike(Protocol):
    """A point on the meter's clock: ``ecomeasure.Mark`` or a ``ScheduledMark``."""

    def time_ns(self, timeout_s: float = 60.0) -> int: ...

    # Self: a span joins two marks of one kind (Mark.span_ns takes a Mark).
    def span_ns(self, end: Self, timeout_s: float = 60.0) -> tuple[int, int]: ...


@dataclass(frozen=True)
class ScheduledMark:
    """A mark whose time is known in advance (the scripted workload's bursts)."""
    t_ns: int

    def time_ns(self, timeout_s: float = 60.0) -> int:
        return self.t_ns

    def span_ns(self, end: MarkLike, timeout_s: float = 60.0) -> tuple[int, int]:
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
        time.sleep(left / NS_PER_S)


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
        self.start_ns = self.t0_ns + round(lead_s * NS_PER_S)
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
                    else round(op.duration_s * NS_PER_S))
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
            points += [((a - self.t0_ns) / NS_PER_S, self.load_w), ((b - self.t0_ns) / NS_PER_S, self.idle_w)]
        return points

    def exact_energy_j(self, t0_ns: int, t1_ns: int) -> float:
        """The profile's exact energy over [t0_ns, t1_ns]."""
        busy_ns = sum(max(0, min(b, t1_ns) - max(a, t0_ns)) for a, b in self._load_intervals_ns)
        return (self.idle_w * (t1_ns - t0_ns - busy_ns) + self.load_w * busy_ns) / NS_PER_S

    def now_ns(self) -> int:
        return self._cursor_ns

    def idle(self, duration_s: float) -> None:
        self._cursor_ns += round(duration_s * NS_PER_S)
        _sleep_until(self._cursor_ns)

    def burst(self, duration_s: float, read_counter_j: CounterReader | None = None) -> Burst:
        _sleep_until(self._cursor_ns)
        before = read_counter_j() if read_counter_j else NAN
        start = self._cursor_ns
        self._cursor_ns += round(duration_s * NS_PER_S)
        _sleep_until(self._cursor_ns)
        after = read_counter_j() if read_counter_j else NAN
        return Burst(ScheduledMark(start), ScheduledMark(self._cursor_ns), before, after)


# --- the GPU's workload ---------------------------------------------------------------------

MATMUL_SIZE = 8192  # 2 * 8192^3 flop: ~1-2 ms a matmul on an H100/H200


NEEDS = "the validation's workloads need an NVIDIA GPU and PyTorch or CuPy with CUDA"


class TorchBackend:
    """fp16 matmuls with torch on ``cuda:<index>``, on the current stream."""
    name = "torch"

    def __init__(self, cuda_index: int, size: int = MATMUL_SIZE, seed: int = 0) -> None:
        try:
            import torch
        except ImportError as exc:
            raise SetupError(f"{NEEDS} (PyTorch is not installed)") from exc
        if not torch.cuda.is_available():
            raise SetupError(f"{NEEDS} (torch.cuda.is_available() is False)")
        if not 0 <= cuda_index < torch.cuda.device_count():
            raise SetupError(f"there is no cuda:{cuda_index}: PyTorch sees {torch.cuda.device_count()} GPU(s)")
        self.torch = torch
        self.cuda_index = cuda_index
        self.device = torch.device("cuda", cuda_index)
        torch.cuda.set_device(self.device)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        # Random normal operands: the most power a matmul draws (zeros would draw far less).
        self.a = torch.randn((size, size), generator=generator, device=self.device, dtype=torch.float16)
        self.b = torch.randn((size, size), generator=generator, device=self.device, dtype=torch.float16)
        self.c = torch.empty_like(self.a)  # written in place: nothing allocates in a burst
        self.stream = torch.cuda.current_stream(self.device)

    def launch(self, n: int) -> None:
        matmul, a, b, c = self.torch.matmul, self.a, self.b, self.c
        for _ in range(n):
            matmul(a, b, out=c)

    def synchronize(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def event(self) -> Any:
        """A timing event recorded on the stream now."""
        event = self.torch.cuda.Event(enable_timing=True)
        event.record(self.stream)
        return event

    def elapsed_s(self, start: Any, end: Any) -> float:
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def matches(self, nvml_device: Any) -> bool:
        """Whether NVML's device (a DeviceInfo) is this CUDA device: by UUID, since
        CUDA_VISIBLE_DEVICES renumbers CUDA's devices but not NVML's."""
        return nvml_device.has_uuid(self.torch.cuda.get_device_properties(self.cuda_index).uuid)

    def versions(self) -> dict[str, str]:
        return {"torch": self.torch.__version__, "cuda": str(self.torch.version.cuda or "")}


class CupyBackend:
    """fp16 matmuls with CuPy on device ``<index>``, on the current stream."""
    name = "cupy"

    def __init__(self, cuda_index: int, size: int = MATMUL_SIZE, seed: int = 0) -> None:
        try:
            import cupy
        except ImportError as exc:
            raise SetupError(f"{NEEDS} (CuPy is not installed)") from exc
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CuPy raises its own CUDARuntimeError without a GPU
            raise SetupError(f"{NEEDS} (CuPy sees no GPU: {exc})") from exc
        if not 0 <= cuda_index < count:
            raise SetupError(f"there is no CUDA device {cuda_index}: CuPy sees {count} GPU(s)")
        self.cupy = cupy
        self.cuda_index = cuda_index
        self.device = cupy.cuda.Device(cuda_index)
        self.device.use()
        rng = cupy.random.default_rng(seed)
        self.a = rng.standard_normal((size, size), dtype=cupy.float32).astype(cupy.float16)
        self.b = rng.standard_normal((size, size), dtype=cupy.float32).astype(cupy.float16)
        self.c = cupy.empty_like(self.a)
        self.stream = cupy.cuda.get_current_stream()

    def launch(self, n: int) -> None:
        matmul, a, b, c = self.cupy.matmul, self.a, self.b, self.c
        for _ in range(n):
            matmul(a, b, out=c)

    def synchronize(self) -> None:
        self.device.synchronize()

    def event(self) -> Any:
        event = self.cupy.cuda.Event()
        event.record(self.stream)
        return event

    def elapsed_s(self, start: Any, end: Any) -> float:
        end.synchronize()
        return self.cupy.cuda.get_elapsed_time(start, end) / 1e3

    def matches(self, nvml_device: Any) -> bool:
        """By PCI bus id (CuPy does not give the UUID portably), read through pynvml."""
        import pynvml
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_device.index)
            bus_id = pynvml.nvmlDeviceGetPciInfo(handle).busId
        finally:
            pynvml.nvmlShutdown()
        return _pci(bus_id) == _pci(self.device.pci_bus_id)

    def versions(self) -> dict[str, str]:
        return {"cupy": self.cupy.__version__,
                "cuda": str(self.cupy.cuda.runtime.runtimeGetVersion())}


def _pci(bus_id: Any) -> tuple[int, ...]:
    """"0000:1b:00.0" and NVML's "00000000:1B:00.0" as (domain, bus, device, function)."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id)
    domain, bus, rest = text.strip().split(":")
    device, function = rest.split(".")
    return tuple(int(x, 16) for x in (domain, bus, device, function))


def open_backend(name: str, cuda_index: int, seed: int = 0) -> TorchBackend | CupyBackend:
    """``torch``, ``cupy``, or ``auto`` (torch if it sees a GPU, else CuPy)."""
    if name == "torch":
        return TorchBackend(cuda_index, seed=seed)
    if name == "cupy":
        return CupyBackend(cuda_index, seed=seed)
    if name != "auto":
        raise ValueError(f"unknown backend {name!r}: use auto, torch or cupy")
    try:
        return TorchBackend(cuda_index, seed=seed)
    except SetupError as torch_error:
        try:
            return CupyBackend(cuda_index, seed=seed)
        except SetupError as cupy_error:
            raise SetupError(f"{NEEDS} (torch: {_reason(torch_error)}; CuPy: {_reason(cupy_error)})") from None


def _reason(error: SetupError) -> str:
    text = str(error)
    return text[text.find("(") + 1:text.rfind(")")] if text.startswith(NEEDS) else text


class MatmulWorkload:
    """Bursts of back-to-back matmuls between stream marks; idle is a host sleep."""

    def __init__(self, backend: TorchBackend | CupyBackend, meter: Meter) -> None:
        self.backend, self.meter = backend, meter
        self.seconds_per_matmul = NAN

    def calibrate(self, warmup_s: float = 1.0, timed: int = 50) -> float:
        """Warms the GPU up for ``warmup_s`` (clocks, cuBLAS), then times ``timed`` matmuls
        with CUDA events. Bursts use it to choose their matmul count; their real length is
        taken from their marks, so a clock change later only changes a burst's length."""
        b = self.backend
        b.launch(1)
        b.synchronize()
        started = time.monotonic()
        while time.monotonic() - started < warmup_s:
            b.launch(20)
            b.synchronize()
        start = b.event()
        b.launch(timed)
        self.seconds_per_matmul = b.elapsed_s(start, b.event()) / timed
        if not self.seconds_per_matmul > 0:
            raise SetupError(f"calibration timed a matmul at {self.seconds_per_matmul} s")
        return self.seconds_per_matmul

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def burst(self, duration_s: float, read_counter_j: CounterReader | None = None) -> Burst:
        if not self.seconds_per_matmul > 0:
            raise RuntimeError("calibrate() first")
        b = self.backend
        n = max(1, round(duration_s / self.seconds_per_matmul))
        b.synchronize()  # already idle; makes sure the counter read below is before the work
        before = read_counter_j() if read_counter_j else NAN
        first = b.event()
        start = self.meter.mark(b.stream)
        b.launch(n)
        end = self.meter.mark(b.stream)
        last = b.event()
        b.synchronize()
        after = read_counter_j() if read_counter_j else NAN
        return Burst(start, end, before, after, b.elapsed_s(first, last))

    def idle(self, duration_s: float) -> None:
        time.sleep(max(0.0, duration_s))
