"""``python -m ecomeasure.validate``: how accurate is each energy method on this GPU, per
window length, against a truth from long energy-counter runs. See validation.md it writes."""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .. import NVMLUnavailableError, __version__
from ..meter import DeviceInfo, Meter
from ..reference import ReferenceMeter, ReferenceUnavailableError
from .analysis import run_validation
from .methods import EdgeCounter
from .plan import DEFAULT_LENGTHS_S, QUICK_LENGTHS_S, Item, build_plan, default_settings, schedule
from .report import print_table
from .saved import load, write_outputs
from .workloads import MATMUL_SIZE, MatmulWorkload, SetupError, open_backend

PROG = "python -m ecomeasure.validate"
DESCRIPTION = ("How accurate is each energy method on this GPU, per window length: synthetic workloads "
               "(steady load, a step, square waves, bursts of 0.1-10 s) measured by the native meter per "
               "NVML source, the seed's 10 Hz method and the counter read at the edges, against a truth "
               "from long energy-counter runs. Writes validation.md, CSVs and plots to --out.")


class _Console:
    """rich's Console where installed, else print."""

    def __init__(self) -> None:
        try:
            from rich.console import Console
            self._rich: Any = Console(highlight=False)
        except ImportError:
            self._rich = None

    def print(self, text: str = "") -> None:
        if self._rich is not None:
            self._rich.print(text, markup=False)  # labels like "[1/5]" are not markup
        else:
            print(text, flush=True)

    @property
    def rich(self) -> Any:
        return self._rich


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    p.add_argument("--out", default=None,
                   help="output folder (default: validation/; with --from: DIR/reanalysis/)")
    p.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="no GPU: rebuild every table, plot and validation.md from a previous run's saved "
                        "files in DIR (run.json, traces.npz, reference.csv)")
    p.add_argument("--device", type=int, default=0, metavar="N", help="CUDA device index (default 0)")
    p.add_argument("--lengths", type=float, nargs="+", metavar="S",
                   help="window lengths in s (default: " + " ".join(f"{x:g}" for x in DEFAULT_LENGTHS_S)
                   + "; with --quick: " + " ".join(f"{x:g}" for x in QUICK_LENGTHS_S) + ")")
    p.add_argument("--quick", action="store_true",
                   help="fewer lengths and repetitions, one square wave, a shorter steady load (~1.5 min "
                        "instead of ~4.5)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed of the matrices and of the gaps' jitter (default 0)")
    p.add_argument("--backend", choices=("auto", "torch", "cupy"), default="auto",
                   help="what runs the workloads (default: torch, else CuPy)")
    args = p.parse_args(argv)
    if args.lengths and any(not (x > 0) for x in args.lengths):
        p.error("--lengths must be positive")
    return args


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _nvml_gpu(backend, cuda_index: int) -> DeviceInfo:
    """NVML's view of the CUDA device the workloads run on (CUDA_VISIBLE_DEVICES renumbers
    CUDA's devices, not NVML's)."""
    try:
        probe = Meter(devices="all", start=False)  # lists every GPU; its thread never starts
    except NVMLUnavailableError as error:
        raise SetupError(f"no usable NVML: {error}") from None
    gpus = [d for d in probe.devices if backend.matches(d)]
    probe.close()
    if not gpus:
        raise SetupError(f"CUDA device {cuda_index} is not among NVML's GPUs "
                         f"{[(d.index, d.uuid) for d in probe.devices]} (a MIG slice has no power reading)")
    return gpus[0]


def _info(args: argparse.Namespace, argv: list[str] | None, gpu: DeviceInfo, meter: Meter, backend,
          seconds_per_matmul: float) -> dict[str, Any]:
    """What the report says about where and how it ran."""
    versions = {"ecomeasure": __version__, **backend.versions(), "nvidia-ml-py": _version("nvidia-ml-py"),
                "python": platform.python_version()}
    return {
        "gpu": gpu.name, "uuid": gpu.uuid, "nvml_index": gpu.index, "cuda_index": args.device,
        "driver": meter.driver_version, "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "workload": f"{backend.name}: back-to-back {MATMUL_SIZE}x{MATMUL_SIZE} fp16 matmuls, "
                    f"{seconds_per_matmul * 1e3:.2f} ms each when calibrated",
        "command": _command(argv),
    }


