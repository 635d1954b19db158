"""What the sampler thread keeps and costs on a real GPU, at idle and under load.

Runs the meter (default settings) for --seconds at idle, then --seconds under a full
matmul load, and prints per source the readings kept per second, lost-sample gaps and NVML
errors, and the sampler thread's CPU time as a share of one core. Then measures whether the
running meter slows a host-bound workload (many tiny kernels, like batch-1 decoding):
alternating runs with and without a meter.

    python -m benchmarks.meter.sampler_overhead --seconds 60 --json $OUT/sampler_overhead.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import torch

from benchmarks._torch_gpu import nvml_index_of_current_device
from ecomeasure import SOURCES, Meter


def snapshot(meter: Meter) -> dict:
    caps = meter.capabilities()[meter.devices[0].index]
    return {"stats": meter.stats(),
            "sources": {s: {k: caps[s][k] for k in ("readings", "errors", "available")} | {"gaps": len(caps[s]["gaps"])}
                        for s in SOURCES}}


def phase(meter: Meter, seconds: float, load: bool) -> dict:
    stop = threading.Event()
    worker = None
    if load:
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
        c = torch.empty_like(a)
        def run():
            torch.cuda.set_device(a.device)  # a new thread has no current device
            while not stop.is_set():
                for _ in range(20):
                    torch.matmul(a, a, out=c)
                torch.cuda.synchronize()
        worker = threading.Thread(target=run)
        worker.start()
    before = snapshot(meter)
    started = time.monotonic()
    time.sleep(seconds)
    after = snapshot(meter)
    elapsed = time.monotonic() - started
    stop.set()
    if worker:
        worker.join()
    m = meter.measure(started, started + elapsed)
    cpu = after["stats"]["cpu_time_s"] - before["stats"]["cpu_time_s"]
    wall = after["stats"]["wall_time_s"] - before["stats"]["wall_time_s"]
    return {
        "phase": "load" if load else "idle", "seconds": elapsed, "power_w": m.power_w, "method": m.method,
        "cpu_share_pct": 100 * cpu / wall,
        "sources": {s: {"kept_per_s": (after["sources"][s]["readings"] - before["sources"][s]["readings"]) / elapsed,
                        "gaps": after["sources"][s]["gaps"] - before["sources"][s]["gaps"],
                        "errors": after["sources"][s]["errors"] - before["sources"][s]["errors"],
                        "power_w": m.source_energy_j(s) / elapsed}
                    for s in SOURCES},
    }


def tiny_kernels_per_s(seconds: float) -> float:
    """Launch rate of a host-bound loop of tiny kernels (what batch-1 decoding looks like)."""
    x = torch.zeros(64, device="cuda")
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(200):
            x.add_(1.0)
        torch.cuda.synchronize()
        n += 200
    return n / seconds


def main() -> None:
    gpu = nvml_index_of_current_device()
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--slowdown-seconds", type=float, default=2.0, help="each run with and without a meter")
    parser.add_argument("--slowdown-runs", type=int, default=8, help="alternating runs of each")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.cuda.init()
    tiny_kernels_per_s(1.0)  # warm up
    without, with_meter = [], []
    for _ in range(args.slowdown_runs):
        without.append(tiny_kernels_per_s(args.slowdown_seconds))
        with Meter(devices=[gpu]) as m:
            with_meter.append(tiny_kernels_per_s(args.slowdown_seconds))
            m.close()
    with Meter(devices=[gpu]) as meter:
        device = meter.devices[0]
        phases = [phase(meter, args.seconds, load=False), phase(meter, args.seconds, load=True)] \
            if args.seconds > 0 else []  # --seconds 0: only the slowdown check
        results = {"gpu": device.name, "driver": meter.driver_version, "date": time.strftime("%Y-%m-%d"),
                   "phases": phases,
                   "tiny_kernels_per_s": {"without_meter": without, "with_meter": with_meter}}
        meter.close()
    slowdown = 100 * (1 - statistics.median(with_meter) / statistics.median(without))
    results["slowdown_pct"] = slowdown
    print(f"{device.name}, driver {meter.driver_version}, {args.seconds:.0f} s per phase, default settings")
    for p in results["phases"]:
        print(f"{p['phase']:5s} {p['power_w']:7.1f} W ({p['method']}), sampler CPU {p['cpu_share_pct']:.2f} % of one core")
        for s, r in p["sources"].items():
            print(f"   {s:8s} kept {r['kept_per_s']:6.1f}/s  gaps {r['gaps']}  errors {r['errors']}  mean {r['power_w']:7.1f} W")
    spread = 100 * statistics.stdev(without) / statistics.mean(without) if len(without) > 1 else float("nan")
    print(f"tiny-kernel launch rate: {statistics.median(without):,.0f}/s without a meter, "
          f"{statistics.median(with_meter):,.0f}/s with one ({slowdown:+.2f} % slowdown; runs without "
          f"a meter vary by {spread:.1f} % CV)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
