"""Does capturing the prefill in a CUDA graph change its numbers, and does the attention
backend explain it?

For one model and quantization, under each scaled-dot-product-attention backend (the
default choice, then each backend forced), builds the graph regime's decoder, runs the
prefill uncaptured and captured, and compares the KV cache they leave (largest absolute
difference) and the greedy tokens that follow (uncaptured steps after each prefill), and
both with ``model.generate``'s tokens.

    python -m benchmarks.decode.prefill_numerics --model phi3-mini --quant fp16 --out DIR

Writes DIR/prefill_numerics-<model>-<quant>.json and prints one line per backend.
"""
from __future__ import annotations

import contextlib
import json
import sys
from typing import Any


def kv(decoder: Any) -> list[Any]:
    return [t.clone() for layer in decoder.cache.layers for t in (layer.keys, layer.values)]


def main(argv: list[str] | None = None) -> int:
    from benchmarks._torch_gpu import decoding_parser, load_for_decoding

    p = decoding_parser(__doc__, model="phi3-mini", new_tokens=64, batch_size=False)
    args = p.parse_args(argv)

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ecomeasure import generation
    from ecomeasure.errors import summarize
    from ecomeasure.generation import first_difference

    _, _, model, prompt = load_for_decoding(args.model, args.quant, 1, args.device, args.weights_dir)
    eager = generation.generate(model, prompt, args.new_tokens).token_ids.cpu()
    backends = {"default": None, "math": SDPBackend.MATH, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    result: dict[str, Any] = {"model": args.model, "quant": args.quant, "torch": torch.__version__,
                              "new_tokens": args.new_tokens, "backends": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, backend in backends.items():
        entry: dict[str, Any] = {}
        try:
            with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                decoder = generation.StaticDecoder(model, prompt, args.new_tokens, capture=False)
                decoder._warm_up()
                with torch.inference_mode():
                    steps = args.new_tokens - 1
                    uncaptured = decoder._decode_ids(steps)
                    decoder._prefill()
                    kv_uncaptured = kv(decoder)
                    decoder.prefill_graph = generation._captured(decoder._prefill)
                    decoder.prefill_graph.replay()
                    torch.cuda.synchronize()
                    kv_captured = kv(decoder)
                    captured_prefill = decoder._decode_ids(steps)
            entry["kv_max_abs_diff"] = max(float((a.float() - b.float()).abs().max())
                                           for a, b in zip(kv_uncaptured, kv_captured))
            entry["captured_prefill_vs_uncaptured_from_token"] = first_difference(uncaptured, captured_prefill)
            entry["uncaptured_vs_eager_from_token"] = first_difference(uncaptured, eager)
            entry["captured_prefill_vs_eager_from_token"] = first_difference(captured_prefill, eager)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run here is a finding
            entry["error"] = summarize(exc, limit=200)
        result["backends"][name] = entry
        print(f"{args.model} {args.quant} sdpa={name}: {entry}", flush=True)
    (args.out / f"prefill_numerics-{args.model}-{args.quant}.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
