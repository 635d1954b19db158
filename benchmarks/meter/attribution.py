"""Energy per request in a continuous-batching loop: does the split add up on a real GPU?

A small serving loop over a transformers model with random weights (built in memory from the
architecture in ecomeasure.models; no download, nothing written): requests with prompts and
outputs of different lengths arrive while it runs, join the batch at the next step and leave
it when done, so their windows overlap. Each step runs the whole batch in one forward pass
(left-padded, no KV cache: every step processes each request's full sequence) and takes
greedy tokens. An ``ecomeasure.attribution.Attributor`` marks each join, leave and step; the
energy the meter measured is then split among the requests three ways: by the tokens each
request had processed in each step (its share of the forward pass; the default), by tokens
produced (one each per step), and equally.

Checks written to DIR/attribution.json (``checks`` and ``goals``):
- the parts against the union's energy measured directly (the headline of each stretch in
  which some request was open; goal within 0.1 %);
- the parts plus the not-attributed energy against the GPU's energy counter difference over
  the run: the meter's counter trace, and NVML's counter read directly at the run's edges
  (goal within 1 %);
- the sum of the windows measured one by one, which counts shared time once per request.

Also writes DIR/traces.npz (Meter.save), DIR/windows.json (Attribution.save: the windows and
each part), DIR/trace.json (Perfetto) and DIR/power.png.

    python -m benchmarks.meter.attribution --out DIR [--model qwen2-1.5b] [--seconds 60]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ecomeasure.units import NS_PER_S


@dataclass
class Request:
    request_id: str
    prompt: list[int]
    new_tokens: int
    arrival_ns: int
    tokens: list[int] = field(default_factory=list)

    @property
    def produced(self) -> int:
        return len(self.tokens) - len(self.prompt)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="qwen2-1.5b", help="an architecture of ecomeasure.models (random weights)")
    p.add_argument("--device", default="cuda:0", help="cuda:N; cpu only for a smoke run on the fake NVML")
    p.add_argument("--gpu-index", type=int, default=None, help="NVML index to read (default: the device's)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long requests keep arriving")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--arrival-rate", type=float, default=4.0, help="requests per second (Poisson)")
    p.add_argument("--prompt-tokens", type=int, nargs=2, default=(16, 256), metavar=("MIN", "MAX"))
    p.add_argument("--new-tokens", type=int, nargs=2, default=(8, 96), metavar=("MIN", "MAX"))
    p.add_argument("--idle-seconds", type=float, default=2.0, help="idle before and after, in the span")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.seconds > 0 and args.max_batch > 0 and args.arrival_rate > 0 and args.idle_seconds >= 0):
        p.error("--seconds, --max-batch and --arrival-rate must be positive, --idle-seconds not negative")
    if not (0 < args.prompt_tokens[0] <= args.prompt_tokens[1] and 0 < args.new_tokens[0] <= args.new_tokens[1]):
        p.error("--prompt-tokens and --new-tokens need 0 < MIN <= MAX")
    return args


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_model(name: str, device: str, seed: int):
    import torch
    from transformers import AutoModelForCausalLM

    from ecomeasure import models

    spec = models.lookup(name)
    if spec is None:
        fail(f"unknown architecture {name!r}; choose from {', '.join(models.valid_names())}")
    torch.manual_seed(seed)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(spec.build_config(), dtype=dtype)
    return model.eval(), spec


def forward(model, batch: list[Request], device: str, pad_id: int) -> list[int]:
    """One step: the whole batch in one forward pass, left-padded; the greedy next tokens
    (reading them waits for the GPU, so host marks after it are on time)."""
    import torch

    length = max(len(r.tokens) for r in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for k, r in enumerate(batch):
        ids[k, length - len(r.tokens):] = torch.tensor(r.tokens)
        mask[k, length - len(r.tokens):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        # Only the last position's logits: the full vocabulary at every position would not fit.
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                       logits_to_keep=1).logits
    return logits[:, -1, :].argmax(-1).tolist()


def direct_counter_mj(nvml_index: int) -> float:
    """NVML's total energy counter (mJ) read now, or NaN where it cannot be read."""
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(nvml_index)))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - a cross-check only; the meter's counter trace is the figure
        return float("nan")


