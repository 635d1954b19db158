"""A validation's saved files, read back: ``python -m ecomeasure.validate --from DIR``.

A run writes ``run.json`` (where and how it ran, the plan, the meter's settings, and the
recording: every run's bounds and every burst's marks) beside the meter's traces
(``traces.npz``) and the 10 Hz reference's readings (``reference.csv``). From these three the
whole evaluation is redone, no GPU needed: every method is measured again from the traces by
the same native integration, so the numbers equal the run's.

Folders written before ``run.json`` existed are read too: the recording is rebuilt from
``windows.csv`` (burst marks, to the ns), ``truth.csv`` (run durations) and the plan (rebuilt
from the command in ``validation.md``'s header, seeded as it ran); the run info from that header.
"""
from __future__ import annotations

import csv
import json
import math
import re
import shlex
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import _native
from ..meter import SavedTraces, _measurement, load_traces
from ..reference import ReferenceEnergy
from .plan import Item, PlanSettings, Schedule, build_plan, default_settings, schedule
from .run import TAIL_S, BurstRecord, Recording, Validation, analyse

_NS = 1_000_000_000
NAN = float("nan")
RUN_JSON = "run.json"
FORMAT = 1
LEGACY_EDGE_IDLE_S = 0.7
"""The idle margin at run boundaries of runs that saved no run.json."""


