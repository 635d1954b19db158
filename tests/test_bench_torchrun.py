"""The benchmark under ``torchrun --nproc-per-node 2`` on the CPU (gloo), with the fake NVML:
each rank runs its share into one ``--out``; one rank is killed after its first
configuration; a rerun completes the rest. Every configuration ends up measured exactly once
and the files stay whole."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import Profile, clean_environ, fake_env  # noqa: E402

from ecomeasure.bench.results import ITERATION_COLUMNS, RESULT_COLUMNS  # noqa: E402

QUANTS = ("fp16", "bf16")
BATCH_SIZES = (1, 2)
REGIMES = ("eager", "graph")
KEYS = sorted((q, bs, r) for q in QUANTS for bs in BATCH_SIZES for r in REGIMES)
ROOT = Path(__file__).resolve().parents[1]


def torchrun(out: Path, weights: Path, env: dict) -> subprocess.Popen:
    # --idle-seconds 1: a configuration lasts long enough to kill a rank between two of them.
    args = ["--model", "tiny-llama-test", "--device", "cpu", "--quant", *QUANTS,
            "--batch-size", *map(str, BATCH_SIZES), "--regime", *REGIMES, "--new-tokens", "2", "--iterations", "1", "--warmup", "0",
            "--idle-seconds", "1", "--out", str(out), "--weights-dir", str(weights)]
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "ecomeasure.bench", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def whole_csv(path: Path, columns) -> list[dict]:
    """The rows of ``path``, checking the header is there once and every row is whole."""
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == list(columns)
    assert all(len(line) == len(columns) and line != list(columns) for line in lines[1:]), path
    return [dict(zip(columns, line)) for line in lines[1:]]


def keys_of(rows) -> list:
    return sorted((r["quant"], int(r["batch_size"]), r["regime"]) for r in rows)


def run_files(out: Path, rank: int) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"run-*-rank{rank}.json"))]


@pytest.fixture
def env(fake_nvml_dir):
    env = clean_environ(fake_env(fake_nvml_dir, Profile.steady(100.0), time.monotonic_ns()))
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def test_ranks_share_the_sweep_and_a_killed_rank_loses_only_its_running_configuration(tmp_path, env):
    out, weights = tmp_path / "results", tmp_path / "weights"
    first = torchrun(out, weights, env)
    try:
        deadline = time.monotonic() + 60
        victim = None
        while victim is None and time.monotonic() < deadline and first.poll() is None:
            files = run_files(out, 1)
            if files and files[0].get("configurations"):
                victim = files[0]["distributed"]["pid"]
            time.sleep(0.05)
        assert victim is not None, "rank 1 never finished a configuration"
        os.kill(victim, signal.SIGKILL)
        first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode != 0
    done_first = keys_of(r for r in whole_csv(out / "results.csv", RESULT_COLUMNS) if r["status"] == "ok")
    assert len(done_first) == len(set(done_first)) < len(KEYS)
    finished_by_rank1 = [(c["quant"], c["batch_size"], c["regime"]) for c in run_files(out, 1)[0]["configurations"]]
    assert finished_by_rank1 and set(finished_by_rank1) <= set(done_first)

    second = torchrun(out, weights, env)
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    rows = whole_csv(out / "results.csv", RESULT_COLUMNS)
    assert all(r["status"] == "ok" for r in rows)
    assert keys_of(rows) == KEYS  # each exactly once: nothing finished was measured again
    iterations = whole_csv(out / "iterations.csv", ITERATION_COLUMNS)
    assert keys_of(iterations) == KEYS  # one iteration each, none from the killed configuration
    assert all(r["energy_j_per_1k_mean"] != "" for r in rows)  # every rank metered (fake NVML)

    # The rerun's plan was the rest, shared by both ranks on disjoint cores; rank 0 summed up all.
    rerun = [run_files(out, r)[-1] for r in (0, 1)]
    shares = [[(q, bs, regime) for _, q, bs, regime in f["distributed"]["share"]] for f in rerun]
    assert sorted(shares[0] + shares[1]) == sorted(set(KEYS) - set(done_first))
    assert all(f["finished_utc"] for f in rerun)
    if len(os.sched_getaffinity(0)) >= 2:
        assert not set(rerun[0]["cpu_affinity"]) & set(rerun[1]["cpu_affinity"])
    assert rerun[1]["distributed"]["pinned_cpus"] == rerun[1]["cpu_affinity"]
    # Each rank counted the plan's parameters (importing the models' code) before the plan,
    # at the same time as the other: none waits for rank 0's count and then repeats it.
    marks = [f["monotonic_s"] for f in rerun]
    assert all(f["parameters_b"] == {"tiny-llama-test": pytest.approx(139_584 / 1e9)} for f in rerun)
    assert all(m["main"] < m["parameters_counted"] <= m["ready"] for m in marks)
    assert max(m["main"] for m in marks) < min(m["parameters_counted"] for m in marks)
    summary = [line for line in stdout.splitlines() if "tiny-llama-test" in line]
    assert len(summary) == len(KEYS)
