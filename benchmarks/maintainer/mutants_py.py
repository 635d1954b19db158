"""Hand-made mutants of the Python that decides what is measured and compared: does a test
notice each one?

Each mutant is one small edit (a plausible bug) of a module of the package (edited in place,
in this repository and in the installed package, the two places the tests import it from) or
of a script under benchmarks/; the tests named for it run, and the files are restored. A mutant is
*killed* when a test fails, *survived* when all pass. A tool, not part of CI's pytest run:

    pip install --no-build-isolation --no-deps .    # the package under test
    python benchmarks/maintainer/mutants_py.py [--only NAME ...] [--out DIR]

Prints a table and writes DIR/mutants.json. mutmut covers the numeric modules (see README);
these mutants cover the decisions mutmut's operators do not reach.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name: (file, original text, mutated text, tests). The original must occur exactly once.
MUTANTS: dict[str, tuple[str, str, str, list[str]]] = {
    "current_device_not_set": (
        "ecomeasure/bench/environment.py", "    torch.cuda.set_device(index)\n", "",
        ["tests/test_bench_errors.py::test_the_generating_gpu_becomes_the_current_device"]),
    "sliding_layers_kept": (
        "ecomeasure/generation.py", "if windows and min(windows) >= length:", "if False:",
        ["tests/test_bench_generation.py"]),
    "sliding_layers_always_replaced": (
        "ecomeasure/generation.py", "if windows and min(windows) >= length:", "if windows:",
        ["tests/test_bench_generation.py"]),
    "prefill_first_token_unchecked": (
        "ecomeasure/generation.py", "if not torch.equal(from_graph[:, 0], uncaptured[:, 0]):", "if False:",
        ["tests/test_bench_generation.py"]),
    "step_checked_from_the_uncaptured_prefill": (
        "ecomeasure/generation.py", "                    reference = from_graph\n", "", ["tests/test_bench_generation.py"]),
    "parting_tokens_not_noted": (
        "ecomeasure/generation.py", "if not torch.equal(from_graph, uncaptured):", "if False:",
        ["tests/test_bench_generation.py"]),
    "prefill_never_captured": (
        "ecomeasure/generation.py", "prefill_graph = _captured(self._prefill)", "prefill_graph = None",
        ["tests/test_bench_generation.py"]),
    "parting_from_eager_unseen": (
        "ecomeasure/bench/sweep.py", "run.same_tokens_as_eager = eager.shape == ids.shape and parting is None",
        "run.same_tokens_as_eager = True",
        ["tests/test_bench_generation.py::test_graph_tokens_are_checked_against_the_eager_runs_and_a_parting_is_noted"]),
    "decoder_notes_dropped": (
        "ecomeasure/bench/sweep.py", "run.notes.extend(notes)", "pass",
        ["tests/test_bench_errors.py::test_what_the_decoder_notes_reaches_the_row"]),
    "baseline_of_any_card": (
        "ecomeasure/report/stats.py", "and other.card == config.card and", "and",
        ["tests/test_report.py::test_quants_are_compared_with_fp16_of_the_same_card_only"]),
    "baseline_at_or_below_zero_kept": (
        "ecomeasure/schema.py", " or baseline <= 0:", ":",
        ["tests/test_schema.py::test_no_change_against_a_baseline_that_is_not_a_positive_number"]),
    "bench_and_report_rules_part": (
        "ecomeasure/bench/rows.py", '"delta_vs_fp16_net_pct": vs_baseline_pct(energy_net_mean, base_net),',
        '"delta_vs_fp16_net_pct": 100.0 * (energy_net_mean - base_net) / base_net if base_net else math.nan,',
        ["tests/test_schema.py::test_bench_rows_and_report_tables_agree_on_the_change_vs_fp16"]),
    "findings_any_card": (
        "ecomeasure/report/findings.py", "and config.card == base[0].card", "", ["tests/test_report.py::test_quants_are_compared_with_fp16_of_the_same_card_only"]),
    "batch_series_across_cards": (
        "ecomeasure/report/findings.py", "series[(model, quant, item[0].card)][bs] = item",
        'series[(model, quant, "")][bs] = item',
        ["tests/test_report.py::test_quants_are_compared_with_fp16_of_the_same_card_only"]),
    "outlier_without_floor": (
        "ecomeasure/bench/rows.py", "reach = max(mads * spread, min_fraction * abs(center))",
        "reach = mads * spread", ["tests/test_roofline.py"]),
    "uncapturable_int8_full_cost": (
        "ecomeasure/bench/shard.py", 'if key.regime != "eager" and key.quant in UNCAPTURABLE_QUANTS:',
        "if False:", ["tests/test_bench_shard.py"]),
    "load_counted_on_every_rank": (
        "ecomeasure/bench/shard.py", "(0 if self.held[rank][unit[:2]] else self.load_ms[unit[:2]])",
        "self.load_ms[unit[:2]]",
        ["tests/test_bench_shard.py"]),
    "load_never_counted": (
        "ecomeasure/bench/shard.py", "(0 if self.held[rank][unit[:2]] else self.load_ms[unit[:2]])", "0",
        ["tests/test_bench_shard.py"]),
    "plan_not_improved": (
        "ecomeasure/bench/shard.py", "    plan.improve()\n", "", ["tests/test_bench_shard.py"]),
    "worse_swap_kept": (
        "ecomeasure/bench/shard.py", "self._swap(unit, other)  # back", "pass  # back", ["tests/test_bench_shard.py"]),
    "merge_ignores_where": (
        "ecomeasure/bench/merge.py", "and all(r.get(k) == v for k, v in (where or {}).items())]", "]",
        ["tests/test_merge_results.py"]),
    "merge_keeps_replaced_traces": (
        "ecomeasure/bench/merge.py", "trace.unlink(missing_ok=True)", "pass", ["tests/test_merge_results.py"]),
    "merge_takes_failures": (
        "ecomeasure/bench/merge.py", 'if r["status"] in ("ok", "unavailable")', 'if r["status"]',
        ["tests/test_merge_results.py"]),
    "stability_ignores_first_flag": (
        "benchmarks/maintainer/readme_tables.py", "first_flagged += flags[0]", "first_flagged += 0",
        ["tests/test_readme_tables.py::test_stability_table_counts_cold_first_iterations_by_the_current_rule"]),
    "scaling_ratio_inverted": (
        "benchmarks/maintainer/readme_tables.py", 'f"**{two_s / one_s:.3f}**"', 'f"**{one_s / two_s:.3f}**"',
        ["tests/test_readme_tables.py::test_scaling_table_reads_what_the_scaling_script_writes"]),
    "scaling_same_always_yes": (
        "benchmarks/maintainer/readme_tables.py", '"yes" if wall["same"] == "True" else "**no**"', '"yes"',
        ["tests/test_readme_tables.py::test_scaling_table_reads_what_the_scaling_script_writes"]),
    "nvjet_not_matmul": (
        "benchmarks/decode/decode_speed.py", '("nvjet", "gemv"', '("gemv"', ["tests/test_decode_speed.py"]),
    "timeline_prepared_after_measuring": (
        "ecomeasure/bench/sweep.py", "            marks[\"prepared\"] = time.monotonic()\n", "",
        ["tests/test_bench_cli.py::test_run_file_has_a_timeline_that_adds_up"]),
    "timeline_load_counted_per_configuration": (
        "ecomeasure/bench/timeline.py", "if load != last_load and", "if",
        ["tests/test_bench_cli.py::test_run_file_has_a_timeline_that_adds_up"]),
    "rank_0_alone_counts_parameters": (
        "ecomeasure/bench/cli.py", "shard.params_b(canonical_model(model)) for model in options.models}",
        "shard.params_b(canonical_model(model)) for model in options.models if rank.is_main}",
        ["tests/test_bench_torchrun.py"]),
    "random_weights_made_without_the_lock": (
        "ecomeasure/weights.py", "    with FileLock(dest.parent / f\".{dest.name}.lock\"):\n",
        "    if True:\n", ["tests/test_bench_generation.py"]),
    "random_weights_remade_after_the_wait": (
        "ecomeasure/weights.py", "        if not is_complete(dest, fingerprint):\n",
        "        if True:\n", ["tests/test_bench_generation.py"]),
    "counter_check_interpolates": (
        "ecomeasure/bench/runner.py",
        "native_j += traces.measure(float(t_s[a]), float(t_s[z])).devices[d.index].energy_j",
        "native_j += traces.measure(start_s, end_s).devices[d.index].energy_j",
        ["tests/test_counter_check.py"]),
    "counter_verdict_judges_what_it_cannot_resolve": (
        "ecomeasure/bench/rows.py", "if resolution_pct > COUNTER_AGREEMENT_PCT:", "if False:",
        ["tests/test_counter_check.py"]),
    "gpu_dependence_against_one_cards_baseline": (
        "ecomeasure/report/floor.py", "    return next((q for q in PREDICTION_BASELINES\n",
        "    return next((q for q in (b.baseline,)\n", ["tests/test_report_quantization.py"]),
    "gpu_dependence_silent_without_a_common_scheme": (
        "ecomeasure/report/floor.py", "                for method, basis in method_bases if (method, basis) not in decided]",
        "                for method, basis in method_bases if False]", ["tests/test_report_quantization.py"]),
    "gpu_dependence_ignores_the_card_spread": (
        "ecomeasure/report/floor.py", "        within_spread = apart and abs(on_a.pct - on_b.pct) <= spread\n",
        "        within_spread = False\n", ["tests/test_report_quantization.py"]),
    "card_spread_taken_as_nothing": (
        "ecomeasure/report/floor.py", "                    (max(differences), _name(",
        "                    (0.0, _name(", ["tests/test_report_quantization.py"]),
    "peers_read_not_timed": (
        "benchmarks/peers/peers.py", "        timing[name][4] = time.perf_counter() - t\n", "", ["tests/test_peers.py"]),
}


def targets(relative: str) -> list[Path]:
    """Every copy of ``relative`` a test may import: this repository's, and for the package the
    installed one too (tests run from /tmp import the installed package; the command lines
    they start from the repository's root import its source)."""
    paths = [ROOT / relative]
    if relative.startswith("ecomeasure/"):
        import ecomeasure
        installed = Path(ecomeasure.__file__).resolve().parent / relative.removeprefix("ecomeasure/")
        if installed.resolve() != paths[0].resolve():
            paths.append(installed)
    return paths


def run_mutant(name: str) -> dict:
    relative, original, mutated, tests = MUTANTS[name]
    texts = {path: path.read_text() for path in targets(relative)}
    if any(text.count(original) != 1 for text in texts.values()):
        return {"mutant": name, "file": relative, "result": "error: the original text is not there exactly once"}
    start = time.perf_counter()
    try:
        for path, text in texts.items():
            path.write_text(text.replace(original, mutated))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               *(str(ROOT / t) for t in tests)], cwd="/tmp", capture_output=True, text=True)
    finally:
        for path, text in texts.items():
            path.write_text(text)
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"mutant": name, "file": relative, "result": "killed" if proc.returncode != 0 else "survived",
            "tests": tests, "pytest": last, "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(MUTANTS))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    results = []
    for name in args.only or list(MUTANTS):
        result = run_mutant(name)
        results.append(result)
        print(f"{result['result']:8}  {name:32}  {result['file']}  {result.get('pytest', '')}", flush=True)
    killed = sum(r["result"] == "killed" for r in results)
    print(f"{killed} of {len(results)} mutants killed")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "mutants.json").write_text(json.dumps(results, indent=1))
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
