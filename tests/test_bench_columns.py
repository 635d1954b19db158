"""The documented results columns, checked against what the benchmark writes; also the
helpers the other benchmark tests share (reading the columns from the doc, running the CLI)."""
from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FORMAT = ROOT / "docs" / "results-format.md"

SMOKE_ARGS = ["--model", "tiny-llama-test", "--device", "cpu", "--new-tokens", "8", "--iterations", "2",
              "--warmup", "1", "--warmup-tokens", "4"]


def documented_result_columns() -> list[str]:
    """The results.csv columns as docs/results-format.md lists them, in order."""
    text = RESULTS_FORMAT.read_text()
    section = text.split("## `results.csv`", 1)[1].split("\n## ", 1)[0]
    columns: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| column") or line.startswith("|---"):
            continue
        cell = line.split("|")[1].strip()
        names = [n.strip() for n in cell.split(",")]
        # "energy_j_per_1k_samples, _instant, ..." continues the first name's prefix.
        prefix = names[0].rsplit("_", 1)[0]
        columns += [prefix + n if n.startswith("_") else n for n in names]
    return columns


def documented_iteration_columns() -> list[str]:
    text = RESULTS_FORMAT.read_text()
    section = text.split("## `iterations.csv`", 1)[1].split("\n## ", 1)[0]
    body = section.split("\n", 1)[1].split("Times are", 1)[0]
    return [n.strip().rstrip(".") for n in re.split(r",\s*", body.strip()) if n.strip()]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(env)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return subprocess.run([sys.executable, "-m", "ecomeasure.bench", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_result_columns_are_the_documented_ones():
    from ecomeasure.bench.results import RESULT_COLUMNS
    assert list(RESULT_COLUMNS) == documented_result_columns()
    assert len(set(RESULT_COLUMNS)) == len(RESULT_COLUMNS) == 65


def test_iteration_columns_are_the_documented_ones():
    from ecomeasure.bench.results import ITERATION_COLUMNS
    assert list(ITERATION_COLUMNS) == documented_iteration_columns()
