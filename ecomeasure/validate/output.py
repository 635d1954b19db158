"""Writes everything a validation produced into one folder."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..meter import Meter
from ..reference import ReferenceMeter
from .plots import error_vs_length, step_trace
from .report import write_markdown
from .run import Validation
from .saved import RUN_JSON, write_run_json
from .tables import write_summary_csv, write_truth_csv, write_windows_csv

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