def _command(argv: list[str] | None) -> str:
    return " ".join([PROG] + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)])


def reanalyse(from_dir: str | Path, out_dir: str | Path | None = None, argv: list[str] | None = None,
              console: _Console | None = None) -> int:
    """``--from``: every output again from a run's saved files, no GPU."""
    console = console or _Console()
    out = Path(out_dir) if out_dir is not None else Path(from_dir) / "reanalysis"
    try:
        validation, raw = load(from_dir)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"ecomeasure.validate: cannot re-analyse {from_dir}: {error}", file=sys.stderr)
        return 2  # bad input: nothing was measured, nothing written
    validation.info["reanalysis"] = _command(argv)
    validation.info["reanalysis_date"] = time.strftime("%Y-%m-%d", time.gmtime())
    files = write_outputs(validation, out, raw_files=raw)
    print_table(validation, console.rich)
    console.print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = _Console()
    if args.from_dir:
        return reanalyse(args.from_dir, args.out, argv, console)
    args.out = args.out or "validation"
    library = os.environ.get("ECOMEASURE_NVML_LIBRARY") or None
    try:
        backend = open_backend(args.backend, args.device, seed=args.seed)
        gpu = _nvml_gpu(backend, args.device)
    except SetupError as error:
        print(f"ecomeasure.validate: {error}", file=sys.stderr)
        return 1

    # Both meters run from here to the end, so the headline's calibration (driver samples
    # scaled to the counter over the whole recording) is in its steady state.
    meter = Meter(devices=[gpu.index])  # defaults: the settings a user gets
    # The idle margin at run boundaries follows how often this meter reads the counter.
    settings = default_settings(tuple(args.lengths) if args.lengths else None, quick=args.quick,
                                counter_interval_s=meter.settings["counter_interval_s"])
    plan = schedule(build_plan(settings), seed=args.seed)
    reference = ReferenceMeter(gpu.index, interval_s=0.1, nvml_library=library)
    try:
        reference.start()
        edges = EdgeCounter(gpu.index, library)
    except ReferenceUnavailableError as error:
        reference.stop()
        meter.close()
        print(f"ecomeasure.validate: the 10 Hz reference and the counter-at-edges method need "
              f"nvidia-ml-py: {error}", file=sys.stderr)
        return 1
    console.print(f"ecomeasure.validate: {gpu.name} (NVML {gpu.index}, cuda:{args.device}), "
                  f"driver {meter.driver_version}; {len(plan.items)} workloads, ~{plan.planned_s:.0f} s planned")
    try:
        workload = MatmulWorkload(backend, meter)
        seconds = workload.calibrate()
        console.print(f"calibrated: one {MATMUL_SIZE}x{MATMUL_SIZE} fp16 matmul takes {seconds * 1e3:.2f} ms")
        # The truth needs the energy counter; the calibration took long enough to have read it.
        counter = meter.capabilities()[gpu.index]["counter"]
        if not counter["available"]:
            print(f"ecomeasure.validate: this GPU's energy counter does not answer ({counter['reason']}); "
                  "the truth needs it", file=sys.stderr)
            return 1
        started = time.monotonic()

        def progress(i: int, item: Item) -> None:
            console.print(f"[{i + 1}/{len(plan.items)}] {item.label}: {item.repetitions} x {item.length_s:g} s "
                          f"(~{item.planned_s:.0f} s; {time.monotonic() - started:.0f} s elapsed)")

        validation = run_validation(plan, settings, workload, meter, reference, read_counter_j=edges.read_j,
                                    info=_info(args, argv, gpu, meter, backend, seconds), on_item=progress)
    except BaseException:
        # Keep what was recorded, to see what went wrong.
        meter.stop()
        meter.save(Path(args.out) / "traces.npz")
        raise
    finally:
        reference.stop()
        edges.close()
        meter.stop()
    files = write_outputs(validation, args.out, meter, reference)
    meter.close()
    print_table(validation, console.rich)
    console.print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
