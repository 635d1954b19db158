"""``python -m ecomeasure.report DIR [DIR ...]``: the report of one or more results directories."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .load import SEED_LABEL, ReportInputError, load_results_dir, load_seed, split_by_regime

EXIT_BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ecomeasure.report",
        description="Turn benchmark results directories (python -m ecomeasure.bench --out DIR) "
                    "into the seed's tables (gross and net of idle, per method), statistics "
                    "against fp16 (Welch's t-test, Cohen's d, 95 % CIs), the seed's findings "
                    "checked on the data, and plots. Writes report.md, tables.csv, "
                    "statistics.csv, findings.csv and PNGs.")
    p.add_argument("dirs", nargs="*", metavar="DIR",
                   help="results directories (several are compared side by side)")
    p.add_argument("--out", metavar="REPORT_DIR", type=Path,
                   help="where to write the report (default: DIR/report for one directory, "
                        "report/ for several)")
    p.add_argument("--include-seed", action="store_true",
                   help=f"add the seed's published numbers as a reference dataset, labelled "
                        f"'{SEED_LABEL}'")
    p.add_argument("--method", choices=("native", "ref", "both"), default="both",
                   help="which measuring method's figures to report: the native meter's headline, "
                        "the 10 Hz reference, or both (default: both)")
    return p


def _unique_labels(dirs: Sequence[str]) -> list[str]:
    labels: list[str] = []
    for d in dirs:
        label = d.rstrip("/") or d
        labels.append(label if label not in labels else f"{label} #{len(labels) + 1}")
    return labels


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    prog = "ecomeasure.report"
    if not args.dirs and not args.include_seed:
        print(f"{prog}: error: give at least one results directory (or --include-seed)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        datasets = [part for d, label in zip(args.dirs, _unique_labels(args.dirs))
                    for part in split_by_regime(load_results_dir(d, label))]
    except ReportInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.include_seed:
        datasets.append(load_seed())
    out = args.out or (Path(args.dirs[0]) / "report" if len(args.dirs) == 1 else Path("report"))

    # Imported here so that bad input is reported before scipy and matplotlib load.
    try:
        from .document import build_report
    except ImportError as exc:
        print(f"{prog}: error: {exc.name or exc} is not installed; the report needs scipy and "
              "matplotlib (pip install 'ecomeasure[report]')", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = build_report(datasets, out, args.method)
    counts = {v: sum(f.verdict == v for f in report.findings)
              for v in ("holds", "does not hold", "not testable here")}
    print(f"wrote {out / 'report.md'} and {len(report.files) - 1} more files: "
          f"{sum(len(d.ok) for d in datasets)} configurations, {len(report.comparisons)} "
          f"comparisons with fp16, findings: {counts['holds']} hold, {counts['does not hold']} "
          f"do not hold, {counts['not testable here']} not testable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
