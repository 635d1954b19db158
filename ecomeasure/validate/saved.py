"""A validation's folder: written by a run (``write_outputs``) and read back by
``python -m ecomeasure.validate --from DIR`` (``load``).

Three files hold everything a re-analysis needs, compactly enough to commit (``RAW_FILES``):
``run.json`` (where and how it ran, the plan, the meter's settings, and the recording: every
run's bounds and every burst's marks), the meter's traces (``traces.npz``, compressed) and the
10 Hz reference's readings (``reference.csv``). From these alone the whole evaluation is
redone, no GPU needed: every method is measured again from the traces by the same native
integration, so every table equals the run's. The rest (CSVs, plots, validation.md) is
derived from them.
"""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _native
from ..meter import SOURCES, Measurement, Meter, SavedTraces, _measurement, load_traces
from ..reference import ReferenceEnergy, ReferenceMeter
from ..units import NAN, NS_PER_S
from .analysis import Validation, analyse
from .plan import Item, PlanSettings, Schedule
from .plots import error_vs_length, step_trace
from .report import write_markdown, write_summary_csv, write_truth_csv, write_windows_csv
from .run import BurstRecord, Recording

RUN_JSON = "run.json"
RAW_FILES = (RUN_JSON, "traces.npz", "reference.csv")
"""What a re-analysis reads; commit these (the other files are derived from them)."""
FORMAT = 1


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

    def measure_ns(self, start_ns: int, end_ns: int, name: str = "", wait_s: float = 0.0) -> Measurement:
        def one(index: int) -> dict[str, Any]:
            caps = self.report["capabilities"][str(index)]
            traces: dict[str, tuple[npt.ArrayLike, npt.ArrayLike]] = {
                s: self.saved.trace_ns(s, index) for s in SOURCES if caps[s]["available"]}
            gaps = [tuple(g) for g in caps["samples"]["gaps"]]
            return _native.window_energy(traces, gaps, int(start_ns), int(end_ns),
                                         self.report["calibration_min_span_ns"])
        return _measurement(name, int(start_ns), int(end_ns), ((d.index, one(d.index)) for d in self.devices))


def _ns(text: str) -> int:
    """"227.503081727" -> 227503081727, exactly (no float in between)."""
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("+-").partition(".")
    return sign * (int(whole or 0) * NS_PER_S + int((frac + "000000000")[:9]))


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

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        return self._t_ns / NS_PER_S, self._power_w

    def energy_j(self, t0_s: float, t1_s: float) -> ReferenceEnergy:
        if len(self._t_ns) == 0:
            return ReferenceEnergy(NAN, 0, False)
        energy_j, inside, covered = _native.trapezoid(self._t_ns, self._power_w, int(round(t0_s * NS_PER_S)),
                                                      int(round(t1_s * NS_PER_S)))
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


# --- the folder ---------------------------------------------------------------------------

PLOTS = {"error_vs_length": "error_vs_length.png", "step_trace": "step_trace.png"}


def write_outputs(validation: Validation, out_dir: str | Path, meter: Meter | None = None,
                  reference: ReferenceMeter | None = None,
                  raw_files: dict[str, Path] | None = None) -> dict[str, Path]:
    """validation.csv (each window alone), validation_with_tail.csv (burst windows plus their
    tail), windows.csv, truth.csv, run.json, the two plots, validation.md and, given the
    meters, their raw traces (traces.npz, reference.csv); a re-analysis passes the raw files
    it read as ``raw_files`` instead, and they are copied. Returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"validation.csv": write_summary_csv(validation.summary, validation, out / "validation.csv"),
             "validation_with_tail.csv": write_summary_csv(validation.summary_tail, validation,
                                                           out / "validation_with_tail.csv"),
             "windows.csv": write_windows_csv(validation, out / "windows.csv"),
             "truth.csv": write_truth_csv(validation, out / "truth.csv")}
    if validation.recording is not None:
        files[RUN_JSON] = write_run_json(validation, out / RUN_JSON)
    plots = {}
    if any(r.n for r in validation.summary):
        files[PLOTS["error_vs_length"]] = error_vs_length(validation, out / PLOTS["error_vs_length"])
        plots["error_vs_length"] = PLOTS["error_vs_length"]
    if validation.step is not None:
        title = f"{validation.info.get('gpu', '')}: idle -> load -> idle, every source".strip(": ")
        files[PLOTS["step_trace"]] = step_trace(validation.step, out / PLOTS["step_trace"], title)
        plots["step_trace"] = PLOTS["step_trace"]
    files["validation.md"] = write_markdown(validation, out / "validation.md", plots)
    if meter is not None:
        files["traces.npz"] = meter.save(out / "traces.npz")
    if reference is not None:
        files["reference.csv"] = reference.save_csv(out / "reference.csv")
    for name, source in (raw_files or {}).items():
        target = out / name
        if Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
        files[name] = target
    return files


def load(folder: str | Path) -> tuple[Validation, dict[str, Path]]:
    """Re-evaluates a validation folder from its saved files (``RAW_FILES``; the reference's
    readings may be missing). Returns the validation and the raw files it read."""
    folder = Path(folder)
    run, traces, ref_path = (folder / name for name in RAW_FILES)
    for path in (run, traces):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: a re-analysis needs {RUN_JSON} and traces.npz")
    meter = SavedMeter(traces)
    reference = SavedReference(ref_path) if ref_path.exists() else None
    raw = {p.name: p for p in (run, traces, ref_path) if p.exists()}
    data = json.loads(run.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{run} has format {data.get('format')!r}; this version reads format {FORMAT}")
    validation = analyse(_recording_from_json(data["recording"]), _tuples(PlanSettings, data["plan"]), meter,
                         reference, counter_update_s=float(data["counter_update_s"]), info=dict(data["info"]),
                         meter_settings=dict(data["meter_settings"]), tail_s=float(data["tail_s"]))
    return validation, raw
