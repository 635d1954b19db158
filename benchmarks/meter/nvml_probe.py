"""NVML call costs and timestamp semantics on GPU 0, through pynvml (no ecomeasure).

Answers the questions that shape the native sampler: how much CPU each source
costs per call, whether nvmlFieldValue_t.timestamp is the update time or the
query time, and how the energy counter's ticks line up with the driver's own
power samples. Prints its findings; writes raw CSVs under $OUT (default /tmp).

    OUT=DIR python -m benchmarks.meter.nvml_probe
"""
import ctypes
import os
import time
import threading
import pynvml as N

OUT = os.environ.get("OUT", "/tmp")
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
info = {
    "name": N.nvmlDeviceGetName(h), "driver": N.nvmlSystemGetDriverVersion(),
    "nvml": N.nvmlSystemGetNVMLVersion(), "arch": N.nvmlDeviceGetArchitecture(h),
    "count": N.nvmlDeviceGetCount(),
}
print(info)

def cost(fn, n):
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        fn()
    w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
    return (w1 - w0) / n / 1e3, (c1 - c0) / n / 1e3

last = [0]
def samples():
    try:
        t, s = N.nvmlDeviceGetSamples(h, N.NVML_TOTAL_POWER_SAMPLES, last[0])
        if s:
            last[0] = s[-1].timeStamp
    except N.NVMLError:
        pass
for name, fn, n in [
    ("power_usage", lambda: N.nvmlDeviceGetPowerUsage(h), 2000),
    ("field186", lambda: N.nvmlDeviceGetFieldValues(h, [186]), 2000),
    ("field186+185", lambda: N.nvmlDeviceGetFieldValues(h, [186, 185]), 2000),
    ("energy_counter", lambda: N.nvmlDeviceGetTotalEnergyConsumption(h), 100),
    ("field83", lambda: N.nvmlDeviceGetFieldValues(h, [83]), 100),
    ("field83+186", lambda: N.nvmlDeviceGetFieldValues(h, [83, 186]), 100),
    ("samples", samples, 200),
]:
    wall_us, cpu_us = cost(fn, n)
    print(f"cost {name:16s} wall {wall_us:9.1f} us  cpu {cpu_us:9.1f} us")

# Field timestamps: poll fields 83/185/186 fast, record our wall clock and the field stamps.
# torch only now: its import starts threads that would have perturbed the call costs above.
import torch  # noqa: E402
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
stop = threading.Event()
def load():
    torch.cuda.set_device(0)
    while not stop.is_set():
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()

rows = []
srows = []
last[0] = 0
t_start = time.time()
def poll(duration):
    end = time.time() + duration
    while time.time() < end:
        t_before = time.time()
        fv = N.nvmlDeviceGetFieldValues(h, [83, 185, 186])
        t_after = time.time()
        vals = []
        for f in fv:
            v = f.value.ullVal if f.fieldId == 83 else f.value.uiVal
            vals += [f.timestamp, f.latencyUsec, f.nvmlReturn, v]
        pu = N.nvmlDeviceGetPowerUsage(h)
        rows.append([t_before, t_after] + vals + [pu])
        try:
            t, s = N.nvmlDeviceGetSamples(h, N.NVML_TOTAL_POWER_SAMPLES, last[0])
            for x in s:
                srows.append([x.timeStamp, x.sampleValue.uiVal])
            if s:
                last[0] = s[-1].timeStamp
        except N.NVMLError:
            pass
        time.sleep(0.002)

poll(1.0)
th = threading.Thread(target=load)
th.start()
poll(2.0)
stop.set()
th.join()
poll(1.5)
with open(f"{OUT}/fields.csv", "w") as f:
    f.write("t_before,t_after,ts83,lat83,ret83,e83_mJ,ts185,lat185,ret185,p185_mW,ts186,lat186,ret186,p186_mW,pu_mW\n")
    for r in rows:
        f.write(",".join(str(x) for x in r) + "\n")
with open(f"{OUT}/samples.csv", "w") as f:
    f.write("ts_us,power_mW\n")
    for r in srows:
        f.write(f"{r[0]},{r[1]}\n")
print("rows", len(rows), "driver samples", len(srows))
# Does each field's timestamp change only when its value changes?
for k, (ti, vi) in {"83": (2, 5), "185": (6, 9), "186": (10, 13)}.items():
    ts_changes = sum(1 for a_, b_ in zip(rows, rows[1:]) if b_[ti] != a_[ti])
    v_changes = sum(1 for a_, b_ in zip(rows, rows[1:]) if b_[vi] != a_[vi])
    lag = [ (r[1]*1e6 - r[ti]) / 1e3 for r in rows]
    print(f"field {k}: ts changes {ts_changes}, value changes {v_changes} of {len(rows)} polls; query_end - ts ms: min {min(lag):.1f} med {sorted(lag)[len(lag)//2]:.1f} max {max(lag):.1f}")

cuda = ctypes.CDLL("libcuda.so.1")
print("cuLaunchHostFunc", hasattr(cuda, "cuLaunchHostFunc"), "cuGetProcAddress", hasattr(cuda, "cuGetProcAddress_v2"))
