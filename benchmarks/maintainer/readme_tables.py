"""The documentation's result tables, generated from committed data so that they cannot drift
from it.

Each generated table sits in README.md or a page under docs/ between two markers; the first
names the table's kind and its data (a path relative to the page), and the block ends with the
command that regenerates it:

    <!-- generated: validation validation/2026-11-30-h200 -->
    | burst | ... |
    ...

    regenerate: `python benchmarks/maintainer/readme_tables.py --write`
    <!-- end: validation -->

Kinds:

- ``bench``: a benchmark results directory, read by ``ecomeasure.report`` (latest row of each
  configuration): throughput, energy per 1k tokens gross and net of idle by the native meter,
  gross by the 10 Hz reference, and the deltas vs fp16 of the same model and batch size;
- ``validation``: a saved validation folder (``python -m ecomeasure.validate --out DIR``),
  re-analysed as ``--from`` does: median (worst) error of isolated bursts per length, for the
  headline (window, and burst plus its tail) and the seed's 10 Hz method;
- ``sampler``: the JSON ``benchmarks/meter/sampler_overhead.py --json`` writes;
- ``peers``: a saved ``benchmarks/peers/peers.py`` run (its windows.csv), as ``--from`` prints it;
- ``unavailable``: the rows of a results directory that a regime could not run, and why;
- ``stability``: per regime, how steady a results directory's iterations were: throughput CV,
  the first iteration's duration over the median's, and the iterations the benchmark's current
  outlier rule flags (recomputed from iterations.csv, so rows written under an older rule are
  judged by the current one);
- ``quantization``: a results directory through the report's floor analysis, as report.md
  shows it (``ecomeasure.report.floor.quantization_markdown``), native meter, gross;
- ``scaling``: a folder of ``benchmarks/gpu.sh scaling`` runs (one subfolder each, with its
  scaling.txt): per run, the wall times on one GPU and on two, their ratio, and where each
  process's time went.

``bench``, ``unavailable``, ``stability`` and ``quantization`` take filters after the path, ``column=value``
(e.g. ``model=mistral``), ``column>=value`` or ``column<=value`` (text order, e.g.
``date>=2026-11-30T08:55``).

    python benchmarks/maintainer/readme_tables.py --check   # exit 1, naming each table that differs
    python benchmarks/maintainer/readme_tables.py --write   # rewrite every marked table

Without ``--page``, the pages are README.md and docs/*.md. Bad input (missing data, a marker
without its end, an unknown kind) is one line and exit 2.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from ecomeasure import fmt
from ecomeasure.report import ReportInputError, load_results_dir
from ecomeasure.report.tables import markdown, result_rows
from ecomeasure.schema import BASELINE_QUANT

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate: `python benchmarks/maintainer/readme_tables.py --write`"

BLOCK = re.compile(r"(<!-- generated: (?P<kind>\w+) (?P<path>\S+)(?P<filters>(?: \w+[<>]?=\S+)*) -->\n)(?P<body>.*?)"
                   r"(?P<end><!-- end: (?P=kind) -->)", re.DOTALL)
OPENING = re.compile(r"<!-- generated:")


class TableError(ValueError):
    """A marked table cannot be generated; the message says why."""


def _median_worst(row) -> str:
    """A summary row's "median (worst)" error, as the tables write percentages."""
    if row is None or not row.n:
        return fmt.DASH
    return f"{fmt.pct(100 * row.median_error)} ({fmt.pct(100 * row.worst_error)})"


def validation_table(folder: Path) -> str:
    """Isolated bursts, per length: the headline's error (window; burst plus its tail) and the
    10 Hz reference's, re-analysed from the folder's saved files."""
    from ecomeasure.validate import load
    from ecomeasure.validate.analysis import find
    try:
        validation, _ = load(folder)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise TableError(f"cannot re-analyse {folder}: {error}") from None
    lengths = sorted({r.length_s for r in validation.summary if r.kind == "burst"})
    header = ["burst", "native headline, window", f"native headline, burst + {validation.tail_s:g} s tail",
              "seed's 10 Hz method, window"]
    rows = [[f"{length:g} s", _median_worst(find(validation.summary, "burst", length, "headline")),
             _median_worst(find(validation.summary_tail, "burst", length, "headline")),
             _median_worst(find(validation.summary, "burst", length, "reference_10hz"))] for length in lengths]
    return markdown(header, rows)


