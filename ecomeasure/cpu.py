"""CPU energy from Linux powercap RAPL: the package and DRAM counters, read on a thread into
traces on the meter's clock, so that the same windows measure the CPU beside the GPUs.

Linux exposes RAPL (Intel, and AMD Zen through the same ``rapl`` driver) under
``/sys/class/powercap`` as zones ``intel-rapl:N`` (a package) and ``intel-rapl:N:M`` (its
subzones, among them ``dram`` on servers); some kernels name AMD's zones ``amd-rapl:N``.
Each zone has ``energy_uj``, a counter in microjoules that wraps at ``max_energy_range_uj``
(every few minutes to hours, depending on power). Only package and DRAM zones are read: the
``core`` and ``uncore`` subzones are parts of their package, ``psys`` holds everything, so
adding them would count energy twice. Since the Platypus attack (CVE-2020-8694) recent kernels
make ``energy_uj`` readable by root only: an unreadable zone is said once, as a warning, and
left out, never raised.

``ECOMEASURE_POWERCAP_ROOT`` names another root than ``/sys/class/powercap`` (tests use it).
"""
from __future__ import annotations

import os
import re
import threading
import time
import warnings
import weakref
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .units import NAN, NS_PER_S

POWERCAP_ROOT_ENV = "ECOMEASURE_POWERCAP_ROOT"
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"

