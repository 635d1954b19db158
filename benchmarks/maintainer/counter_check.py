"""Recomputes the counter check of a results folder from its saved traces.

    python -m benchmarks.maintainer.counter_check docs/results/2026-12-06-h100 [--write]

For each ok row of results.csv: native_vs_counter_pct and native_vs_counter_s as the bench
computes them now (runner.counter_check over the row's iterations in iterations.csv), beside
the row's own figure. --write stores them in results.csv (the file is rewritten with the
current columns), for rows written before the check compared both instruments over the same
seconds.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

from ecomeasure import load_traces
from ecomeasure.bench.merge import read, write
from ecomeasure.bench.results import format_value
from ecomeasure.bench.rows import counter_verdict
from ecomeasure.bench.runner import counter_check
from ecomeasure.schema import ITERATIONS_CSV, RESULT_COLUMNS, RESULTS_CSV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--write", action="store_true", help="store the recomputed figures in results.csv")
    args = parser.parse_args(argv)
    _, rows = read(args.results / RESULTS_CSV)
    spans: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for it in read(args.results / ITERATIONS_CSV)[1]:
        spans[(it["model"], it["quant"], it["batch_size"], it["regime"])] += [float(it["start_s"]), float(it["end_s"])]
    for row in rows:
        key = (row["model"], row["quant"], row["batch_size"], row["regime"])
        if row["status"] != "ok" or not row["traces"] or key not in spans:
            continue
        check = counter_check(load_traces(args.results / row["traces"]), min(spans[key]), max(spans[key]))
        pct, span_s = (check.pct, check.span_s) if check is not None else (math.nan, math.nan)
        before = row.get("native_vs_counter_pct", "")
        print(f"{' '.join(key)}: {counter_verdict(pct, span_s)} (row: {before or 'none'})")
        row["native_vs_counter_pct"], row["native_vs_counter_s"] = format_value(pct), format_value(span_s)
    if args.write:  # whole or not at all, with the current columns
        write(args.results / RESULTS_CSV, list(RESULT_COLUMNS),
              [{c: row.get(c, "") for c in RESULT_COLUMNS} for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
