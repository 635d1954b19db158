"""Which GPUs a meter reads: those of CUDA_VISIBLE_DEVICES by default, mapped to NVML by UUID
through the (fake) CUDA driver; MIG instances refused naming their parent; all when asked."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import patched_environ
from fakes import Profile, clean_environ, fake_env, fake_uuid

from ecomeasure import DeviceSelectionError, Meter, select_devices

MIG = "MIG-11111111-2222-3333-4444-555555555555"


@pytest.fixture
def gpus(fake_nvml_dir, fake_cuda_lib):
    """Environment of a host with three GPUs whose CUDA order is NVML's reversed."""
    def make(cvd: str | None = None, **extra) -> dict[str, str]:
        env = fake_env(fake_nvml_dir, None, None, devices=3, **extra)
        env.update(ECOMEASURE_CUDA_LIBRARY=str(fake_cuda_lib),
                   FAKE_CUDA_DEVICES=",".join(fake_uuid(i) for i in (2, 1, 0)),
                   FAKE_NVML_MIG=f"{MIG}=1")
        if cvd is not None:
            env["CUDA_VISIBLE_DEVICES"] = cvd
        return env
    return make


@pytest.mark.parametrize("cvd, nvml", [
    ("0", (2,)),                                 # CUDA's 0 is NVML's 2
    ("2,0", (0, 2)),
    (fake_uuid(1), (1,)),
    (fake_uuid(1)[4:], (1,)),                    # without "GPU-"
    ("GPU-00000002", (2,)),                      # a unique prefix
    (f"{fake_uuid(0)},1", (0, 1)),
])
def test_cuda_visible_devices_picks_those_gpus_by_uuid(gpus, cvd, nvml):
    with patched_environ(gpus(cvd)):
        selection = select_devices()
    assert selection.indices == nvml and selection.rule == "CUDA_VISIBLE_DEVICES"
    first = cvd.split(",")[0].strip()
    assert selection.reasons[0] == f"CUDA_VISIBLE_DEVICES={first} -> GPU {nvml[0]} ({fake_uuid(nvml[0])})"


def test_unset_reads_every_gpu_and_all_or_a_list_overrides_the_variable(gpus):
    with patched_environ(gpus()):
        assert select_devices().indices == (0, 1, 2)
        assert select_devices().reasons[1] == f"CUDA_VISIBLE_DEVICES unset -> GPU 1 ({fake_uuid(1)})"
    with patched_environ(gpus("1")):
        assert select_devices("all").indices == (0, 1, 2)
        assert select_devices([2, 0]).indices == (2, 0)


@pytest.mark.parametrize("cvd, message", [
    ("7", "entry '7' names no GPU"),
    ("0,7", "entry '7' names no GPU"),
    ("GPU-0000000", "names no GPU"),             # a prefix of all three: ambiguous
    ("GPU-deadbeef", "names no GPU"),
    ("", "CUDA_VISIBLE_DEVICES is empty"),
    (MIG, f"is a MIG instance.*its parent is GPU 1 \\({fake_uuid(1)}\\); pass devices=\\[1\\]"),
    (f"MIG-{fake_uuid(2)}/1/0", "MIG instance.*its parent is GPU 2"),
    ("MIG-99999999-2222-3333-4444-555555555555", "MIG instance.*NVML does not name its parent"),
])
def test_a_device_that_cannot_be_read_is_one_clear_error(gpus, cvd, message):
    with patched_environ(gpus(cvd)), pytest.raises(DeviceSelectionError, match=message) as error:
        Meter(start=False)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("devices, message", [
    ([5], "no GPU with NVML index 5"), ("some", "'all' or a list"), ([], "empty"), (["0"], "NVML index"),
])
def test_bad_device_lists_are_refused(gpus, devices, message):
    with patched_environ(gpus()), pytest.raises(DeviceSelectionError, match=message):
        select_devices(devices)


def test_meter_under_cuda_visible_devices_reads_only_that_gpu(fake_nvml_dir, gpus):
    profiles = {0: Profile.steady(100.0), 1: Profile.steady(400.0), 2: Profile.steady(700.0)}
    env = gpus("1")  # CUDA's 1 is NVML's 1 (the middle of the reversed order)
    env.update(fake_env(fake_nvml_dir, None, None, devices=3, device_profiles=profiles))
    with patched_environ(env):
        meter = Meter()
        try:
            assert [d.index for d in meter.devices] == [1]
            assert meter.report()["device_selection"] == [f"CUDA_VISIBLE_DEVICES=1 -> GPU 1 ({fake_uuid(1)})"]
            m = meter.measure_ns(*_span(meter))
        finally:
            meter.close()
    assert m.energy_j == pytest.approx(400.0 * m.duration_s, rel=0.01)


def _span(meter, seconds: float = 0.3) -> tuple[int, int]:
    import time
    time.sleep(0.05)
    start = time.monotonic_ns()
    time.sleep(seconds)
    return start, time.monotonic_ns()


def test_info_says_which_gpus_and_why(gpus):
    def info(cvd, *args):
        return subprocess.run([sys.executable, "-m", "ecomeasure.info", "--seconds", "0.2", *args],
                              env=clean_environ(gpus(cvd)), capture_output=True, text=True, timeout=120)
    out = info("0")
    assert out.returncode == 0, out.stderr
    assert f"CUDA_VISIBLE_DEVICES=0 -> GPU 2 ({fake_uuid(2)})" in out.stdout
    assert "GPU 2: Fake H200" in out.stdout and "GPU 0: Fake H200" not in out.stdout
    out = info("0", "--all")
    assert out.returncode == 0 and all(f"GPU {i}: Fake H200" in out.stdout for i in range(3))
    out = info("7")
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "names no GPU" in out.stderr
