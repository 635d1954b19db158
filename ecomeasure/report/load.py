"""Reading results directories (``docs/results-format.md``) and the seed's published dataset.

A results directory becomes a ``Dataset``: its configurations (one ``Config`` per row of
``results.csv``), each with its rows of ``iterations.csv``. Only the latest row of each
protocol (GPU, model, quant, batch size, new tokens, device, regime) is used; earlier re-runs
are kept as ``superseded``. A directory that holds both decode regimes is reported as one
dataset per regime (``split_by_regime``), side by side.
"""
from __future__ import annotations

import csv
import importlib.resources
import math
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..schema import ITERATIONS_CSV, RESULTS_CSV, TEXT_COLUMNS, parse_float

SEED_LABEL = "seed (published, not measured by ecomeasure)"
"""How the seed's published numbers are labelled wherever they appear."""

SEED_SOURCE = "seed memo 2026-02-13"

REQUIRED_RESULT_COLUMNS: tuple[str, ...] = (
    "status", "model", "params_b", "quant", "batch_size", "gpu_name", "throughput_tok_s_mean",
    "power_w_mean", "energy_j_per_1k_mean", "energy_net_j_per_1k_mean",
)
REQUIRED_ITERATION_COLUMNS: tuple[str, ...] = (
    "model", "quant", "batch_size", "iteration", "tokens", "energy_j", "energy_net_j",
)

METHODS: tuple[str, ...] = ("native", "ref", "published")
"""``native``: the native meter's headline figure; ``ref``: the 10 Hz reference method;
``published``: the seed's own figures (its 10 Hz script, as published)."""

METHOD_TITLES: dict[str, str] = {
    "native": "native meter (headline figure)",
    "ref": "10 Hz reference method",
    "published": "as published by the seed (its own 10 Hz script)",
}


@dataclass(frozen=True)
class MethodColumns:
    """Where one method's figures live in results.csv and iterations.csv."""
    energy_mean: dict[str, str]          # basis -> results.csv mean J/1k column
    energy_std: dict[str, str | None]    # basis -> results.csv std column (None: not written)
    energy_iteration: dict[str, str]     # basis -> iterations.csv energy (J) column
    power_mean: str
    power_std: str | None
    idle_power: str


_NATIVE = MethodColumns(
    energy_mean={"gross": "energy_j_per_1k_mean", "net": "energy_net_j_per_1k_mean"},
    energy_std={"gross": "energy_j_per_1k_std", "net": "energy_net_j_per_1k_std"},
    energy_iteration={"gross": "energy_j", "net": "energy_net_j"},
    power_mean="power_w_mean", power_std="power_w_std", idle_power="idle_power_w")

COLUMNS: dict[str, MethodColumns] = {
    "native": _NATIVE,
    "ref": MethodColumns(
        energy_mean={"gross": "ref_energy_j_per_1k_mean", "net": "ref_energy_net_j_per_1k_mean"},
        energy_std={"gross": "ref_energy_j_per_1k_std", "net": None},
        energy_iteration={"gross": "ref_energy_j", "net": "ref_energy_net_j"},
        power_mean="ref_power_w_mean", power_std=None, idle_power="ref_idle_power_w"),
    # The seed's CSV uses results.csv's names for its own (single) method.
    "published": _NATIVE,
}


class ReportInputError(ValueError):
    """A results directory that is missing, empty or malformed (one line, for the CLI)."""


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


