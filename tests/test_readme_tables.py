"""benchmarks/maintainer/readme_tables.py: the marked tables of README.md and docs/*.md are
regenerated from committed data, and the check fails when a page differs from the data."""
from __future__ import annotations

import csv
import importlib.util
import json
import re
import statistics
import time
from pathlib import Path

import pytest

from conftest import patched_environ

from ecomeasure import Meter, fmt
from ecomeasure.reference import ReferenceMeter
from ecomeasure.validate import (EdgeCounter, PlanSettings, ScriptedWorkload, build_plan, run_validation, schedule,
                                 write_outputs)
from ecomeasure.validate.plan import edge_idle_for
from fakes import Profile, fake_env
from report_fixture import FixtureConfig, write_results_dir

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "maintainer" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)

FP16_J, NF4_J = 1000.0, 800.0  # the fixture's energies per 1k tokens; noise 0: the means are exact
FP16_W, NF4_W, IDLE_W = 200.0, 300.0, 20.0  # unequal powers: net deltas differ from gross ones


def _configs(nf4_j: float = NF4_J) -> list[FixtureConfig]:
    return [FixtureConfig("mistral", 7.2, "fp16", energy_j_per_1k=FP16_J, power_w=FP16_W, noise=0.0),
            FixtureConfig("mistral", 7.2, "nf4", energy_j_per_1k=nf4_j, power_w=NF4_W, noise=0.0)]


def test_the_real_pages_match_their_data(capsys):
    """Every generated table of README.md and docs/*.md equals its committed data (the output
    names the table that differs), and the pages that hold tables are the ones checked."""
    assert readme_tables.main(["--check"]) == 0, capsys.readouterr().out
    marked = {page.relative_to(ROOT).as_posix() for page in [ROOT / "README.md", *ROOT.glob("docs/**/*.md")]
              if "<!-- generated:" in page.read_text()}
    assert marked, "no page has generated tables"
    assert marked <= {page.relative_to(ROOT).as_posix() for page in readme_tables.pages()}


def _readme(tmp_path: Path, *blocks: tuple[str, str]) -> Path:
    text = "# Results\n\nSome prose.\n\n" + "\n".join(
        f"<!-- generated: {kind} {path} -->\n<!-- end: {kind} -->\n\nMore prose.\n" for kind, path in blocks)
    readme = tmp_path / "README.md"
    readme.write_text(text)
    return readme


def _write(readme: Path) -> None:
    assert readme_tables.main(["--write", "--page", str(readme)]) == 0


def _table_rows(readme: Path, kind: str) -> list[list[str]]:
    """The cells of the marked table of ``kind``, header first."""
    block = readme.read_text().split(f"<!-- generated: {kind} ")[1].split(f"<!-- end: {kind} -->")[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for k, line in enumerate(lines) if k != 1]


@pytest.fixture()
def bench_readme(tmp_path):
    write_results_dir(tmp_path / "results", _configs(), idle_power_w=IDLE_W)
    return _readme(tmp_path, ("bench", "results"))


def test_bench_table_is_written_from_the_results(bench_readme, capsys):
    _write(bench_readme)
    text = bench_readme.read_text()
    assert text.startswith("# Results\n\nSome prose.\n") and text.endswith("More prose.\n")
    assert readme_tables.REGENERATE in text
    header, fp16, nf4 = _table_rows(bench_readme, "bench")
    row = dict(zip(header, nf4))
    assert (fp16[1], nf4[1]) == ("fp16", "nf4")
    assert row["J/1k gross, native"] == fmt.energy(NF4_J)
    assert row["vs fp16 gross"] == fmt.pct(100 * (NF4_J / FP16_J - 1))
    assert dict(zip(header, fp16))["vs fp16 gross"] == ""
    # Net of idle: energy less idle power x time, time = energy / power (power has 0.5 % noise).
    net_delta = (NF4_J * (1 - IDLE_W / NF4_W)) / (FP16_J * (1 - IDLE_W / FP16_W)) - 1
    assert float(row["vs fp16 net"].split()[0]) == pytest.approx(100 * net_delta, abs=0.5)
    capsys.readouterr()
    assert readme_tables.main(["--check", "--page", str(bench_readme)]) == 0


