"""Does ``python -m ecomeasure.monitor`` measure a command's GPU energy as the GPU's own energy
counter does, and does the command's exit code come through?

Runs the monitor around a child that, as its first act, reads every GPU's NVML energy counter
(through ctypes, before torch is imported), runs back-to-back fp16 matmuls on its GPU for
``--seconds`` (``benchmarks/_torch_gpu.py``), idles 1 s (so that the counter, up to ~100 ms
stale, is read at idle power on both sides), reads the counters again as its last act and exits
with code 3 at once. The monitor's energy per GPU is compared with the counter's difference over
the child's life; goal: within 1 % on the GPU under load. Also says whether this machine's RAPL
(CPU energy) can be read, and what the monitor measured of it.

    python -m benchmarks.meter.monitor_check --out DIR --seconds 10

Writes DIR/monitor/ (the monitor's summary.json, timeline.csv, traces.npz), DIR/child.json (the
counters) and DIR/monitor_check.json (the comparison). Exit 0 iff the GPU under load is within
1 % and the exit code came through; 1 otherwise; 2 where it cannot run (no GPU, no torch).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD_EXIT_CODE = 3
GOAL = 0.01
IDLE_AFTER_S = 1.0


def read_counters() -> dict[str, dict]:
    """Every GPU's NVML energy counter (mJ) by NVML index, with its UUID."""
    nvml = ctypes.CDLL(os.environ.get("ECOMEASURE_NVML_LIBRARY") or "libnvidia-ml.so.1")
    if nvml.nvmlInit_v2() != 0:
        raise RuntimeError("nvmlInit failed")
    count = ctypes.c_uint()
    nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))
    out = {}
    for i in range(count.value):
        handle = ctypes.c_void_p()
        nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle))
        uuid = ctypes.create_string_buffer(96)
        nvml.nvmlDeviceGetUUID(handle, uuid, 96)
        energy_mj = ctypes.c_ulonglong()
        status = nvml.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(energy_mj))
        out[str(i)] = {"uuid": uuid.value.decode(), "energy_mj": energy_mj.value if status == 0 else None,
                       "monotonic_ns": time.monotonic_ns()}
    nvml.nvmlShutdown()
    return out


def child(path: Path, seconds: float) -> None:
    before = read_counters()
    import torch

    from benchmarks._torch_gpu import matmul_load

    uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    matmuls = matmul_load(seconds)
    time.sleep(IDLE_AFTER_S)
    after = read_counters()
    path.write_text(json.dumps({"before": before, "after": after, "matmuls": matmuls, "load_uuid": uuid}))
    os._exit(CHILD_EXIT_CODE)  # now: torch's teardown would add time the counters did not see


def bare(uuid: str) -> str:
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--seconds", type=float, default=10.0, help="how long the load runs (default 10)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args.child, args.seconds)
        return 1  # not reached
    if args.out is None:
        p.error("--out DIR is required")
    from ecomeasure import cpu, load_traces

    args.out.mkdir(parents=True, exist_ok=True)
    child_file = args.out / "child.json"
    child_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "ecomeasure.monitor", "--out", str(args.out / "monitor"), "--interval", "0.5",
               "--", sys.executable, "-m", "benchmarks.meter.monitor_check", "--child", str(child_file),
               "--seconds", str(args.seconds)]
    print("running:", " ".join(command), flush=True)
    proc = subprocess.run(command, cwd=ROOT)
    if proc.returncode == 2 or not child_file.exists():
        print(f"monitor_check: the monitor or its child could not run (exit {proc.returncode})", file=sys.stderr)
        return 2
    counters = json.loads(child_file.read_text())
    summary = json.loads((args.out / "monitor" / "summary.json").read_text())
    traces = load_traces(args.out / "monitor" / "traces.npz")
    gpus = []
    for device in summary["gpu"]["devices"]:
        index = str(device["index"])
        before, after = counters["before"][index], counters["after"][index]
        assert bare(before["uuid"]) == bare(device["uuid"]), "NVML indices differ between the processes"
        if before["energy_mj"] is None or after["energy_mj"] is None:
            continue
        counter_j = (after["energy_mj"] - before["energy_mj"]) / 1e3
        # The same meter over the counter readings' own edges: the monitor's life of the
        # command also holds the interpreter's start before the first reading.
        same_edges_j = traces.measure(before["monotonic_ns"] / 1e9, after["monotonic_ns"] / 1e9).devices[
            device["index"]].energy_j
        gpus.append({"index": device["index"], "name": device["name"], "uuid": device["uuid"],
                     "loaded": bare(device["uuid"]) == bare(counters["load_uuid"]),
                     "monitor_j": device["energy_j"], "counter_j": counter_j, "method": device["method"],
                     "error": device["energy_j"] / counter_j - 1 if counter_j > 0 else float("nan"),
                     "same_edges_j": same_edges_j,
                     "same_edges_error": same_edges_j / counter_j - 1 if counter_j > 0 else float("nan")})
    loaded = [g for g in gpus if g["loaded"]]
    found = cpu.find_zones()
    result = {
        "seconds": args.seconds, "child_exit_code": CHILD_EXIT_CODE, "monitor_exit_code": proc.returncode,
        "exit_code_passed": proc.returncode == CHILD_EXIT_CODE, "goal": GOAL, "gpus": gpus,
        "child_life_s": (min(c["monotonic_ns"] for c in counters["after"].values())
                         - max(c["monotonic_ns"] for c in counters["before"].values())) / 1e9,
        "monitor_duration_s": summary["duration_s"], "matmuls": counters["matmuls"],
        "rapl": {"readable": [z.label for z in found.zones], "problems": list(found.problems),
                 "monitor_cpu": summary["cpu"]},
    }
    result["within_goal"] = bool(loaded) and all(abs(g["error"]) <= GOAL for g in loaded)
    (args.out / "monitor_check.json").write_text(json.dumps(result, indent=2) + "\n")
    for g in gpus:
        print(f"GPU {g['index']} {g['name']}{' (load)' if g['loaded'] else ''}: monitor {g['monitor_j']:.1f} J "
              f"[{g['method']}], counter {g['counter_j']:.1f} J, {g['error'] * 100:+.3f} % "
              f"(over the counter readings' edges: {g['same_edges_error'] * 100:+.3f} %)")
    print(f"the command's life: {summary['duration_s']:.3f} s as the monitor saw it, "
          f"{result['child_life_s']:.3f} s between the child's counter readings")
    print(f"exit code: {proc.returncode} (the child's {CHILD_EXIT_CODE}: "
          f"{'passed through' if result['exit_code_passed'] else 'NOT passed through'})")
    if found.zones:
        print(f"RAPL readable: {', '.join(z.label for z in found.zones)}; monitor's CPU energy: "
              f"{summary['cpu']['energy_j']:.1f} J" if summary["cpu"] else "RAPL readable, but the monitor read none")
    else:
        print("RAPL not readable here: " + "; ".join(found.problems))
    ok = result["within_goal"] and result["exit_code_passed"]
    print(f"{'PASS' if ok else 'FAIL'}: goal |error| <= {GOAL * 100:.0f} % on the GPU under load")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
