"""A run's power on a timeline: saved traces to a Perfetto/Chrome trace, or to a PNG.

    python -m ecomeasure.export perfetto SAVED.npz -o trace.json [--windows FILE] [--beside TORCH.json]
    python -m ecomeasure.export plot SAVED.npz -o power.png [--windows FILE]

SAVED is a file written by ``Meter.save`` (a bench run's ``traces/*.npz`` is one). ``perfetto``
writes the trace-event JSON that ui.perfetto.dev and chrome://tracing open: a counter track
per GPU and source (power in W; the energy counter as the power between its readings; the
GPU's busy percent), the CPU's RAPL zones where the file has them, and the windows as slices
(each with its energy) and marks as instants. ``plot`` draws the power per source with the
windows shaded.

Windows come from ``--windows`` (JSON: a list of ``{"name", "start_ns", "end_ns"}``, or an
object with such a ``windows`` list and optionally ``marks`` of ``{"name", "t_ns"}``, as
``Attribution.save`` writes; or a CSV with ``name,start_ns,end_ns`` or ``name,start_s,end_s``),
else, for a bench run's traces, from the run's ``iterations.csv`` (each iteration, its prefill
and its decode; its first token as a mark).

Clock: the meter stamps everything on CLOCK_MONOTONIC. A file that records
``realtime_minus_monotonic_ns`` (Meter.save does) is exported on the wall clock the way
torch.profiler (Kineto) writes its traces: ``ts`` in microseconds since
``baseTimeNanoseconds`` of the Unix epoch, the base floored to Kineto's 3-month step, so a
profiler trace of the same run shares it. ``--beside TORCH.json`` takes that trace's own
base and writes one file holding both traces. Without the offset (files from older meters),
``ts`` is CLOCK_MONOTONIC in microseconds; ``--realtime-offset-ns`` supplies it. See
docs/timeline.md.

Bad input (a missing or unreadable file, a malformed windows file, an unwritable output)
gets one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .units import NS_PER_S

KINETO_BASE_STEP_NS = 7_889_238 * NS_PER_S
"""Kineto floors its ``baseTimeNanoseconds`` to multiples of 3 months (7,889,238 s)."""
POWER_SOURCES = ("samples", "instant", "average", "counter")
# Process ids of the tracks: above Linux's largest pid (2^22) and torch.profiler's device
# ids, so that a merged trace keeps them apart.
PID_GPU = 5_000_000
PID_CPU = 5_000_500
PID_WINDOWS = 5_000_900


class ExportError(ValueError):
    """Input the export cannot use; said in one line."""


@dataclass
class Window:
    name: str
    start_ns: int
    end_ns: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Mark:
    name: str
    t_ns: int


@dataclass
class Saved:
    """One ``Meter.save`` file as plain arrays: per GPU and trace, per CPU zone."""
    path: Path
    report: dict[str, Any]
    gpus: list[dict[str, Any]]
    traces: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]
    cpu: dict[str, tuple[np.ndarray, np.ndarray]]  # zone -> (t_ns, cumulative J)

    @property
    def realtime_offset_ns(self) -> int | None:
        value = self.report.get("realtime_minus_monotonic_ns")
        return int(value) if isinstance(value, (int, float)) else None

    def time_range_ns(self) -> tuple[int, int]:
        """First and last power or energy reading (utilization samples are left out: NVML
        hands back history from before the meter started)."""
        stamps = [t for (_, name), (t, _) in self.traces.items() if len(t) and name != "utilization"]
        stamps += [t for t, _ in self.cpu.values() if len(t)]
        if not stamps:
            raise ExportError(f"{self.path}: no readings in the file")
        return min(int(t[0]) for t in stamps), max(int(t[-1]) for t in stamps)


def load_saved(path: Path) -> Saved:
    """Reads a ``Meter.save`` file; ExportError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not a file written by Meter.save ({exc})") from None
    if "report" not in arrays:
        raise ExportError(f"{path}: not a file written by Meter.save (no report)")
    try:
        report = json.loads(str(arrays.pop("report")))
        gpus = list(report["devices"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: unreadable report ({exc})") from None
    traces: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    cpu: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in arrays:
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != "t_ns":
            continue
        owner, name = parts[0], parts[1]
        if owner == "cpu" and f"cpu/{name}/energy_uj" in arrays:
            cpu[name] = (arrays[key].astype(np.int64), arrays[f"cpu/{name}/energy_uj"].astype(np.float64) / 1e6)
        elif owner.isdigit() and f"{owner}/{name}/value" in arrays:
            traces[(int(owner), name)] = (arrays[key].astype(np.int64), arrays[f"{owner}/{name}/value"].astype(np.float64))
    if not traces and not cpu:
        raise ExportError(f"{path}: no traces in the file")
    return Saved(path, report, gpus, traces, cpu)


COUNTER_MIN_INTERVAL_NS = NS_PER_S // 2
"""The GPU's energy counter moves every ~100 ms and a reading may be that stale: its power is
drawn over readings at least this far apart (the extra readings taken as windows end come
milliseconds after the one before, and between them the counter's power is noise)."""


def power_of_cumulative(t_ns: np.ndarray, energy_j: np.ndarray,
                        min_interval_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean power between readings of a cumulative energy trace at least ``min_interval_ns``
    apart (and never on one stamp), stamped at each interval's start: a step that holds until
    the next."""
    kept: list[int] = []
    for k in range(len(t_ns)):
        if not kept or t_ns[k] - t_ns[kept[-1]] >= max(min_interval_ns, 1):
            kept.append(k)
    t, e = t_ns[kept], energy_j[kept]
    if len(t) < 2:
        return t[:0], e[:0]
    return t[:-1], np.diff(e) / (np.diff(t) / NS_PER_S)


# windows ----------------------------------------------------------------------------------
def _int_ns(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExportError(f"{what} is not a time ({value!r})")
    return int(value)


def read_windows(path: Path) -> tuple[list[Window], list[Mark]]:
    """Windows and marks from a JSON or CSV file (see the module's doc)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ExportError(f"{path}: unreadable ({exc.strerror or exc})") from None
    windows: list[Window] = []
    marks: list[Mark] = []
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        for k, row in enumerate(rows):
            try:
                if "start_ns" in row:
                    a, b = int(row["start_ns"]), int(row["end_ns"])
                else:
                    a, b = round(float(row["start_s"]) * NS_PER_S), round(float(row["end_s"]) * NS_PER_S)
                windows.append(Window(row.get("name") or f"window {k}", a, b))
            except (KeyError, TypeError, ValueError):
                raise ExportError(f"{path}: row {k + 2} lacks name and start_ns,end_ns (or start_s,end_s)") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ExportError(f"{path}: not JSON ({exc})") from None
        items = data.get("windows") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ExportError(f"{path}: no list of windows (a list, or an object with \"windows\")")
        energies = data.get("energy_j", {}) if isinstance(data, dict) else {}
        for k, item in enumerate(items):
            if not isinstance(item, dict):
                raise ExportError(f"{path}: window {k} is not an object")
            name = str(item.get("name", f"window {k}"))
            a = _int_ns(item.get("start_ns"), f"{path}: window {k} start_ns")
            b = _int_ns(item.get("end_ns"), f"{path}: window {k} end_ns")
            args = {"attributed_j": energies[name]} if isinstance(energies, dict) and name in energies else {}
            windows.append(Window(name, a, b, args))
        for k, item in enumerate(data.get("marks", []) if isinstance(data, dict) else []):
            if not isinstance(item, dict):
                raise ExportError(f"{path}: mark {k} is not an object")
            marks.append(Mark(str(item.get("name", f"mark {k}")), _int_ns(item.get("t_ns"), f"{path}: mark {k} t_ns")))
    for w in windows:
        if w.end_ns < w.start_ns:
            raise ExportError(f"{path}: window {w.name!r} ends before it begins")
    return windows, marks


def bench_windows(saved: Saved) -> tuple[list[Window], list[Mark]]:
    """For a bench run's ``traces/X.npz``: its configuration's iterations from the run's
    iterations.csv (each iteration, prefill and decode; first tokens as marks). None found: []."""
    root = saved.path.resolve().parent.parent
    results, iterations = root / "results.csv", root / "iterations.csv"
    if saved.path.resolve().parent.name != "traces" or not results.exists() or not iterations.exists():
        return [], []
    key_fields = ("model", "quant", "batch_size", "regime")
    relative = f"traces/{saved.path.name}"
    with open(results, newline="") as f:
        keys = {tuple(r.get(k, "") for k in key_fields) for r in csv.DictReader(f) if r.get("traces") == relative}
    lo, hi = saved.time_range_ns()
    windows: list[Window] = []
    marks: list[Mark] = []
    with open(iterations, newline="") as f:
        for row in csv.DictReader(f):
            if tuple(row.get(k, "") for k in key_fields) not in keys:
                continue
            try:
                a, b = round(float(row["start_s"]) * NS_PER_S), round(float(row["end_s"]) * NS_PER_S)
                first = a + round(float(row["prefill_s"]) * NS_PER_S)
            except (KeyError, ValueError):
                continue
            if not (lo <= a and b <= hi):  # another run of the same configuration
                continue
            k = row.get("iteration", "?")
            windows += [Window(f"iteration {k}", a, b, {"tokens": row.get("tokens")}),
                        Window(f"prefill {k}", a, first), Window(f"decode {k}", first, b)]
            marks.append(Mark(f"first token {k}", first))
    return windows, marks


def with_energy(saved: Saved, windows: list[Window]) -> list[Window]:
    """Each window's headline energy (J) and method, as the meter measures it from the file."""
    from .meter import load_traces

    if not saved.gpus:
        return windows
    traces = load_traces(saved.path)
    for w in windows:
        m = traces.measure(w.start_ns / NS_PER_S, w.end_ns / NS_PER_S, w.name)
        w.args.update(energy_j=round(m.energy_j, 6) if math.isfinite(m.energy_j) else None, method=m.method)
    return windows


def lanes(windows: Sequence[Window]) -> list[int]:
    """A lane (thread) per window such that the windows of one lane nest or follow each other:
    a slice viewer nests the slices of one thread, and overlapping ones that do not nest would
    be drawn wrong. A window inside another (a prefill in its iteration) shares its lane."""
    order = sorted(range(len(windows)), key=lambda k: (windows[k].start_ns, -windows[k].end_ns))
    stacks: list[list[int]] = []  # per lane, the ends of the windows still open there
    out = [0] * len(windows)
    for k in order:
        w = windows[k]
        lane = len(stacks)
        for candidate, stack in enumerate(stacks):
            while stack and stack[-1] <= w.start_ns:
                stack.pop()
            if not stack or w.end_ns <= stack[-1]:
                lane = candidate
                break
        if lane == len(stacks):
            stacks.append([])
        stacks[lane].append(w.end_ns)
        out[k] = lane
    return out


# the trace-event JSON ---------------------------------------------------------------------
def clock_base(saved: Saved, offset_ns: int | None, base_ns: int | None) -> tuple[str, int, int]:
    """(clock, offset to add to monotonic ns, base ns subtracted before ts)."""
    if offset_ns is None:
        return "monotonic", 0, 0
    if base_ns is None:
        base_ns = (saved.time_range_ns()[0] + offset_ns) // KINETO_BASE_STEP_NS * KINETO_BASE_STEP_NS
    return "realtime", offset_ns, base_ns


def trace_events(saved: Saved, windows: Sequence[Window], marks: Sequence[Mark], *,
                 offset_ns: int | None = None, base_ns: int | None = None,
                 sources: Sequence[str] | None = None) -> dict[str, Any]:
    """The trace-event JSON object (``traceEvents`` sorted by ``ts``)."""
    clock, add_ns, base = clock_base(saved, offset_ns, base_ns)

    def ts(t_ns: int | np.integer) -> float:
        return round((int(t_ns) + add_ns - base) / 1000, 3)

    first = ts(saved.time_range_ns()[0])
    meta: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def name_process(pid: int, name: str, sort_index: int) -> None:
        meta.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": first, "args": {"name": name}})
        meta.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "ts": first,
                     "args": {"sort_index": sort_index}})

    def counter(pid: int, name: str, unit: str, t_ns: np.ndarray, values: np.ndarray) -> None:
        for t, v in zip(t_ns.tolist(), values.tolist()):
            if math.isfinite(v):
                events.append({"ph": "C", "name": name, "pid": pid, "tid": 0, "ts": ts(t), "args": {unit: round(v, 4)}})

    wanted = tuple(sources) if sources else (*POWER_SOURCES, "utilization")
    for k, gpu in enumerate(saved.gpus):
        index = int(gpu["index"])
        pid = PID_GPU + index
        name_process(pid, f"GPU {index} power ({gpu.get('name', '?')})", k)
        for source in wanted:
            if (index, source) not in saved.traces:
                continue
            t_ns, values = saved.traces[(index, source)]
            if source == "counter":
                counter(pid, f"GPU{index} counter", "W", *power_of_cumulative(t_ns, values, COUNTER_MIN_INTERVAL_NS))
            elif source == "utilization":
                counter(pid, f"GPU{index} busy", "%", t_ns, values)
            else:
                counter(pid, f"GPU{index} {source}", "W", t_ns, values)
    if saved.cpu:
        name_process(PID_CPU, "CPU power (RAPL)", len(saved.gpus))
        for zone, (t_ns, energy_j) in sorted(saved.cpu.items()):
            counter(PID_CPU, f"CPU {zone}", "W", *power_of_cumulative(t_ns, energy_j))
    if windows or marks:
        name_process(PID_WINDOWS, "ecomeasure windows", len(saved.gpus) + 1)
        lane_of = lanes(windows)
        for lane in sorted(set(lane_of)):
            meta.append({"ph": "M", "name": "thread_name", "pid": PID_WINDOWS, "tid": lane + 1, "ts": first,
                         "args": {"name": f"windows {lane + 1}"}})
        for w, lane in zip(windows, lane_of):
            events.append({"ph": "X", "name": w.name, "cat": "window", "pid": PID_WINDOWS, "tid": lane + 1,
                           "ts": ts(w.start_ns), "dur": round((w.end_ns - w.start_ns) / 1000, 3),
                           "args": {"start_ns": w.start_ns, "end_ns": w.end_ns, **w.args}})
        if marks:
            meta.append({"ph": "M", "name": "thread_name", "pid": PID_WINDOWS, "tid": 0, "ts": first,
                         "args": {"name": "marks"}})
        for m in marks:
            events.append({"ph": "i", "s": "t", "name": m.name, "cat": "mark", "pid": PID_WINDOWS, "tid": 0,
                           "ts": ts(m.t_ns), "args": {"t_ns": m.t_ns}})
    events.sort(key=lambda e: e["ts"])
    first_ts = min([first, *(e["ts"] for e in events[:1])])
    for m_event in meta:
        m_event["ts"] = first_ts
    return {
        "traceEvents": meta + events,
        "displayTimeUnit": "ms",
        "baseTimeNanoseconds": base,
        "otherData": {"ecomeasure": {
            "source": str(saved.path), "clock": clock,
            "ts": ("microseconds since baseTimeNanoseconds on the wall clock (CLOCK_REALTIME)" if clock == "realtime"
                   else "CLOCK_MONOTONIC microseconds"),
            "realtime_minus_monotonic_ns": offset_ns}},
    }


def beside(torch_trace_path: Path) -> tuple[dict[str, Any], int]:
    """A torch.profiler (Kineto) trace and its base: (its JSON object, baseTimeNanoseconds,
    0 where it has none: older Kineto wrote microseconds since the epoch)."""
    try:
        data = json.loads(torch_trace_path.read_text())
    except OSError as exc:
        raise ExportError(f"{torch_trace_path}: unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ExportError(f"{torch_trace_path}: not JSON ({exc})") from None
    if isinstance(data, list):
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ExportError(f"{torch_trace_path}: not a trace-event file (no traceEvents list)")
    return data, int(data.get("baseTimeNanoseconds", 0))


# the plot ---------------------------------------------------------------------------------
def plot(saved: Saved, windows: Sequence[Window], out: Path, *, sources: Sequence[str] | None = None,
         title: str | None = None) -> Path:
    """Power per source (one panel per GPU, and one for the CPU's zones) over seconds since the
    first reading, the windows shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = saved.time_range_ns()[0]
    panels: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]] = []
    wanted = tuple(sources) if sources else POWER_SOURCES
    for gpu in saved.gpus:
        index = int(gpu["index"])
        lines = []
        for source in wanted:
            if (index, source) not in saved.traces or source == "utilization":
                continue
            t_ns, values = saved.traces[(index, source)]
            if source == "counter":
                t_ns, values = power_of_cumulative(t_ns, values, COUNTER_MIN_INTERVAL_NS)
            lines.append((source, t_ns, values))
        panels.append((f"GPU {index} ({gpu.get('name', '?')})", lines))
    if saved.cpu:
        panels.append(("CPU (RAPL)", [(zone, *power_of_cumulative(t, e)) for zone, (t, e) in sorted(saved.cpu.items())]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.2 * len(panels)), sharex=True, squeeze=False)
    top = [w for w in windows if not any(o is not w and o.start_ns <= w.start_ns and w.end_ns <= o.end_ns
                                         for o in windows)] if len(windows) <= 400 else list(windows)
    for ax, (label, lines) in zip(axes[:, 0], panels):
        for k, w in enumerate(top):
            ax.axvspan((w.start_ns - t0) / NS_PER_S, (w.end_ns - t0) / NS_PER_S, color=f"C{k % 10}", alpha=0.12, lw=0)
        for source, t_ns, values in lines:
            ax.step((t_ns - t0) / NS_PER_S, values, where="post", lw=0.9, label=source)
        ax.set_ylabel("power (W)")
        ax.set_title(label, fontsize=10, loc="left")
        if lines:
            ax.legend(loc="upper right", fontsize=8)
    if len(top) <= 20:
        for k, w in enumerate(top):
            axes[0, 0].annotate(w.name, ((w.start_ns - t0) / NS_PER_S, 1.0), xycoords=("data", "axes fraction"),
                                fontsize=7, rotation=90, va="top", color=f"C{k % 10}")
    axes[-1, 0].set_xlabel("seconds since the first reading")
    fig.suptitle(title or saved.path.name, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return out


# the command ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ecomeasure.export", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in [("perfetto", "trace-event JSON for ui.perfetto.dev / chrome://tracing"),
                        ("plot", "PNG of the power per source, windows shaded")]:
        s = sub.add_parser(name, help=help_)
        s.add_argument("saved", type=Path, metavar="SAVED.npz", help="a file written by Meter.save")
        s.add_argument("-o", "--out", type=Path, required=True)
        s.add_argument("--windows", type=Path, default=None, metavar="FILE",
                       help="windows (and marks) to show: JSON or CSV (see the module's doc)")
        s.add_argument("--sources", default=None,
                       help="comma list of traces to draw (samples,instant,average,counter,utilization)")
        if name == "perfetto":
            s.add_argument("--beside", type=Path, default=None, metavar="TORCH.json",
                           help="a torch.profiler trace: use its base time and write both into one file")
            s.add_argument("--realtime-offset-ns", type=int, default=None,
                           help="CLOCK_REALTIME minus CLOCK_MONOTONIC (ns) where the file lacks it")
            s.add_argument("--no-energy", action="store_true", help="do not measure each window's energy")
        else:
            s.add_argument("--title", default=None)
    return p


def _check_writable(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ExportError(f"{out}: is a directory")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"{out}: cannot create its directory ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK):
        raise ExportError(f"{out}: directory not writable")


def run(args: argparse.Namespace) -> Path:
    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
    unknown = [s for s in sources or () if s not in (*POWER_SOURCES, "utilization")]
    if unknown:
        raise ExportError(f"unknown source {unknown[0]!r}; choose from {', '.join((*POWER_SOURCES, 'utilization'))}")
    out: Path = args.out  # argparse's type=Path
    _check_writable(out)
    saved = load_saved(args.saved)
    windows, marks = read_windows(args.windows) if args.windows else bench_windows(saved)
    if args.command == "plot":
        return plot(saved, windows, out, sources=sources, title=args.title)
    if not args.no_energy:
        windows = with_energy(saved, windows)
    offset = args.realtime_offset_ns if args.realtime_offset_ns is not None else saved.realtime_offset_ns
    torch_trace, base = None, None
    if args.beside is not None:
        if offset is None:
            raise ExportError(f"{args.saved}: no realtime_minus_monotonic_ns (saved by an older meter): "
                              "pass --realtime-offset-ns to set it beside a torch.profiler trace")
        torch_trace, base = beside(args.beside)
    trace = trace_events(saved, windows, marks, offset_ns=offset, base_ns=base, sources=sources)
    if torch_trace is not None:
        merged = dict(torch_trace)
        merged["traceEvents"] = list(torch_trace["traceEvents"]) + trace["traceEvents"]
        merged.setdefault("otherData", {})
        if isinstance(merged["otherData"], dict):
            merged["otherData"] = {**merged["otherData"], **trace["otherData"]}
        trace = merged
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(trace, f, separators=(",", ":"), allow_nan=False)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = run(args)
    except ExportError as exc:
        print(f"python -m ecomeasure.export: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"python -m ecomeasure.export: error: {args.out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