def serve(model, spec, args, attributor, rng: random.Random) -> tuple[list[Request], int, bool]:
    """The loop: arrivals, steps, leaves. Returns the requests, the steps run, and whether it
    was interrupted (Ctrl-C stops the arrivals and closes the open requests: nothing measured
    is lost)."""
    vocab = spec.vocab_size
    pad_id = spec.pad_token_id if spec.pad_token_id is not None else 0
    start_ns = time.monotonic_ns()
    next_arrival_ns = start_ns
    waiting: list[Request] = []
    active: list[Request] = []
    done: list[Request] = []
    steps = 0
    interrupted = False
    try:
        while True:
            now = time.monotonic_ns()
            arriving = now - start_ns < args.seconds * NS_PER_S
            while arriving and next_arrival_ns <= now:
                n = len(done) + len(active) + len(waiting)
                prompt = [rng.randrange(1, vocab) for _ in range(rng.randint(*args.prompt_tokens))]
                waiting.append(Request(f"r{n:04d}", prompt, rng.randint(*args.new_tokens), next_arrival_ns,
                                       list(prompt)))
                next_arrival_ns += int(rng.expovariate(args.arrival_rate) * NS_PER_S)
            while waiting and len(active) < args.max_batch:
                r = waiting.pop(0)
                attributor.open(r.request_id)
                active.append(r)
            if not active:
                if not arriving and not waiting:
                    break
                time.sleep(max(0.0, min(next_arrival_ns - time.monotonic_ns(), 0.05 * NS_PER_S) / NS_PER_S))
                continue
            tokens = forward(model, active, args.device, pad_id)
            # Weights: the tokens each request's sequence put through this forward pass.
            attributor.step({r.request_id: len(r.tokens) for r in active})
            steps += 1
            for r, token in zip(active, tokens):
                r.tokens.append(int(token))
            for r in [r for r in active if r.produced >= r.new_tokens]:
                attributor.close(r.request_id)
                active.remove(r)
                done.append(r)
    except KeyboardInterrupt:
        interrupted = True
        for r in active:
            attributor.close(r.request_id)
            done.append(r)
    return done, steps, interrupted


def union_stretches(windows) -> list[tuple[int, int]]:
    """The union of the windows as disjoint stretches."""
    out: list[list[int]] = []
    for w in sorted(windows, key=lambda w: w.start_ns):
        if out and w.start_ns <= out[-1][1]:
            out[-1][1] = max(out[-1][1], w.end_ns)
        else:
            out.append([w.start_ns, w.end_ns])
    return [(a, b) for a, b in out]


