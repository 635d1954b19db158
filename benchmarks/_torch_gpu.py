"""What the GPU measurement scripts share: their options, the model and prompt loaded as the
bench loads them, and the NVML index of the GPU torch is using. The scripts import it as
``benchmarks._torch_gpu``, so they run from the repository root as
``python -m benchmarks.<group>.<script>``. Imports torch only when called, so that ``--help``
and bad options answer at once."""
import argparse
import sys
from pathlib import Path


def decoding_parser(doc: str, *, model: str, new_tokens: int, batch_size: bool = True) -> argparse.ArgumentParser:
    """A parser with the options every decode script takes (what to load, on which device, and
    where to write), titled by the first paragraph of ``doc``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--model", default=model)
    p.add_argument("--quant", default="fp16")
    if batch_size:
        p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=new_tokens)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--weights-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    return p


def nvml_index_of_current_device() -> int:
    """The NVML index of the GPU torch is using, matched as the bench matches it (by UUID:
    CUDA_VISIBLE_DEVICES renumbers torch's devices, not NVML's)."""
    import torch

    from ecomeasure.bench import environment

    hardware = environment.find_hardware(f"cuda:{torch.cuda.current_device()}")
    assert hardware.gpu is not None  # find_hardware raises where no NVML GPU matches
    return hardware.gpu.index


def load_for_decoding(model: str, quant: str, batch_size: int, device: str, weights_dir) -> tuple:
    """What the decode scripts measure on, loaded as the bench loads it: (hardware, resolved
    weights, model, prompt of ``batch_size`` sequences) on ``device`` (made current)."""
    from ecomeasure import generation, weights
    from ecomeasure.bench import environment

    try:
        device = environment.resolve_device(device)
        hardware = environment.find_hardware(device)
    except environment.SetupError as exc:  # no GPU, no NVML, a bad --device: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    resolved = weights.resolve(model, weights_dir=weights_dir, device=device, mode="auto")
    loaded = weights.load_model(resolved, quant, device)
    prompt = generation.build_prompt(loaded, weights.load_tokenizer(resolved), resolved.spec, batch_size)
    return hardware, resolved, loaded, prompt


def matmul_load(seconds: float, size: int = 8192) -> int:
    """Back-to-back fp16 ``size`` x ``size`` matmuls on torch's current GPU for about
    ``seconds`` (the GPU near its power limit, as ecomeasure.validate loads it); returns how
    many ran. Ends synchronized."""
    import time

    import torch

    a = torch.randn((size, size), device="cuda", dtype=torch.float16)  # random: the most power
    b = torch.randn((size, size), device="cuda", dtype=torch.float16)
    c = torch.empty_like(a)
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(10):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        count += 10
    return count
