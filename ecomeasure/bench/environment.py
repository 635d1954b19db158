"""What the benchmark runs on: the torch device, the NVML GPU that measures it, versions."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import NVMLUnavailableError, __version__
from ..errors import SetupError
from ..meter import DeviceInfo, Meter
from ..quant import bitsandbytes_version, torchao_version

NO_GPU = ("no NVIDIA GPU is visible to PyTorch (torch.cuda.is_available() is False). "
          "To smoke-test the generation loop on the CPU, run with --device cpu (energy is then "
          "measured only if NVML loads, otherwise it is marked unavailable).")


def resolve_device(requested: str | None) -> str:
    """``cuda:N`` or ``cpu``; the default is the current CUDA device, and no GPU is an error."""
    import torch

    name = (requested or "cuda").strip().lower()
    if name == "cpu":
        return "cpu"
    if not re.fullmatch(r"cuda(:\d+)?", name):
        raise SetupError(f"unknown device {requested!r}: use cuda, cuda:N or cpu")
    if not torch.cuda.is_available():
        raise SetupError(NO_GPU)
    index = torch.cuda.current_device() if name == "cuda" else int(name.partition(":")[2] or 0)
    if not 0 <= index < torch.cuda.device_count():
        raise SetupError(f"there is no {name}: PyTorch sees {torch.cuda.device_count()} GPU(s)")
    # The generating GPU becomes the current one: CUDA-graph capture, side streams and
    # bitsandbytes' kernels use the current device, whatever device the model is on.
    torch.cuda.set_device(index)
    return f"cuda:{index}"


@dataclass(frozen=True)
class EnergySetup:
    """Which GPU the meters read, or why energy is not measured."""
    nvml_index: int | None
    nvml_library: str | None = None
    note: str = ""

    @property
    def available(self) -> bool:
        return self.nvml_index is not None


@dataclass(frozen=True)
class Hardware:
    """The device that runs the generation and the NVML GPU that measures energy."""
    device: str
    energy: EnergySetup
    gpu: DeviceInfo | None = None
    driver: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "energy": asdict(self.energy),
                "gpu": asdict(self.gpu) if self.gpu else None, "driver": self.driver}


def find_hardware(device: str) -> Hardware:
    """Maps the torch device to its NVML index by UUID (CUDA_VISIBLE_DEVICES renumbers torch's
    devices, not NVML's). On the CPU, energy is measured on NVML device 0 if NVML loads."""
    library = os.environ.get("ECOMEASURE_NVML_LIBRARY") or None
    try:
        probe = Meter(devices="all", start=False)  # lists every GPU; its thread never starts
    except NVMLUnavailableError as exc:
        if device != "cpu":
            raise SetupError(f"NVML is not available, so energy cannot be measured: {exc}") from exc
        return Hardware(device, EnergySetup(None, library, f"energy unavailable: NVML did not load ({exc})"))
    gpus, driver = list(probe.devices), probe.driver_version
    del probe
    if device == "cpu":
        gpu = gpus[0]
    else:
        import torch
        uuid = torch.cuda.get_device_properties(int(device.partition(":")[2])).uuid
        matches = [g for g in gpus if g.has_uuid(uuid)]
        if not matches:
            raise SetupError(f"{device} (uuid {uuid}) is not among NVML's GPUs "
                             f"{[(g.index, g.uuid) for g in gpus]}; is it a MIG slice?")
        gpu = matches[0]
    return Hardware(device, EnergySetup(gpu.index, library), gpu, driver)


def process_started_s() -> float | None:
    """When this process started, on the monotonic clock (the clock of the meter and of every
    window), so that a run file can say how long the imports took; None where /proc is not.
    ``/proc/self/stat``'s start time counts clock ticks since boot (10 ms resolution)."""
    try:
        after_name = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        since_boot_s = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22; the list starts at field 3
        boot_to_monotonic_s = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return since_boot_s - boot_to_monotonic_s


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def versions() -> dict[str, str]:
    """Library versions, named as the results columns name them."""
    import torch
    import transformers
    return {
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "bitsandbytes_version": bitsandbytes_version() or "",
        "torchao_version": torchao_version() or "", "ecomeasure_version": __version__,
        "accelerate_version": _version("accelerate"), "nvidia_ml_py_version": _version("nvidia-ml-py"),
        "python_version": platform.python_version(),
        "cuda_version": str(torch.version.cuda or ""),
    }


def environment(hardware: Hardware) -> dict[str, Any]:
    """Everything about where the run happened, for the run file."""
    return {"hardware": hardware.to_dict(), "versions": versions(), "platform": platform.platform(),
            "executable": sys.executable,
            "env": {k: v for k, v in os.environ.items()
                    if k.startswith(("CUDA_", "HF_", "ECOMEASURE_", "PYTORCH_", "OMP_"))
                    and not any(s in k for s in ("TOKEN", "KEY", "SECRET", "PASSWORD"))}}
