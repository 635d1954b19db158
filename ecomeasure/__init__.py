"""ecomeasure: how much energy LLM generation really spends per token, and how far to trust it.

The meter (``Meter``) is native and needs neither torch nor a CUDA toolkit; the benchmark
(``python -m ecomeasure.bench``), validation (``python -m ecomeasure.validate``) and report
(``python -m ecomeasure.report``) are built on it.
"""
__version__ = "0.1.0"

from ._native import CudaUnavailableError, InvalidStreamError, MeterError, NVMLUnavailableError
from .devices import DeviceSelection, DeviceSelectionError, select_devices
from .meter import (SOURCES, DeviceEnergy, DeviceInfo, Mark, Measurement, Meter, SavedTraces,
                    SourceEnergy, Window, load_traces, stream_handle)

__all__ = [
    "SOURCES", "CudaUnavailableError", "DeviceEnergy", "DeviceInfo", "DeviceSelection",
    "DeviceSelectionError", "InvalidStreamError", "Mark",
    "Measurement", "Meter", "MeterError", "NVMLUnavailableError", "SavedTraces", "SourceEnergy",
    "Window", "load_traces", "select_devices", "stream_handle",
]
