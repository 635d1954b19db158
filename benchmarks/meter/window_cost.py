"""What a window costs the thread that opens and closes it, and how soon its energy is there.

Three phases on the GPU torch uses, each window around a few short matmuls on the current
stream (marks on that stream unless ``--marks host``):

1. ``--windows`` windows (default 1,000) opened with ``begin_window`` and closed with
   ``end_window`` without reading them: the caller's cost of the two calls (median, p90);
   their energies are read at the end and must all be finite.
2. ``--ready-windows`` windows read at once after closing: the time from the window's end
   (the GPU reaching its end mark) to its energy being returned, i.e. to the energy available.
3. ``--old-windows`` windows read at once with ``gpu_busy_share`` too: what closing a window
   and reading it cost before (a read that waits for every trace, the 200 ms utilization
   samples included).

    python -m benchmarks.meter.window_cost --out DIR

Writes DIR/window_cost.json (and every window's figures in DIR/window_cost.csv), and prints
the goals (caller cost <= 50 us median; time to result <= 40 ms median, two driver-sample
periods on H100/H200).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

CALLER_GOAL_US = 50.0
RESULT_GOAL_MS = 40.0


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)] if ordered else math.nan
    return {"median": statistics.median(ordered) if ordered else math.nan, "p90": p90, "n": len(ordered)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--windows", type=int, default=1000)
    p.add_argument("--ready-windows", type=int, default=200)
    p.add_argument("--old-windows", type=int, default=100)
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n fp16 matmuls")
    p.add_argument("--matmuls", type=int, default=4, help="matmuls inside each window")
    p.add_argument("--marks", choices=("stream", "host"), default="stream")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("windows", "ready_windows", "old_windows", "matmul_size", "matmuls"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot write to --out {args.out}: {error}", file=sys.stderr)
        return 2

    import torch

    from benchmarks._torch_gpu import nvml_index_of_current_device
    from ecomeasure import Meter

    if not torch.cuda.is_available():
        print("error: window_cost needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.cuda.set_device(torch.device(args.device))
    index = nvml_index_of_current_device()
    n = args.matmul_size
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    stream = torch.cuda.current_stream()
    marks_on = stream if args.marks == "stream" else None

    def work() -> None:
        for _ in range(args.matmuls):
            torch.mm(a, b)

    rows: list[dict] = []
    with Meter(devices=[index]) as meter:
        for _ in range(20):  # warm up the kernels and the sampler
            work()
        torch.cuda.synchronize()
        time.sleep(0.5)

        # 1. closing without reading
        unread = []
        for k in range(args.windows):
            t0 = time.perf_counter_ns()
            meter.begin_window(f"w{k}", stream=marks_on)
            t1 = time.perf_counter_ns()
            work()
            t2 = time.perf_counter_ns()
            unread.append(meter.end_window(f"w{k}"))
            t3 = time.perf_counter_ns()
            rows.append({"phase": "unread", "begin_us": (t1 - t0) / 1e3, "end_us": (t3 - t2) / 1e3,
                         "caller_us": (t1 - t0 + t3 - t2) / 1e3})
        torch.cuda.synchronize()
        energies = [m.energy_j for m in unread]
        for row, m in zip(rows, unread):
            row.update(energy_j=m.energy_j, duration_s=m.duration_s, method=m.method)

        # 2. read at once: from the window's end to its energy
        for k in range(args.ready_windows):
            w = meter.begin_window(f"r{k}", stream=marks_on)
            work()
            m = meter.end_window(f"r{k}")
            energy_j = m.energy_j
            done_ns = time.monotonic_ns()
            _, end_ns = w.edges_ns()
            rows.append({"phase": "ready", "result_ms": (done_ns - end_ns) / 1e6, "energy_j": energy_j,
                         "duration_s": m.duration_s, "method": m.method})

        # 3. the old cost: close and read everything, utilization included
        for k in range(args.old_windows):
            meter.begin_window(f"o{k}", stream=marks_on)
            work()
            t0 = time.perf_counter_ns()
            m = meter.end_window(f"o{k}")
            _ = (m.energy_j, m.gpu_busy_share)
            t1 = time.perf_counter_ns()
            rows.append({"phase": "old", "end_and_read_ms": (t1 - t0) / 1e6, "energy_j": m.energy_j,
                         "duration_s": m.duration_s, "gpu_busy_share": m.gpu_busy_share})
        report = meter.report()

    phase = {p: [r for r in rows if r["phase"] == p] for p in ("unread", "ready", "old")}
    caller = _summary([r["caller_us"] for r in phase["unread"]])
    result = _summary([r["result_ms"] for r in phase["ready"]])
    summary = {
        "gpu": next(d for d in report["devices"] if d["index"] == index),
        "driver_version": report["driver_version"],
        "marks": args.marks, "matmul_size": n, "matmuls_per_window": args.matmuls,
        "window_duration_ms": _summary([r["duration_s"] * 1e3 for r in phase["unread"]]),
        "caller_cost_us": caller,
        "begin_us": _summary([r["begin_us"] for r in phase["unread"]]),
        "end_us": _summary([r["end_us"] for r in phase["unread"]]),
        "unread_energies_finite": all(math.isfinite(e) for e in energies),
        "time_to_result_ms": result,
        "old_end_and_read_ms": _summary([r["end_and_read_ms"] for r in phase["old"]]),
        "driver_sample_period_s": report["capabilities"][str(index)]["samples"]["update_period_s"],
        "utilization_period_s": report["capabilities"][str(index)]["utilization"]["update_period_s"],
        "settings": report["settings"],
        "goals": {"caller_cost_us_median_le": CALLER_GOAL_US, "time_to_result_ms_median_le": RESULT_GOAL_MS,
                  "caller_cost_met": caller["median"] <= CALLER_GOAL_US,
                  "time_to_result_met": result["median"] <= RESULT_GOAL_MS},
    }
    (args.out / "window_cost.json").write_text(json.dumps(summary, indent=2) + "\n")
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "phase", k))
    with open(args.out / "window_cost.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{summary['gpu']['name']}: caller cost of begin+end {caller['median']:.1f} us median "
          f"(p90 {caller['p90']:.1f}; goal <= {CALLER_GOAL_US:g}), time to result {result['median']:.1f} ms "
          f"median (p90 {result['p90']:.1f}; goal <= {RESULT_GOAL_MS:g}), old end+read "
          f"{summary['old_end_and_read_ms']['median']:.1f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
