"""Merge the rows of one benchmark results directory into another (a dataset that grows over
several GPU runs).

    python -m ecomeasure.bench.merge SRC --into DST [--where model=mistral --where regime=graph]

Every measured (``ok``) or ``unavailable`` row of SRC replaces the row of DST with the same
configuration (GPU, model, quant, batch size, new tokens, device, regime), with its
iterations; SRC's traces and run files are copied beside them. ``failed`` rows are not
merged (a failure must not hide a measurement); ``--where column=value`` merges only the rows
that match (all of them). Both directories must have the same columns.
A row another card measured (``gpu_uuid``) is not replaced unless ``--replace-other-cards``
says so: a directory holds one card's row per configuration, so a second card's rows of the
same configurations go into a directory of their own.
Prints what was added and what was replaced. Bad input (a directory that is not a results
directory, different columns, a malformed --where) is one line on stderr and exit 2, before
anything in DST is written.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from ..schema import CONFIG_COLUMNS, ITERATIONS_CSV, PROTOCOL_COLUMNS, RESULTS_CSV
from .results import reference_csv_of

KEY = PROTOCOL_COLUMNS
ITERATION_KEY = CONFIG_COLUMNS
"""iterations.csv has no GPU or protocol columns: a merge replaces by these within DST."""


class MergeError(ValueError):
    """The two directories cannot be merged (their columns differ); nothing was written."""


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file's columns and rows."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Writes the rows whole or not at all (a temporary file renamed over ``path``)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def trace_files(root: Path, row: dict[str, str]) -> list[Path]:
    """A row's native trace (``traces`` column, .npz) and its reference samples beside it."""
    if not row.get("traces"):
        return []
    npz = root / row["traces"]
    return [path for path in (npz, reference_csv_of(npz)) if path.exists()]


def key_of(row: dict[str, str], columns: tuple[str, ...] = KEY) -> tuple[str, ...]:
    """A row's configuration key (``KEY``, or ``ITERATION_KEY`` for iterations.csv)."""
    return tuple(row[k] for k in columns)


def other_card(old: dict[str, str], new: dict[str, str]) -> bool:
    """Whether two rows name different cards (a row without ``gpu_uuid`` names none)."""
    return bool(old.get("gpu_uuid")) and bool(new.get("gpu_uuid")) and old["gpu_uuid"] != new["gpu_uuid"]


def merge(src: Path, dst: Path, where: dict[str, str] | None = None, replace_other_cards: bool = False
          ) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Merges ``src``'s rows (those matching ``where``) into ``dst``; returns (added,
    replaced) configuration keys. Raises MergeError, before writing, where a row would replace
    one another card measured and ``replace_other_cards`` is false."""
    src_cols, src_rows = read(src / RESULTS_CSV)
    dst_cols, dst_rows = read(dst / RESULTS_CSV)
    if src_cols != dst_cols:
        raise MergeError(f"{src}/{RESULTS_CSV} and {dst}/{RESULTS_CSV} have different columns")
    src_it_cols, src_its = read(src / ITERATIONS_CSV) if (src / ITERATIONS_CSV).exists() else ([], [])
    dst_it_cols, dst_its = read(dst / ITERATIONS_CSV)
    if src_its and src_it_cols != dst_it_cols:
        raise MergeError(f"{src}/{ITERATIONS_CSV} and {dst}/{ITERATIONS_CSV} have different columns")
    incoming = [r for r in src_rows if r["status"] in ("ok", "unavailable")
                and all(r.get(k) == v for k, v in (where or {}).items())]
    by_key = {key_of(r): r for r in incoming}
    iteration_keys = {key_of(r, ITERATION_KEY) for r in incoming}
    existing = {key_of(r) for r in dst_rows}
    if not replace_other_cards:
        clashes = [(old, by_key[key_of(old)]) for old in dst_rows
                   if key_of(old) in by_key and other_card(old, by_key[key_of(old)])]
        if clashes:
            old, new = clashes[0]
            raise MergeError(f"{len(clashes)} rows of {src} would replace rows another card measured "
                             f"(first: {' '.join(key_of(new)[1:])}, {old['gpu_uuid']} by "
                             f"{new['gpu_uuid']}); merge them into a directory of their own, or pass "
                             "--replace-other-cards")
    kept = [r for r in dst_rows if key_of(r) not in by_key]
    kept_its = [r for r in dst_its if key_of(r, ITERATION_KEY) not in iteration_keys]
    new_its = [r for r in src_its if key_of(r, ITERATION_KEY) in iteration_keys]
    write(dst / RESULTS_CSV, dst_cols, kept + incoming)
    write(dst / ITERATIONS_CSV, dst_it_cols, kept_its + new_its)
    for row in dst_rows:  # the replaced rows' traces go with them
        if key_of(row) in by_key:
            for trace in trace_files(dst, row):
                trace.unlink(missing_ok=True)
    for row in incoming:
        for trace in trace_files(src, row):
            target = dst / trace.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(trace, target)
    for run_file in src.glob("run-*.json") if incoming else ():
        shutil.copy2(run_file, dst / run_file.name)
    ordered = [key_of(r) for r in incoming]
    return [k for k in ordered if k not in existing], [k for k in ordered if k in existing]


def main(argv: list[str] | None = None) -> int:
    """The command: merges SRC into DST and prints what changed; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m ecomeasure.bench.merge", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("--into", type=Path, required=True)
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="merge only rows whose column has this value (repeatable: all must match)")
    p.add_argument("--replace-other-cards", action="store_true",
                   help="let a row replace one that another card (gpu_uuid) measured")
    args = p.parse_args(argv)

    def refuse(message: str) -> NoReturn:
        p.exit(2, f"{p.prog}: error: {message}\n")

    where = dict(w.split("=", 1) for w in args.where if "=" in w)
    if len(where) != len(args.where):
        refuse("--where takes COLUMN=VALUE")
    for root in (args.src, args.into):
        if not (root / RESULTS_CSV).is_file() or not (root / ITERATIONS_CSV).is_file():
            refuse(f"{root} is not a results directory ({RESULTS_CSV} and {ITERATIONS_CSV})")
    try:
        added, replaced = merge(args.src, args.into, where, args.replace_other_cards)
    except MergeError as exc:
        refuse(str(exc))
    for what, keys in (("added", added), ("replaced", replaced)):
        for key in keys:
            print(f"{what}: {' '.join(key[1:])}")
    print(f"{len(added)} added, {len(replaced)} replaced in {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
