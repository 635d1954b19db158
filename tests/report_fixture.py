"""A synthetic results directory for the report's tests - a TEST FIXTURE, not measurements.

Writes the files of ``docs/results-format.md`` (results.csv, iterations.csv, traces/*.npz in
``Meter.save``'s layout and traces/*_reference.csv) for configurations whose mean energy per
1k tokens is chosen, so each of the seed's findings can be made to hold or not. Summary rows
are computed from the iterations the way the benchmark computes them (sample SD, CV = SD /
mean, Δ vs the fp16 row of the same model and batch size).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecomeasure import SOURCES
# The benchmark's own column lists (checked against docs/results-format.md in its tests).
from ecomeasure.bench.results import ITERATION_COLUMNS, RESULT_COLUMNS

FIXTURE_GPU = "Fake GPU (report test fixture)"


@dataclass(frozen=True)
class FixtureConfig:
    """One synthetic configuration: its target mean gross energy per 1k tokens and power."""
    model: str
    params_b: float
    quant: str
    batch_size: int = 1
    energy_j_per_1k: float = 1000.0
    power_w: float = 200.0
    gpu_name: str = FIXTURE_GPU
    status: str = "ok"
    noise: float = 0.02  # relative SD of per-iteration energy
    card: str = "GPU-fixture"  # the gpu_uuid column: which card of the model measured it
    bytes_per_param: float | None = None  # weights' bytes per parameter (BYTES_PER_PARAM by default)


BYTES_PER_PARAM = {"fp16": 2.0, "bf16": 2.0, "nf4": 0.5, "int8": 1.0, "int8_pure": 1.0}


def _cell(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if np.isnan(x) else f"{x:.10g}"
    return str(x)


def _write(path: Path, columns, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c)) for c in columns})


def _mean(x) -> float:
    return float(np.mean(x))


def _sd(x) -> float:
    return float(np.std(x, ddof=1)) if len(x) >= 2 else float("nan")


def _pct(new: float, base: float) -> float:
    return 100.0 * (new - base) / base if base else float("nan")


def _write_traces(npz: Path, reference: Path, gpu_name: str, idle_w: float, t0: float, t1: float,
                  segments: list[tuple[float, float, float]]) -> None:
    """Traces in Meter.save's layout: a piecewise-constant profile (idle between segments of
    (start_s, end_s, power_w)) read by each source, plus 10 Hz reference samples."""
    def power(t: np.ndarray) -> np.ndarray:
        out = np.full_like(t, idle_w)
        for a, b, w in segments:
            out[(t >= a) & (t < b)] = w
        return out

    arrays = {}
    for source, period in (("samples", 0.02), ("instant", 0.1), ("average", 0.1), ("counter", 0.1)):
        t = np.arange(t0, t1, period)
        w = power(t)
        if source == "average":  # a 1 s moving average, as on Ampere and newer
            k = int(round(1.0 / period))
            w = np.convolve(np.concatenate([np.full(k - 1, idle_w), w]), np.ones(k) / k, "valid")
        if source == "counter":  # cumulative joules
            w = np.concatenate([[0.0], np.cumsum(w[:-1] * period)])
        arrays[f"0/{source}/t_ns"] = np.round(t * 1e9).astype(np.int64)
        arrays[f"0/{source}/value"] = w.astype(np.float64)
    report = {
        "driver_version": "fixture", "calibration_min_span_ns": 2_000_000_000,
        "devices": [{"index": 0, "name": gpu_name, "uuid": "GPU-fixture", "architecture": "Hopper"}],
        "capabilities": {"0": {s: {"available": True, "gaps": []} for s in SOURCES}}, "stats": {},
    }
    arrays["report"] = np.array(json.dumps(report))
    with open(npz, "wb") as f:
        np.savez_compressed(f, **arrays)
    t = np.arange(t0, t1, 0.1)
    with open(reference, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time_s", "power_w"])
        writer.writerows([[f"{a:.6f}", f"{b:.3f}"] for a, b in zip(t, power(t))])


def write_results_dir(root: str | Path, configs: list[FixtureConfig], *, iterations: int = 5,
                      new_tokens: int = 256, idle_power_w: float = 20.0, seed: int = 0,
                      traces: bool = True) -> Path:
    """Writes a results directory for ``configs`` (list fp16 before the quants compared with
    it, as the benchmark's sweeps do) and returns its path."""
    root = Path(root)
    (root / "traces").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    results, all_iterations = [], []
    clock_s = 1000.0
    fp16_rows: dict[tuple[str, str, int], dict] = {}
    for c in configs:
        base = {"date": "2026-01-01T00:00:00+00:00", "status": c.status, "model": c.model,
                "model_id": f"fixture/{c.model}", "params_b": c.params_b, "weights": "random",
                "quant": c.quant, "batch_size": c.batch_size, "new_tokens": new_tokens,
                "iterations": iterations, "gpu_name": c.gpu_name, "gpu_uuid": c.card,
                "driver": "fixture", "device": "cuda", "ecomeasure_version": "0.1.0"}
        if c.status != "ok":
            results.append({**base, "error": "CUDA out of memory (fixture)"})
            continue
        tokens = new_tokens * c.batch_size
        t0 = clock_s
        start = t0 + 1.0  # one second of idle first
        rows, segments = [], []
        for i in range(iterations):
            energy_j = tokens * c.energy_j_per_1k / 1000.0 * (1.0 + c.noise * rng.standard_normal())
            power_w = c.power_w * (1.0 + 0.005 * rng.standard_normal())
            duration_s = energy_j / power_w
            prefill_s = 0.1 * duration_s
            prefill_w = 1.3 * power_w
            decode_w = (energy_j - prefill_w * prefill_s) / (duration_s - prefill_s)
            segments += [(start, start + prefill_s, prefill_w), (start + prefill_s, start + duration_s, decode_w)]
            ref_energy_j = energy_j * (1.03 + 0.01 * rng.standard_normal())
            rows.append({
                "model": c.model, "quant": c.quant, "batch_size": c.batch_size, "iteration": i,
                "start_s": start, "end_s": start + duration_s, "duration_s": duration_s,
                "tokens": tokens, "throughput_tok_s": tokens / duration_s, "energy_j": energy_j,
                "energy_net_j": energy_j - idle_power_w * duration_s, "method": "calibrated",
                "energy_j_samples": energy_j * 0.999, "energy_j_instant": energy_j * 1.01,
                "energy_j_average": energy_j * 0.9, "energy_j_counter": energy_j,
                "ref_energy_j": ref_energy_j,
                "ref_energy_net_j": ref_energy_j - idle_power_w * duration_s,
                "ref_samples": max(int(duration_s * 10), 1), "prefill_s": prefill_s,
                "prefill_energy_j": prefill_w * prefill_s, "decode_s": duration_s - prefill_s,
                "decode_energy_j": decode_w * (duration_s - prefill_s),
                "idle_power_w": idle_power_w, "ref_idle_power_w": idle_power_w,
            })
            start += duration_s + 0.05
        clock_s = start + 1.0
        all_iterations += rows

        def col(name, rows=rows):
            return np.array([r[name] for r in rows], dtype=float)

        def per_1k(name):
            return col(name) / col("tokens") * 1000.0

        energy, net, ref, ref_net = (per_1k(n) for n in ("energy_j", "energy_net_j", "ref_energy_j",
                                                         "ref_energy_net_j"))
        throughput = col("throughput_tok_s")
        stem = f"{c.model}_{c.quant}_bs{c.batch_size}"
        row = {
            **base, "error": "", "prompt_tokens": 11, "prompt_tokens_source": "estimated",
            "tokens_generated": float(tokens),
            "throughput_tok_s_mean": _mean(throughput), "throughput_tok_s_std": _sd(throughput),
            "throughput_cv_pct": 100 * _sd(throughput) / _mean(throughput),
            "power_w_mean": _mean(col("energy_j") / col("duration_s")),
            "power_w_std": _sd(col("energy_j") / col("duration_s")),
            "energy_j_per_1k_mean": _mean(energy), "energy_j_per_1k_std": _sd(energy),
            "energy_cv_pct": 100 * _sd(energy) / _mean(energy),
            "energy_net_j_per_1k_mean": _mean(net), "energy_net_j_per_1k_std": _sd(net),
            "ref_power_w_mean": _mean(col("ref_energy_j") / col("duration_s")),
            "ref_energy_j_per_1k_mean": _mean(ref), "ref_energy_j_per_1k_std": _sd(ref),
            "ref_energy_net_j_per_1k_mean": _mean(ref_net),
            "native_vs_ref_pct": _pct(_mean(ref), _mean(energy)),
            "idle_power_w": idle_power_w, "ref_idle_power_w": idle_power_w,
            "method": "calibrated",
            **{f"energy_j_per_1k_{s}": _mean(per_1k(f"energy_j_{s}")) for s in SOURCES},
            "prefill_s_mean": _mean(col("prefill_s")), "prefill_energy_j_mean": _mean(col("prefill_energy_j")),
            "decode_s_mean": _mean(col("decode_s")), "decode_energy_j_mean": _mean(col("decode_energy_j")),
            "traces": f"traces/{stem}.npz" if traces else "",
            "regime": "eager",
        }
        # A decode step's floor: every weight read once at an H200's 4.8 TB/s.
        step_s = c.batch_size / row["throughput_tok_s_mean"]
        bytes_per_param = c.bytes_per_param or BYTES_PER_PARAM.get(c.quant, 2.0)
        floor_s = c.params_b * 1e9 * bytes_per_param / 4.8e12
        row.update(decode_ms_per_step_mean=1e3 * step_s, bytes_per_step=round(floor_s * 4.8e12),
                   memory_bandwidth_gb_s=4800.0, bandwidth_source="datasheet",
                   bandwidth_floor_ms_per_step=1e3 * floor_s, bandwidth_floor_fraction=floor_s / step_s)
        key = (c.gpu_name, c.model, c.batch_size)
        if c.quant == "fp16":
            fp16_rows[key] = row
        fp16 = fp16_rows.get(key)
        if fp16 is not None:
            row["delta_vs_fp16_pct"] = _pct(row["energy_j_per_1k_mean"], fp16["energy_j_per_1k_mean"])
            row["delta_vs_fp16_net_pct"] = _pct(row["energy_net_j_per_1k_mean"],
                                                fp16["energy_net_j_per_1k_mean"])
        results.append(row)
        if traces:
            _write_traces(root / "traces" / f"{stem}.npz", root / "traces" / f"{stem}_reference.csv",
                          c.gpu_name, idle_power_w, t0, clock_s, segments)
    _write(root / "results.csv", RESULT_COLUMNS, results)
    _write(root / "iterations.csv", ITERATION_COLUMNS, all_iterations)
    return root


def _sweep(models: list[tuple[str, float]], quant_energy: dict[str, float], power: dict[str, float],
           gpu_name: str = FIXTURE_GPU) -> list[FixtureConfig]:
    return [FixtureConfig(m, p, q, energy_j_per_1k=base * quant_energy[q], power_w=power[q],
                          gpu_name=gpu_name)
            for m, (p, base) in models for q in quant_energy]


def holding_configs(gpu_name: str = FIXTURE_GPU) -> list[FixtureConfig]:
    """A sweep where every finding holds, gross and net: nf4 +20 % below 5B and -30 % above,
    int8 +50 %, int8_pure +5 % (recovers 90 % of the loss), energy ∝ 1/batch size."""
    small = [("tinyllama", (1.1, 1000.0)), ("qwen2.5-3b", (3.1, 2000.0))]
    large = [("mistral", (7.2, 4000.0))]
    power = {"fp16": 300.0, "nf4": 250.0, "int8": 280.0, "int8_pure": 290.0}
    configs = _sweep(small, {"fp16": 1.0, "nf4": 1.2, "int8": 1.5, "int8_pure": 1.05}, power, gpu_name)
    configs += _sweep(large, {"fp16": 1.0, "nf4": 0.7, "int8": 1.5, "int8_pure": 1.05}, power, gpu_name)
    configs += [FixtureConfig("mistral", 7.2, "fp16", bs, 4000.0 / bs, 300.0, gpu_name) for bs in (4, 8)]
    return configs


def failing_configs(gpu_name: str = FIXTURE_GPU) -> list[FixtureConfig]:
    """A sweep where every finding fails: nf4 -10 % below 5B and +10 % above, int8 -5 % for one
    model, int8_pure recovering 12.5 % of the other's loss, energy flat in batch size."""
    power = {"fp16": 300.0, "nf4": 250.0, "int8": 280.0, "int8_pure": 290.0}
    configs = _sweep([("tinyllama", (1.1, 1000.0))], {"fp16": 1.0, "nf4": 0.9, "int8": 0.95}, power,
                     gpu_name)
    configs += _sweep([("mistral", (7.2, 4000.0))],
                      {"fp16": 1.0, "nf4": 1.1, "int8": 1.4, "int8_pure": 1.35}, power, gpu_name)
    configs += [FixtureConfig("mistral", 7.2, "fp16", bs, 4000.0, 300.0, gpu_name) for bs in (4, 8)]
    return configs