class SavedMeter:
    """Saved traces (``Meter.save``) with the part of ``Meter``'s interface the evaluation
    uses: ``trace``, ``trace_ns``, ``measure_ns`` (the same native integration, in ns)."""

    def __init__(self, path: str | Path) -> None:
        self.saved: SavedTraces = load_traces(path)
        self.report = self.saved.report
        self.settings: dict[str, Any] = dict(self.report.get("settings") or {})
        self.driver_version: str = self.report.get("driver_version", "")
        self.devices = self.saved.devices

    def trace_ns(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.saved.trace_ns(source, device)

    def trace(self, source: str, device: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.saved.trace(source, device)

    def measure_ns(self, start_ns: int, end_ns: int, name: str = "", wait_s: float = 0.0):
        from ..meter import SOURCES

        def one(index: int) -> dict[str, Any]:
            caps = self.report["capabilities"][str(index)]
            traces = {s: self.saved.trace_ns(s, index) for s in SOURCES if caps[s]["available"]}
            gaps = [tuple(g) for g in caps["samples"]["gaps"]]
            return _native.window_energy(traces, gaps, int(start_ns), int(end_ns),
                                         self.report["calibration_min_span_ns"])
        return _measurement(name, int(start_ns), int(end_ns), ((d.index, one(d.index)) for d in self.devices))


def _ns(text: str) -> int:
    """"227.503081727" -> 227503081727, exactly (no float in between)."""
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("+-").partition(".")
    return sign * (int(whole or 0) * _NS + int((frac + "000000000")[:9]))


class SavedReference:
    """The 10 Hz reference's readings from ``reference.csv``, integrated as ``ReferenceMeter``
    does (``energy_j``, ``samples``)."""

    def __init__(self, path: str | Path) -> None:
        t, p = [], []
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                t.append(_ns(row["time_s"]))
                p.append(float(row["power_w"]))
        self._t_ns = np.array(t, dtype=np.int64)
        self._power_w = np.array(p, dtype=np.float64)

    def samples_ns(self) -> tuple[np.ndarray, np.ndarray]:
        return self._t_ns, self._power_w

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        return self._t_ns / _NS, self._power_w

    def energy_j(self, t0_s: float, t1_s: float) -> ReferenceEnergy:
        if len(self._t_ns) == 0:
            return ReferenceEnergy(NAN, 0, False)
        energy_j, inside, covered = _native.trapezoid(self._t_ns, self._power_w, int(round(t0_s * _NS)),
                                                      int(round(t1_s * _NS)))
        return ReferenceEnergy(float(energy_j), int(inside), bool(covered))


# --- run.json ----------------------------------------------------------------------------------

def _plain(x: Any) -> Any:
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


def _tuples(cls, data: dict[str, Any]):
    """A frozen dataclass from JSON, lists back to (nested) tuples where the field is a tuple."""
    out = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        if isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        out[f.name] = v
    return cls(**out)


def run_json(validation: Validation) -> dict[str, Any]:
    """What ``run.json`` holds: everything but the traces that a re-analysis needs."""
    rec = validation.recording
    data: dict[str, Any] = {
        "format": FORMAT,
        "info": _plain(validation.info),
        "meter_settings": _plain(validation.meter_settings),
        "counter_update_s": validation.counter_update_s,
        "tail_s": validation.tail_s,
        "plan": _plain(asdict(validation.settings)),
    }
    if rec is not None:
        data["recording"] = {
            "start_ns": rec.start_ns, "end_ns": rec.end_ns,
            "items": [_plain(asdict(i)) for i in rec.schedule.items],
            "runs": [{"item": i, "run": r, "start_ns": a, "end_ns": b} for (i, r), (a, b) in rec.runs.items()],
            "bursts": {str(i): [[b.start_ns, b.end_ns, b.counter_before_j, b.counter_after_j, b.events_s]
                                for b in bs] for i, bs in rec.bursts.items()},
        }
    return data


def write_run_json(validation: Validation, path: Path) -> Path:
    path.write_text(json.dumps(run_json(validation), indent=1) + "\n")
    return path


def _recording_from_json(data: dict[str, Any]) -> Recording:
    items = [_tuples(Item, i) for i in data["items"]]
    rec = Recording(Schedule(items), start_ns=int(data["start_ns"]), end_ns=int(data["end_ns"]))
    rec.runs = {(int(r["item"]), r["run"]): (int(r["start_ns"]), int(r["end_ns"])) for r in data["runs"]}
    rec.bursts = {int(i): [BurstRecord(int(a), int(b), float(c0), float(c1), float(ev)) for a, b, c0, c1, ev in bs]
                  for i, bs in data["bursts"].items()}
    return rec


# --- folders without run.json ----------------------------------------------------------------

HEADER_KEYS = {"GPU": "gpu_line", "driver": "driver", "date": "date", "workload": "workload",
               "versions": "versions", "command": "command", "meter": "meter_original"}


def info_from_markdown(path: Path) -> dict[str, Any]:
    """The run info from an old ``validation.md``'s header lines (``- **key**: value``)."""
    info: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            break
        m = re.match(r"- \*\*(.+?)\*\*: (.*)$", line)
        if m and m.group(1) in HEADER_KEYS:
            info[HEADER_KEYS[m.group(1)]] = m.group(2).strip()
    gpu = re.match(r"(.*) \(NVML index (\S+), (\S+)\)$", info.pop("gpu_line", ""))
    if gpu:
        info["gpu"], info["nvml_index"], info["uuid"] = gpu.group(1), gpu.group(2), gpu.group(3)
    if "command" in info:
        info["command"] = info["command"].strip("`")
    return info


def _plan_of_command(command: str, counter_interval_s: float) -> tuple[PlanSettings, int]:
    """The plan and seed a ``python -m ecomeasure.validate ...`` command ran."""
    from .__main__ import parse_args
    words = shlex.split(command)
    while words and not words[0].startswith("-"):
        words.pop(0)  # "python -m ecomeasure.validate"
    if words and words[0] == "-m":
        words = words[2:]
    words = [w for w in words if w not in ("-m",)]
    args = parse_args(words)
    settings = default_settings(tuple(args.lengths) if args.lengths else None, quick=args.quick,
                                counter_interval_s=counter_interval_s)
    # Runs without run.json predate the margin's sizing from the meter: it was 0.7 s then.
    return replace(settings, edge_idle_s=LEGACY_EDGE_IDLE_S), args.seed


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else NAN


def recover_recording(folder: Path, meter: SavedMeter, settings: PlanSettings, seed: int,
                      notes: list[str]) -> Recording:
    """The recording of an old folder: burst marks from windows.csv (exact, ns), run bounds
    from truth.csv's durations and the seeded schedule's last gaps, the step's load edges
    from the driver samples (only the step plot uses them)."""
    plan = schedule(build_plan(settings), seed=seed)
    items = plan.items
    windows = _read_csv(folder / "windows.csv")
    truths = {r["label"]: r for r in _read_csv(folder / "truth.csv")}
    labels = {w["label"] for w in windows} | set(truths)
    missing = labels - {i.label for i in items}
    if missing:
        raise ValueError(f"the plan rebuilt from the command has no workload(s) {sorted(missing)}: "
                         "cannot match the saved windows to it")
    rec = Recording(plan, bursts={i: [] for i in range(len(items))})
    last_gap = {}
    for op in plan.ops:
        if op.kind == "idle" and op.run == "A":
            last_gap[op.item] = op.duration_s  # the last one before "end" wins
    for i, item in enumerate(items):
        rows = [w for w in windows if w["label"] == item.label]
        t = truths.get(item.label)
        if item.kind in ("burst", "square"):
            rows.sort(key=lambda w: int(w["index"]))
            for w in rows:
                edge_j = _float(w["counter_at_edges_j"])
                rec.bursts[i].append(BurstRecord(_ns(w["start_s"]), _ns(w["end_s"]), 0.0, edge_j,
                                                 _float(w.get("events_s", ""))))
        elif item.kind == "steady" and rows and t is not None:
            start = min(_ns(w["start_s"]) for w in rows) - round(item.settle_s * _NS)
            rec.bursts[i].append(BurstRecord(start, start + round(float(t["burst_s"]) * _NS), NAN, NAN))
        if t is None or not rec.bursts[i]:
            continue
        first, last = rec.bursts[i][0].start_ns, rec.bursts[i][-1].end_ns
        active_ns, idle_ns = round(float(t["active_s"]) * _NS), round(float(t["idle_s"]) * _NS)
        # A = lead idle, the bursts, the last gap; what it took beyond them (counter reads,
        # launches, sleeps overshooting) is split between its two ends.
        slack = active_ns - (last - first) - round((item.lead_idle_s + last_gap[i]) * _NS)
        a1 = last + round(last_gap[i] * _NS) + slack // 2
        rec.runs[(i, "A")] = (a1 - active_ns, a1)
        rec.runs[(i, "B")] = (a1, a1 + idle_ns)
        if abs(slack) > 0.05 * _NS:
            notes.append(f"{item.label}: run A took {slack / 1e6:+.0f} ms more than its marks and planned idle")
    # The step (no truth): its load's edges from the driver samples, before the next item.
    for i, item in enumerate(items):
        if item.kind != "step":
            continue
        nxt = next((rec.runs[(j, "A")][0] for j in range(i + 1, len(items)) if (j, "A") in rec.runs), None)
        if nxt is None:
            continue
        t_ns, w = meter.trace_ns("samples")
        span = round((item.lead_idle_s / 2 + item.length_s + item.tail_idle_s) * _NS)  # not the warm-up
        keep = (t_ns >= nxt - span) & (t_ns <= nxt)
        tt, ww = t_ns[keep], w[keep]
        if len(tt) < 3:
            continue
        high = ww > (np.min(ww) + np.max(ww)) / 2
        k_on, k_off = int(np.argmax(high)), len(high) - 1 - int(np.argmax(high[::-1]))
        b0, b1 = int(tt[k_on]), int(tt[min(k_off + 1, len(tt) - 1)])
        rec.bursts[i] = [BurstRecord(b0, b1, NAN, NAN)]
        rec.runs[(i, "A")] = (b0 - round(item.lead_idle_s * _NS), nxt)
        notes.append(f"{item.label}: edges of its load found in the driver samples (the plot only)")
    starts = [a for a, _ in rec.runs.values()]
    ends = [b for _, b in rec.runs.values()]
    rec.start_ns, rec.end_ns = (min(starts), max(ends)) if starts else (0, 0)
    return rec


def _counter_interval_from_traces(meter: SavedMeter) -> float:
    t, _ = meter.trace_ns("counter")
    return float(np.median(np.diff(t))) / _NS if len(t) >= 2 else NAN


def load(folder: str | Path) -> tuple[Validation, dict[str, Path]]:
    """Re-evaluates a validation folder from its saved files. Returns the validation and the
    raw files (traces.npz, reference.csv) it read."""
    folder = Path(folder)
    traces = folder / "traces.npz"
    if not traces.exists():
        raise FileNotFoundError(f"{traces} is missing: a re-analysis needs the meter's traces")
    meter = SavedMeter(traces)
    ref_path = folder / "reference.csv"
    reference = SavedReference(ref_path) if ref_path.exists() else None
    raw = {"traces.npz": traces} | ({"reference.csv": ref_path} if reference is not None else {})
    run = folder / RUN_JSON
    if run.exists():
        data = json.loads(run.read_text())
        settings = _tuples(PlanSettings, data["plan"])
        info = dict(data["info"])
        meter_settings = dict(data.get("meter_settings") or meter.settings)
        recording = _recording_from_json(data["recording"])
        counter_update_s, tail_s = float(data.get("counter_update_s", 0.1)), float(data.get("tail_s", TAIL_S))
        notes: list[str] = []
    else:
        md = folder / "validation.md"
        info = info_from_markdown(md) if md.exists() else {}
        notes = [f"no {RUN_JSON} (the run predates it): run info from validation.md's header, the recording "
                 "from windows.csv, truth.csv and the plan rebuilt from its command"]
        meter_settings = dict(meter.settings)
        if not meter_settings:
            observed = _counter_interval_from_traces(meter)
            meter_settings = {"counter_interval_s": round(observed, 1)}
            info["meter"] = (f"`Meter()` defaults of the version that ran; it saved no settings. Its counter "
                             f"readings are {observed:.2f} s apart (median), so the counter was read every "
                             f"{round(observed, 1):g} s")
            if info.get("meter_original"):
                notes.append(f"the original report's meter line (\"{info['meter_original']}\") was wrong: "
                             f"the saved counter readings are {observed:.2f} s apart")
        info.pop("meter_original", None)
        info.setdefault("gpu", meter.devices[0].name if meter.devices else "?")
        info.setdefault("driver", meter.driver_version)
        if meter.devices:
            info.setdefault("uuid", meter.devices[0].uuid)
            info.setdefault("nvml_index", meter.devices[0].index)
        settings, seed = _plan_of_command(info.get("command", "python -m ecomeasure.validate"),
                                          meter_settings.get("counter_interval_s", 1.0))
        recording = recover_recording(folder, meter, settings, seed, notes)
        notes.append("marks vs CUDA events: bursts and square waves only (the step's and the steady load's "
                     "event lengths were not saved)")
        counter_update_s, tail_s = 0.1, TAIL_S
    if "counter_interval_s" not in meter_settings or not math.isfinite(meter_settings["counter_interval_s"]):
        meter_settings["counter_interval_s"] = round(_counter_interval_from_traces(meter), 1)
    validation = analyse(recording, settings, meter, reference, counter_update_s=counter_update_s, info=info,
                         meter_settings=meter_settings, tail_s=tail_s)
    validation.info["reanalysis_notes"] = notes
    return validation, raw