# The MSR interface's zones first: intel-rapl-mmio:0 is the same package as intel-rapl:0, read
# another way, and is kept only where the MSR one is missing.
_ZONE_TYPES = ("intel-rapl", "amd-rapl", "intel-rapl-mmio")
_ZONE_DIR = re.compile(r"^(intel-rapl|amd-rapl|intel-rapl-mmio)((?::\d+)+)$")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> None:
    """A RuntimeWarning the first time this process meets ``message``, then nothing."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def powercap_root() -> Path:
    """Where the powercap zones are: $ECOMEASURE_POWERCAP_ROOT, else /sys/class/powercap."""
    return Path(os.environ.get(POWERCAP_ROOT_ENV) or DEFAULT_POWERCAP_ROOT)


def counter_delta_uj(before_uj: int, after_uj: int, max_energy_range_uj: int) -> int:
    """Energy between two readings of a counter that wraps to 0 past ``max_energy_range_uj``,
    assuming at most one wrap between them (a reading every few seconds at most guarantees
    it: the counters wrap after minutes at the least). A wrap drops one energy unit (~61 uJ),
    which the kernel does not expose; every RAPL reader ignores it."""
    if after_uj >= before_uj:
        return after_uj - before_uj
    return after_uj + max_energy_range_uj - before_uj


def unwrap_uj(readings_uj: list[int] | np.ndarray, max_energy_range_uj: int) -> np.ndarray:
    """Cumulative energy (uJ, int64) since the first of successive counter readings."""
    out = np.zeros(len(readings_uj), dtype=np.int64)
    total = 0
    for k in range(1, len(readings_uj)):
        total += counter_delta_uj(int(readings_uj[k - 1]), int(readings_uj[k]), max_energy_range_uj)
        out[k] = total
    return out


@dataclass(frozen=True)
class Zone:
    """One RAPL zone the meter reads."""
    label: str
    """``package-N`` or ``dram-N`` (N: the package it belongs to)."""
    kind: str
    """``package`` or ``dram``."""
    path: Path
    max_energy_range_uj: int


@dataclass(frozen=True)
class Zones:
    """What a powercap tree offers: the zones that can be read, and why others cannot."""
    root: Path
    zones: tuple[Zone, ...]
    problems: tuple[str, ...] = ()
    present: bool = True
    """Whether the tree has any RAPL zone at all (readable or not)."""


def _read_int(path: Path) -> int:
    with open(path, "rb") as f:
        return int(f.read().strip())


def _why(error: BaseException, path: Path) -> str:
    if isinstance(error, PermissionError):
        return (f"cannot read {path}: permission denied (the kernel lets only root read RAPL; "
                "run as root or make energy_uj readable, e.g. `sudo chmod o+r "
                f"{path.parent.parent}/*/energy_uj`)")
    if isinstance(error, ValueError):
        return f"cannot read {path}: not a number"
    return f"cannot read {path}: {getattr(error, 'strerror', None) or error}"


def _sort_key(entry: str) -> tuple[int, tuple[int, ...]]:
    match = _ZONE_DIR.match(entry)
    assert match is not None
    return _ZONE_TYPES.index(match.group(1)), tuple(int(n) for n in match.group(2)[1:].split(":"))


def find_zones(root: str | os.PathLike[str] | None = None) -> Zones:
    """The package and DRAM zones under ``root`` (default: powercap_root()) whose counters can
    be read now; each zone that cannot is left out with the reason in ``problems``."""
    root = Path(root) if root is not None else powercap_root()
    try:
        entries = sorted((e for e in os.listdir(root) if _ZONE_DIR.match(e)), key=_sort_key)
    except OSError:
        entries = []
    if not entries:
        return Zones(root, (), (f"no RAPL zones under {root}: this machine or kernel exposes no "
                                "CPU energy counters",), present=False)
    zones: list[Zone] = []
    problems: list[str] = []
    labels: set[str] = set()
    for entry in entries:
        path = root / entry
        package = _sort_key(entry)[1][0]
        try:
            name = (path / "name").read_text().strip()
        except OSError as error:
            problems.append(_why(error, path / "name"))
            continue
        if name.startswith("package"):
            kind, label = "package", name if re.fullmatch(r"package-\d+", name) else f"package-{package}"
        elif name == "dram":
            kind, label = "dram", f"dram-{package}"
        else:
            continue  # core, uncore (inside their package) and psys (everything): counted already
        if label in labels:
            continue  # the same zone through another interface (intel-rapl-mmio)
        try:
            max_range_uj = _read_int(path / "max_energy_range_uj")
        except (OSError, ValueError) as error:
            problems.append(_why(error, path / "max_energy_range_uj"))
            continue
        try:
            _read_int(path / "energy_uj")
        except (OSError, ValueError) as error:
            problems.append(_why(error, path / "energy_uj"))
            continue
        if max_range_uj <= 0:
            problems.append(f"{path}/max_energy_range_uj is {max_range_uj}: cannot undo wraps")
            continue
        labels.add(label)
        zones.append(Zone(label, kind, path, max_range_uj))
    return Zones(root, tuple(zones), tuple(problems))


@dataclass(frozen=True)
class CpuEnergy:
    """A window's CPU energy from RAPL, per zone in J: ``package-N`` (the cores, caches and
    the rest of the package) and ``dram-N`` where the CPU reports its memory's energy."""
    zones: Mapping[str, float]
    duration_s: float
    complete: bool
    """Whether every zone had readings on both sides of the window."""
    problems: tuple[str, ...] = field(default=())
    """Why zones of this machine are missing from ``zones`` (unreadable, none at all)."""

    @property
    def energy_j(self) -> float:
        """Every zone's energy, summed (package and DRAM do not overlap)."""
        return float(sum(self.zones.values()))

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else NAN

    def to_dict(self) -> dict[str, Any]:
        return {"zones": dict(self.zones), "energy_j": self.energy_j, "power_w": self.power_w,
                "duration_s": self.duration_s, "complete": self.complete,
                "problems": list(self.problems)}


def _cumulative_j(t_ns: np.ndarray, energy_uj: np.ndarray, at_ns: np.ndarray) -> np.ndarray:
    # np.interp holds the end values outside the readings: the caller marks that incomplete.
    return np.interp(at_ns.astype(np.float64), t_ns.astype(np.float64), energy_uj.astype(np.float64)) / 1e6


