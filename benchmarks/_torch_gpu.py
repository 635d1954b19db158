"""The NVML index of the GPU torch is using, for the benchmark scripts."""
import torch

from ecomeasure import Meter


def nvml_index_of_current_device() -> int:
    """By UUID: CUDA_VISIBLE_DEVICES renumbers torch's devices, not NVML's."""
    uuid = torch.cuda.get_device_properties(torch.cuda.current_device()).uuid
    probe = Meter(start=False)
    try:
        return next(d.index for d in probe.devices if d.has_uuid(uuid))
    finally:
        probe.close()
