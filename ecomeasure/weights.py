"""Where a model's weights come from: a real checkpoint, or the exact architecture with
random weights, saved once as a safetensors checkpoint.

Either way the model is loaded by the same call,
``AutoModelForCausalLM.from_pretrained(path, dtype=..., quantization_config=..., device_map=...)``,
so a quantized random-weight model runs the same bitsandbytes code as the real one. Energy
per token depends on the architecture and the kernels, not on the weights' values (greedy
decoding is forced to a fixed length, so no early stop can differ).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import models, quant
from .errors import summarize

MARKER = "ecomeasure-random-weights.json"
"""Written last into a random-weight checkpoint: without it the directory is incomplete."""

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
# What a download of a real checkpoint fetches: weights, configs and tokenizer files, but not
# duplicate formats (Mistral's consolidated.safetensors would double the download).
_ALLOW = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
_IGNORE = ["consolidated*", "original/*", "*.pth", "*.gguf"]


@dataclass(frozen=True)
class Weights:
    """Resolved weights of one model."""
    model: str
    """The name the user gave (alias, HF id or path)."""
    model_id: str
    """HF id or local path of the model."""
    path: Path
    """Directory ``from_pretrained`` loads."""
    kind: str
    """``real`` or ``random``."""
    note: str
    """How they were found or made, for the log and the run file."""
    spec: models.ModelSpec | None = None


class WeightsUnavailableError(RuntimeError):
    """Neither a checkpoint nor an architecture to build random weights from."""


def default_weights_dir() -> Path:
    """Root of random-weight checkpoints: ``$ECOMEASURE_CACHE/random-weights`` or
    ``~/.cache/ecomeasure/random-weights``."""
    root = os.environ.get("ECOMEASURE_CACHE")
    return Path(root) / "random-weights" if root else Path.home() / ".cache" / "ecomeasure" / "random-weights"


def _has_weights(path: Path) -> bool:
    return (path / "config.json").is_file() and any(any(path.glob(p)) for p in _WEIGHT_PATTERNS)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def find_real_weights(model_id: str, allow_download: bool) -> tuple[Path | None, str]:
    """A real checkpoint of ``model_id`` (local path, HF cache, or a download if allowed):
    (directory or None, why)."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        return (local, "local checkpoint") if _has_weights(local) else (
            None, f"{local} holds no config.json with weights")
    from huggingface_hub import snapshot_download
    try:
        path = Path(snapshot_download(model_id, local_files_only=True, allow_patterns=_ALLOW,
                                      ignore_patterns=_IGNORE))
        if _has_weights(path):
            return path, "HuggingFace cache"
    except Exception as exc:  # noqa: BLE001 - any miss means "not cached"
        reason = f"not in the HuggingFace cache ({type(exc).__name__})"
    else:
        reason = "the HuggingFace cache holds no weights for it"
    if not allow_download or _offline():
        return None, reason + ("; HF_HUB_OFFLINE is set" if _offline() else "")
    try:
        path = Path(snapshot_download(model_id, allow_patterns=_ALLOW, ignore_patterns=_IGNORE))
    except Exception as exc:  # noqa: BLE001 - unreachable, gated or absent: fall back
        return None, f"{reason}; download failed ({summarize(exc, limit=200)})"
    return (path, "downloaded from the HuggingFace hub") if _has_weights(path) else (
        None, f"{reason}; the download holds no weights")


def _cached_config(model_id: str) -> Any:
    """The config of a model not in the registry, if the HF cache has it (else None)."""
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(model_id, local_files_only=True)
    except Exception:  # noqa: BLE001
        return None


