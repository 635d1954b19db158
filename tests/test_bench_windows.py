"""Where the benchmark's windows sit, and what it says when a figure is less than it claims.

The fake NVML plays a square wave: LOW_W, then HIGH_W for the first HIGH_S of every PERIOD_S.
The test schedules the generation on it: warmup (and so the idle baseline after it) in a low
phase, each measured iteration well inside a high phase. Every iteration's energy is then
exactly HIGH_W times its duration and the idle power LOW_W, wherever in the high phase the
iteration falls; a window misplaced by more than a few tens of milliseconds reads another power.
"""
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import Profile, fake_env  # noqa: E402
from test_bench_columns import SMOKE_ARGS, read_csv  # noqa: E402

import ecomeasure.generation  # noqa: E402
from ecomeasure.bench import main, runner  # noqa: E402
from ecomeasure.bench.rows import RowContext, iteration_row, summary_row  # noqa: E402
from ecomeasure.reference import ReferenceEnergy  # noqa: E402

LOW_W, HIGH_W = 100.0, 400.0
PERIOD_S, HIGH_S = 2.0, 0.8
WARMUP_AT_S, ITERATION_AT_S = HIGH_S + 0.1, 0.15  # phase at which each kind of call starts
WARMUP_TOKENS = int(SMOKE_ARGS[SMOKE_ARGS.index("--warmup-tokens") + 1])


def f(cell):
    return float(cell) if cell != "" else math.nan


@pytest.fixture
def square_wave(monkeypatch, fake_nvml_dir, tmp_path):
    """The fake NVML playing the square wave in this process; generate() scheduled on it."""
    t0_ns = time.monotonic_ns()
    profile = Profile([(k * PERIOD_S + d, w) for k in range(200) for d, w in ((0.0, HIGH_W), (HIGH_S, LOW_W))])
    for key in [k for k in os.environ if k.startswith("FAKE_NVML_")]:
        monkeypatch.delenv(key)
    for key, value in fake_env(fake_nvml_dir, profile, t0_ns).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real_generate = ecomeasure.generation.generate
    calls = []

    def phase_s() -> float:
        return ((time.monotonic_ns() - t0_ns) / 1e9) % PERIOD_S

    def scheduled(model, prompt, new_tokens, stream=None):
        warmup = new_tokens == WARMUP_TOKENS
        time.sleep(((WARMUP_AT_S if warmup else ITERATION_AT_S) - phase_s()) % PERIOD_S)
        timing = real_generate(model, prompt, new_tokens, stream)
        calls.append((warmup, phase_s()))
        return timing
    monkeypatch.setattr(ecomeasure.generation, "generate", scheduled)

    def run(*args: str) -> Path:
        out = tmp_path / f"results-{len(list(tmp_path.iterdir()))}"
        calls.clear()
        assert main([*SMOKE_ARGS, "--regime", "eager", "--out", str(out), "--weights-dir", str(tmp_path / "weights"), *args]) == 0
        # The schedule held: measured iterations ended inside their high phase.
        assert all(HIGH_S - 0.1 > end > ITERATION_AT_S for warmup, end in calls if not warmup), calls
        return out
    return run


def test_iteration_windows_sit_on_the_work(square_wave):
    out = square_wave("--idle-seconds", "0.5")
    _, (row,) = read_csv(out / "results.csv")
    _, iterations = read_csv(out / "iterations.csv")
    assert len(iterations) == 2
    for it in iterations:
        duration_s = f(it["duration_s"])
        assert 0 < duration_s < HIGH_S - ITERATION_AT_S
        assert f(it["energy_j"]) == pytest.approx(HIGH_W * duration_s, rel=0.01), it
        assert f(it["prefill_energy_j"]) == pytest.approx(HIGH_W * f(it["prefill_s"]), rel=0.01), it
        assert f(it["decode_energy_j"]) == pytest.approx(HIGH_W * f(it["decode_s"]), rel=0.01), it
        assert f(it["idle_power_w"]) == pytest.approx(LOW_W, rel=0.01)
        assert f(it["energy_net_j"]) == pytest.approx((HIGH_W - LOW_W) * duration_s, rel=0.02), it
        assert it["notes"] == ""
    assert f(row["power_w_mean"]) == pytest.approx(HIGH_W, rel=0.01)
    assert f(row["idle_power_w"]) == pytest.approx(LOW_W, rel=0.01)
    assert row["notes"] == ""