class CpuTraces:
    """Per zone, (time ns, cumulative energy uJ since the first reading); measures windows."""

    def __init__(self, traces: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 problems: tuple[str, ...] = ()) -> None:
        self._traces = dict(traces)
        self.problems = problems

    @property
    def labels(self) -> list[str]:
        return list(self._traces)

    def trace_ns(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        """(time ns, cumulative energy J since the first reading) of one zone."""
        t_ns, energy_uj = self._traces[label]
        return t_ns, energy_uj / 1e6

    def energy_ns(self, start_ns: int, end_ns: int) -> CpuEnergy:
        zones: dict[str, float] = {}
        complete = True
        for label, (t_ns, energy_uj) in self._traces.items():
            if len(t_ns) == 0:
                zones[label] = NAN
                complete = False
                continue
            e0, e1 = _cumulative_j(t_ns, energy_uj, np.array([start_ns, end_ns]))
            zones[label] = float(e1 - e0)
            complete = complete and bool(t_ns[0] <= start_ns and t_ns[-1] >= end_ns)
        return CpuEnergy(zones, (end_ns - start_ns) / NS_PER_S, complete and bool(zones), self.problems)

    def arrays(self) -> dict[str, np.ndarray]:
        """The traces as ``cpu/<zone>/t_ns`` and ``cpu/<zone>/energy_uj`` arrays (Meter.save)."""
        out: dict[str, np.ndarray] = {}
        for label, (t_ns, energy_uj) in self._traces.items():
            out[f"cpu/{label}/t_ns"] = np.asarray(t_ns, dtype=np.int64)
            out[f"cpu/{label}/energy_uj"] = np.asarray(energy_uj, dtype=np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], problems: tuple[str, ...] = ()) -> CpuTraces | None:
        """The traces ``arrays()`` wrote, or None where there are none."""
        labels = sorted({k.split("/")[1] for k in arrays if k.startswith("cpu/")})
        if not labels:
            return None
        return cls({label: (arrays[f"cpu/{label}/t_ns"], arrays[f"cpu/{label}/energy_uj"]) for label in labels},
                   problems)


