"""Quantization configurations by name: the seed study's, built exactly as it built them, and
torchao's weight-only and dynamic-activation schemes.

Each name maps to the keyword arguments of ``AutoModelForCausalLM.from_pretrained``: a
compute dtype and, for the bitsandbytes schemes, a ``BitsAndBytesConfig`` with the field
values of the seed study ("Energy Efficiency of Quantized LLM Inference", Hongping Zhang,
https://github.com/hongping-zh/ecocompute-ai), or, for the torchao schemes, a
``TorchAoConfig`` wrapping a torchao config object (transformers 5 accepts no strings).

Every torchao config is built with ``set_inductor_config=False``: torchao's default (True)
changes inductor's settings for the whole process when a model is quantized (coordinate-descent
tuning, int_mm fusion, the FX graph cache; releases before 0.18 also the float32 matmul
precision), so one configuration of a sweep would change how the next one compiles.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

INSTALL_HINT = "pip install bitsandbytes  (or: pip install 'ecomeasure[quant]')"
TORCHAO_MIN_VERSION = "0.18"
"""The oldest torchao whose config objects take the fields used here (``int4_packing_format``
and the version-2 tensors)."""
TORCHAO_INSTALL_HINT = "pip install 'torchao==0.18.0'  (or: pip install 'ecomeasure[quant]')"


@dataclass(frozen=True)
class QuantSpec:
    """One configuration: a compute dtype and, if quantized, the BitsAndBytesConfig fields
    or the torchao config class and its fields.

    ``bnb`` holds only the fields the seed set explicitly; every other field keeps its
    transformers default (so ``int8`` keeps ``llm_int8_threshold=6.0``). ``torchao`` names a
    class of ``torchao.quantization`` and the fields set on it (besides
    ``set_inductor_config=False``, set on all); a field value ``"PerRow()"`` stands for
    ``torchao.quantization.PerRow()``.
    """
    name: str
    description: str
    dtype: str
    bnb: tuple[tuple[str, Any], ...] | None = None
    torchao: tuple[str, tuple[tuple[str, Any], ...]] | None = None

    @property
    def quantized(self) -> bool:
        return self.bnb is not None or self.torchao is not None

    @property
    def backend(self) -> str:
        """``bitsandbytes``, ``torchao`` or empty (not quantized)."""
        return "bitsandbytes" if self.bnb is not None else "torchao" if self.torchao is not None else ""


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
    # torchao: bf16 compute throughout (the int4 tinygemm kernel takes bf16 only; the others
    # are compared with bf16 on the same footing).
    QuantSpec("int4wo", "torchao int4 weight-only, groups of 128, tinygemm tile packing, bf16 compute",
              "bfloat16", torchao=("Int4WeightOnlyConfig", (("group_size", 128),
                                                             ("int4_packing_format", "tile_packed_to_4d")))),
    QuantSpec("int8wo", "torchao int8 weight-only, per-row scales, bf16 compute", "bfloat16",
              torchao=("Int8WeightOnlyConfig", ())),
    QuantSpec("fp8wo", "torchao fp8 (e4m3) weight-only, per-row scales, bf16 compute", "bfloat16",
              torchao=("Float8WeightOnlyConfig", ())),
    QuantSpec("fp8dq", "torchao fp8 dynamic activation + fp8 weight, per-row scales (torch._scaled_mm)",
              "bfloat16", torchao=("Float8DynamicActivationFloat8WeightConfig", (("granularity", "PerRow()"),))),
    QuantSpec("int8dq", "torchao int8 dynamic activation + int8 weight, per-row (torchao's int8_pure)",
              "bfloat16", torchao=("Int8DynamicActivationInt8WeightConfig", ())),
)

QUANTS: dict[str, QuantSpec] = {q.name: q for q in _SPECS}
"""Every configuration by name."""


class UnknownQuantError(ValueError):
    """A configuration name that is not in ``QUANTS``."""


class BackendMissingError(RuntimeError):
    """A quantized configuration was asked for but its library is not installed (or too old)."""


class BitsAndBytesMissingError(BackendMissingError):
    """A quantized configuration was asked for but bitsandbytes is not installed."""


class TorchAoMissingError(BackendMissingError):
    """A torchao configuration was asked for but torchao is not installed or is too old."""


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
    needing = [n for n in names if get(n).backend == "bitsandbytes"]
    if needing and bitsandbytes_version() is None:
        raise BitsAndBytesMissingError(
            f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} bitsandbytes, which is "
            f"not installed: {INSTALL_HINT}")


def torchao_version() -> str | None:
    """The installed torchao version, or None (found without importing it)."""
    if importlib.util.find_spec("torchao") is None:
        return None
    try:
        return importlib.metadata.version("torchao")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _older_than(version: str, minimum: str) -> bool:
    from packaging.version import InvalidVersion, Version
    try:
        return Version(version) < Version(minimum)
    except InvalidVersion:
        return True  # a version that cannot be read cannot be vouched for


def require_torchao(names: Iterable[str]) -> None:
    """Raises TorchAoMissingError if any of ``names`` needs torchao and it is absent or older
    than TORCHAO_MIN_VERSION."""
    needing = [n for n in names if get(n).backend == "torchao"]
    if not needing:
        return
    version = torchao_version()
    what = f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} torchao >= {TORCHAO_MIN_VERSION}"
    if version is None:
        raise TorchAoMissingError(f"{what}, which is not installed: {TORCHAO_INSTALL_HINT}")
    if _older_than(version, TORCHAO_MIN_VERSION):
        raise TorchAoMissingError(f"{what}; torchao {version} is installed: {TORCHAO_INSTALL_HINT}")


def require_backends(names: Iterable[str]) -> None:
    """Raises BackendMissingError (with install instructions) if a library that any of
    ``names`` needs is missing or too old."""
    names = list(names)
    require_bitsandbytes(names)
    require_torchao(names)


def unavailable_reason(name: str, regime: str, batch_size: int, device: str,
                       capability: tuple[int, int] | None) -> str:
    """Why configuration ``name`` cannot run in ``regime`` at ``batch_size`` on ``device``
    (``cuda...`` with compute ``capability``, or ``cpu``), or "" if it can."""
    get(name)  # an unknown name raises
    cuda = device != "cpu"
    cc = f"{capability[0]}.{capability[1]}" if capability else "unknown"
    if name == "int4wo":
        if not cuda:
            return "int4wo needs CUDA: its tinygemm kernel has no CPU version for the tile packing"
        if capability is not None and capability < (8, 0):
            return f"int4wo needs compute capability >= 8.0 (tinygemm's tensor-core kernel); this GPU has {cc}"
    if name == "fp8dq" and (not cuda or (capability is not None and capability < (8, 9))):
        return ("fp8dq needs a CUDA GPU of compute capability >= 8.9 (fp8 matmuls, torch._scaled_mm); "
                + ("this run is on the CPU" if not cuda else f"this GPU has {cc}"))
    if name == "int8dq" and cuda and regime != "eager" and batch_size <= 16:
        # Eager falls back to a float32 matmul when cuBLAS refuses; a captured or compiled
        # step cannot.
        return (f"int8dq at batch size {batch_size} cannot be captured or compiled: torch._int_mm "
                "needs more than 16 rows")
    return ""


def _torch_dtype(name: str) -> Any:
    import torch
    return getattr(torch, name)


def torchao_config(name: str) -> Any:
    """The torchao config object of ``name`` (``set_inductor_config=False``; see the module's
    docstring). Imports torchao."""
    spec = get(name)
    if spec.torchao is None:
        raise ValueError(f"{name} is not a torchao configuration")
    import torchao.quantization as tq
    cls_name, fields = spec.torchao
    values = {k: (tq.PerRow() if v == "PerRow()" else v) for k, v in fields}
    return getattr(tq, cls_name)(**values, set_inductor_config=False)


def quantization_config(name: str) -> Any:
    """The ``BitsAndBytesConfig`` or ``TorchAoConfig`` of ``name`` (None for fp16/bf16).
    Builds the object only: does not check that the library is installed
    (``from_pretrained_kwargs`` does)."""
    spec = get(name)
    if spec.torchao is not None:
        from transformers import TorchAoConfig
        # The default modules_to_not_convert keeps the output layer (lm_head) unquantized,
        # and include_input_output_embeddings=False keeps the embeddings so.
        return TorchAoConfig(torchao_config(name))
    if spec.bnb is None:
        return None
    from transformers import BitsAndBytesConfig
    fields = {k: (_torch_dtype(v) if k == "bnb_4bit_compute_dtype" else v) for k, v in spec.bnb}
    return BitsAndBytesConfig(**fields)


def from_pretrained_kwargs(name: str) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained``: ``dtype`` and, if quantized,
    ``quantization_config``. Raises BackendMissingError with install instructions.

    The bitsandbytes configs also get ``dtype=float16``: the seed passed none, and the
    transformers it ran (4.46/4.47) then loaded every non-quantized module in float16;
    transformers 5 would otherwise take the checkpoint's dtype (often bfloat16).
    """
    spec = get(name)
    require_backends([name])
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(spec.dtype)}
    if spec.quantized:
        kwargs["quantization_config"] = quantization_config(name)
    return kwargs
