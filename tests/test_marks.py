"""Stream marks through a fake CUDA driver that runs host functions after a delay, as a
GPU does once it has worked through the stream. The driver is loaded once per process, so
each case runs in its own interpreter."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import ecomeasure
from ecomeasure import stream_handle
from fakes import Profile, clean_environ, fake_env


def run(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def cuda_env(fake_cuda_lib, fake_nvml_dir):
    def make(delay_us: int = 50_000, **extra) -> dict:
        env = fake_env(fake_nvml_dir, Profile.steady(300.0), None)
        env.update(ECOMEASURE_CUDA_LIBRARY=str(fake_cuda_lib), FAKE_CUDA_DELAY_US=str(delay_us), **extra)
        return clean_environ(env)
    return make


def test_stream_mark_is_stamped_when_the_stream_gets_there(cuda_env):
    result = run("""
        import json, time, ecomeasure
        asked = time.monotonic_ns()
        mark = ecomeasure.Mark(stream=7)
        returned = time.monotonic_ns()
        reached_at_once = mark.reached
        stamped = mark.time_ns()
        print(json.dumps(dict(call_us=(returned - asked) / 1e3, reached_at_once=reached_at_once,
                              lag_ms=(stamped - asked) / 1e6, on_stream=mark.on_stream)))
    """, cuda_env(delay_us=80_000))
    assert result["on_stream"] and not result["reached_at_once"]
    assert 80 <= result["lag_ms"] < 200
    assert result["call_us"] < 50_000  # the call returned long before the mark was reached


def test_window_on_a_stream_measures_between_stream_marks(cuda_env):
    result = run("""
        import json, time, ecomeasure
        class TorchLikeStream:
            cuda_stream = 1234
        with ecomeasure.Meter() as meter:
            time.sleep(0.1)
            host = meter.window("host")
            gpu = meter.window("gpu", stream=TorchLikeStream())
            time.sleep(0.3)
            host.end(); gpu.end()
            h, g = host.measurement, gpu.measurement
            meter.close()
        print(json.dumps(dict(host_begin=h.start_s, gpu_begin=g.start_s, gpu_duration=g.duration_s,
                              energy=g.energy_j, complete=g.complete)))
    """, cuda_env(delay_us=100_000))
    # Both edges of the stream window come ~100 ms after the host asked for them.
    assert result["gpu_begin"] - result["host_begin"] == pytest.approx(0.1, abs=0.05)
    assert result["gpu_duration"] == pytest.approx(0.3, abs=0.05)
    assert result["energy"] == pytest.approx(300.0 * result["gpu_duration"], rel=0.02)
    assert result["complete"]


def test_a_late_callback_does_not_move_a_window_cut_by_stream_marks(cuda_env):
    # Every second host function runs 30 ms late; the events' GPU times keep the window right.
    result = run("""
        import json, time, ecomeasure
        with ecomeasure.Meter() as meter:
            windows = []
            for _ in range(4):
                asked = time.monotonic_ns()
                w = meter.window("w", stream=5)
                time.sleep(0.1)
                w.end()
                windows.append((asked, *w.edges_ns(), w.begin.time_ns(), w.end_mark.time_ns()))
            meter.close()
        print(json.dumps(windows))
    """, cuda_env(delay_us=10_000, FAKE_CUDA_LATE_EVERY="2", FAKE_CUDA_LATE_US="30000"))
    # Tolerances well under the 30 ms a late callback would add (sleep overshoots under load).
    for asked, t0, t1, _stamp0, _stamp1 in result:
        assert (t0 - asked) / 1e6 == pytest.approx(10, abs=8)      # when the GPU got there
        assert (t1 - t0) / 1e6 == pytest.approx(100, abs=10)
    # ...while the raw host-function stamps of the late marks are 30 ms off.
    assert any(abs((s1 - s0) - (t1 - t0)) > 25e6 for _, t0, t1, s0, s1 in result)


def test_a_mark_older_than_the_event_ring_falls_back_to_its_host_stamps(cuda_env):
    result = run("""
        import json, ecomeasure
        first, second = ecomeasure.Mark(stream=5), ecomeasure.Mark(stream=5)
        newer = [ecomeasure.Mark(stream=5) for _ in range(1100)]   # the ring holds 1024
        old = first.span_ns(second)
        stamps = (first.time_ns(), second.time_ns())
        recent = newer[-2].span_ns(newer[-1])
        events = dict(first=first.has_event, last=newer[-1].has_event, host=ecomeasure.Mark().has_event)
        print(json.dumps(dict(old=old, stamps=stamps, recent=recent, events=events)))
    """, cuda_env(delay_us=2_000))
    assert result["old"] == result["stamps"]
    assert result["recent"][1] >= result["recent"][0]
    # The bench notes such a window in its row (runner.host_stamped reads has_event).
    assert result["events"] == {"first": False, "last": True, "host": False}


def test_waiting_for_a_mark_does_not_hold_the_gil(cuda_env):
    result = run("""
        import json, threading, time, ecomeasure
        counted = [0]
        stop = threading.Event()
        def count():
            while not stop.is_set():
                counted[0] += 1
        t = threading.Thread(target=count); t.start()
        time.sleep(0.05)
        mark = ecomeasure.Mark(stream=3)
        before = counted[0]
        mark.time_ns()          # blocks ~300 ms in native code
        during = counted[0] - before
        stop.set(); t.join()
        print(json.dumps(dict(during=during)))
    """, cuda_env(delay_us=300_000))
    assert result["during"] > 10_000


def test_refused_stream_handle_is_a_clear_error(cuda_env):
    result = run("""
        import json, ecomeasure
        try:
            ecomeasure.Mark(stream=0xbad)
        except ecomeasure.InvalidStreamError as e:
            print(json.dumps(dict(error=str(e))))
    """, cuda_env())
    assert "CUDA_ERROR_INVALID_HANDLE" in result["error"] and "2989" in result["error"]


def test_cuda_that_fails_to_initialise_is_a_clear_error(cuda_env):
    result = run("""
        import json, ecomeasure
        try:
            ecomeasure.Mark(stream=1)
        except ecomeasure.CudaUnavailableError as e:
            print(json.dumps(dict(error=str(e))))
    """, cuda_env(FAKE_CUDA_INIT_FAIL="1"))
    assert "cuInit failed: CUDA_ERROR_NO_DEVICE" in result["error"]


def test_stream_given_without_a_cuda_driver_is_a_clear_error(fake_nvml_dir):
    env = clean_environ({"ECOMEASURE_CUDA_LIBRARY": "/nonexistent/libcuda.so.1"})
    result = run("""
        import json, ecomeasure
        out = {}
        try:
            ecomeasure.Mark(stream=1)
        except ecomeasure.CudaUnavailableError as e:
            out["error"] = str(e)
        out["host_mark_ok"] = ecomeasure.Mark().reached
        print(json.dumps(out))
    """, env)
    assert result["error"].startswith("no CUDA driver") and "stream=None" in result["error"]
    assert result["host_mark_ok"]


class CudaStreamProtocol:
    def __cuda_stream__(self):
        return (0, 42)


class CupyLike:
    ptr = 99


class TorchLike:
    cuda_stream = 7


@pytest.mark.parametrize("stream,handle", [(None, None), (0, 0), (5, 5), (TorchLike(), 7),
                                           (CudaStreamProtocol(), 42), (CupyLike(), 99)])
def test_stream_handles_are_found_without_importing_frameworks(stream, handle):
    assert stream_handle(stream) == handle


@pytest.mark.parametrize("bad", ["stream", 1.5, True, object()])
def test_things_that_are_not_streams_are_refused(bad):
    with pytest.raises(TypeError):
        stream_handle(bad)
    with pytest.raises(ValueError):
        stream_handle(-1)


def test_host_marks_are_stamped_at_once():
    before = ecomeasure._native.monotonic_ns()
    mark = ecomeasure.Mark()
    assert mark.reached and not mark.on_stream
    assert before <= mark.time_ns() <= ecomeasure._native.monotonic_ns()