def _delta(row: dict, column: str) -> str:
    """A delta vs fp16; empty on the fp16 row itself."""
    return "" if row["quant"] == BASELINE_QUANT else fmt.pct(row[column])


def _dataset(results_dir: Path, filters: dict[str, str] | None):
    """The results directory's configurations whose results.csv columns equal ``filters``
    (e.g. ``{"model": "mistral"}``, from ``model=mistral`` in the marker)."""
    try:
        dataset = load_results_dir(results_dir)
    except ReportInputError as error:
        raise TableError(str(error)) from None
    wanted = filters or {}

    def matches(row: dict, key: str, value: str) -> bool:
        if key.endswith(">"):
            return row.get(key[:-1], "") >= value
        if key.endswith("<"):
            return row.get(key[:-1], "") <= value
        return row.get(key) == value
    dataset.configs = [c for c in dataset.configs if all(matches(c.row, k, v) for k, v in wanted.items())]
    return dataset


def bench_table(results_dir: Path, filters: dict[str, str] | None = None) -> str:
    """One row per configuration (latest run), per GPU in order of appearance."""
    dataset = _dataset(results_dir, filters)
    gpus = [g for g in dataset.gpus() if dataset.ok_on(g)]
    header = (["GPU"] if len(gpus) > 1 else []) + [
        "model", "config", "BS", "regime", "tok/s (CV %)", "of floor", "GPU busy", "J/1k gross, native",
        "J/1k net of idle", "J/1k gross, 10 Hz ref", "vs fp16 gross", "vs fp16 net"]
    rows = []
    for gpu in gpus:
        # Both lists come in the same order (result_rows sorts the same configurations).
        for n, r in zip(result_rows(dataset, gpu, "native"), result_rows(dataset, gpu, "ref")):
            rows.append(([gpu] if len(gpus) > 1 else []) + [
                n["model"], n["quant"], str(n["batch_size"]), n["regime"],
                f"{fmt.plain(n['throughput_tok_s_mean'])} ({fmt.plain(n['throughput_cv_pct'])})",
                _share(n["bandwidth_floor_fraction"]), _share(n["gpu_busy_share_mean"]),
                fmt.energy(n["energy_j_per_1k_mean"]), fmt.energy(n["energy_net_j_per_1k_mean"]),
                fmt.energy(r["energy_j_per_1k_mean"]), _delta(n, "delta_vs_fp16_pct"),
                _delta(n, "delta_vs_fp16_net_pct")])
    if not rows:
        raise TableError(f"{results_dir} has no successful configuration")
    return markdown(header, rows)


def _share(value: float) -> str:
    """A share (0..1) as a whole percentage."""
    return fmt.DASH if value != value else f"{100 * value:.0f} %"


def quantization_table(results_dir: Path, filters: dict[str, str] | None = None) -> str:
    """Each scheme against its 16-bit rows and the bandwidth floor: the report's own table
    (``floor.quantization_markdown``), native meter, gross."""
    from ecomeasure.report import floor
    figures = [f for f in floor.figures_of([_dataset(results_dir, filters)], ("native",)) if f.basis == "gross"]
    if not figures:
        raise TableError(f"{results_dir} has no scheme with a 16-bit row to compare")
    return floor.quantization_markdown(figures)


def unavailable_table(results_dir: Path, filters: dict[str, str] | None = None) -> str:
    """The configurations a regime could not run, and why."""
    rows = [[c.model, c.quant, str(c.batch_size), c.regime, textwrap.shorten(c.error, 110, placeholder=" ...")]
            for c in _dataset(results_dir, filters).configs if c.status == "unavailable"]
    return markdown(["model", "config", "BS", "regime", "why"], rows)