class _ZoneTrace:
    """One zone's readings: stamps and cumulative energy, trimmed to the newest keep_s."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.t_ns = array("q")
        self.energy_uj = array("q")
        self.last_raw_uj: int | None = None
        self.total_uj = 0
        self.errors = 0
        self.dropped = 0

    def read(self) -> None:
        before = time.monotonic_ns()
        try:
            raw = _read_int(self.zone.path / "energy_uj")
        except (OSError, ValueError):
            self.errors += 1
            return
        after = time.monotonic_ns()
        if self.last_raw_uj is not None:
            self.total_uj += counter_delta_uj(self.last_raw_uj, raw, self.zone.max_energy_range_uj)
        self.last_raw_uj = raw
        stamp = (before + after) // 2  # the file is read somewhere between the two
        if self.t_ns and stamp <= self.t_ns[-1]:
            stamp = self.t_ns[-1] + 1
        self.t_ns.append(stamp)
        self.energy_uj.append(self.total_uj)

    def trim(self, keep_ns: int) -> None:
        if keep_ns <= 0 or len(self.t_ns) < 2 or self.t_ns[-1] - self.t_ns[0] <= keep_ns * 1.25:
            return
        cut = int(np.searchsorted(np.frombuffer(self.t_ns, dtype=np.int64), self.t_ns[-1] - keep_ns))
        del self.t_ns[:cut]
        del self.energy_uj[:cut]
        self.dropped += cut


class CpuSampler:
    """Reads the RAPL package and DRAM counters every ``interval_s`` on a thread, keeping per
    zone the cumulative energy since the first reading (wraps undone) on the meter's clock
    (``time.monotonic_ns``). Windows read it through ``energy_ns``; a window whose end is newer
    than the last reading takes a reading at once instead of waiting. A reading costs ~20 us per
    zone; traces keep about the newest ``keep_s`` (up to 1.25x; 0 keeps everything).
    ``root``: the powercap tree (default $ECOMEASURE_POWERCAP_ROOT, else /sys/class/powercap).
    ``warn``: say unreadable zones (and, when ``required``, no RAPL at all) once as a warning.
    """

    def __init__(self, interval_s: float = 0.05, *, root: str | os.PathLike[str] | None = None,
                 keep_s: float = 4 * 3600.0, warn: bool = True, required: bool = False) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.found = find_zones(root)
        if warn and self.found.problems and (self.found.present or required):
            warn_once("ecomeasure: CPU energy: " + "; ".join(self.found.problems))
        self.zones: tuple[Zone, ...] = self.found.zones
        self._traces = [_ZoneTrace(z) for z in self.zones]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finalizer = weakref.finalize(self, self._stop.set)

    @property
    def available(self) -> bool:
        """Whether any zone can be read."""
        return bool(self.zones)

    @property
    def problems(self) -> tuple[str, ...]:
        return self.found.problems

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def read(self) -> None:
        """Takes one reading of every zone now."""
        with self._lock:
            for trace in self._traces:
                trace.read()
                trace.trim(int(self.keep_s * NS_PER_S))

    @staticmethod
    def _run(ref: weakref.ReferenceType[CpuSampler], stop: threading.Event, interval_s: float) -> None:
        # Holds the sampler only while reading, so that a dropped sampler's thread ends.
        while not stop.wait(interval_s):
            sampler = ref()
            if sampler is None:
                return
            sampler.read()
            del sampler

    def start(self) -> CpuSampler:
        if not self.available or self.running:
            return self
        self._stop.clear()
        self.read()
        self._thread = threading.Thread(target=self._run, args=(weakref.ref(self), self._stop, self.interval_s),
                                        name="ecomeasure-cpu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the thread after one last reading; idempotent. Traces stay readable."""
        thread, self._thread = self._thread, None
        self._stop.set()
        # A finalizer may run on the sampler's own thread (garbage collected there): it cannot
        # join itself, and the set event ends it.
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self.read()

    def snapshot(self) -> CpuTraces:
        """The traces as they are now."""
        with self._lock:
            return CpuTraces({t.zone.label: (np.array(t.t_ns, dtype=np.int64), np.array(t.energy_uj, dtype=np.int64))
                              for t in self._traces}, self.problems)

    def energy_ns(self, start_ns: int, end_ns: int) -> CpuEnergy:
        """The CPU energy of [start_ns, end_ns] (monotonic ns), per zone."""
        # A running sampler reads at once rather than make the caller wait for its next
        # reading; a stopped one took its last reading when it stopped and watches no more.
        if self.running and time.monotonic_ns() >= end_ns and any(not t.t_ns or t.t_ns[-1] < end_ns
                                                                   for t in self._traces):
            self.read()
        return self.snapshot().energy_ns(start_ns, end_ns)

    def report(self) -> dict[str, Any]:
        """What was read, for results files."""
        return {"root": str(self.found.root), "interval_s": self.interval_s,
                "zones": [{"label": z.label, "kind": z.kind, "path": str(z.path),
                           "max_energy_range_uj": z.max_energy_range_uj} for z in self.zones],
                "errors": {t.zone.label: t.errors for t in self._traces},
                "dropped": {t.zone.label: t.dropped for t in self._traces},
                "problems": list(self.problems)}


def cpu_sampler(cpu: bool | str | CpuSampler | None) -> CpuSampler | None:
    """The sampler a Meter's ``cpu`` argument asks for: False/None none; ``"auto"`` one where a
    zone is readable (unreadable zones said once, no RAPL at all silently); True one, saying
    once why where none can be read; or the CpuSampler given."""
    if cpu is None or cpu is False:
        return None
    if isinstance(cpu, CpuSampler):
        return cpu
    if cpu is True or cpu == "auto":
        sampler = CpuSampler(required=cpu is True)
        return sampler if sampler.available else None
    raise ValueError(f"cpu must be True, False, 'auto' or a CpuSampler, not {cpu!r}")
