"""Which GPUs a meter reads: by default the ones this process was given.

A process is given GPUs through ``CUDA_VISIBLE_DEVICES`` (indices, UUIDs with or without the
"GPU-" prefix, unique UUID prefixes, or MIG instances), which renumbers CUDA's devices but not
NVML's. The CUDA driver (which the package opens for stream marks anyway) has applied that
variable when it started, so each device it shows is matched to NVML by UUID. A MIG instance
has no energy reading of its own (NVML reads power per GPU), so it is refused, naming its
parent GPU. Every GPU is read only when asked (``devices="all"``), or the NVML indices given.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _native

VARIABLE = "CUDA_VISIBLE_DEVICES"


class DeviceSelectionError(ValueError):
    """The GPUs asked for (or given through CUDA_VISIBLE_DEVICES) cannot be read; one line."""


@dataclass(frozen=True)
class DeviceSelection:
    """The NVML indices a meter reads and, one line per GPU, why."""
    indices: tuple[int, ...]
    reasons: tuple[str, ...]
    rule: str
    """``CUDA_VISIBLE_DEVICES``, ``all`` (asked, or the variable unset) or ``list`` (indices given)."""


def _bare(uuid: str) -> str:
    text = uuid.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def _mig_parent_text(entry: str) -> str | None:
    """The parent's UUID written in an old-style entry ``MIG-GPU-<uuid>/<gi>/<ci>``."""
    rest = entry[4:]
    return rest.split("/")[0] if rest.lower().startswith("gpu-") else None


def select_devices(devices: Iterable[int] | str | None = None, *, nvml_library: str = "",
                   environ: Mapping[str, str] | None = None) -> DeviceSelection:
    """The GPUs to read: ``devices`` None -> those of CUDA_VISIBLE_DEVICES (all when it is
    unset), ``"all"`` -> every GPU, or a list of NVML indices. Raises DeviceSelectionError."""
    environ = os.environ if environ is None else environ
    if isinstance(devices, str) and devices != "all":
        raise DeviceSelectionError(f"devices must be 'all' or a list of NVML indices, not {devices!r}")
    cvd = environ.get(VARIABLE) if devices is None else None
    entries = [e.strip() for e in cvd.split(",")] if cvd is not None else []
    migs = [e for e in entries if e.startswith("MIG-")]
    gpus, parents = _native.nvml_inventory(nvml_library, migs)
    by_index = {g["index"]: g for g in gpus}

    def named(index: int) -> str:
        return f"GPU {index} ({by_index[index]['uuid']})"

    if devices == "all" or (devices is None and cvd is None):
        why = "devices='all'" if devices == "all" else f"{VARIABLE} unset"
        return DeviceSelection(tuple(sorted(by_index)), tuple(f"{why} -> {named(i)}" for i in sorted(by_index)),
                               "all")
    if devices is not None:
        indices = []
        for d in devices:
            if isinstance(d, bool) or not isinstance(d, int):
                raise DeviceSelectionError(f"a device is an NVML index (int), not {d!r}")
            if d not in by_index:
                raise DeviceSelectionError(f"no GPU with NVML index {d} (NVML sees {sorted(by_index)})")
            if d not in indices:
                indices.append(d)
        if not indices:
            raise DeviceSelectionError("devices is empty: name at least one NVML index, or 'all'")
        return DeviceSelection(tuple(indices), tuple(f"devices={indices} -> {named(i)}" for i in indices), "list")

    assert cvd is not None
    if not cvd.strip():
        raise DeviceSelectionError(f"{VARIABLE} is empty: this process was given no GPU "
                                   "(pass devices='all' to read every GPU of the host)")
    for mig, parent in zip(migs, parents):
        text = _mig_parent_text(mig)
        if parent < 0 and text is not None:
            parent = next((g["index"] for g in gpus if _bare(g["uuid"]) == _bare(text)), -1)
        where = f"its parent is {named(parent)}; pass devices=[{parent}] to measure that whole GPU " \
                "(every instance on it)" if parent >= 0 else "NVML does not name its parent GPU"
        raise DeviceSelectionError(f"{VARIABLE}={mig} is a MIG instance, which NVML cannot measure apart "
                                   f"from its GPU: {where}")
    try:
        uuids = _native.cuda_visible_uuids()
    except _native.CudaUnavailableError as error:
        uuids = _uuids_without_driver(entries, gpus, str(error))
    if len(uuids) < len(entries):
        raise DeviceSelectionError(f"{VARIABLE}={cvd}: entry {entries[len(uuids)]!r} names no GPU the CUDA "
                                   f"driver knows (it sees {len(uuids)} before it)")
    indices, reasons = [], []
    for entry, uuid in zip(entries, uuids):
        match = [g["index"] for g in gpus if _bare(g["uuid"]) == _bare(uuid)]
        if not match:
            raise DeviceSelectionError(f"{VARIABLE}={cvd}: CUDA device {entry!r} ({uuid}) is not a GPU NVML sees")
        if match[0] not in indices:
            indices.append(match[0])
            reasons.append(f"{VARIABLE}={entry} -> {named(match[0])}")
    return DeviceSelection(tuple(indices), tuple(reasons), VARIABLE)


def _uuids_without_driver(entries: list[str], gpus: list[dict[str, Any]], why: str) -> list[str]:
    """UUID entries matched to NVML by text when the CUDA driver cannot be opened; an index
    entry cannot be mapped then (CUDA's order need not be NVML's)."""
    out = []
    for entry in entries:
        if entry.isdigit():
            raise DeviceSelectionError(f"{VARIABLE}={entry} is a CUDA index, which needs the CUDA driver to map "
                                       f"to an NVML GPU, and it cannot be opened ({why})")
        match = [g["uuid"] for g in gpus if _bare(g["uuid"]).startswith(_bare(entry))] if _bare(entry) else []
        if len(match) != 1:
            break
        out.append(match[0])
    return out
