"""How close a decode step comes to the GPU's memory bandwidth.

At small batch sizes a decode step is bound by memory: it reads every weight once and the
KV cache of every sequence. Its floor is those bytes divided by the GPU's peak memory
bandwidth; the fraction of that floor a run achieves says how much of its time is the
hardware's and how much is overhead (host, launches, kernels below peak).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Peak memory bandwidth (bytes/s) from the vendors' data sheets, for GPUs whose NVML does not
# report the memory clock and bus width. Keys are matched as substrings of NVML's name.
DATASHEET_BANDWIDTH_B_S: dict[str, float] = {
    "H200": 4.8e12,
    "H100 80GB HBM3": 3.35e12,
    "H100 PCIe": 2.0e12,
    "A100-SXM4-80GB": 2.039e12,
    "A100 80GB PCIe": 1.935e12,
    "A800": 2.039e12,
    "RTX 5090": 1.792e12,
    "RTX 4090": 1.008e12,
}


@dataclass(frozen=True)
class Bandwidth:
    """Peak memory bandwidth and where the figure came from."""
    bytes_per_s: float
    source: str
    """``nvml`` (max memory clock x bus width x 2, double data rate), ``datasheet``, or
    ``unknown``."""


def peak_bandwidth(nvml_index: int | None, gpu_name: str = "", nvml_library: str | None = None) -> Bandwidth:
    """The GPU's peak memory bandwidth: from NVML's maximum memory clock and bus width where
    it reports both, else from the data-sheet table by name, else NaN."""
    if nvml_index is not None:
        try:
            clock_hz, bus_bits = _nvml_memory(nvml_index, nvml_library)
            if clock_hz > 0 and bus_bits > 0:
                return Bandwidth(clock_hz * 2 * bus_bits / 8, "nvml")
        except Exception:  # noqa: BLE001 - any NVML failure: fall back to the table
            pass
    for name, value in DATASHEET_BANDWIDTH_B_S.items():
        if name in gpu_name:
            return Bandwidth(value, "datasheet")
    return Bandwidth(math.nan, "unknown")


def _nvml_memory(index: int, library: str | None) -> tuple[float, int]:
    import pynvml

    from .reference import bind_library

    if library:
        bind_library(pynvml, library)
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        clock_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
    finally:
        pynvml.nvmlShutdown()
    return clock_mhz * 1e6, int(bus_bits)


def _tensor_bytes(t: Any) -> int:
    return int(t.numel()) * int(t.element_size())


def stored_tensors(t: Any) -> list[Any]:
    """The plain tensors that hold ``t``: ``t`` itself, or, for a tensor subclass that wraps
    others (torchao's quantized weights: packed data, scales, zero points, as
    ``__tensor_flatten__`` names them), those, recursively. A wrapper holds no storage of its
    own (its ``data_ptr`` is 0): its logical shape and dtype say nothing of its bytes."""
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is None:
        return [t]
    names, _ = t.__tensor_flatten__()
    return [inner for name in names if (value := getattr(t, name, None)) is not None
            for inner in stored_tensors(value)]


def weight_bytes(model: Any) -> int:
    """Bytes a decode step reads of the model's weights: every parameter and buffer as
    stored (packed 4-bit, int8 or fp8 where quantized, with torchao's padding), plus the
    quantization statistics (bitsandbytes' 4-bit absmax and code and int8 row scales;
    torchao's scales and zero points), less the input embedding table, of which a step
    reads only its tokens' rows (unless the output layer shares it)."""
    seen: set[int] = set()
    total = 0

    def add(t: Any) -> None:
        nonlocal total
        if t is None or not hasattr(t, "data_ptr"):
            return
        for s in stored_tensors(t):
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += _tensor_bytes(s)

    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight.data_ptr() == embedding.data_ptr()
    if not tied:
        seen.add(embedding.data_ptr())
    for t in list(model.parameters()) + list(model.buffers()):
        add(t)
        state = getattr(t, "quant_state", None)  # bitsandbytes 4-bit
        if state is not None:
            add(getattr(state, "absmax", None))
            add(getattr(state, "code", None))
            nested = getattr(state, "state2", None)
            if nested is not None:
                add(getattr(nested, "absmax", None))
                add(getattr(nested, "code", None))
        add(getattr(t, "SCB", None))  # bitsandbytes int8 row scales
    return total


def kv_cache_bytes_per_step(config: Any, batch_size: int, prompt_tokens: int, new_tokens: int,
                            dtype_bytes: int) -> float:
    """Bytes of KV cache a decode step reads, averaged over the decode: every layer's keys
    and values of every earlier position (prompt + tokens so far) of every sequence."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    mean_context = prompt_tokens + new_tokens / 2
    return 2.0 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes * batch_size * mean_context


@dataclass(frozen=True)
class DecodeFloor:
    """The memory-bandwidth floor of one decode step."""
    weight_bytes: int
    kv_bytes_per_step: float
    bandwidth: Bandwidth

    @property
    def bytes_per_step(self) -> float:
        return self.weight_bytes + self.kv_bytes_per_step

    @property
    def floor_s_per_step(self) -> float:
        return self.bytes_per_step / self.bandwidth.bytes_per_s

    def fraction(self, step_s: float) -> float:
        """Floor / measured time per step: 1.0 would be the GPU's peak bandwidth throughout."""
        return self.floor_s_per_step / step_s if step_s > 0 else math.nan


def decode_floor(model: Any, batch_size: int, prompt_tokens: int, new_tokens: int,
                 bandwidth: Bandwidth) -> DecodeFloor:
    """The floor of a decode step of ``model`` at this batch size and length."""
    dtype_bytes = 2  # the KV cache is kept in the compute dtype: fp16 or bf16 in every config
    return DecodeFloor(weight_bytes(model),
                       kv_cache_bytes_per_step(model.config, batch_size, prompt_tokens, new_tokens, dtype_bytes),
                       bandwidth)
