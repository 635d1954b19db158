"""A day of readings through the native core: per-window cost and memory at 1 h, 8 h, 24 h.

Feeds synthetic driver samples (every 20 ms), instant and average power (10 Hz), energy
counter readings (1 Hz) and utilization samples (6 Hz) of one GPU, an hour at a time, into a
``_native.TraceSet`` through the sampler's own ``append`` (same clamping and trace bound as a
live meter), then measures 1 s windows ending at that hour with ``window_energy``, the same
code the live meter runs under its lock. No GPU needed:

    python -m benchmarks.meter.core_24h [--hours 24] [--keep-hours 4] [--out DIR]

Prints a table and writes DIR/core_24h.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ecomeasure._native import TraceSet
from ecomeasure.units import NS_PER_S

HOUR_NS = 3600 * NS_PER_S


def hour_of_readings(h: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One hour of readings starting at hour h: power wanders between 120 and 700 W."""
    t0 = h * HOUR_NS
    def grid(period_ns: int) -> np.ndarray:
        return np.arange(t0, t0 + HOUR_NS, period_ns, dtype=np.int64)
    def power(t: np.ndarray) -> np.ndarray:
        return 410.0 + 290.0 * np.sin(t / NS_PER_S / 37.0) + rng.normal(0, 5, len(t))
    ts, ti, tc, tu = grid(20_000_000), grid(100_000_000), grid(NS_PER_S), grid(166_666_667)
    counter_j = 410.0 * (tc / NS_PER_S) - 290.0 * 37.0 * np.cos(tc / NS_PER_S / 37.0)
    return {"samples": (ts, power(ts)), "instant": (ti, power(ti)), "average": (ti, power(ti)),
            "counter": (tc, counter_j + 290.0 * 37.0),
            "utilization": (tu, rng.integers(0, 101, len(tu)).astype(float))}


def window_cost_s(traces: TraceSet, end_ns: int, reach_ns: int = 60 * NS_PER_S, windows: int = 200) -> float:
    """Median wall time of measuring 1 s windows that end near end_ns (calibrated over the
    counter readings within reach_ns of each)."""
    costs = []
    for k in range(windows):
        t1 = end_ns - 120 * NS_PER_S - k * 7 * NS_PER_S  # leave the calibration reach inside the data
        start = time.perf_counter()
        traces.energy(t1 - NS_PER_S, t1, 30 * NS_PER_S, reach_ns)
        costs.append(time.perf_counter() - start)
    return float(np.median(costs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--keep-hours", type=float, default=4.0, help="trace bound (the Meter's trace_keep_s)")
    parser.add_argument("--out", type=Path, default=Path("out/core_24h"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    bounded = TraceSet({}, [], int(args.keep_hours * HOUR_NS))
    unbounded = TraceSet({}, [])
    rows = []
    print("per 1 s window: bounded store + 60 s calibration reach (the Meter's defaults), and "
          "a whole-run calibration over an unbounded store, for comparison")
    print(f"{'hour':>4} {'window cost (us)':>17} {'whole-run calib. (us)':>22} "
          f"{'memory bounded (MB)':>20} {'unbounded (MB)':>15}")
    for h in range(args.hours):
        for name, (t, v) in hour_of_readings(h, rng).items():
            bounded.append(name, t, v)
            unbounded.append(name, t, v)
        end_ns = (h + 1) * HOUR_NS
        row = {"hour": h + 1, "window_cost_us_bounded": window_cost_s(bounded, end_ns) * 1e6,
               "window_cost_us_whole_run_calibration":
                   window_cost_s(unbounded, end_ns, reach_ns=end_ns, windows=20) * 1e6,
               "memory_mb_bounded": bounded.memory_bytes / 1e6,
               "memory_mb_unbounded": unbounded.memory_bytes / 1e6}
        rows.append(row)
        if h + 1 in (1, 2, 4, 8, 12, 16, 24) or h + 1 == args.hours:
            print(f"{row['hour']:>4} {row['window_cost_us_bounded']:>17.1f} "
                  f"{row['window_cost_us_whole_run_calibration']:>22.1f} "
                  f"{row['memory_mb_bounded']:>20.1f} {row['memory_mb_unbounded']:>15.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "core_24h.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out / 'core_24h.json'}")


if __name__ == "__main__":
    main()
