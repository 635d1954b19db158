"""A fake Linux powercap tree (RAPL zones) in a folder, for ecomeasure.cpu's tests.

Each zone is a folder named as the kernel names it (``intel-rapl:0``, ``intel-rapl:0:1``,
``amd-rapl:0``) holding ``name``, ``energy_uj`` and ``max_energy_range_uj``, flat under the
root as /sys/class/powercap lists them. Counters are rewritten atomically (a new file renamed
over the old), so a reader never sees half a number.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

# A common Intel package's range: 2^32 energy units of 61 uJ.
MAX_RANGE_UJ = 262_143_328_850


def add_zone(root: Path, entry: str, name: str, energy_uj: int = 0, max_range_uj: int = MAX_RANGE_UJ) -> Path:
    zone = Path(root) / entry
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text(name + "\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    set_energy(zone, energy_uj)
    return zone


def set_energy(zone: Path, energy_uj: int) -> None:
    tmp = zone / f".energy_uj.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(f"{energy_uj}\n")
    os.replace(tmp, zone / "energy_uj")


def server_tree(root: Path, packages: int = 2, max_range_uj: int = MAX_RANGE_UJ) -> dict[str, Path]:
    """A two-socket Intel server: per package its zone, core and uncore subzones and a DRAM
    subzone, plus the platform (psys) zone and an MMIO copy of package 0. Returns the zones
    the meter should read, by label."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "intel-rapl").mkdir(exist_ok=True)  # the control type, not a zone
    read = {}
    for p in range(packages):
        read[f"package-{p}"] = add_zone(root, f"intel-rapl:{p}", f"package-{p}", 1000 * (p + 1), max_range_uj)
        add_zone(root, f"intel-rapl:{p}:0", "core", 7)
        add_zone(root, f"intel-rapl:{p}:1", "uncore", 7)
        read[f"dram-{p}"] = add_zone(root, f"intel-rapl:{p}:2", "dram", 500 * (p + 1), max_range_uj)
    add_zone(root, f"intel-rapl:{packages}", "psys", 9)
    add_zone(root, "intel-rapl-mmio:0", "package-0", 11)
    return read


class SteadyPower:
    """A thread that advances zones' counters as a steady power would, every ``period_s``,
    wrapping at each zone's range: energy_uj = (start_uj + power_w * (t - t0)) mod range."""

    def __init__(self, zones: dict[Path, float], period_s: float = 0.002, start_uj: int = 0,
                 max_range_uj: int = MAX_RANGE_UJ) -> None:
        self.zones, self.period_s, self.start_uj, self.max_range_uj = zones, period_s, start_uj, max_range_uj
        self.t0_ns = time.monotonic_ns()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def value_uj(self, power_w: float, t_ns: int) -> int:
        return (self.start_uj + int(power_w * (t_ns - self.t0_ns) / 1000)) % self.max_range_uj

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic_ns()
            for zone, power_w in self.zones.items():
                set_energy(zone, self.value_uj(power_w, now))
            time.sleep(self.period_s)

    def __enter__(self) -> SteadyPower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
