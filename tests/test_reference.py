"""The 10 Hz reference method against the fake NVML, whose true energy is known exactly.

pynvml opens ``libnvidia-ml.so.1`` once per process, so each check runs in a subprocess with
the fake configured by environment (``fakes.fake_env``); the child prints JSON.
"""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import Profile, build_fake_nvml, clean_environ, fake_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory):
    return build_fake_nvml(tmp_path_factory.mktemp("fake_nvml_ref")).parent


def run_child(code: str, env_extra: dict) -> dict:
    env = clean_environ(env_extra)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


SAMPLE = """
    import json, os, time
    import numpy as np
    from ecomeasure.reference import ReferenceMeter
    ref = ReferenceMeter(0, interval_s=0.1, nvml_library=os.environ.get("BIND_LIBRARY") or None).start()
    t0 = time.monotonic()
    time.sleep({duration})
    t1 = time.monotonic()
    ref.wait_past(t1)
    ref.stop()
    windows = {windows}
    out = {{"t0": t0, "t1": t1, "errors": ref.errors, "last_error": ref.last_error, "windows": []}}
    for a, b in windows:
        e = ref.energy_j(t0 + a, t0 + b)
        out["windows"].append([t0 + a, t0 + b, e.energy_j, e.samples, e.complete])
    t, p = ref.samples()
    out["t"], out["p"] = t.tolist(), p.tolist()
    ref.save_csv(os.environ["CSV_OUT"])
    print(json.dumps(out))
"""


def test_steady_power_integrates_exactly(lib_dir, tmp_path):
    t0_ns = time.monotonic_ns()
    env = fake_env(lib_dir, Profile.steady(120.0), t0_ns)
    env["CSV_OUT"] = str(tmp_path / "ref.csv")
    out = run_child(SAMPLE.format(duration=1.2, windows=[(0.15, 0.95), (0.3, 0.35), (0.05, 1.2)]), env)
    assert out["errors"] == 0
    for a, b, energy_j, _samples, complete in out["windows"]:
        assert complete
        assert energy_j == pytest.approx(120.0 * (b - a), rel=1e-9)
    # ~10 readings a second, each stamped on the monotonic clock.
    steps = np.diff(out["t"])
    assert np.median(steps) == pytest.approx(0.1, rel=0.1)
    assert 10 <= len(out["t"]) <= 15
    assert out["windows"][0][3] == pytest.approx(8, abs=1)  # readings inside 0.15..0.95 s
    lines = (tmp_path / "ref.csv").read_text().splitlines()
    assert lines[0] == "time_s,power_w" and len(lines) == len(out["t"]) + 1


def test_trapezoid_of_the_lagging_average(lib_dir, tmp_path):
    """A step from 100 W to 300 W: the reference reads the fake's 1 s average (as Hopper's
    nvmlDeviceGetPowerUsage does) and integrates those readings by the trapezoid rule."""
    t0_ns = time.monotonic_ns()
    profile = Profile.step(100.0, 300.0, t_on=0.6, t_off=1.4)
    env = fake_env(lib_dir, profile, t0_ns)
    env["CSV_OUT"] = str(tmp_path / "ref.csv")
    out = run_child(SAMPLE.format(duration=2.0, windows=[(0.5, 1.5), (0.2, 1.9)]), env)
    t, p = np.array(out["t"]), np.array(out["p"])
    # Each reading is what the fake's average source reports at its latest update tick.
    for ts, w in zip(t, p):
        tick = np.floor(round((ts - t0_ns / 1e9) / 0.1, 6)) * 0.1
        candidates = {profile.nvml_average_mw(tick + d) / 1000 for d in (-0.1, 0.0)}
        assert any(abs(w - c) < 1e-6 for c in candidates)
    for a, b, energy_j, samples, _complete in out["windows"]:
        grid = np.concatenate([[a], t[(t > a) & (t < b)], [b]])
        expected = np.trapezoid(np.interp(grid, t, p), grid)
        assert energy_j == pytest.approx(expected, rel=1e-9)
        assert samples == int(((t >= a) & (t <= b)).sum())
    # The lag: over the burst the 1 s average misses much of the true energy.
    a, b = out["windows"][0][:2]
    truth = profile.energy_j(a - t0_ns / 1e9, b - t0_ns / 1e9)
    assert out["windows"][0][2] < 0.95 * truth


def test_errors_are_counted_not_fatal(lib_dir, tmp_path):
    t0_ns = time.monotonic_ns()
    env = fake_env(lib_dir, Profile.steady(80.0), t0_ns, fail=[("average", 0.3, 0.6)])
    env["CSV_OUT"] = str(tmp_path / "ref.csv")
    out = run_child(SAMPLE.format(duration=1.0, windows=[(0.1, 0.9)]), env)
    assert out["errors"] >= 2 and out["last_error"]
    t = np.array(out["t"]) - t0_ns / 1e9
    assert (t > 0.65).any() and (t < 0.25).any()  # sampled before and after the failures
    assert out["windows"][0][2] == pytest.approx(80.0 * 0.8, rel=1e-9)


def test_binds_the_library_named_by_the_meter(lib_dir, tmp_path):
    """With nvml_library given, pynvml reads that file even when the loader would not find it."""
    t0_ns = time.monotonic_ns()
    env = fake_env(lib_dir, Profile.steady(55.0), t0_ns)
    env["LD_LIBRARY_PATH"] = ""
    env["BIND_LIBRARY"] = env["ECOMEASURE_NVML_LIBRARY"]
    env["CSV_OUT"] = str(tmp_path / "ref.csv")
    out = run_child(SAMPLE.format(duration=0.5, windows=[(0.1, 0.4)]), env)
    assert out["windows"][0][2] == pytest.approx(55.0 * 0.3, rel=1e-9)


def test_unavailable_nvml_raises_a_clear_error(lib_dir):
    env = fake_env(lib_dir, None, None, init_fail=True)
    out = run_child("""
        import json
        from ecomeasure.reference import ReferenceMeter, ReferenceUnavailableError
        try:
            ReferenceMeter(0).start()
            print(json.dumps({"raised": None}))
        except ReferenceUnavailableError as exc:
            print(json.dumps({"raised": str(exc)}))
    """, env)
    assert out["raised"] and "NVML" in out["raised"]


def test_window_checks():
    from ecomeasure.reference import ReferenceMeter
    ref = ReferenceMeter(0)
    assert np.isnan(ref.energy_j(1.0, 2.0).energy_j)  # no readings yet
    with pytest.raises(ValueError):
        ref.energy_j(2.0, 1.0)
    with pytest.raises(ValueError):
        ReferenceMeter(0, interval_s=0)
