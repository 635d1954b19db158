"""What the meter costs the generation it measures, in the GPU-bound (graph) regime.

Interleaved pairs of the same generation, one with a running ``Meter`` (sampler thread,
stream marks, a window measured) and one without (no meter object at all; host marks only,
which touch neither the GPU's stream nor a thread). Each generation is timed by CUDA events
on the stream, the same way in both arms. The order inside a pair alternates (AB, BA, ...) so
that a drift of clocks or temperature falls on both arms alike.

    python -m benchmarks.meter.meter_overhead --model mistral --pairs 12 --out DIR

Prints the median difference of throughput (with meter vs without, %) with its 95 %
bootstrap confidence interval, and writes every pair to DIR/meter_overhead.csv and the
summary to DIR/meter_overhead.json.
"""
from __future__ import annotations

import csv
import json
import statistics
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from benchmarks._torch_gpu import decoding_parser, load_for_decoding

    p = decoding_parser(__doc__, model="mistral", new_tokens=256)
    p.add_argument("--pairs", type=int, default=12)
    args = p.parse_args(argv)
    if args.pairs < 10:
        p.error("--pairs must be at least 10")

    import torch
    from scipy import stats

    from ecomeasure import Meter, generation

    hardware, _, model, prompt = load_for_decoding(args.model, args.quant, args.batch_size, args.device,
                                                   args.weights_dir)
    device = hardware.device
    decoder = generation.StaticDecoder(model, prompt, args.new_tokens, capture=True)
    stream = torch.cuda.current_stream(device)

    def timed(with_meter: bool) -> float:
        """Tokens per second of one generation, by CUDA events around it."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        meter = Meter(devices=[hardware.energy.nvml_index]) if with_meter else None
        try:
            if meter is not None:
                time.sleep(0.2)  # the sampler is up and reading, as in the bench
            start.record(stream)
            timing = decoder.generate(args.new_tokens, stream if with_meter else None)
            end.record(stream)
            if meter is not None:
                meter.measure_ns(*timing.begin.span_ns(timing.end))
            torch.cuda.synchronize(device)
        finally:
            if meter is not None:
                meter.close()
        return timing.tokens / (start.elapsed_time(end) / 1e3)

    for _ in range(3):  # warm: clocks up, allocator and graph pool settled
        timed(False)
        timed(True)
    rows = []
    for k in range(args.pairs):
        order = (True, False) if k % 2 == 0 else (False, True)
        tok_s = {arm: timed(arm) for arm in order}
        diff_pct = 100.0 * (tok_s[True] - tok_s[False]) / tok_s[False]
        rows.append({"pair": k, "first": "meter" if order[0] else "none", "tok_s_meter": tok_s[True],
                     "tok_s_none": tok_s[False], "diff_pct": diff_pct})
        print(f"pair {k:2d}: with meter {tok_s[True]:8.2f} tok/s, without {tok_s[False]:8.2f} tok/s, "
              f"{diff_pct:+.3f} %", flush=True)

    diffs = np.array([r["diff_pct"] for r in rows])
    ci = stats.bootstrap((diffs,), np.median, confidence_level=0.95, n_resamples=10_000,
                         random_state=np.random.default_rng(0)).confidence_interval
    wilcoxon = stats.wilcoxon(diffs)
    summary = {
        "model": args.model, "quant": args.quant, "batch_size": args.batch_size, "regime": "graph",
        "new_tokens": args.new_tokens, "pairs": args.pairs, "gpu": hardware.gpu.name if hardware.gpu else "",
        "driver": hardware.driver, "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
        "tok_s_none_median": statistics.median(r["tok_s_none"] for r in rows),
        "tok_s_meter_median": statistics.median(r["tok_s_meter"] for r in rows),
        "diff_pct_median": float(np.median(diffs)), "diff_pct_ci95": [float(ci.low), float(ci.high)],
        "wilcoxon_p": float(wilcoxon.pvalue),
        "command": " ".join([sys.executable, *sys.argv]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "meter_overhead.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "meter_overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"meter overhead on throughput ({summary['gpu']}, {args.model} {args.quant} bs={args.batch_size} graph, "
          f"{args.pairs} pairs): median {summary['diff_pct_median']:+.3f} % "
          f"(95 % CI {ci.low:+.3f} to {ci.high:+.3f} %), Wilcoxon p = {wilcoxon.pvalue:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
