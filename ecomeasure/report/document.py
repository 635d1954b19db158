"""Assembling the report: report.md, tables.csv, statistics.csv, findings.csv and the PNGs."""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import fmt
from . import floor, plots, tables
from .findings import Finding, check_dataset
from .load import SEED_LABEL, Dataset
from .stats import Comparison, compare_dataset

REPORT_MD = "report.md"
TABLES_CSV = "tables.csv"
STATISTICS_CSV = "statistics.csv"
FINDINGS_CSV = "findings.csv"

METHOD_CHOICES: dict[str, tuple[str, ...]] = {
    "native": ("native",), "ref": ("ref",), "both": ("native", "ref"),
}


@dataclass
class Report:
    """What was written, and what it says."""
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: fmt.csv_cell(row.get(c)) for c in columns})
    return path


def _methods_of(dataset: Dataset, methods: Sequence[str]) -> list[str]:
    return list(dataset.methods) if dataset.is_seed else [m for m in dataset.methods if m in methods]


def groups(datasets: Sequence[Dataset], methods: Sequence[str]) -> list[tuple[Dataset, str, str]]:
    """(dataset, GPU, method) for every GPU of every dataset and each method shown."""
    return [(d, gpu, m) for d in datasets for gpu in d.gpus() for m in _methods_of(d, methods)]


def plot_groups(datasets: Sequence[Dataset], methods: Sequence[str]) -> list[tuple[Dataset, str, str]]:
    """One method per GPU for plots: the native meter's, unless only ref is asked for."""
    primary = "ref" if tuple(methods) == ("ref",) else "native"
    return [(d, gpu, "published" if d.is_seed else primary) for d in datasets for gpu in d.gpus()]


_PREAMBLE = """\
Energies are per 1,000 generated tokens (all sequences of a batch). **Gross** includes idle
power; **net** subtracts the idle power measured with each configuration, after its
iterations. Methods: **native** is the native meter's headline figure, **ref** the seed's 10 Hz
method done right, **published** the seed's own figures. Δ is against the fp16 run of the same
model, batch size, GPU and card (rows name it: `gpu_uuid`). "CV tok/s" is the coefficient of
variation of throughput (what the seed's "CV (%)" column is); "CV energy" that of gross energy. ± is one sample SD over iterations."""

_STATISTICS_NOTE = """\
From the per-iteration energy per 1k tokens of `iterations.csv`. Welch's t-test:
`scipy.stats.ttest_ind(x, fp16, equal_var=False)` (two-sided). 95 % CI of each mean:
`scipy.stats.t.interval(0.95, n - 1, loc=mean, scale=sem)`. Cohen's d = (mean_x - mean_fp16) /
s_pooled, s_pooled = sqrt(((n_x - 1) s_x² + (n_fp16 - 1) s_fp16²) / (n_x + n_fp16 - 2)).
"n/a" with fewer than two iterations (or no spread at all). The seed's published data has no
iterations, so no statistics."""


def _inputs_section(datasets: Sequence[Dataset]) -> list[str]:
    lines = ["## Inputs", ""]
    for d in datasets:
        if d.is_seed:
            lines.append(f"- **{SEED_LABEL}**: {len(d.configs)} published configurations on "
                         f"{', '.join(d.gpus())}.")
            continue
        lines.append(f"- `{d.label}`: {len(d.ok)} ok and {len(d.failed)} failed configurations "
                     f"on {', '.join(d.gpus())}; {d.iteration_rows} iterations"
                     + (f"; {len(d.superseded)} earlier re-runs superseded" if d.superseded else "")
                     + ".")
    notes = [n for d in datasets for n in d.notes]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return lines


def _tables_section(datasets: Sequence[Dataset], methods: Sequence[str]) -> tuple[list[str], list[dict]]:
    lines, rows = ["## Results"], []
    for d in datasets:
        for gpu in d.gpus():
            if not d.ok_on(gpu):
                continue
            lines += ["", f"### {gpu} - {d.label}"]
            for method in _methods_of(d, methods):
                method_rows = tables.result_rows(d, gpu, method)
                rows += method_rows
                lines += ["", f"#### {tables.method_title(method)}", "",
                          tables.results_markdown(method_rows)]
        rows += tables.failed_rows(d)
    return lines, rows


def _comparison_section(datasets: Sequence[Dataset], methods: Sequence[str]) -> list[str]:
    columns = [g for g in groups(datasets, methods) if g[0].ok_on(g[1])]
    if len({(d.label, gpu) for d, gpu, _ in columns}) < 2:
        return []
    lines = ["## Side by side", "",
             "Energy per 1k tokens (Δ vs fp16), one column per GPU, method and dataset."]
    for basis in ("gross", "net"):
        lines += ["", f"### {basis.capitalize()} energy (J/1k)", "",
                  tables.comparison_markdown(columns, basis)]
    return lines


