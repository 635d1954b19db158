"""Shared fixtures: the fake NVML and CUDA libraries, and meter recordings of known profiles."""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

from fakes import Profile, build_fake_cuda, build_fake_nvml, fake_env


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory):
    return build_fake_nvml(tmp_path_factory.mktemp("fake_nvml")).parent


@pytest.fixture(scope="session")
def fake_cuda_lib(tmp_path_factory):
    return build_fake_cuda(tmp_path_factory.mktemp("fake_cuda"))


@contextlib.contextmanager
def patched_environ(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `env` applied and any other FAKE_NVML_* removed; restored after.
    The fake reads its variables at nvmlInit, so this must wrap creating the meter.
    CUDA_VISIBLE_DEVICES is removed too (unless `env` sets it), so that which GPUs a meter
    reads never depends on the host that runs the tests."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("FAKE_NVML_") or k == "CUDA_VISIBLE_DEVICES"]:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Recording:
    """A closed meter that watched the fake play `profile`; profile time 0 = t0_s."""
    meter: object
    profile: Profile
    t0_s: float

    def window(self, a: float, b: float, name: str = ""):
        """The meter's measurement of profile interval [a, b] and the exact energy."""
        return self.meter.measure(self.t0_s + a, self.t0_s + b, name), self.profile.energy_j(a, b)


def record(lib_dir, profile: Profile, seconds: float, meter_kwargs: Mapping | None = None,
           **fake_options) -> Recording:
    """Runs a meter on the fake for `seconds` of profile time, then closes it."""
    from ecomeasure import Meter

    t0_ns = time.monotonic_ns()
    with patched_environ(fake_env(lib_dir, profile, t0_ns, **fake_options)):
        meter = Meter(**(meter_kwargs or {}))
        try:
            time.sleep(max(0.0, t0_ns / 1e9 + seconds - time.monotonic()))
        finally:
            meter.close()
    return Recording(meter, profile, t0_ns / 1e9)


# A profile with every shape the tests need, ~9 s: steady idle, a 2 s burst, idle, a square
# wave (0.2 s period), then isolated bursts of 60 ms, 240 ms and 500 ms. Power changes fall
# midway between the fake's 20 ms sample ticks (SHIFT), as they fall anywhere on real
# hardware; a change on a tick is the worst case, tested on its own.
SHIFT = 0.01
RICH_PROFILE = Profile(
    [(0.0, 120.0)]
    + [(t + SHIFT, w) for t, w in
       [(1.5, 690.0), (3.5, 120.0)]
       + [(4.5 + 0.2 * k + half * 0.1, 600.0 if half == 0 else 150.0) for k in range(10) for half in (0, 1)]
       + [(6.5, 120.0), (7.0, 650.0), (7.06, 120.0), (7.3, 650.0), (7.54, 120.0), (7.8, 650.0),
          (8.3, 120.0)]]
)


@pytest.fixture(scope="session")
def rich_recording(fake_nvml_dir) -> Recording:
    # A 2 s calibration span (default 30 s), so that 9.5 s of recording exercise it. The
    # recording runs 0.7 s past the last window's end (8.8 s), so that on a loaded machine the
    # sampler has still read the driver samples after it before the meter closes.
    return record(fake_nvml_dir, RICH_PROFILE, 9.5, meter_kwargs={"calibration_min_span_s": 2.0})
