"""``python -m ecomeasure.info``: what this machine's GPUs report, per NVML source.

Says which GPUs a ``Meter()`` reads here and why (CUDA_VISIBLE_DEVICES, or all GPUs), runs the
meter for a moment with the energy counter polled fast, so that each source's update period
can be observed, then lists each GPU and, per source, whether it answers. ``--all`` reads
every GPU of the host.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from . import DeviceSelectionError, Meter, NVMLUnavailableError
from .meter import TRACES

DESCRIPTION = {
    "samples": "driver sample buffer (nvmlDeviceGetSamples, total power)",
    "instant": "instant power (field 186)",
    "average": "average power (nvmlDeviceGetPowerUsage)",
    "counter": "energy counter (nvmlDeviceGetTotalEnergyConsumption)",
    "utilization": "GPU busy percent (nvmlDeviceGetSamples, GPU utilization; not power)",
}


def describe(seconds: float = 1.5, devices: str | None = None) -> dict[str, Any]:
    """The capability report after watching the sources for ``seconds``; ``devices`` as
    Meter's (None: the GPUs this process was given)."""
    # The counter costs ~4 ms of CPU a read: fine for a moment, not for a whole run.
    with Meter(devices, counter_interval_s=0.01, drain_interval_s=0.05) as meter:
        time.sleep(seconds)
        meter.stop()
        report = meter.report()
    return report


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecomeasure.info", description=__doc__)
    parser.add_argument("--seconds", type=_seconds, default=1.5, help="how long to watch (default 1.5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--all", action="store_true",
                        help="read every GPU of the host, not only those of CUDA_VISIBLE_DEVICES")
    args = parser.parse_args(argv)
    try:
        report = describe(args.seconds, "all" if args.all else None)
    except DeviceSelectionError as error:
        print(f"ecomeasure.info: {error}", file=sys.stderr)
        return 2
    except NVMLUnavailableError as error:
        print(f"ecomeasure: no usable NVML: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"driver {report['driver_version']}")
    print("reads " + ("every GPU (--all)" if args.all else "the GPUs this process was given") + ":")
    for reason in report["device_selection"]:
        print(f"  {reason}")
    for device in report["devices"]:
        print(f"GPU {device['index']}: {device['name']}  {device['uuid']}  ({device['architecture']})")
        for source in TRACES:
            cap = report["capabilities"][str(device["index"])][source]
            if cap["available"]:
                period = cap["update_period_s"]
                seen = f"updates every {period * 1e3:6.1f} ms" if period else "no update seen"
                status = f"yes  {seen}  ({cap['readings']} readings, {cap['errors']} errors)"
            else:
                status = f"no   {cap['reason']}"
            print(f"  {source:11s} {status}   - {DESCRIPTION[source]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