def _statistics_section(comparisons: Sequence[Comparison]) -> list[str]:
    lines = ["## Statistics against fp16", "", _STATISTICS_NOTE]
    if not comparisons:
        return lines + ["", "No configuration has an fp16 baseline with iterations in the data."]
    keys = list(dict.fromkeys((c.dataset, c.gpu_name) for c in comparisons))
    for dataset, gpu in keys:
        mine = [c for c in comparisons if (c.dataset, c.gpu_name) == (dataset, gpu)]
        lines += ["", f"### {gpu} - {dataset}", "", tables.statistics_markdown(mine)]
    return lines


def _failures_section(datasets: Sequence[Dataset]) -> list[str]:
    failed = [c for d in datasets for c in d.failed]
    superseded = [c for d in datasets for c in d.superseded]
    lines: list[str] = []
    if failed:
        lines += ["## Failed configurations (not used)", "",
                  tables.markdown(["Dataset", "GPU", "Model", "Config", "BS", "Error"],
                                  [[c.dataset, c.gpu_name, c.model, c.quant, str(c.batch_size),
                                    c.error or "(no message)"] for c in failed])]
    if superseded:
        lines += ["", "## Superseded runs (a later run of the same configuration is used)", "",
                  tables.markdown(["Dataset", "GPU", "Model", "Config", "BS", "Date"],
                                  [[c.dataset, c.gpu_name, c.model, c.quant, str(c.batch_size),
                                    c.row.get("date", "")] for c in superseded])]
    return lines


def build_report(datasets: Sequence[Dataset], out_dir: str | Path,
                 method: str = "both") -> Report:
    """Writes the whole report for ``datasets`` into ``out_dir``; ``method`` is native,
    ref or both (the seed's published figures are always shown as published)."""
    methods = METHOD_CHOICES[method]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)

    comparisons = [c for d in datasets for c in compare_dataset(d, methods)]
    findings = [f for d in datasets for f in check_dataset(d, methods)]
    figures = floor.figures_of(datasets, methods)
    quant_findings = floor.check_bytes_at_floor(figures) + floor.check_gpu_dependence(figures)
    report.comparisons, report.findings = comparisons, findings + quant_findings

    table_lines, table_rows = _tables_section(datasets, methods)
    report.files.append(_write_csv(out / TABLES_CSV, tables.TABLE_COLUMNS, table_rows))
    report.files.append(_write_csv(out / STATISTICS_CSV, tables.STATISTICS_COLUMNS,
                                   map(tables.statistics_row, comparisons)))
    report.files.append(_write_csv(out / FINDINGS_CSV, tables.FINDINGS_COLUMNS,
                                   map(tables.finding_row, report.findings)))
    report.files.append(_write_csv(out / floor.QUANTIZATION_CSV, floor.QUANTIZATION_COLUMNS,
                                   map(floor.quantization_row, figures)))

    chosen = plot_groups(datasets, methods)
    primary = "ref" if tuple(methods) == ("ref",) else "native"
    plot_files = [
        plots.plot_energy_by_config(chosen, out / plots.ENERGY_BY_CONFIG_PNG),
        plots.plot_nf4_crossover(chosen, out / plots.NF4_CROSSOVER_PNG),
        plots.plot_throughput_vs_energy(chosen, out / plots.THROUGHPUT_VS_ENERGY_PNG),
        plots.plot_energy_vs_floor(chosen, out / plots.ENERGY_VS_FLOOR_PNG),
        plots.plot_power_trace(datasets, out / plots.POWER_TRACE_PNG),
        floor.plot_energy_vs_bytes([f for f in figures if (f.method, f.basis) == (primary, "gross")],
                                   out / floor.ENERGY_VS_BYTES_PNG),
    ]
    report.files += [p for p, _ in plot_files]

    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = ["# ecomeasure report", "",
             f"Generated {generated} from: " + ", ".join(
                 SEED_LABEL if d.is_seed else f"`{d.label}`" for d in datasets) + ".", "",
             _PREAMBLE, ""]
    lines += _inputs_section(datasets) + [""] + table_lines
    comparison = _comparison_section(datasets, methods)
    lines += [""] + comparison if comparison else []
    lines += [""] + _statistics_section(comparisons)
    lines += ["", "## The seed's findings, checked on this data", "",
              "Each claim per GPU, method and basis, on the mean energy per 1k tokens; the "
              "published seed data is checked as published.", "",
              tables.findings_markdown(findings)]
    lines += [""] + floor.section(figures, quant_findings, primary)
    lines += ["", "## Plots"]
    for png, caption in plot_files:
        lines += ["", f"![{caption}]({png.name})", "", f"*{caption}*"]
    failures = _failures_section(datasets)
    lines += [""] + failures if failures else []
    lines += ["", f"Files: {', '.join(p.name for p in report.files)}."]
    md = out / REPORT_MD
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report.files.insert(0, md)
    return report
