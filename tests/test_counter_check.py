"""The bench's check of the native meter against the energy counter (runner.counter_check):
both over the seconds between the counter's readings nearest a span's ends, on the fake NVML
playing a burst of known energy between idle stretches."""
import math

import numpy as np
import pytest
from conftest import record
from fakes import Profile

from ecomeasure.bench.rows import COUNTER_AGREEMENT_PCT, counter_verdict, native_vs_counter_pct
from ecomeasure.bench.runner import COUNTER_STEP_S, CounterCheck, counter_check

IDLE_W, LOAD_W = 120.0, 690.0
ON_S, OFF_S = 1.51, 3.83  # between the meter's once-a-second counter readings


@pytest.fixture(scope="module")
def burst(fake_nvml_dir):
    return record(fake_nvml_dir, Profile.step(IDLE_W, LOAD_W, ON_S, OFF_S), 5.5)


def test_both_instruments_over_the_seconds_between_the_nearest_counter_readings(burst):
    meter, t0 = burst.meter, burst.t0_s
    check = counter_check(meter, t0 + ON_S, t0 + OFF_S)
    assert check is not None
    t_s, counter_j = meter.trace("counter")
    a, z = int(np.argmin(abs(t_s - t0 - ON_S))), int(np.argmin(abs(t_s - t0 - OFF_S)))
    assert check.span_s == pytest.approx(t_s[z] - t_s[a], abs=1e-9)
    assert check.counter_j == pytest.approx(counter_j[z] - counter_j[a], abs=1e-9)
    # The counter's difference is the profile's energy over exactly those seconds, to within
    # its step at each end; an interpolation to ON_S and OFF_S instead would miss the idle
    # stretches before and after the burst that its readings hold.
    truth = burst.profile.energy_j(t_s[a] - t0, t_s[z] - t0)
    assert abs(check.counter_j - truth) <= 2 * LOAD_W * COUNTER_STEP_S
    assert check.native_j == pytest.approx(truth, rel=0.01)
    assert check.pct == pytest.approx(100 * (check.native_j - check.counter_j) / check.counter_j)
    assert abs(check.pct) <= check.resolution_pct
    assert native_vs_counter_pct(check) == check.pct


def test_no_check_where_one_reading_is_nearest_both_ends(burst):
    t_s, _ = burst.meter.trace("counter")
    assert counter_check(burst.meter, t_s[1] - 0.01, t_s[1] + 0.01) is None
    assert math.isnan(native_vs_counter_pct(None))


def test_the_counter_resolves_a_tenth_of_a_second_of_power():
    assert CounterCheck(1.0, 1.0, 20.0).resolution_pct == pytest.approx(0.5)
    assert CounterCheck(1.0, 1.0, 2.0).resolution_pct == pytest.approx(5.0)
    assert CounterCheck(1.0, 1.0, 0.0).resolution_pct == math.inf
    assert CounterCheck(101.0, 100.0, 5.0).pct == pytest.approx(1.0)


def test_the_console_judges_only_what_the_counter_resolves():
    assert counter_verdict(float("nan"), 30.0) == "no counter"
    assert counter_verdict(0.3, 25.0) == f"+0.30 % vs counter over 25.0 s (within {COUNTER_AGREEMENT_PCT} %)"
    assert counter_verdict(-0.7, 25.0) == f"-0.70 % vs counter over 25.0 s (BEYOND {COUNTER_AGREEMENT_PCT} %)"
    assert counter_verdict(6.3, 2.8) == "+6.30 % vs counter over 2.8 s (its 100 ms steps resolve only +-3.6 % there)"
    assert counter_verdict(0.2, float("nan")) == "+0.20 % vs counter"