def test_a_changed_number_in_the_readme_fails_the_check_and_names_the_table(bench_readme, capsys):
    _write(bench_readme)
    delta = fmt.pct(100 * (NF4_J / FP16_J - 1))
    bench_readme.write_text(bench_readme.read_text().replace(delta, fmt.pct(100 * (NF4_J / FP16_J - 1) - 1)))
    capsys.readouterr()
    assert readme_tables.main(["--check", "--page", str(bench_readme)]) == 1
    out = capsys.readouterr().out
    assert "table 'bench results' differs" in out
    assert any(line.startswith("+|") and delta in line for line in out.splitlines())  # the diff shows it


def test_changed_data_fails_the_check(bench_readme, tmp_path, capsys):
    _write(bench_readme)
    write_results_dir(tmp_path / "results", _configs(0.9 * NF4_J), idle_power_w=IDLE_W)
    capsys.readouterr()
    assert readme_tables.main(["--check", "--page", str(bench_readme)]) == 1
    assert "bench results" in capsys.readouterr().out
    _write(bench_readme)
    assert readme_tables.main(["--check", "--page", str(bench_readme)]) == 0


def test_each_page_reads_its_data_relative_to_itself_and_a_differing_page_is_named(tmp_path, capsys):
    """A table on a page under docs/ names its data relative to that page; --check over several
    pages fails when any one of them differs, and says which."""
    readme = _readme(tmp_path, ("bench", "docs/results"))
    (tmp_path / "docs").mkdir()
    page = _readme(tmp_path / "docs", ("bench", "results"))
    page = page.rename(tmp_path / "docs" / "results-card.md")
    write_results_dir(tmp_path / "docs" / "results", _configs(), idle_power_w=IDLE_W)
    assert readme_tables.main(["--write", "--page", str(readme), "--page", str(page)]) == 0
    assert _table_rows(readme, "bench") == _table_rows(page, "bench")
    capsys.readouterr()
    page.write_text(page.read_text().replace("| nf4 |", "| fp4 |"))
    assert readme_tables.main(["--check", "--page", str(readme), "--page", str(page)]) == 1
    out = capsys.readouterr().out
    assert "results-card.md: table 'bench results' differs" in out and "README.md: table" not in out


