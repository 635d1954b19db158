"""The benchmark's bad inputs and faults, run in-process on the 2-layer test model.

NVML is pointed at a file that does not exist, so these runs also cover ``--device cpu``
without energy: rows are written with the energy columns empty.
"""
import sys
import threading
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bench_columns import SMOKE_ARGS, read_csv  # noqa: E402

import ecomeasure.generation  # noqa: E402
import ecomeasure.weights  # noqa: E402
from ecomeasure import quant  # noqa: E402
from ecomeasure.bench import main  # noqa: E402

FAST = [*SMOKE_ARGS, "--idle-seconds", "0.1", "--regime", "eager"]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.fixture
def bench(monkeypatch, tmp_path, weights_dir):
    monkeypatch.setenv("ECOMEASURE_NVML_LIBRARY", str(tmp_path / "no-such-libnvidia-ml.so.1"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "results"

    def run(*args: str) -> int:
        return main([*FAST, "--out", str(out), "--weights-dir", str(weights_dir), *args])
    run.out = out
    return run


def exit_status(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


def test_unknown_model_lists_the_valid_ones(capsys):
    status, err = exit_status(capsys, ["--model", "gpt-5", "--device", "cpu"])
    assert status == 2
    assert "unknown model 'gpt-5'" in err
    for alias in ("tinyllama", "qwen2-1.5b", "qwen2.5-3b", "qwen2-7b", "yi-1.5-6b", "mistral", "mistral-7b",
                  "phi3-mini", "qwen2.5-7b"):
        assert alias in err


def test_unknown_quant_lists_the_valid_ones(capsys):
    status, err = exit_status(capsys, ["--model", "mistral", "--quant", "fp16", "int4", "--device", "cpu"])
    assert status == 2
    assert "unknown quantization 'int4'" in err
    for name in quant.QUANTS:
        assert name in err


def test_missing_model_argument(capsys):
    status, err = exit_status(capsys, ["--device", "cpu"])
    assert status == 2 and "--model is required" in err and "mistral" in err


def test_missing_bitsandbytes_says_how_to_install(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(quant, "bitsandbytes_version", lambda: None)
    status, err = exit_status(capsys, ["--model", "tiny-llama-test", "--quant", "fp16", "int8_pure",
                                       "--device", "cpu", "--out", str(tmp_path)])
    assert status == 2
    assert "int8_pure" in err and "bitsandbytes" in err and "pip install bitsandbytes" in err
    assert not (tmp_path / "results.csv").exists()  # refused before measuring anything


def test_no_gpu_without_device_cpu(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, err = exit_status(capsys, ["--model", "tiny-llama-test", "--out", str(tmp_path)])
    assert status == 2
    assert "no NVIDIA GPU" in err and "--device cpu" in err


def test_cpu_without_nvml_marks_energy_unavailable(bench, capsys):
    assert bench() == 0
    err = capsys.readouterr().err
    assert "energy unavailable" in err
    _, rows = read_csv(bench.out / "results.csv")
    (row,) = rows
    assert row["status"] == "ok" and row["device"] == "cpu" and row["tokens_generated"] == "8"
    assert row["throughput_tok_s_mean"] != ""
    for column in ("energy_j_per_1k_mean", "energy_net_j_per_1k_mean", "ref_energy_j_per_1k_mean",
                   "power_w_mean", "idle_power_w", "gpu_name", "traces", "delta_vs_fp16_pct"):
        assert row[column] == "", column
    assert row["method"] == "unavailable"
    _, iterations = read_csv(bench.out / "iterations.csv")
    assert [i["energy_j"] for i in iterations] == ["", ""]
    assert [i["tokens"] for i in iterations] == ["8", "8"]


def test_out_of_memory_while_loading_is_recorded_and_the_sweep_goes_on(bench, monkeypatch, capsys):
    real_load = ecomeasure.weights.load_model

    def load(weights, quant_name, device):
        if quant_name == "fp16":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_load(weights, quant_name, device)
    monkeypatch.setattr(ecomeasure.weights, "load_model", load)
    assert bench("--quant", "fp16", "bf16", "--batch-size", "1", "2") == 1
    _, rows = read_csv(bench.out / "results.csv")
    assert [(r["quant"], r["batch_size"], r["status"]) for r in rows] == [
        ("fp16", "1", "failed"), ("fp16", "2", "failed"), ("bf16", "1", "ok"), ("bf16", "2", "ok")]
    assert all("out of memory" in r["error"] and "20.00 GiB" in r["error"] for r in rows[:2])
    assert "failed" in capsys.readouterr().out  # the summary shows the failed rows

    # A failed row is not a finished one: the next run measures it, and only it.
    monkeypatch.setattr(ecomeasure.weights, "load_model", real_load)
    assert bench("--quant", "fp16", "bf16", "--batch-size", "1", "2") == 0
    _, rows = read_csv(bench.out / "results.csv")
    assert [(r["quant"], r["batch_size"], r["status"]) for r in rows[4:]] == [("fp16", "1", "ok"), ("fp16", "2", "ok")]


def test_out_of_memory_while_generating_fails_only_that_batch_size(bench, monkeypatch):
    real_generate = ecomeasure.generation.generate

    def generate(model, prompt, new_tokens, stream=None):
        if prompt.batch_size == 2:
            raise RuntimeError("CUDA error: out of memory")
        return real_generate(model, prompt, new_tokens, stream)
    monkeypatch.setattr(ecomeasure.generation, "generate", generate)
    assert bench("--batch-size", "1", "2", "4") == 1
    _, rows = read_csv(bench.out / "results.csv")
    assert [(r["batch_size"], r["status"]) for r in rows] == [("1", "ok"), ("2", "failed"), ("4", "ok")]
    assert rows[1]["error"].startswith("out of memory")
    _, iterations = read_csv(bench.out / "iterations.csv")
    assert [i["batch_size"] for i in iterations] == ["1", "1", "4", "4"]


def test_ctrl_c_keeps_finished_rows_and_resume_skips_them(bench, monkeypatch, capsys):
    real_generate = ecomeasure.generation.generate
    calls = []

    def generate(model, prompt, new_tokens, stream=None):
        calls.append(new_tokens)
        # Each configuration makes 1 warmup + 2 measured calls: interrupt the second
        # configuration after its first measured iteration.
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_generate(model, prompt, new_tokens, stream)
    monkeypatch.setattr(ecomeasure.generation, "generate", generate)
    assert bench("--quant", "fp16", "bf16") == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "same command" in err
    _, rows = read_csv(bench.out / "results.csv")
    assert [(r["quant"], r["status"]) for r in rows] == [("fp16", "ok")]
    _, iterations = read_csv(bench.out / "iterations.csv")
    assert [i["quant"] for i in iterations] == ["fp16", "fp16"]
    assert not list(bench.out.glob("traces/*bf16*"))  # nothing of the partial configuration
    assert not [t for t in threading.enumerate() if t.name == "ecomeasure-reference"]

    monkeypatch.setattr(ecomeasure.generation, "generate", real_generate)
    calls.clear()
    assert bench("--quant", "fp16", "bf16") == 0
    assert "skip tiny-llama-test fp16 bs=1" in capsys.readouterr().err
    _, rows = read_csv(bench.out / "results.csv")
    assert [(r["quant"], r["status"]) for r in rows] == [("fp16", "ok"), ("bf16", "ok")]
    _, iterations = read_csv(bench.out / "iterations.csv")
    assert [i["quant"] for i in iterations] == ["fp16", "fp16", "bf16", "bf16"]


def test_a_step_that_cannot_be_captured_gives_an_unavailable_graph_row(bench, monkeypatch, capsys):
    # Capturing on the CPU fails for real (there is no CUDA): the graph row must say why,
    # the eager row is measured, nothing runs eagerly in the graph's place, and it is no error.
    real = ecomeasure.generation.StaticDecoder
    monkeypatch.setattr(ecomeasure.generation, "StaticDecoder",
                        lambda *args, capture, **kwargs: real(*args, capture=True, **kwargs))
    assert bench("--regime", "eager", "graph") == 0
    assert "graph unavailable: warming up for capture failed: " in capsys.readouterr().err
    _, rows = read_csv(bench.out / "results.csv")
    assert [(r["regime"], r["status"]) for r in rows] == [("eager", "ok"), ("graph", "unavailable")]
    assert rows[1]["error"].startswith("graph unavailable: warming up for capture failed: ")
    assert rows[1]["throughput_tok_s_mean"] == ""
    _, iterations = read_csv(bench.out / "iterations.csv")
    assert {i["regime"] for i in iterations} == {"eager"}
    # Unavailable is a finding, not a failure: a rerun skips it (--redo would try again).
    assert bench("--regime", "eager", "graph") == 0
    assert "skip tiny-llama-test fp16 bs=1 graph" in capsys.readouterr().err


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["--out", str(tmp / "a-file" / "results")], "cannot make the results directory"),
    (lambda tmp: ["--out", str(tmp / "a-file")], "cannot make the results directory"),
    (lambda tmp: ["--idle-seconds", "inf"], "must be a finite number of seconds"),
    (lambda tmp: ["--idle-seconds", "nan"], "must be a finite number of seconds"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, make_args, message):
    (tmp_path / "a-file").write_text("not a directory")
    status, err = exit_status(capsys, [*SMOKE_ARGS, "--out", str(tmp_path / "results"), *make_args(tmp_path)])
    assert status == 2
    assert message in err and "Traceback" not in err
    assert err.rstrip("\n").splitlines()[-1].startswith("python -m ecomeasure.bench: error: ")


def test_malformed_cuda_device_is_exit_2_even_with_a_gpu(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("cuda:abc", "cudax", "cuda:"):
        status, err = exit_status(capsys, ["--model", "tiny-llama-test", "--device", device, "--out", str(tmp_path)])
        assert status == 2 and f"unknown device {device!r}" in err, err


def test_info_refuses_a_negative_watch(capsys):
    from ecomeasure import info
    for seconds in ("-1", "0", "inf"):
        with pytest.raises(SystemExit) as exc:
            info.main(["--seconds", seconds])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "--seconds: must be a finite number of seconds above 0" in err, err


def test_sigterm_keeps_finished_rows_and_marks_the_run_interrupted(tmp_path, weights_dir, fake_nvml_dir):
    """SIGTERM mid-run (a scheduler's kill) is Ctrl-C: the finished configuration stays, the
    one in progress leaves no rows or traces, the run file says interrupted, exit 143."""
    import json
    import signal
    import subprocess
    import time

    from fakes import Profile, clean_environ, fake_env
    from test_bench_columns import ROOT

    out = tmp_path / "results"
    env = clean_environ(fake_env(fake_nvml_dir, Profile.steady(150.0), time.monotonic_ns()))
    env["HF_HUB_OFFLINE"] = "1"
    # 2 s of idle per configuration: the signal lands while the second one (bf16) idles.
    proc = subprocess.Popen([sys.executable, "-m", "ecomeasure.bench", *SMOKE_ARGS, "--regime", "eager",
                             "--quant", "fp16", "bf16",
                             "--idle-seconds", "2", "--out", str(out), "--weights-dir", str(weights_dir)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "results.csv").exists() and len(read_csv(out / "results.csv")[1]) == 1):
            assert proc.poll() is None and time.monotonic() < deadline, "the first configuration never finished"
            time.sleep(0.05)
        time.sleep(0.5)  # into the second configuration
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted" in err
    _, rows = read_csv(out / "results.csv")
    assert [(r["quant"], r["status"]) for r in rows] == [("fp16", "ok")]
    _, iterations = read_csv(out / "iterations.csv")
    assert [i["quant"] for i in iterations] == ["fp16", "fp16"]
    assert sorted(p.name for p in (out / "traces").iterdir()) == [
        "tiny-llama-test_fp16_bs1_eager.npz", "tiny-llama-test_fp16_bs1_eager_reference.csv"]
    (run_file,) = out.glob("run-*.json")
    info = json.loads(run_file.read_text())
    assert info["interrupted"] is True and info["written"] == 1


def test_sigterm_while_writing_waits_for_the_files():
    import os
    import signal

    from ecomeasure.bench.results import Terminated, interrupts_deferred, raise_terminated

    written = []
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with pytest.raises(Terminated):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                written.append("the configuration's files")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert written == ["the configuration's files"]


def test_what_the_decoder_notes_reaches_the_row(bench, monkeypatch):
    # A decoder that could not capture its prefill says so; the graph row must carry it.
    real = ecomeasure.generation.StaticDecoder

    def noting(*args, **kwargs):
        decoder = real(*args, **kwargs)
        decoder.notes.append("prefill uncaptured: RuntimeError: no")
        return decoder
    monkeypatch.setattr(ecomeasure.generation, "StaticDecoder", noting)
    assert bench("--regime", "graph") == 0
    _, rows = read_csv(bench.out / "results.csv")
    assert rows[0]["status"] == "ok" and "prefill uncaptured: RuntimeError: no" in rows[0]["notes"]


def test_the_generating_gpu_becomes_the_current_device(monkeypatch):
    # A torchrun rank on cuda:1 with cuda:0 current could not capture a CUDA graph (its side
    # stream and capture would be on cuda:0): the device it generates on is made current.
    from ecomeasure.bench import environment
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert environment.resolve_device("cuda:1") == "cuda:1" and current == [1]
    assert environment.resolve_device("cuda") == "cuda:0" and current == [1, 0]