def _fingerprint(config_dict: dict[str, Any], seed: int) -> str:
    config_dict = {k: v for k, v in config_dict.items() if k != "transformers_version"}
    blob = json.dumps({"config": config_dict, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name)


def is_complete(path: Path, fingerprint: str | None = None) -> bool:
    """Whether ``path`` is a finished random-weight checkpoint (of ``fingerprint``)."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("complete") is True and (fingerprint is None or marker.get("fingerprint") == fingerprint)


def create_random_checkpoint(config: Any, dest: Path, *, device: str, seed: int,
                             generation: dict[str, Any] | None = None) -> Path:
    """Builds ``config``'s architecture with random float16 weights directly on ``device``
    (seeded), saves it with safetensors into ``dest`` and writes the marker last.

    The checkpoint is written to a temporary sibling and renamed into place, so an interrupted
    save never looks complete; a stale incomplete ``dest`` is replaced. Processes that make
    the same checkpoint at once (the ranks of a sweep) take turns on a lock beside it: the
    first makes it, the others find it complete (without the lock, one rank could replace the
    checkpoint another is loading).
    """
    from filelock import FileLock

    fingerprint = _fingerprint(config.to_dict(), seed)  # before a model built from config alters it
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(dest.parent / f".{dest.name}.lock"):
        if not is_complete(dest, fingerprint):
            _save_random_checkpoint(config, dest, fingerprint, device=device, seed=seed, generation=generation)
    return dest


def _save_random_checkpoint(config: Any, dest: Path, fingerprint: str, *, device: str, seed: int,
                            generation: dict[str, Any] | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    try:
        torch.manual_seed(seed)  # seeds the CPU and every CUDA generator
        # Built on the target device in the target dtype: initializing 7B parameters there
        # takes seconds on a GPU, minutes on a CPU in float32.
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
        if generation:
            model.generation_config = GenerationConfig(**generation)
        tmp.mkdir(parents=True)
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        _save_weights(model, tmp / "model.safetensors")
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        (tmp / MARKER).write_text(json.dumps({
            "complete": True, "fingerprint": fingerprint, "seed": seed, "device": device,
            "dtype": "float16", "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 2)}, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _save_weights(model: Any, path: Path) -> None:
    """``model``'s state dict as one safetensors file, a tensor shared by several names (tied
    embeddings) once, under its first name, as ``save_pretrained`` stores it. Not
    ``save_pretrained`` itself: under torch.distributed, transformers 5 writes only on rank 0,
    and a sweep's other ranks make the random weights of the models they run. Not safetensors'
    ``save_model`` either: of a tied pair it keeps the alphabetically first name (``lm_head``),
    a layout transformers would have to tie backwards on load."""
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        storage = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and storage in seen:
            continue
        seen.add(storage)
        tensors[name] = tensor.detach().to("cpu").contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})


def resolve(name: str, *, weights_dir: Path | None = None, device: str = "cpu", seed: int = 0,
            mode: str = "auto", allow_download: bool = True,
            log: Callable[[str], None] = lambda _msg: None) -> Weights:
    """Finds or makes the weights of model ``name``.

    ``mode``: ``auto`` (a real checkpoint if cached or reachable, else random weights of the
    exact architecture), ``real`` (fail without a checkpoint) or ``random`` (always random).
    """
    if mode not in {"auto", "real", "random"}:
        raise ValueError(f"mode must be auto, real or random, not {mode!r}")
    spec = models.lookup(name)
    model_id = spec.hf_id if spec is not None else name
    why = "random weights requested" if model_id is not None else "a test architecture without a checkpoint"
    if mode != "random" and model_id is not None:
        path, why = find_real_weights(model_id, allow_download)
        if path is not None:
            return Weights(name, model_id, path, "real", why, spec)
    if mode == "real":
        raise WeightsUnavailableError(f"no real checkpoint of {name}: {why}")
    if spec is not None:
        config = spec.build_config()
        generation = {"bos_token_id": spec.bos_token_id, "eos_token_id": spec.eos_token_id,
                      "pad_token_id": spec.pad_token_id}
        key = spec.alias
    else:
        cached = _cached_config(name) if not Path(name).expanduser().exists() else None
        if cached is None:
            raise WeightsUnavailableError(
                f"no weights for {name}: {why}, and its architecture is unknown (not a "
                f"registered model, no cached config.json); registered: {', '.join(models.valid_names())}")
        config = cached
        generation = {k: getattr(config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        key = _safe_name(name)
    dest = Path(weights_dir or default_weights_dir()) / key
    fingerprint = _fingerprint(config.to_dict(), seed)
    if is_complete(dest, fingerprint):
        return Weights(name, model_id or name, dest, "random", f"{why}; random weights from {dest}", spec)
    log(f"{name}: {why}; building its architecture with random weights (seed {seed}) into {dest}")
    create_random_checkpoint(config, dest, device=device, seed=seed, generation=generation)
    return Weights(name, model_id or name, dest, "random", f"{why}; random weights created in {dest}", spec)


def load_model(weights: Weights, quant_name: str, device: str) -> Any:
    """Loads ``weights`` under configuration ``quant_name`` onto ``device`` (eval mode)."""
    from transformers import AutoModelForCausalLM

    kwargs = quant.from_pretrained_kwargs(quant_name)
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(weights.path, local_files_only=True, **kwargs)
    return model.eval()


def load_tokenizer(weights: Weights) -> Any:
    """The model's tokenizer if one is on disk (the checkpoint's, or the HF cache's for the
    real model of a random-weight checkpoint), else None."""
    from transformers import AutoTokenizer

    candidates: list[Path | str] = [weights.path] if weights.kind == "real" else []
    if weights.spec is not None and weights.spec.hf_id:
        candidates.append(weights.spec.hf_id)
    elif weights.kind == "random":
        candidates.append(weights.model_id)
    for source in candidates:
        try:
            return AutoTokenizer.from_pretrained(source, local_files_only=True)
        except Exception:  # noqa: BLE001 - no tokenizer there: try the next, else estimate
            continue
    return None


def config_of(weights: Weights) -> Any:
    """The architecture config of ``weights`` (for counting parameters)."""
    if weights.spec is not None:
        return weights.spec.build_config()
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(weights.path, local_files_only=True)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # count the architecture, not a quantized layout
    return config
