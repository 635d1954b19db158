"""The report names its inputs as the user gave them: a relative results directory stays
relative in its headings and tables, never the absolute path it resolves to."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "docs" / "results" / "2026-11-30-h200"


def test_headings_print_the_input_path_as_given(tmp_path):
    (tmp_path / "runs" / "h200").mkdir(parents=True)
    for name in ("results.csv", "iterations.csv"):
        shutil.copy2(DATASET / name, tmp_path / "runs" / "h200" / name)
    done = subprocess.run([sys.executable, "-m", "ecomeasure.report", "runs/h200/", "--out", "out"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))})
    assert done.returncode == 0, done.stderr
    md = (tmp_path / "out" / "report.md").read_text()
    assert "### NVIDIA H200 - runs/h200 · graph" in md and "- `runs/h200 · eager`:" in md
    assert str(tmp_path) not in md and str(tmp_path) not in (tmp_path / "out" / "tables.csv").read_text()