def peers_table(folder: Path) -> str:
    """ecomeasure beside Zeus and CodeCarbon: the peers script's table of a saved run,
    recomputed from its windows.csv."""
    import importlib.util
    script = next(ROOT.glob("benchmarks/**/peers.py"), None)
    if script is None:
        raise TableError("benchmarks/peers/peers.py is missing")
    spec = importlib.util.spec_from_file_location("peers", script)
    peers = sys.modules.setdefault("peers", importlib.util.module_from_spec(spec))
    if not hasattr(peers, "reanalyse"):
        spec.loader.exec_module(peers)  # type: ignore[union-attr]
    try:
        return peers.reanalyse(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TableError(f"cannot re-analyse {folder}: {error}") from None


def sampler_table(path: Path) -> str:
    """What the sampler thread keeps and costs, per phase (idle, load)."""
    try:
        phases = json.loads(path.read_text())["phases"]
    except (OSError, ValueError, KeyError) as error:
        raise TableError(f"cannot read {path}: {error}") from None
    if not phases:
        raise TableError(f"{path} has no phases (run sampler_overhead.py with --seconds > 0)")

    def kept(p: dict, source: str) -> str:
        return f"{p['sources'][source]['kept_per_s']:.1f}"

    def total(p: dict, key: str) -> int:
        return sum(s[key] for s in p["sources"].values())

    rows = [["sampler thread CPU, share of one core"] + [f"{p['cpu_share_pct']:.2f} %" for p in phases],
            ["driver samples kept per second"] + [kept(p, "samples") for p in phases],
            ["instant / average power kept per second"] + [f"{kept(p, 'instant')} / {kept(p, 'average')}"
                                                          for p in phases],
            ["counter reads per second"] + [kept(p, "counter") for p in phases],
            ["lost-sample gaps, NVML errors"] + [f"{total(p, 'gaps')}, {total(p, 'errors')}" for p in phases]]
    return markdown([""] + [p["phase"] for p in phases], rows)


def stability_table(results_dir: Path, filters: dict[str, str] | None = None) -> str:
    """Per regime: configurations, throughput CV (median, max), iteration 0's duration over
    the median duration (median, range), and configurations with iteration 0 / any iteration
    flagged by ``ecomeasure.bench.rows.outliers``."""
    import statistics

    from ecomeasure.bench.rows import outliers

    dataset = _dataset(results_dir, filters)
    by_regime: dict[str, list] = {}
    for c in dataset.configs:
        if c.ok and len(c.iterations) >= 3:
            by_regime.setdefault(c.regime, []).append(c)
    rows = []
    for regime, configs in by_regime.items():
        cvs = [float(c.row["throughput_cv_pct"]) for c in configs]
        ratios, first_flagged, any_flagged = [], 0, 0
        for c in configs:
            durations = list(c.iteration_values("duration_s"))
            ratios.append(durations[0] / statistics.median(durations))
            flags = outliers(list(c.iteration_values("throughput_tok_s")))
            first_flagged += flags[0]
            any_flagged += any(flags)
        rows.append([regime, str(len(configs)), f"{statistics.median(cvs):.2f} ({max(cvs):.2f})",
                     f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                     str(first_flagged), str(any_flagged)])
    if not rows:
        raise TableError(f"{results_dir} has no configuration with three or more iterations")
    return markdown(["regime", "configurations", "throughput CV %, median (max)",
                     "iteration 0 / median duration, median (range)", "iteration 0 an outlier",
                     "any iteration an outlier"], rows)


SCALING_WALL = re.compile(r"1 GPU: (?P<one>[\d.]+) s; 2 GPUs \(torchrun\): (?P<two>[\d.]+) s; .*?(?P<ok>\d+) ok rows; "
                          r"both runs measured the same configurations with the same status: (?P<same>True|False)")
SCALING_PROCESS = re.compile(r"(?P<run>one-gpu|two-gpus)/run-\w+?(?:-rank(?P<rank>\d+))?\.json: (?P<n>\d+) configurations, "
                             r"(?P<work>\d+) s from its start to its end, started (?P<start>-?\d+) s after the launch")


def scaling_table(folder: Path) -> str:
    """Per run (a subfolder with the scaling.txt that ``benchmarks/gpu.sh scaling`` writes): wall
    time on one GPU and on two with torchrun, their ratio, and each process's start-up and
    work (its configurations, from its start to its end)."""
    rows = []
    for text_file in sorted(folder.glob("*/scaling.txt")):
        text = text_file.read_text()
        wall = SCALING_WALL.search(text)
        if wall is None:
            raise TableError(f"{text_file} has no wall-time line")
        processes = {(m["run"], m["rank"]): m for m in SCALING_PROCESS.finditer(text)}
        one = processes.get(("one-gpu", None))
        ranks = sorted((k[1], m) for k, m in processes.items() if k[0] == "two-gpus")
        if one is None or not ranks:
            raise TableError(f"{text_file} lacks the one-GPU or the ranks' process lines")
        one_s, two_s = float(wall["one"]), float(wall["two"])
        rows.append([text_file.parent.name, wall["ok"], f"{one_s:.1f}", f"{one['start']} + {one['work']}",
                     f"{two_s:.1f}", " / ".join(f"{m['start']} + {m['work']}" for _, m in ranks),
                     f"**{two_s / one_s:.3f}**", "yes" if wall["same"] == "True" else "**no**"])
    if not rows:
        raise TableError(f"{folder} has no */scaling.txt")
    return markdown(["run", "ok rows", "1 GPU, s", "its start-up + work, s", "2 GPUs, s",
                     "rank 0 / rank 1 start-up + work, s", "2 GPUs / 1 GPU", "same rows and status"], rows)


KINDS: dict[str, Callable[..., str]] = {"bench": bench_table, "unavailable": unavailable_table,
                                        "validation": validation_table, "sampler": sampler_table,
                                        "peers": peers_table, "stability": stability_table,
                                        "scaling": scaling_table, "quantization": quantization_table}
FILTERED = {"bench", "unavailable", "stability", "quantization"}


def _body(kind: str, path: Path, filters: dict[str, str]) -> str:
    if kind not in KINDS:
        raise TableError(f"unknown table kind {kind!r} (known: {', '.join(KINDS)})")
    if not path.exists():
        raise TableError(f"{path} does not exist")
    if filters and kind not in FILTERED:
        raise TableError(f"a {kind} table takes no filters")
    table = KINDS[kind](path, filters) if kind in FILTERED else KINDS[kind](path)
    return f"{table}\n\n{REGENERATE}\n"


def regenerate(text: str, root: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """A page's text with every marked table regenerated from its data (paths relative to
    ``root``, the page's folder), and (name "kind path", old block, new block) of each table
    that changed."""
    if len(OPENING.findall(text)) != len(BLOCK.findall(text)):
        raise TableError("a '<!-- generated: KIND PATH -->' marker has no matching '<!-- end: KIND -->'")
    changed: list[tuple[str, str, str]] = []

    def one(m: re.Match) -> str:
        filters = dict(f.split("=", 1) for f in m["filters"].split())
        body = _body(m["kind"], root / m["path"], filters)
        if body != m["body"]:
            changed.append((f"{m['kind']} {m['path']}", m["body"], body))
        return m.group(1) + body + m["end"]

    return BLOCK.sub(one, text), changed


def pages() -> list[Path]:
    """The pages that may hold generated tables: README.md and docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/maintainer/readme_tables.py",
                                description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a marked table differs from its data")
    mode.add_argument("--write", action="store_true", help="rewrite every marked table from its data")
    p.add_argument("--page", type=Path, action="append",
                   help="a page to check or write (repeatable; default: README.md and docs/*.md)")
    args = p.parse_args(argv)
    differing = 0
    for page in args.page or pages():
        try:
            text = page.read_text()
            new, changed = regenerate(text, page.parent)
        except (OSError, TableError) as error:
            print(f"readme_tables: {page.name}: {error}", file=sys.stderr)
            return 2
        if args.write:
            if new != text:
                page.write_text(new)
            if changed:
                print(f"readme_tables: {page.name}: {len(changed)} table(s) rewritten"
                      + "".join(f"\n  {c[0]}" for c in changed))
            continue
        differing += len(changed)
        for name, old, body in changed:
            print(f"readme_tables: {page.name}: table '{name}' differs from its data; "
                  "run python benchmarks/maintainer/readme_tables.py --write")
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), body.splitlines(True),
                                                       f"{page.name} ({name})", "from its data"))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