@dataclass(frozen=True)
class Config:
    """One configuration: a row of results.csv and its measured iterations."""
    dataset: str
    gpu_name: str
    model: str
    params_b: float
    quant: str
    batch_size: int
    status: str
    row: Mapping[str, str]
    iterations: tuple[Mapping[str, str], ...] = ()
    regime: str = "eager"
    """Decode regime (``eager`` for the seed's data and rows written before regimes)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def card(self) -> str:
        """The card that measured it (``gpu_uuid``; empty where the row does not say): cards
        of one model differ by ~11 % in energy for the same work, so comparisons stay on one."""
        return self.row.get("gpu_uuid", "") or ""

    @property
    def error(self) -> str:
        return self.row.get("error", "") or ""

    def value(self, column: str | None) -> float:
        """A numeric column of the results.csv row (NaN if absent or empty)."""
        return parse_float(self.row.get(column)) if column else math.nan

    def iteration_values(self, column: str) -> np.ndarray:
        """A numeric column of the iterations (NaN where empty)."""
        return np.array([parse_float(r.get(column)) for r in self.iterations], dtype=float)

    def energy_per_1k(self, method: str, basis: str) -> float:
        """Mean energy per 1,000 generated tokens (J) by ``method``, gross or net of idle."""
        return self.value(COLUMNS[method].energy_mean[basis])

    def iteration_energy_per_1k(self, method: str, basis: str) -> np.ndarray:
        """Per-iteration energy per 1k tokens (J), finite values only."""
        if not self.iterations:
            return np.empty(0)
        energy_j = self.iteration_values(COLUMNS[method].energy_iteration[basis])
        tokens = self.iteration_values("tokens")
        with np.errstate(divide="ignore", invalid="ignore"):
            return _finite(energy_j / tokens * 1000.0)

    def energy_std(self, method: str, basis: str) -> float:
        """Sample standard deviation of energy per 1k over iterations: the results.csv
        column, or from iterations.csv where results.csv does not carry it."""
        column = COLUMNS[method].energy_std[basis]
        if column is not None and column in self.row:
            return self.value(column)
        values = self.iteration_energy_per_1k(method, basis)
        return float(np.std(values, ddof=1)) if values.size >= 2 else math.nan

    def power_w(self, method: str) -> float:
        return self.value(COLUMNS[method].power_mean)

    def power_std_w(self, method: str) -> float:
        column = COLUMNS[method].power_std
        if column is not None and column in self.row:
            return self.value(column)
        if not self.iterations:
            return math.nan
        energy_j = self.iteration_values(COLUMNS[method].energy_iteration["gross"])
        with np.errstate(divide="ignore", invalid="ignore"):
            power = _finite(energy_j / self.iteration_values("duration_s"))
        return float(np.std(power, ddof=1)) if power.size >= 2 else math.nan

    def idle_power_w(self, method: str) -> float:
        return self.value(COLUMNS[method].idle_power)


@dataclass
class Dataset:
    """Every configuration of one results directory (or of the seed's published tables)."""
    label: str
    path: Path | None
    configs: list[Config]
    superseded: list[Config] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    is_seed: bool = False
    iteration_rows: int = 0

    @property
    def methods(self) -> tuple[str, ...]:
        """Methods this dataset has figures for."""
        return ("published",) if self.is_seed else ("native", "ref")

    @property
    def ok(self) -> list[Config]:
        return [c for c in self.configs if c.ok]

    @property
    def failed(self) -> list[Config]:
        return [c for c in self.configs if not c.ok]

    def gpus(self) -> list[str]:
        """GPU names in order of first appearance."""
        return list(dict.fromkeys(c.gpu_name for c in self.configs))

    def ok_on(self, gpu_name: str) -> list[Config]:
        return [c for c in self.ok if c.gpu_name == gpu_name]

    def traces_path(self, config: Config) -> Path | None:
        """The configuration's native traces file, if results.csv names one that exists."""
        name = config.row.get("traces", "")
        if not name or self.path is None:
            return None
        path = self.path / name
        return path if path.is_file() else None


# reading ---------------------------------------------------------------------------------
def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header:
                raise ReportInputError(f"{path} is empty")
            missing = [c for c in required if c not in header]
            if missing:
                raise ReportInputError(f"{path} is not an ecomeasure results file "
                                       f"(missing columns: {', '.join(missing)})")
            rows = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise ReportInputError(f"{path}, line {line}: wrong number of fields")
                _check_numbers(path, line, row)
                rows.append(row)
            return rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReportInputError(f"{path} is malformed: {exc}") from None


def _check_numbers(path: Path, line: int, row: Mapping[str, str]) -> None:
    """Every cell outside TEXT_COLUMNS is a number or empty: a mangled figure must stop the
    report, not turn into NaN and drop out of a table."""
    for column, cell in row.items():
        if column in TEXT_COLUMNS or cell == "":
            continue
        try:
            float(cell)
        except ValueError:
            raise ReportInputError(f"{path}, line {line}, column {column}: {cell!r} is not a number") from None


def protocol_key(config: Config) -> tuple[str, str, str, int, str, str, str]:
    """What makes two rows measurements of the same thing: a later row of the same key
    replaces an earlier one, rows of different protocols never do. Files from before the
    ``regime`` column measured the eager regime."""
    row = config.row
    return (config.gpu_name, config.model, config.quant, config.batch_size, row.get("new_tokens", ""),
            row.get("device", ""), row.get("regime") or "eager")


def _batch_size(path: Path, line: int, cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise ReportInputError(f"{path}, line {line}: batch_size {cell!r} is not an integer") from None


def _config(dataset: str, path: Path, line: int, row: Mapping[str, str],
            iterations: tuple[Mapping[str, str], ...] = ()) -> Config:
    status = row.get("status", "")
    if status not in ("ok", "failed", "unavailable"):
        raise ReportInputError(f"{path}, line {line}: status {status!r} is not ok, failed or unavailable")
    return Config(dataset=dataset, gpu_name=row.get("gpu_name", "") or "(unknown GPU)",
                  model=row["model"], params_b=parse_float(row.get("params_b")), quant=row["quant"],
                  batch_size=_batch_size(path, line, row["batch_size"]), status=status,
                  row=dict(row), iterations=iterations, regime=_regime(row))


def _regime(row: Mapping[str, str]) -> str:
    return row.get("regime") or "eager"


def _iteration_blocks(rows: Sequence[Mapping[str, str]]) -> dict[tuple[str, ...], deque]:
    """Consecutive iterations of one configuration, per (model, quant, batch_size, regime),
    in file order. iterations.csv does not say which results.csv row (or GPU) an iteration belongs
    to; configurations are appended in the same order to both files, so the k-th block of a
    key belongs to the k-th ok row of that key."""
    blocks: dict[tuple[str, ...], deque] = defaultdict(deque)
    previous_key, previous_index = None, math.inf
    for row in rows:
        key = (row["model"], row["quant"], row["batch_size"], _regime(row))
        index = parse_float(row["iteration"])
        if key != previous_key or not index > previous_index:
            blocks[key].append([])
        blocks[key][-1].append(row)
        previous_key, previous_index = key, index
    return blocks


def load_results_dir(path: str | Path, label: str | None = None) -> Dataset:
    """Reads ``path/results.csv`` and ``path/iterations.csv``.

    Raises ReportInputError (one line) if the directory is missing, has no results.csv or
    no rows, or a file is malformed. A missing iterations.csv is a note, not an error:
    tables still work, statistics do not.
    """
    root = Path(path)
    label = label or str(path)
    if not root.exists():
        raise ReportInputError(f"{root}: no such directory")
    if not root.is_dir():
        raise ReportInputError(f"{root}: not a directory")
    results_csv = root / RESULTS_CSV
    if not results_csv.is_file():
        raise ReportInputError(f"{root}: no {RESULTS_CSV} (not an ecomeasure results directory?)")
    rows = _read_csv(results_csv, REQUIRED_RESULT_COLUMNS)
    if not rows:
        raise ReportInputError(f"{results_csv} has no rows")

    notes: list[str] = []
    iterations_csv = root / ITERATIONS_CSV
    iteration_rows: list[dict[str, str]] = []
    if iterations_csv.is_file() and iterations_csv.stat().st_size > 0:
        iteration_rows = _read_csv(iterations_csv, REQUIRED_ITERATION_COLUMNS)
    else:
        notes.append(f"{label}: no {ITERATIONS_CSV}, so no statistics")
    blocks = _iteration_blocks(iteration_rows)

    # Pair blocks with ok rows from the end: the latest rows are the ones the report uses.
    ok_lines: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for line, row in enumerate(rows, start=2):
        if row["status"] == "ok":
            ok_lines[(row["model"], row["quant"], row["batch_size"], _regime(row))].append(line)
    paired: dict[int, tuple[Mapping[str, str], ...]] = {}
    for key, lines in ok_lines.items():
        found = list(blocks.get(key, ()))
        if iteration_rows and len(found) != len(lines):
            notes.append(f"{label}: {len(found)} blocks of iterations for {len(lines)} ok rows of "
                         f"{'/'.join(key)}; paired from the latest")
        for line, block in zip(reversed(lines), reversed(found)):
            expected = parse_float(rows[line - 2].get("iterations"))
            if math.isfinite(expected) and expected != len(block):
                notes.append(f"{label}: {RESULTS_CSV} line {line} says {expected:g} iterations, "
                             f"{ITERATIONS_CSV} has {len(block)}; no statistics for it")
                continue
            paired[line] = tuple(block)

    configs = [_config(label, results_csv, line, row, paired.get(line, ()))
               for line, row in enumerate(rows, start=2)]
    latest: dict[tuple[str, str, str, int, str, str, str], Config] = {}
    for config in configs:
        if config.ok:
            latest[protocol_key(config)] = config
    kept = {id(c) for c in latest.values()}
    used = [c for c in configs if not c.ok or id(c) in kept]
    superseded = [c for c in configs if c.ok and id(c) not in kept]
    return Dataset(label=label, path=root, configs=used, superseded=superseded, notes=notes,
                   iteration_rows=len(iteration_rows))


def _relabelled(configs: Sequence[Config], label: str, regime: str) -> list[Config]:
    """The configs of one regime, as part of the dataset ``label``."""
    return [replace(c, dataset=label) for c in configs if c.regime == regime]


def split_by_regime(dataset: Dataset) -> list[Dataset]:
    """One dataset per decode regime, labelled ``<label> · <regime>``, so that every table,
    statistic, finding and plot sets the regimes side by side; a dataset of one regime
    stays as it is."""
    regimes = list(dict.fromkeys(c.regime for c in dataset.configs + dataset.superseded))
    if len(regimes) < 2:
        return [dataset]
    parts = []
    for regime in regimes:
        label = f"{dataset.label} · {regime}"
        parts.append(Dataset(label=label, path=dataset.path,
                             configs=_relabelled(dataset.configs, label, regime),
                             superseded=_relabelled(dataset.superseded, label, regime), notes=list(dataset.notes),
                             iteration_rows=sum(len(c.iterations) for c in dataset.configs if c.regime == regime)))
    return parts


def seed_csv_text() -> str:
    """The seed's published tables as CSV text (``ecomeasure/data/seed_results.csv``)."""
    return (importlib.resources.files("ecomeasure") / "data" / "seed_results.csv").read_text(
        encoding="utf-8")


def load_seed() -> Dataset:
    """The seed memo's published numbers, labelled ``SEED_LABEL``: tables and findings only
    (no per-iteration data, so no statistics). See ``ecomeasure/data/README.md``."""
    reader = csv.DictReader(seed_csv_text().splitlines())
    path = Path("ecomeasure/data/seed_results.csv")
    configs = [_config(SEED_LABEL, path, line, row) for line, row in enumerate(reader, start=2)]
    notes = [f"{SEED_LABEL}: transcribed from the {SEED_SOURCE}; energies as published - "
             "RTX 5090 and A800 gross, RTX 4090D net of idle (~17 W, not published); "
             "its CV column is the CV of throughput; no per-iteration data, so no statistics"]
    return Dataset(label=SEED_LABEL, path=None, configs=configs, notes=notes, is_seed=True)
