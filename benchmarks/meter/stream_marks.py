"""Stream-aligned marks on a real GPU: precision, cost, and energy without synchronizing.

1. Precision: 100 times, queue a chain of large matmuls between two stream marks from
   Python (which returns at once) with CUDA events beside the marks; the marked interval
   vs the events' elapsed time.
2. Cost of one mark on the calling thread (stream and host marks).
3. Energy: a window cut by stream marks around ~2 s of queued work, with no synchronize,
   vs a synchronized host-time window around the same work.

    python -m benchmarks.meter.stream_marks --json $OUT/stream_marks.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks._torch_gpu import nvml_index_of_current_device
from ecomeasure import Mark, Meter


def matmul_chain(a: torch.Tensor, out: torch.Tensor, n: int) -> None:
    for _ in range(n):
        torch.matmul(a, a, out=out)


def precision(meter: Meter, repetitions: int, a, out, n: int) -> dict:
    """Window edges (GPU-clock pair alignment) and raw host-function stamps vs CUDA events."""
    stream = torch.cuda.current_stream()
    diffs_ms, raw_diffs_ms, enqueue_ms, event_ms, gpu_timed = [], [], [], [], []
    for _ in range(repetitions):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t = time.perf_counter()
        # Each event just before its mark: a mark's host function holds the stream until
        # the CPU has run it, so events after a mark would time that wait too.
        e0.record(stream)
        w = meter.window("chain", stream=stream)
        matmul_chain(a, out, n)
        e1.record(stream)
        w.end()
        enqueue_ms.append((time.perf_counter() - t) * 1e3)
        t0, t1 = w.edges_ns()   # waits for the GPU, without the GIL
        torch.cuda.synchronize()
        event_ms.append(e0.elapsed_time(e1))
        diffs_ms.append((t1 - t0) / 1e6 - event_ms[-1])
        raw_diffs_ms.append((w.end_mark.time_ns() - w.begin.time_ns()) / 1e6 - event_ms[-1])
        # Where the pair is timed by its events, it differs from the host stamps.
        gpu_timed.append((t1 - t0) != (w.end_mark.time_ns() - w.begin.time_ns()))
    def summary(d):
        absolute = [abs(x) for x in d]
        return {"median_ms": statistics.median(d), "abs_median_ms": statistics.median(absolute),
                "abs_worst_ms": max(absolute)}
    return {"repetitions": repetitions, "event_ms_median": statistics.median(event_ms),
            "enqueue_ms_median": statistics.median(enqueue_ms), "window": summary(diffs_ms),
            "host_function_stamps": summary(raw_diffs_ms), "gpu_timed": sum(gpu_timed),
            "window_diffs_ms": diffs_ms, "host_function_diffs_ms": raw_diffs_ms}


def stall_us(a, out, repetitions: int = 50) -> float:
    """GPU time one stream mark adds between two kernels: its host function holds the stream
    until the CPU has run it (median over repetitions, vs the same kernels without a mark)."""
    stream = torch.cuda.current_stream()
    def timed(with_mark: bool) -> float:
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(stream)
        torch.matmul(a, a, out=out)
        if with_mark:
            Mark(stream)
        torch.matmul(a, a, out=out)
        e1.record(stream)
        torch.cuda.synchronize()
        return e0.elapsed_time(e1) * 1e3
    timed(True), timed(False)
    return statistics.median(timed(True) for _ in range(repetitions)) - \
        statistics.median(timed(False) for _ in range(repetitions))


def mark_cost_us(stream, n: int = 100, batches: int = 30) -> dict:
    """Median time of one call, in batches small enough that the stream's queue never
    fills (a full queue would make any launch wait for the GPU)."""
    out = {}
    for label, s in [("stream", stream), ("host", None)]:
        per_call = []
        for _ in range(batches):
            torch.cuda.synchronize()
            t = time.perf_counter_ns()
            for _ in range(n):
                Mark(s)
            per_call.append((time.perf_counter_ns() - t) / n / 1e3)
        out[label] = statistics.median(per_call)
    torch.cuda.synchronize()
    return out


def energy_async_vs_sync(meter: Meter, a, out, n: int, repetitions: int) -> list[dict]:
    stream = torch.cuda.current_stream()
    rows = []
    for _ in range(repetitions):
        torch.cuda.synchronize()
        time.sleep(0.5)
        # Stream-marked: Python queues the work and moves on.
        asked_at = time.monotonic()
        w = meter.window("async", stream=stream)
        matmul_chain(a, out, n)
        w.end()
        queued_at = time.monotonic()
        async_m = w.measurement
        torch.cuda.synchronize()
        time.sleep(0.5)
        # Synchronized host-time window around the same work.
        torch.cuda.synchronize()
        with meter.window("sync") as s:
            matmul_chain(a, out, n)
            torch.cuda.synchronize()
        sync_m = s.measurement
        rows.append({"async_j": async_m.energy_j, "async_s": async_m.duration_s, "sync_j": sync_m.energy_j,
                     "sync_s": sync_m.duration_s, "diff_pct": 100 * (async_m.energy_j - sync_m.energy_j) / sync_m.energy_j,
                     "enqueue_s": queued_at - asked_at, "method": async_m.method})
    return rows


def main() -> None:
    gpu = nvml_index_of_current_device()
    parser = argparse.ArgumentParser()
    parser.add_argument("--repetitions", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    out = torch.empty_like(a)
    matmul_chain(a, out, 50)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    matmul_chain(a, out, 50)
    e1.record()
    torch.cuda.synchronize()
    per_matmul_ms = e0.elapsed_time(e1) / 50
    with Meter(devices=[gpu]) as meter:
        time.sleep(2.5)  # let the headline's calibration span build up
        result = {"gpu": meter.devices[0].name, "driver": meter.driver_version, "date": time.strftime("%Y-%m-%d"),
                  "per_matmul_ms": per_matmul_ms,
                  "precision": precision(meter, args.repetitions, a, out, max(1, int(20 / per_matmul_ms))),
                  "mark_cost_us": mark_cost_us(torch.cuda.current_stream()),
                  "stall_us": stall_us(a, out),
                  "energy": energy_async_vs_sync(meter, a, out, max(1, int(2000 / per_matmul_ms)), 5)}
        meter.close()
    p = result["precision"]
    print(f"{result['gpu']}, driver {result['driver']}; matmul 8192^2 fp16 = {per_matmul_ms:.3f} ms")
    print(f"window length - CUDA-event interval, {p['repetitions']} chains of ~{p['event_ms_median']:.1f} ms "
          f"(Python enqueued each in {p['enqueue_ms_median']:.2f} ms; {p['gpu_timed']} timed by mark events):")
    for label, d in [("window edges", p["window"]), ("host-function stamps alone", p["host_function_stamps"])]:
        print(f"   {label:27s} median {d['median_ms'] * 1e3:+8.1f} us, |median| {d['abs_median_ms'] * 1e3:7.1f} us, "
              f"worst {d['abs_worst_ms'] * 1e3:7.1f} us")
    c = result["mark_cost_us"]
    print(f"cost of one mark on the calling thread: stream {c['stream']:.2f} us, host {c['host']:.2f} us; "
          f"a stream mark holds the GPU's stream {result['stall_us']:.1f} us (median)")
    for r in result["energy"]:
        print(f"~2 s of queued work: stream-marked {r['async_j']:8.1f} J over {r['async_s']:.3f} s "
              f"(Python queued it in {r['enqueue_s']:.3f} s), synchronized {r['sync_j']:8.1f} J "
              f"over {r['sync_s']:.3f} s: {r['diff_pct']:+.2f} % ({r['method']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
