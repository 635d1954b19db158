"""Quantization configurations by name, built exactly as the seed study built them.

Each name maps to the keyword arguments of ``AutoModelForCausalLM.from_pretrained``: a
compute dtype and, for the bitsandbytes schemes, a ``BitsAndBytesConfig`` with the seed's
field values (see ``../shared/seed/dataset-memo.md``, "Quantization Configuration").
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

INSTALL_HINT = "pip install bitsandbytes  (or: pip install 'ecomeasure[quant]')"


@dataclass(frozen=True)
class QuantSpec:
    """One configuration: a compute dtype and, if quantized, the BitsAndBytesConfig fields.

    ``bnb`` holds only the fields the seed set explicitly; every other field keeps its
    transformers default (so ``int8`` keeps ``llm_int8_threshold=6.0``).
    """
    name: str
    description: str
    dtype: str
    bnb: tuple[tuple[str, Any], ...] | None = None

    @property
    def quantized(self) -> bool:
        return self.bnb is not None


_SPECS: tuple[QuantSpec, ...] = (
    QuantSpec("fp16", "float16 weights and compute (the seed's baseline)", "float16"),
    QuantSpec("bf16", "bfloat16 weights and compute", "bfloat16"),
    QuantSpec("nf4", "bitsandbytes 4-bit NF4, fp16 compute, no double quantization", "float16",
              (("load_in_4bit", True), ("bnb_4bit_quant_type", "nf4"),
               ("bnb_4bit_compute_dtype", "float16"), ("bnb_4bit_use_double_quant", False))),
    QuantSpec("nf4_dq", "bitsandbytes 4-bit NF4, fp16 compute, double quantization", "float16",
              (("load_in_4bit", True), ("bnb_4bit_quant_type", "nf4"),
               ("bnb_4bit_compute_dtype", "float16"), ("bnb_4bit_use_double_quant", True))),
    QuantSpec("fp4", "bitsandbytes 4-bit FP4, fp16 compute, no double quantization", "float16",
              (("load_in_4bit", True), ("bnb_4bit_quant_type", "fp4"),
               ("bnb_4bit_compute_dtype", "float16"), ("bnb_4bit_use_double_quant", False))),
    QuantSpec("int8", "bitsandbytes LLM.int8 (threshold 6.0: mixed-precision decomposition)",
              "float16", (("load_in_8bit", True),)),
    QuantSpec("int8_pure", "bitsandbytes int8 without outlier decomposition (threshold 0.0)",
              "float16", (("load_in_8bit", True), ("llm_int8_threshold", 0.0),
                          ("llm_int8_skip_modules", None))),
)

QUANTS: dict[str, QuantSpec] = {q.name: q for q in _SPECS}
"""Every configuration by name."""


class UnknownQuantError(ValueError):
    """A configuration name that is not in ``QUANTS``."""


class BitsAndBytesMissingError(RuntimeError):
    """A quantized configuration was asked for but bitsandbytes is not installed."""


def get(name: str) -> QuantSpec:
    """The configuration called ``name``; UnknownQuantError lists the valid ones."""
    try:
        return QUANTS[name]
    except KeyError:
        raise UnknownQuantError(f"unknown quantization {name!r}: use one of "
                                f"{', '.join(QUANTS)}") from None


def bitsandbytes_version() -> str | None:
    """The installed bitsandbytes version, or None (found without importing it)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return None
    try:
        return importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def require_bitsandbytes(names: Iterable[str]) -> None:
    """Raises BitsAndBytesMissingError if any of ``names`` needs bitsandbytes and it is absent."""
    needing = [n for n in names if get(n).quantized]
    if needing and bitsandbytes_version() is None:
        raise BitsAndBytesMissingError(
            f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} bitsandbytes, which is "
            f"not installed: {INSTALL_HINT}")


def _torch_dtype(name: str) -> Any:
    import torch
    return getattr(torch, name)


def quantization_config(name: str) -> Any:
    """The ``BitsAndBytesConfig`` of ``name`` (None for fp16/bf16). Builds the object only:
    does not check that bitsandbytes is installed (``from_pretrained_kwargs`` does)."""
    spec = get(name)
    if spec.bnb is None:
        return None
    from transformers import BitsAndBytesConfig
    fields = {k: (_torch_dtype(v) if k == "bnb_4bit_compute_dtype" else v) for k, v in spec.bnb}
    return BitsAndBytesConfig(**fields)


def from_pretrained_kwargs(name: str) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained``: ``dtype`` and, if quantized,
    ``quantization_config``. Raises BitsAndBytesMissingError with install instructions.

    The bitsandbytes configs also get ``dtype=float16``: the seed passed none, and the
    transformers it ran (4.46/4.47) then loaded every non-quantized module in float16;
    transformers 5 would otherwise take the checkpoint's dtype (often bfloat16).
    """
    spec = get(name)
    require_bitsandbytes([name])
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(spec.dtype)}
    if spec.quantized:
        kwargs["quantization_config"] = quantization_config(name)
    return kwargs