@pytest.mark.parametrize("text, needle", [
    ("<!-- generated: bench missing -->\n<!-- end: bench -->\n", "does not exist"),
    ("<!-- generated: bench results -->\n| a |\n", "no matching"),
    ("<!-- generated: nonsense results -->\n<!-- end: nonsense -->\n", "unknown table kind"),
])
def test_bad_markers_are_one_line_and_exit_2(tmp_path, capsys, text, needle):
    (tmp_path / "results").mkdir()
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert readme_tables.main(["--check", "--page", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("readme_tables: ") and needle in err[0]


def test_sampler_table_from_sampler_overhead_json(tmp_path):
    def phase(name, cpu, samples):
        sources = {s: {"kept_per_s": k, "gaps": g, "errors": e, "power_w": 100.0}
                   for s, k, g, e in (("samples", samples, 1, 0), ("instant", 10.0, 0, 2),
                                      ("average", 9.5, 0, 0), ("counter", 1.0, 0, 0))}
        return {"phase": name, "seconds": 60.0, "power_w": 100.0, "method": "calibrated",
                "cpu_share_pct": cpu, "sources": sources}
    (tmp_path / "sampler.json").write_text(json.dumps({"phases": [phase("idle", 1.153, 51.94),
                                                                  phase("load", 1.2, 49.9)]}))
    readme = _readme(tmp_path, ("sampler", "sampler.json"))
    _write(readme)
    header, cpu, samples, instant_average, counter, gaps = _table_rows(readme, "sampler")
    assert header[1:] == ["idle", "load"]
    assert cpu[1] == "1.15 %" and samples[1] == "51.9" and instant_average[1] == "10.0 / 9.5"
    assert gaps[1] == "1, 2"


# --- the validation table, from a quick validation saved on the fake NVML -----------------

SETTINGS = PlanSettings(lengths_s=(0.25, 1.0), burst_target_s=1.0, gap_s=0.3, jitter=0.5, squares=(),
                        steady_s=0.0, step_s=(0.3, 0.4, 0.4), edge_idle_s=edge_idle_for(0.1))


@pytest.fixture(scope="module")
def saved_validation(fake_nvml_dir, tmp_path_factory):
    plan = schedule(build_plan(SETTINGS), seed=1)
    t0_ns = time.monotonic_ns()
    workload = ScriptedWorkload(plan, t0_ns=t0_ns, idle_w=60.0, load_w=600.0, lead_s=0.5)
    env = fake_env(fake_nvml_dir, Profile(workload.breakpoints()), t0_ns, update_period_s=0.02,
                   sample_period_s=0.01)
    with patched_environ(env):
        meter = Meter(counter_interval_s=0.1)
        reference = ReferenceMeter(0, 0.1, nvml_library=env["ECOMEASURE_NVML_LIBRARY"]).start()
        edges = EdgeCounter(0, env["ECOMEASURE_NVML_LIBRARY"])
        try:
            validation = run_validation(plan, SETTINGS, workload, meter, reference, read_counter_j=edges.read_j,
                                        counter_update_s=0.02, info={"command": "pytest"})
        finally:
            reference.stop()
            edges.close()
            meter.stop()
    out = tmp_path_factory.mktemp("readme") / "validation"
    write_outputs(validation, out, meter, reference)
    meter.close()
    return out


def test_validation_table_equals_a_recomputation_from_windows_csv(saved_validation):
    readme = _readme(saved_validation.parent, ("validation", "validation"))
    _write(readme)
    header, *rows = _table_rows(readme, "validation")
    with open(saved_validation / "windows.csv") as f:
        windows = [w for w in csv.DictReader(f) if w["workload"] == "burst"]
    assert [r[0] for r in rows] == [f"{length:g} s" for length in SETTINGS.lengths_s]
    for row in rows:
        ws = [w for w in windows if f"{float(w['length_s']):g} s" == row[0]]
        for column, method in ((1, "headline"), (3, "reference_10hz")):
            errors = [(float(w[f"{method}_j"]) - float(w["truth_j"])) / float(w["truth_j"]) for w in ws]
            worst = max(errors, key=abs)
            assert row[column] == f"{fmt.pct(100 * statistics.median(errors))} ({fmt.pct(100 * worst)})", header
    assert readme_tables.main(["--check", "--page", str(readme)]) == 0


def test_filters_keep_only_the_rows_they_name(tmp_path):
    write_results_dir(tmp_path / "results", _configs() + [FixtureConfig("tinyllama", 1.1, "fp16", noise=0.0)],
                      idle_power_w=IDLE_W)
    readme = _readme(tmp_path, ("bench", "results model=mistral"), ("bench", "results quant=fp16"))
    _write(readme)
    first, second = (readme.read_text().split("<!-- generated: bench ")[k] for k in (1, 2))
    assert "mistral" in first and "tinyllama" not in first
    assert "| nf4 |" not in second and "tinyllama" in second and "mistral" in second


def test_unavailable_rows_are_listed_with_their_reason(tmp_path):
    root = write_results_dir(tmp_path / "results", _configs(), idle_power_w=IDLE_W)
    with open(root / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    graph = {**rows[0], "status": "unavailable", "regime": "graph",
             "error": "graph unavailable: capture failed: " + "CUDA error " * 30}
    with open(root / "results.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(rows[0])).writerow(graph)
    readme = _readme(tmp_path, ("unavailable", "results"))
    _write(readme)
    header, row = _table_rows(readme, "unavailable")
    assert row[:4] == ["mistral", "fp16", "1", "graph"]
    assert row[4].startswith("graph unavailable: capture failed: CUDA error") and row[4].endswith("...")
    assert len(row[4]) <= 110


def test_stability_table_counts_cold_first_iterations_by_the_current_rule(tmp_path):
    root = write_results_dir(tmp_path / "results", _configs(), idle_power_w=IDLE_W)
    with open(root / "iterations.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns, its = reader.fieldnames, list(reader)
    cold = next(r for r in its if r["quant"] == "fp16" and r["iteration"] == "0")
    cold["duration_s"] = str(2 * float(cold["duration_s"]))  # a cold first iteration, half as fast
    cold["throughput_tok_s"] = str(float(cold["throughput_tok_s"]) / 2)
    for r in its:
        r["outlier"] = "False"  # as written: the table must judge by itself
    with open(root / "iterations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(its)
    readme = _readme(tmp_path, ("stability", "results"), ("stability", "results date>=2100"))
    with pytest.raises(AssertionError):  # the second table selects no row: an error, exit 2
        _write(readme)
    readme = _readme(tmp_path, ("stability", "results date<=2000"))
    with pytest.raises(AssertionError):
        _write(readme)
    readme = _readme(tmp_path, ("stability", "results date>=2000"))
    _write(readme)
    header, row = _table_rows(readme, "stability")
    assert header[0] == "regime" and row[:2] == ["eager", "2"]
    first, low, high = re.match(r"(\S+) \((\S+)-(\S+)\)", row[3]).groups()
    assert float(high) == pytest.approx(2.0, abs=0.01) and float(low) == pytest.approx(1.0, abs=0.01)
    assert row[4:] == ["1", "1"]


def _scaling_run(folder: Path, one_s: float, two_s: float, same: bool = True) -> None:
    """A scaling run as ``benchmarks/gpu.sh scaling`` leaves it: both results directories and its
    scaling.txt, written by the script's own summary code (taken from the script)."""
    import subprocess
    import sys
    marker = "<<'PY' | tee \"$OUT/scaling/scaling.txt\"\n"
    script = next(text for text in (p.read_text() for p in ROOT.glob("benchmarks/**/*.sh")) if marker in text)
    summary = script.split(marker, 1)[1].split("\nPY\n", 1)[0]
    t0 = 1_790_000_000.0
    launches = {"one-gpu": t0, "two-gpus": t0 + one_s}
    for run, ranks in (("one-gpu", [None]), ("two-gpus", [0, 1])):
        (folder / run).mkdir(parents=True)
        statuses = ["ok", "ok", "unavailable" if (run == "one-gpu" or same) else "failed"]
        with open(folder / run / "results.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["model", "quant", "batch_size", "status"])
            writer.writerows([["m", q, "1", s] for q, s in zip(("fp16", "nf4", "int8"), statuses)])
        for rank in ranks:
            start = launches[run] + 5
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
            end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 40))
            name = f"run-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(start))}" \
                + ("" if rank is None else f"-rank{rank}") + ".json"
            (folder / run / name).write_text(json.dumps({"started_utc": stamp, "finished_utc": end,
                                                         "configurations": [{}, {}]}))
    out = subprocess.run([sys.executable, "-", str(t0), str(t0 + one_s), str(t0 + one_s + two_s), str(folder)],
                         input=summary, capture_output=True, text=True, check=True).stdout
    (folder / "scaling.txt").write_text(out)


def test_scaling_table_reads_what_the_scaling_script_writes(tmp_path):
    _scaling_run(tmp_path / "runs" / "a", 200.0, 110.0)
    _scaling_run(tmp_path / "runs" / "b", 200.0, 130.0, same=False)
    table = readme_tables.scaling_table(tmp_path / "runs")
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [r[0].strip("| ") for r in rows] == ["a", "b"]
    assert rows[0][1] == "2" and rows[0][2] == "200.0" and rows[0][4] == "110.0"
    assert rows[0][3] == "5 + 40" and rows[0][5] == "5 + 40 / 5 + 40"
    assert rows[0][6] == "**0.550**" and rows[1][6] == "**0.650**"
    assert rows[0][7].rstrip(" |") == "yes" and rows[1][7].rstrip(" |") == "**no**"
    (tmp_path / "runs" / "b" / "scaling.txt").write_text("nothing here\n")
    with pytest.raises(readme_tables.TableError):
        readme_tables.scaling_table(tmp_path / "runs")


# --- README's results in brief: hand-written prose, every number checked against the data ---

def _tables(page: str, marker: str) -> list[list[dict[str, str]]]:
    """The tables of the generated block ``<!-- generated: {marker} -->`` on ``page``, each a list
    of rows (header -> cell). test_the_real_pages_match_their_data holds them to the data."""
    block = (ROOT / page).read_text().split(f"<!-- generated: {marker} -->\n", 1)[1].split("<!-- end:", 1)[0]
    tables = []
    for chunk in block.split("\n\n"):
        cells = [[c.strip() for c in line.strip().strip("|").split("|")]
                 for line in chunk.splitlines() if line.startswith("|")]
        if cells:
            tables.append([dict(zip(cells[0], row)) for row in cells[2:]])
    return tables


def _number(cell: str) -> float:
    """The first number of a cell: "-10.8 %" -> -10.8, "2,734" -> 2734, "**0.545**" -> 0.545."""
    return float(re.search(r"[-+]?[\d,]*\.?\d+", cell)[0].replace(",", ""))


def _span(cells: list[str], by=_number) -> str:
    """"A to B %" over percentage cells, from the first to the last in the order of ``by``."""
    ordered = sorted(cells, key=by)
    return f"{ordered[0].removesuffix(' %')} to {ordered[-1]}"


def _median(cell: str) -> str:
    """The median of a "median (worst)" cell, as written."""
    return cell.split(" (")[0]


def _worst_text(cell: str) -> str:
    """The worst of a "median (worst)" cell, as written."""
    return cell.split("(")[1].rstrip(")")


def _worst(cell: str) -> float:
    return _number(_worst_text(cell))


def test_the_readme_brief_results_are_the_data():
    text = (ROOT / "README.md").read_text()
    brief = " ".join(text.split("## Results in brief", 1)[1].split("\n## ", 1)[0].split())
    missing = []

    def says(*phrases: str) -> None:
        missing.extend(p for p in phrases if p not in brief)

    results = "docs/results-h200.md"
    mistral = {(r["config"], r["BS"], r["regime"]): r
               for r in _tables(results, "bench results/2026-11-30-h200 model=mistral")[0]}
    eager, graph = mistral["fp16", "1", "eager"], mistral["fp16", "1", "graph"]
    for row in (eager, graph):
        says(row["GPU busy"], row["tok/s (CV %)"].split()[0], row["J/1k gross, native"], row["J/1k net of idle"])
    says(f"({100 * (_number(graph['J/1k gross, native']) / _number(eager['J/1k gross, native']) - 1):.0f} %")

    with open(ROOT / "docs/results/2026-11-30-h200/results.csv", newline="") as f:
        params_b = {r["model"]: float(r["params_b"]) for r in csv.DictReader(f)}
    rows = _tables(results, "bench results/2026-11-30-h200 regime=graph batch_size=1")[0]
    gross = {q: [r for r in rows if r["config"] == q and r["vs fp16 gross"] not in ("", "n/a")]
             for q in ("nf4", "int8_pure")}

    def by_size(cell: str) -> float:  # "from the smallest change to the largest"
        return abs(_number(cell))
    says(f"nf4 {_span([r['vs fp16 gross'] for r in gross['nf4']], by_size)}",
         f"pure int8 {_span([r['vs fp16 gross'] for r in gross['int8_pure'] if params_b[r['model']] < 3.5], by_size)}",
         f"{_span([r['vs fp16 gross'] for r in gross['int8_pure'] if params_b[r['model']] >= 3.5], by_size)} above")
    with open(ROOT / "docs/runs/2026-11-30-h200-cards/results.csv", newline="") as f:
        cards = {(r["quant"], r["batch_size"]): r for r in csv.DictReader(f)}

    def ratio(column: str) -> float:  # mistral int8_pure over fp16 on the card that ran both, batch size 1
        return float(cards["int8_pure", "1"][column]) / float(cards["fp16", "1"][column])
    says(f"mistral {fmt.pct(100 * (ratio('energy_j_per_1k_mean') - 1))}")
    net = [abs(_number(r["vs fp16 net"])) for q in gross for r in gross[q]]
    net.append(abs(100 * (ratio("energy_net_j_per_1k_mean") - 1)))
    says(f"both save {min(net):.1f}-{max(net):.1f} %")
    int8 = [r for r in _tables(results, "bench results/2026-11-30-h200 regime=eager batch_size=1")[0]
            if r["config"] == "int8"]
    says(f"costs {_span([r['vs fp16 gross'] for r in int8])} gross but {_span([r['vs fp16 net'] for r in int8])} net")

    validation = {r["burst"]: r for r in _tables("docs/accuracy.md", "validation validation/2026-11-30-h200")[0]}

    ten_hz = "seed's 10 Hz method, window"
    for burst in ("1 s", "0.25 s"):
        row = validation[burst]
        says(f"{burst}, {_median(row['native headline, window'])} against {_median(row[ten_hz])}")
    says(f"({_median(validation['0.25 s']['native headline, burst + 0.3 s tail'])} with the 0.3 s tail")

    errors, overhead, _time_to_result = _tables("docs/peers.md", "peers runs/2026-11-30-h200-peers")
    peers = {(r["workload"], r["window"]): r for r in errors}
    one_s = peers["bursts", "1 s"]
    says(f"{_median(one_s['ecomeasure'])} (ecomeasure), {_median(one_s['zeus_monitor'])} (Zeus), "
         f"{_median(one_s['codecarbon_1s'])} (CodeCarbon at 1 s)")
    worst = {m: _worst_text(cell) for m, cell in peers["bursts", "0.25 s"].items() if "(" in cell}
    says(f"worst is {worst['ecomeasure']}, the only one under 10 %")
    assert [m for m, cell in worst.items() if abs(_number(cell)) < 10] == ["ecomeasure"]
    cost_ms = [float(r["ecomeasure"]) for r in overhead]
    says(f"ecomeasure {min(cost_ms):.0f}-{max(cost_ms):.0f} ms before")

    validation = {r["burst"]: r for r in _tables("docs/accuracy.md", "validation validation/2026-12-07-h100")[0]}
    says("H100: " + "; ".join(f"{burst}, {_median(validation[burst]['native headline, window'])} against "
                              f"{_median(validation[burst][ten_hz])}" for burst in ("1 s", "0.25 s")))
    errors, overhead, _time_to_result = _tables("docs/peers.md", "peers runs/2026-12-07-h100-peers")
    peers = {(r["workload"], r["window"]): r for r in errors}
    one_s = peers["bursts", "1 s"]
    says(f"H100: {_median(one_s['ecomeasure'])}, {_median(one_s['zeus_monitor'])}, {_median(one_s['codecarbon_1s'])};")
    worst = {m: _worst(cell) for m, cell in peers["bursts", "0.25 s"].items() if "(" in cell}
    others = [abs(w) for m, w in worst.items() if m not in ("ecomeasure", "window", "workload")]
    says(f"ecomeasure's worst {worst['ecomeasure']} %, the others' -{min(others)} % or worse")
    caller = {m: [r[m] for r in overhead] for m in ("ecomeasure", "zeus_monitor")}
    says(f"costs its caller {min(caller['ecomeasure'], key=float)}-{max(caller['ecomeasure'], key=float)} ms among",
         f"(Zeus {min(caller['zeus_monitor'], key=float)}-{max(caller['zeus_monitor'], key=float)} ms;")
    with open(ROOT / "docs/runs/2026-12-06-h100-window-cost/window_cost.json") as f:
        window = json.load(f)
    says(f"{window['caller_cost_us']['median']:.1f} us alone, and its energy is there "
         f"{window['time_to_result_ms']['median']:.1f} ms after its end")

    with open(ROOT / "docs/runs/2026-11-30-h200-meter-overhead/meter_overhead.json") as f:
        pairs = json.load(f)
    low, high = pairs["diff_pct_ci95"]
    says(f"{pairs['diff_pct_median']:+.2f} % (95 % CI {low:+.2f} to {high:+.2f} %)")
    sampler = _tables("docs/accuracy.md", "sampler runs/2026-11-30-h200-sampler/sampler_overhead.json")[0][0]
    says(f"{sampler['idle'].removesuffix(' %')}-{sampler['load']} of a core")

    scaling = _tables("docs/scaling.md", "scaling runs/2026-11-30-h200-scaling-one")[0]
    ratios = {n: [_number(r["2 GPUs / 1 GPU"]) for r in scaling if r["ok rows"] == n] for n in ("18", "24")}
    says(f"a 24-configuration sweep took {' and '.join(f'{x:.3f}' for x in ratios['24'])} of its one-GPU time",
         f"18 configurations: {min(ratios['18']):.3f}-{max(ratios['18']):.3f}")
    assert not missing, f"README's results in brief lack (or differ from) these figures of the data: {missing}"


def test_the_validation_and_peers_prose_of_the_h100_is_the_data():
    """The paragraphs that set the H100's validation and peers runs beside the H200's quote
    their tables."""
    def prose(page: str, start: str, end: str) -> str:
        return " ".join((ROOT / page).read_text().split(start, 1)[1].split(end, 1)[0].split())

    runs = {card: {r["burst"]: r for r in _tables("docs/accuracy.md", f"validation validation/{folder}")[0]}
            for card, folder in (("h100", "2026-12-07-h100"), ("h200", "2026-11-30-h200"))}
    window, tail, ten_hz = ("native headline, window", "native headline, burst + 0.3 s tail",
                            "seed's 10 Hz method, window")

    def worst_from_1s(card: str, column: str) -> float:
        return max(abs(_worst(runs[card][b][column])) for b in ("1 s", "2 s", "5 s", "10 s"))

    def median(card: str, burst: str, column: str) -> str:
        return _median(runs[card][burst][column])
    text = prose("docs/accuracy.md", "Another GPU model and another card than the H200 run above",
                 "In the benchmark's dataset")
    for phrase in (f"worst error is {worst_from_1s('h100', window):.1f} % here ({worst_from_1s('h200', window):.1f} % on the H200)",
                   f"its tail's {worst_from_1s('h100', tail):.1f} % ({worst_from_1s('h200', tail):.1f} %)",
                   f"reads {median('h100', '0.25 s', window)} at the median ({median('h200', '0.25 s', window)})",
                   f"tail {median('h100', '0.25 s', tail)} ({median('h200', '0.25 s', tail)})",
                   f"misses {-_number(median('h100', '1 s', ten_hz)):.1f} % of a 1 s burst ({-_number(median('h200', '1 s', ten_hz)):.1f} %)",
                   f"worst is {_worst(runs['h100']['0.1 s'][tail]):+.1f} % here ({_worst(runs['h200']['0.1 s'][tail]):+.1f} % on the H200)"):
        assert phrase in text, phrase

    def eco(folder: str) -> tuple[dict, list]:
        errors, overhead, _ = _tables("docs/peers.md", f"peers runs/{folder}")
        return {(r["workload"], r["window"]): r for r in errors}, overhead
    (h100, cost100), (h200, cost200) = eco("2026-12-07-h100-peers"), eco("2026-11-30-h200-peers")

    def spread(rows: dict, workload: str, windows: tuple[str, ...]) -> str:
        values = sorted(_number(rows[workload, w]["ecomeasure"]) for w in windows)
        return f"{values[0]:.2f}-{values[-1]:.2f} %"
    steady = ("0.25 s", "0.5 s", "1 s", "2 s", "5 s", "10 s")
    long_bursts = ("1 s", "2 s", "5 s", "10 s")
    text = prose("docs/peers.md", "What changed, what did not:", "## On an H200")
    for phrase in (f"{spread(h100, 'steady', steady)} on steady windows ({spread(h200, 'steady', steady)} on the H200)",
                   f"{spread(h100, 'bursts', long_bursts)} on bursts from 1 s up ({spread(h200, 'bursts', long_bursts)})",
                   f"{_median(h100['bursts', '0.5 s']['ecomeasure'])} at 0.5 s ({_median(h200['bursts', '0.5 s']['ecomeasure'])})",
                   f"worst {_worst_text(h100['bursts', '0.25 s']['ecomeasure'])} "
                   f"({_worst_text(h200['bursts', '0.25 s']['ecomeasure'])})",
                   f"{cost100[0]['ecomeasure']} ms (steady, host marks) and {cost100[1]['ecomeasure']} ms (bursts, stream marks)",
                   f"against {cost200[0]['ecomeasure']} and {cost200[1]['ecomeasure']} ms on the H200"):
        assert phrase in text, phrase

    def cost_range(*methods: str) -> str:
        values = sorted((r[m] for r in cost100 for m in methods), key=float)
        return f"{values[0]}-{values[-1]} ms"
    assert f"`ZeusMonitor` {cost_range('zeus_monitor')}, CodeCarbon {cost_range('codecarbon_15s', 'codecarbon_1s')})" in text
    others = [abs(_worst(cell)) for m, cell in h100["bursts", "0.25 s"].items() if m not in ("workload", "window", "ecomeasure")]
    assert f"worst error is -{min(others)} % or larger" in text


def test_the_window_cost_figures_are_the_data():
    with open(ROOT / "docs/runs/2026-12-06-h100-window-cost/window_cost.json") as f:
        w = json.load(f)
    page = (ROOT / "docs/meter-windows.md").read_text()

    def cells(key: str, unit: str) -> str:
        return f"| {w[key]['median']:.1f} {unit} | {w[key]['p90']:.1f} {unit} |"
    for expected in (cells("caller_cost_us", "us"), cells("time_to_result_ms", "ms"), cells("old_end_and_read_ms", "ms"),
                     f"| {w['begin_us']['median']:.1f} / {w['end_us']['median']:.1f} us | "
                     f"{w['begin_us']['p90']:.1f} / {w['end_us']['p90']:.1f} us |",
                     f"{w['window_duration_ms']['median']:.2f} ms around four {w['matmul_size']} x {w['matmul_size']}"):
        assert expected in " ".join(page.split()) or expected in page, expected
    assert w["unread_energies_finite"] and w["goals"]["caller_cost_met"] and w["goals"]["time_to_result_met"]
    assert w["matmuls_per_window"] == 4 and w["caller_cost_us"]["n"] == 1000


def test_the_monitor_and_attribution_figures_are_the_data():
    with open(ROOT / "docs/runs/2026-12-06-h100-monitor-check/monitor_check.json") as f:
        m = json.load(f)
    gpu = m["gpus"][0]
    monitor = " ".join((ROOT / "docs/monitor.md").read_text().split())
    for expected in (f"measured {fmt.grouped(gpu['monitor_j'], 1)} J ({gpu['method']}) over the command's "
                     f"{m['monitor_duration_s']:.3f} s", f"the counter {fmt.grouped(gpu['counter_j'], 1)} J",
                     f"{m['child_life_s']:.3f} s apart: {100 * gpu['error']:+.3f} %",
                     f"{100 * gpu['same_edges_error']:+.3f} % over the counter readings'"):
        assert expected in monitor, expected
    assert m["within_goal"] and m["exit_code_passed"] and not m["rapl"]["readable"]

    with open(ROOT / "docs/runs/2026-12-06-h100-attribution/attribution.json") as f:
        a = json.load(f)
    c = a["checks"]
    page = " ".join((ROOT / "docs/attribution.md").read_text().split())
    for expected in (f"{a['requests']} requests in {fmt.grouped(a['steps'])} steps over {a['span_s']:.1f} s",
                     f"({fmt.grouped(c['union_measured_j'], 1)} J; {c['attributed_vs_union_pct']:+.3f} %)",
                     f"not-attributed {fmt.grouped(c['not_attributed_j'], 1)} J",
                     f"to {fmt.grouped(c['total_j'], 1)} J, {c['total_vs_counter_pct']:+.2f} % from the energy counter's "
                     f"{fmt.grouped(c['counter_j'], 1)} J",
                     f"summed to {fmt.grouped(c['windows_measured_alone_sum_j'], 1)} J, "
                     f"{c['windows_measured_alone_sum_j'] / c['union_measured_j']:.1f}x the union"):
        assert expected in page, expected
    assert all(a["goals"].values())