def test_no_idle_baseline_leaves_net_empty_and_says_why(square_wave):
    out = square_wave("--idle-seconds", "0")
    _, (row,) = read_csv(out / "results.csv")
    _, iterations = read_csv(out / "iterations.csv")
    assert row["energy_j_per_1k_mean"] != ""  # gross is measured
    for column in ("idle_power_w", "energy_net_j_per_1k_mean", "energy_net_j_per_1k_std",
                   "ref_idle_power_w", "ref_energy_net_j_per_1k_mean", "delta_vs_fp16_net_pct"):
        assert row[column] == "", column
    assert "no idle baseline (--idle-seconds 0)" in row["notes"]
    for it in iterations:
        assert (it["energy_net_j"], it["ref_energy_net_j"], it["idle_power_w"]) == ("", "", "")
        assert "no idle baseline (--idle-seconds 0)" in it["notes"]


# notes, on stand-ins for the meters ---------------------------------------------------------
class ShortMeter:
    """A native meter whose data never cover a window (the wait for data timed out), and
    that reads no GPU's energy counter (no counter check)."""
    devices: list = []

    def measure_ns(self, start_ns, end_ns, name=""):
        return SimpleNamespace(energy_j=1.0, complete=False, method="samples", source_energy_j=lambda s: 1.0)

    def measure(self, start_s, end_s, name=""):
        return self.measure_ns(0, 0)

    def stop(self):
        pass


class ShortReference:
    """A reference meter with no reading past any window."""
    errors, last_error = 2, "GPU is lost; twice"

    def wait_past(self, t_s):
        return False

    def energy_j(self, t0_s, t1_s):
        return ReferenceEnergy(1.0, 0, False)


def _stamped(on_stream, has_event):
    mark = SimpleNamespace(on_stream=on_stream)
    if has_event is not None:
        mark.has_event = has_event
    return SimpleNamespace(begin=mark, first_token=mark, end=mark)


def test_every_shortfall_reaches_the_rows():
    its = [runner.Iteration(k, 10**9 * (k + 2), 10**9 * (k + 2) + 10**7, 10**9 * (k + 2) + 10**8, 8)
           for k in range(2)]
    run = runner.ConfigRun(its, reference=ShortReference())
    runner._measure(run, ShortMeter(), ShortReference(), 1.0, 1.5)
    ctx = RowContext("m", "m", "fp16", 1, "eager", 8, 2, "cuda")
    rows = [iteration_row(ctx, run, it) for it in its]
    summary = summary_row(ctx, run, rows, None, "")
    config_notes = ["native meter: no reading past the last window's end before the wait timed out",
                    "native meter: the data do not cover the whole idle window",
                    "reference method: no reading past the last window's end before the wait timed out",
                    "reference method: its readings do not cover the whole idle window",
                    "reference method: 2 NVML errors (GPU is lost, twice)"]
    own = ["the native meter's data do not cover the whole window",
           "reference method: its readings do not cover the whole window"]
    assert rows[1]["notes"] == "; ".join(config_notes + own)
    assert summary["notes"] == "; ".join(config_notes + [f"iteration {k}: {n}" for k in range(2) for n in own])


@pytest.mark.parametrize("on_stream, has_event, expected", [
    (True, False, True), (True, True, False), (False, False, False)])
def test_a_mark_placed_by_its_host_stamp_is_noticed(on_stream, has_event, expected):
    assert runner.host_stamped(_stamped(on_stream, has_event)) is expected


def test_the_last_warmup_is_as_long_as_an_iteration():
    # No iteration may meet a shape first: the seed's 50-token warmups left the first eager
    # iteration of 256 tokens cold.
    lengths = []

    def generate(tokens):
        lengths.append(tokens)
        raise StopIteration  # enough: the warmup lengths are what this test reads

    protocol = runner.Protocol(new_tokens=256, warmup=3, warmup_tokens=50, iterations=1, idle_s=0)
    assert [runner.warmup_length(protocol, k) for k in range(3)] == [50, 50, 256]
    with pytest.raises(StopIteration):  # one warmup: it is the last, so as long as an iteration
        runner.run_configuration(generate, replace(protocol, warmup=1), runner.EnergySetup(None))
    assert lengths == [256]
    longer = runner.Protocol(new_tokens=8, warmup=2, warmup_tokens=50)
    assert [runner.warmup_length(longer, k) for k in range(2)] == [50, 50]