def pct(a: float, b: float) -> float:
    return (a - b) / b * 100 if b else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / ".write-test").write_text("")
        (args.out / ".write-test").unlink()
    except OSError as exc:
        fail(f"--out {args.out}: not writable ({exc.strerror or exc})")
    import torch

    from ecomeasure import Meter, export
    from ecomeasure.attribution import Attributor, Step, attribute

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            fail("no CUDA device (use --device cpu only with the fake NVML)")
        torch.cuda.set_device(torch.device(args.device))
    if args.gpu_index is not None:
        nvml_index = args.gpu_index
    elif args.device.startswith("cuda"):
        from benchmarks._torch_gpu import nvml_index_of_current_device
        nvml_index = nvml_index_of_current_device()
    else:
        nvml_index = 0
    model, spec = build_model(args.model, args.device, args.seed)
    rng = random.Random(args.seed)
    # Warm up the shapes' kernels so the first requests are not the ones that pay for them.
    warm = [Request("warm", [1] * args.prompt_tokens[1], 1, 0, [1] * args.prompt_tokens[1])] * min(4, args.max_batch)
    for _ in range(3):
        forward(model, warm, args.device, 0)

    meter = Meter(devices=[nvml_index])
    attributor = Attributor()
    try:
        time.sleep(args.idle_seconds)
        span_start_ns = time.monotonic_ns()
        counter_start_mj = direct_counter_mj(nvml_index)
        requests, steps, interrupted = serve(model, spec, args, attributor, rng)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        time.sleep(args.idle_seconds)
        span_end_ns = time.monotonic_ns()
        counter_end_mj = direct_counter_mj(nvml_index)
        span = (span_start_ns, span_end_ns)
        windows, weighted = attributor.windows(), attributor.steps()
        by_processed = attribute(meter, windows, weighted, span_ns=span)
        by_produced = attribute(meter, windows, [Step(s.start_ns, s.end_ns, dict.fromkeys(s.weights, 1.0))
                                                 for s in weighted], span_ns=span)
        by_equal = attribute(meter, windows, span_ns=span)
        union_j = math.fsum(meter.measure_ns(a, b).energy_j for a, b in union_stretches(windows))
        whole = meter.measure_ns(*span, "run")
        alone = {w.request_id: meter.measure_ns(w.start_ns, w.end_ns).energy_j for w in windows}
    finally:
        meter.stop()
    meter.save(args.out / "traces.npz")
    by_processed.save(args.out / "windows.json")

    counter_j = whole.source_energy_j("counter")
    direct_j = (counter_end_mj - counter_start_mj) / 1000
    result = by_processed
    checks: dict[str, Any] = {
        "attributed_j": result.attributed_j, "union_measured_j": union_j,
        "attributed_vs_union_pct": pct(result.attributed_j, union_j),
        "total_j": result.total_j, "not_attributed_j": result.not_attributed_j,
        "counter_j": counter_j, "total_vs_counter_pct": pct(result.total_j, counter_j),
        "direct_counter_j": direct_j, "total_vs_direct_counter_pct": pct(result.total_j, direct_j),
        "headline_j": whole.energy_j, "method": whole.method,
        "windows_measured_alone_sum_j": math.fsum(alone.values()),
        "windows_alone_vs_union_pct": pct(math.fsum(alone.values()), union_j),
    }
    by_id: dict[Any, Request] = {r.request_id: r for r in requests}
    summary = {
        "model": args.model, "weights": "random", "device": args.device, "nvml_index": nvml_index,
        "gpu": meter.devices[0].name if meter.devices else "", "driver_version": meter.driver_version,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "interrupted": interrupted,
        "settings": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                     for k, v in vars(args).items()},
        "requests": len(requests), "steps": steps, "span_s": (span_end_ns - span_start_ns) / NS_PER_S,
        "checks": checks,
        "goals": {"attributed_vs_union_within_0.1pct": abs(checks["attributed_vs_union_pct"]) <= 0.1,
                  "total_vs_counter_within_1pct": abs(checks["total_vs_counter_pct"]) <= 1.0},
        "split": {name: {k: v for k, v in a.to_dict().items() if k not in ("windows", "energy_j", "devices")}
                  for name, a in [("processed", by_processed), ("produced", by_produced), ("equal", by_equal)]},
        "per_request": [
            {"request_id": w.request_id, "prompt_tokens": len(by_id[w.request_id].prompt),
             "new_tokens": by_id[w.request_id].produced, "window_s": w.duration_s,
             "energy_j_processed": by_processed.energy_j[w.request_id],
             "energy_j_produced": by_produced.energy_j[w.request_id],
             "energy_j_equal": by_equal.energy_j[w.request_id], "window_alone_j": alone[w.request_id]}
            for w in windows],
    }
    (args.out / "attribution.json").write_text(json.dumps(summary, indent=1))
    try:  # the pictures come last: a failure there loses nothing measured
        saved = export.load_saved(args.out / "traces.npz")
        shown, marks = export.read_windows(args.out / "windows.json")
        trace = export.trace_events(saved, shown, marks, offset_ns=saved.realtime_offset_ns)
        (args.out / "trace.json").write_text(json.dumps(trace, separators=(",", ":")))
        export.plot(saved, shown, args.out / "power.png", title=f"{args.model} continuous batching: requests shaded")
    except Exception as exc:  # noqa: BLE001
        print(f"warning: trace.json/power.png not written ({exc})", file=sys.stderr)
    print(f"{len(requests)} requests, {steps} steps over {summary['span_s']:.1f} s on {summary['gpu']}: "
          f"parts {checks['attributed_j']:.1f} J vs union {union_j:.1f} J ({checks['attributed_vs_union_pct']:+.3f} %); "
          f"total {result.total_j:.1f} J vs counter {counter_j:.1f} J ({checks['total_vs_counter_pct']:+.2f} %), "
          f"direct {direct_j:.1f} J; windows alone sum {checks['windows_measured_alone_sum_j']:.1f} J")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
