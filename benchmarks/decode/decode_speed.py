"""How fast each way of running the GPU-bound decode step goes, and where its time goes.

For one model and quantization (default Mistral-7B fp16, batch size 1), each variant builds a
``StaticDecoder`` (the ``graph`` regime, or ``compiled`` with a set of inductor options),
then times decode steps (CUDA events around ``steps`` replays, after the prefill; median of
``--repeats``) and profiles one uncaptured step (torch.profiler: the GPU time of its kernels,
by kind). The step time over the kernels' time shows what is launch gaps rather than work;
the memory-bandwidth floor (weights and KV cache read once, at NVML's peak bandwidth) shows
how far the work is from the hardware.

    python -m benchmarks.decode.decode_speed --model mistral --out DIR [--variants graph compiled ...]

Writes DIR/decode_speed.json and prints a table; no meter runs (this measures speed only).
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

# Inductor options of each compiled variant (``torch.compile(..., options=...)``).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "graph": None,  # the uncompiled step, captured
    "compiled": {},  # inductor's defaults
    "compiled-cdt": {"coordinate_descent_tuning": True},
    "compiled-autotune": {"max_autotune": True, "coordinate_descent_tuning": True},
}


def kernel_kind(name: str) -> str:
    """matmul (cuBLAS, including Hopper's ``nvjet_*`` kernels and split-K reductions, and
    bitsandbytes' kernels), attention, triton (inductor's fused kernels) or other."""
    lowered = name.lower()
    if any(k in lowered for k in ("sdpa", "flash", "fmha", "attention", "efficient")) and \
            not lowered.startswith("triton"):
        return "attention"
    if any(k in lowered for k in ("nvjet", "gemv", "gemm", "cutlass", "xmma", "cublas", "splitk", "matmul",
                                  "kgemm", "kdequantize", "int8")):
        return "matmul"
    if lowered.startswith("triton"):
        return "triton (fused)"
    return "other"


def profile_step(decoder: Any, steps: int = 4) -> dict[str, Any]:
    """GPU time of the kernels of ``steps`` uncaptured steps, per step, by kind."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    graph, decoder.graph = decoder.graph, None
    try:
        with torch.inference_mode():
            decoder._start()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(steps):
                    decoder._advance()
                torch.cuda.synchronize()
    finally:
        decoder.graph = graph
    by_name: dict[str, list[float]] = {}
    for event in prof.key_averages():
        us = getattr(event, "self_device_time_total", None)
        if us is None:
            us = getattr(event, "self_cuda_time_total", 0.0)
        if us > 0 and event.count:
            by_name[event.key] = [us / steps, event.count / steps]
    kinds: dict[str, float] = {}
    for name, (us, _) in by_name.items():
        kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + us
    top = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:10]
    return {"kernel_us_per_step": sum(us for us, _ in by_name.values()),
            "kernels_per_step": sum(n for _, n in by_name.values()),
            "us_per_step_by_kind": kinds,
            "top_kernels": [{"name": n[:120], "us_per_step": us, "per_step": c} for n, (us, c) in top]}


def time_steps(decoder: Any, steps: int, repeats: int) -> list[float]:
    """Seconds per decode step, once per repeat: CUDA events around ``steps`` replays."""
    import torch

    out = []
    with torch.inference_mode():
        for _ in range(repeats):
            decoder._start()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                decoder._advance()
            end.record()
            torch.cuda.synchronize()
            out.append(start.elapsed_time(end) / 1e3 / steps)
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks._torch_gpu import decoding_parser, load_for_decoding

    p = decoding_parser(__doc__, model="mistral", new_tokens=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)

    import torch

    from ecomeasure import generation, roofline

    hardware, resolved, model, prompt = load_for_decoding(args.model, args.quant, args.batch_size, args.device,
                                                          args.weights_dir)
    bandwidth = roofline.peak_bandwidth(hardware.energy.nvml_index, hardware.gpu.name if hardware.gpu else "")
    floor = roofline.decode_floor(model, args.batch_size, prompt.prompt_tokens, args.new_tokens, bandwidth)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "model": args.model, "quant": args.quant, "batch_size": args.batch_size, "new_tokens": args.new_tokens,
        "gpu": hardware.gpu.name if hardware.gpu else "", "driver": hardware.driver,
        "torch": torch.__version__, "weights": resolved.kind,
        "bytes_per_step": floor.bytes_per_step, "bandwidth_gb_s": bandwidth.bytes_per_s / 1e9,
        "bandwidth_source": bandwidth.source, "floor_ms_per_step": floor.floor_s_per_step * 1e3,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "variants": {}}
    path = args.out / "decode_speed.json"
    print(f"{args.model} {args.quant} bs={args.batch_size}: floor {floor.floor_s_per_step * 1e3:.2f} ms/step "
          f"({floor.bytes_per_step / 1e9:.2f} GB at {bandwidth.bytes_per_s / 1e12:.2f} TB/s)", flush=True)
    for name in args.variants:
        options = VARIANTS[name]
        torch._dynamo.reset()
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"options": options}
        try:
            decoder = generation.StaticDecoder(model, prompt, args.new_tokens, capture=True,
                                               compile=options is not None, compile_options=options)
        except generation.GraphUnavailableError as exc:
            entry["error"] = str(exc)
            result["variants"][name] = entry
            print(f"{name}: unavailable: {exc}", flush=True)
            continue
        entry["build_s"] = time.perf_counter() - t0
        per_step = time_steps(decoder, args.new_tokens - 1, args.repeats)
        step_s = statistics.median(per_step)
        entry.update(step_ms=[s * 1e3 for s in per_step], step_ms_median=step_s * 1e3,
                     tok_s=args.batch_size / step_s, floor_fraction=floor.fraction(step_s),
                     prefill_captured=decoder.prefill_graph is not None, notes=decoder.notes)
        entry["profile"] = profile_step(decoder)
        result["variants"][name] = entry
        path.write_text(json.dumps(result, indent=1))
        prof = entry["profile"]
        print(f"{name}: {step_s * 1e3:.3f} ms/step = {entry['tok_s'] * 1:.1f} tok/s, "
              f"{entry['floor_fraction']:.0%} of floor; kernels {prof['kernel_us_per_step'] / 1e3:.3f} ms/step "
              f"({prof['kernels_per_step']:.0f} kernels; "
              + ", ".join(f"{k} {v / 1e3:.2f} ms" for k, v in sorted(prof["us_per_step_by_kind"].items()))
              + f"); built in {entry['build_s']:.0f} s", flush=True)
        del decoder
        torch.cuda.empty_cache()
    result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
