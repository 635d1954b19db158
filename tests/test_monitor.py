"""``python -m ecomeasure.monitor`` on the fake NVML and a fake powercap tree: the energy of a
known profile over a child command's life, exit codes, signals passed on, Ctrl-C keeping what
was measured, and bad input as one line and exit 2."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecomeasure import cpu, load_traces, monitor
from fake_powercap import SteadyPower, server_tree
from fakes import Profile, clean_environ, fake_env

ROOT = Path(__file__).resolve().parent.parent
# A square wave whose steps fall midway between the fake's 20 ms sample ticks: the driver
# samples' trapezoid is then exact, except within a tick of the window's two edges, where
# interpolating across a 400 W step is off by at most 0.0025 s x 400 W = 1 J.
SQUARE = Profile.square(100.0, 500.0, 0.2, 0.5, 0.01, 120.0)
EDGE_J = 2 * 0.0025 * 400.0
CPU_W = {"package-0": 35.0, "dram-0": 6.0}

CHILD = """
import os, pathlib, signal, sys, time
stamps = pathlib.Path(sys.argv[1])
stamps.write_text(str(time.monotonic_ns()))
signal.signal(signal.SIGTERM, lambda s, f: (pathlib.Path(sys.argv[1] + ".got").write_text(str(s)), sys.exit(7)))
pathlib.Path(sys.argv[1] + ".ready").touch()
time.sleep(float(sys.argv[2]))
stamps.write_text(stamps.read_text() + " " + str(time.monotonic_ns()))
sys.exit(int(sys.argv[3]))
"""


def child(tmp_path: Path, seconds: float, code: int = 0) -> tuple[list[str], Path]:
    stamps = tmp_path / "child-stamps"
    return [sys.executable, "-c", CHILD, str(stamps), str(seconds), str(code)], stamps


@pytest.fixture
def env(tmp_path, fake_nvml_dir):
    """The fake NVML (two GPUs: the square wave and a steady 60 W) and no RAPL; t0_ns is the
    profile's time 0."""
    t0_ns = time.monotonic_ns()
    e = clean_environ(fake_env(fake_nvml_dir, SQUARE, t0_ns, devices=2,
                               device_profiles={1: Profile.steady(60.0)}))
    e[cpu.POWERCAP_ROOT_ENV] = str(tmp_path / "no-powercap")
    e["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    return e, t0_ns


def start(args: list[str], environ: dict[str, str]) -> subprocess.Popen[str]:
    # Its own session: no controlling terminal, so signals sent to it are never taken for
    # a Ctrl-C that the terminal also gave the child.
    return subprocess.Popen([sys.executable, "-m", "ecomeasure.monitor", *args], env=environ, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def read_timeline(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def assert_measures_the_life(summary: dict, t0_ns: int, out: Path) -> None:
    """The summary's energy per GPU is the profile's over [start, end], its timeline and
    traces agree with it."""
    a = (summary["start_monotonic_ns"] - t0_ns) / 1e9
    b = (summary["end_monotonic_ns"] - t0_ns) / 1e9
    gpu0, gpu1 = summary["gpu"]["devices"]
    assert gpu0["energy_j"] == pytest.approx(SQUARE.energy_j(a, b), abs=EDGE_J)
    assert gpu1["energy_j"] == pytest.approx(60.0 * (b - a), rel=1e-6)
    assert summary["gpu"]["energy_j"] == pytest.approx(gpu0["energy_j"] + gpu1["energy_j"])
    assert summary["gpu"]["energy_wh"] == pytest.approx(summary["gpu"]["energy_j"] / 3600)
    assert gpu0["mean_power_w"] == pytest.approx(gpu0["energy_j"] / summary["duration_s"])
    assert gpu0["method"] == "samples" and gpu0["complete"]
    rows = read_timeline(out / "timeline.csv")
    assert rows[0]["start_s"] == 0 and rows[-1]["end_s"] == pytest.approx(summary["duration_s"], abs=1e-6)
    assert all(r["end_s"] == pytest.approx(n["start_s"]) for r, n in zip(rows, rows[1:]))
    from_timeline = sum(r["gpu0_power_w"] * (r["end_s"] - r["start_s"]) for r in rows)
    assert from_timeline == pytest.approx(gpu0["energy_j"], rel=1e-6)
    full = [r for r in rows if r["end_s"] - r["start_s"] >= summary["interval_s"] / 2]
    assert gpu0["peak_power_w"] == pytest.approx(max(r["gpu0_power_w"] for r in full))
    saved = load_traces(out / "traces.npz").measure(summary["start_monotonic_ns"] / 1e9,
                                                    summary["end_monotonic_ns"] / 1e9)
    assert saved.energy_j == pytest.approx(summary["gpu"]["energy_j"], rel=1e-6)


def test_the_energy_of_a_known_profile_over_the_commands_life(tmp_path, env):
    environ, t0_ns = env
    zones = server_tree(tmp_path / "powercap", packages=1, max_range_uj=30_000_000)  # wraps every ~0.8 s
    environ[cpu.POWERCAP_ROOT_ENV] = str(tmp_path / "powercap")
    command, stamps = child(tmp_path, 1.5, code=0)
    with SteadyPower({zones[z]: w for z, w in CPU_W.items()}, max_range_uj=30_000_000):
        proc = start(["--out", str(tmp_path / "out"), "--interval", "0.25", "--", *command], environ)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["signal"] is None
    # From the command's start to its end: the child's own stamps lie inside, near the edges.
    child_start, child_end = (int(s) for s in stamps.read_text().split())
    assert summary["start_monotonic_ns"] < child_start < child_end < summary["end_monotonic_ns"]
    assert (summary["end_monotonic_ns"] - child_end) / 1e9 < 0.5
    assert_measures_the_life(summary, t0_ns, tmp_path / "out")
    # The CPU: each zone's steady power over the command's life, through counter wraps.
    cpu_zones = {z["label"]: z for z in summary["cpu"]["zones"]}
    assert set(cpu_zones) == set(CPU_W)
    for label, watts in CPU_W.items():
        assert cpu_zones[label]["energy_j"] == pytest.approx(watts * summary["duration_s"], abs=watts * 0.04)
    rows = read_timeline(tmp_path / "out" / "timeline.csv")
    assert sum(r["cpu_package-0_power_w"] * (r["end_s"] - r["start_s"]) for r in rows) == pytest.approx(
        cpu_zones["package-0"]["energy_j"], rel=1e-6)
    # The text summary names each GPU and zone, in J and Wh.
    assert "GPU 0 Fake H200" in err and "GPU 1 Fake H200" in err and "CPU package-0:" in err and " Wh)" in err


def test_exit_codes_pass_through(tmp_path, env):
    environ, _ = env
    proc = start(["--json", "--", "sh", "-c", "exit 3"], environ)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert json.loads(err.strip().splitlines()[-1])["exit_code"] == 3
    proc = start(["--json", "--", "sh", "-c", "kill -KILL $$"], environ)
    _, err = proc.communicate(timeout=60)
    summary = json.loads(err.strip().splitlines()[-1])
    assert proc.returncode == 128 + signal.SIGKILL and summary["signal"] == "SIGKILL"


def wait_for(path: Path, proc: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigterm_is_passed_on_and_the_commands_own_exit_code_returned(tmp_path, env):
    environ, t0_ns = env
    command, stamps = child(tmp_path, 60.0)
    proc = start(["--out", str(tmp_path / "out"), "--", *command], environ)
    try:
        wait_for(Path(f"{stamps}.ready"), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 7, err  # the child's handler chose 7
    assert Path(f"{stamps}.got").read_text() == str(int(signal.SIGTERM))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exit_code"] == 7 and summary["signals_received"] == ["SIGTERM"]


def test_ctrl_c_ends_the_command_and_keeps_what_was_measured(tmp_path, env):
    environ, t0_ns = env
    command, stamps = child(tmp_path, 60.0)
    out = tmp_path / "out"
    proc = start(["--out", str(out), "--interval", "0.2", "--", *command], environ)
    try:
        wait_for(Path(f"{stamps}.ready"), proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, err  # Python ends itself by SIGINT on Ctrl-C
    assert "Traceback (most recent call last)" not in err.split("KeyboardInterrupt")[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["signal"] == "SIGINT" and summary["signals_received"] == ["SIGINT"]
    assert summary["duration_s"] > 0.5
    assert_measures_the_life(summary, t0_ns, out)


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: [], "no command to run"),
    (lambda tmp: ["--out", str(tmp)], "no command to run"),
    (lambda tmp: ["--", "no-such-command-anywhere"], "cannot run no-such-command-anywhere: not found"),
    (lambda tmp: ["--", str(tmp / "absent.sh")], "no such file"),
    (lambda tmp: ["--out", str(tmp / "a-file" / "out"), "--", "true"], "cannot write to --out"),
    (lambda tmp: ["--interval", "-1", "--", "true"], "--interval: must be a finite number"),
    (lambda tmp: ["--bogus", "--", "true"], "unrecognized arguments: --bogus"),
    (lambda tmp: ["--", str(tmp / "garbage")], "cannot run"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, fake_nvml_dir, make_args, message):
    from conftest import patched_environ

    (tmp_path / "a-file").write_text("")
    (tmp_path / "garbage").write_bytes(b"\x00\x01not a program\n")
    (tmp_path / "garbage").chmod(0o755)  # executable, but exec() refuses its format
    with patched_environ(fake_env(fake_nvml_dir, None, None)):
        code = monitor.main(make_args(tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_no_gpu_is_exit_2_unless_allowed(tmp_path, capsys, fake_nvml_dir, monkeypatch):
    from conftest import patched_environ

    zones = server_tree(tmp_path / "powercap", packages=1)
    monkeypatch.setenv(cpu.POWERCAP_ROOT_ENV, str(tmp_path / "powercap"))
    with patched_environ(fake_env(fake_nvml_dir, None, None, init_fail=True)):
        code = monitor.main(["--", "true"])
        err = capsys.readouterr().err
        assert code == 2 and "no GPU to measure" in err and "--allow-no-gpu" in err
        assert len(err.strip().splitlines()) == 1
        with SteadyPower({zones["package-0"]: 20.0}):
            code = monitor.main(["--allow-no-gpu", "--json", "--out", str(tmp_path / "out"), "--",
                                 sys.executable, "-c", "import time; time.sleep(0.5)"])
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert code == 0 and summary["gpu"] is None and "NVML" in summary["gpu_problem"]
    package = summary["cpu"]["zones"][0]
    assert package["label"] == "package-0"
    assert package["energy_j"] == pytest.approx(20.0 * summary["duration_s"], abs=20.0 * 0.04)
    saved = load_traces(tmp_path / "out" / "traces.npz")
    assert saved.devices == [] and saved.cpu is not None
    again = saved.measure(summary["start_monotonic_ns"] / 1e9, summary["end_monotonic_ns"] / 1e9)
    assert again.cpu is not None and again.cpu.zones["package-0"] == pytest.approx(package["energy_j"], rel=1e-6)


def test_a_run_measured_as_it_goes_equals_one_window(tmp_path, fake_nvml_dir):
    """Long commands are measured step by step during the run (so the meter's bounded traces
    never lose their start): the steps sum to the energy of the whole command."""
    from conftest import patched_environ
    from ecomeasure import Meter

    t0_ns = time.monotonic_ns()
    with patched_environ(fake_env(fake_nvml_dir, SQUARE, t0_ns)):
        meter = Meter(start=False)
        sources = monitor.Sources(meter)
        try:
            run = monitor.run_command([sys.executable, "-c", "import time; time.sleep(1.2)"], sources,
                                      interval_s=0.1, final_after_s=0.3)
            whole = meter.measure_ns(run.start_ns, run.end_ns)
        finally:
            meter.close()
    rows = run.timeline.rows
    assert 0 < run.timeline.measured_while_running < len(rows)
    assert rows[0].start_ns == run.start_ns and rows[-1].end_ns == run.end_ns
    assert sum(r.gpus[0][0] for r in rows) == pytest.approx(whole.energy_j, rel=1e-9)
    assert whole.energy_j == pytest.approx(SQUARE.energy_j((run.start_ns - t0_ns) / 1e9,
                                                           (run.end_ns - t0_ns) / 1e9), abs=EDGE_J)


def test_out_names_the_host_for_one_folder_per_node(tmp_path):
    import socket

    out = monitor.prepare_out(str(tmp_path / "run" / "{host}"))
    assert out == tmp_path / "run" / socket.gethostname() and out.is_dir()
    assert list(out.iterdir()) == []  # the writability probe leaves nothing behind
