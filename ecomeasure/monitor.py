"""``python -m ecomeasure.monitor [options] -- CMD [ARGS...]``: the energy of a whole command.

Runs CMD, measures the GPUs this process was given (``Meter()``'s default choice) and the
CPU's RAPL zones where they can be read, from the moment CMD starts to the moment it ends,
and prints a short summary on stderr: energy in J and Wh, mean and peak power, duration and
method, per GPU and per CPU zone. ``--out DIR`` also writes the traces (``traces.npz``, read
back with ``ecomeasure.load_traces``), a timeline (``timeline.csv``: power per GPU and CPU
zone over each ``--interval``) and the summary (``summary.json``). SIGINT, SIGTERM, SIGHUP,
SIGUSR1 and SIGUSR2 are passed on to CMD; the monitor exits with CMD's exit code (128 + the
signal's number where a signal ended it), after writing what it measured. Bad input (no
command, one that cannot start, an unwritable --out, no GPU without --allow-no-gpu) is one
line on stderr and exit 2. One monitor per node (see docs/monitor.md for torchrun and srun).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import errors
from .units import NAN, NS_PER_S

PROG = "python -m ecomeasure.monitor"
EXIT_BAD_INPUT = 2
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
FINAL_AFTER_S = 60.0
"""How old an interval must be before it is measured during the run: the meter's calibration
reach, after which an interval's figure no longer changes. Measuring as the run goes keeps a
command longer than the meter's trace memory (4 h) whole."""
_WH = 3600.0


class BadInput(Exception):
    """What the user asked for cannot be done: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(message)


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, not {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[1],
                usage=f"{PROG} [--out DIR] [--interval S] [--no-cpu] [--json] [--allow-no-gpu] -- CMD [ARGS...]")
    p.add_argument("--out", metavar="DIR", help="write traces.npz, timeline.csv and summary.json here; {host} in "
                                 "it becomes this machine's name (one folder per node)")
    p.add_argument("--interval", metavar="S", type=_seconds, default=1.0, help="the timeline's step in seconds (default 1)")
    p.add_argument("--no-cpu", action="store_true", help="do not read the CPU's RAPL energy")
    p.add_argument("--json", action="store_true", help="the summary as JSON on stderr instead of text")
    p.add_argument("--allow-no-gpu", action="store_true",
                   help="run and measure the CPU alone where no GPU can be measured")
    return p


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The monitor's options and the command: everything after the first ``--``, or from the
    first argument that is not an option."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        args = parser().parse_args(argv[:cut])
        command = argv[cut + 1:]
    else:
        p = parser()
        p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
        args = p.parse_args(argv)
        command = args.command
    if not command:
        raise BadInput("no command to run: " + f"{PROG} [options] -- CMD [ARGS...]")
    return args, command


def prepare_out(out: str | None) -> Path | None:
    """The output folder, made and checked writable before anything runs."""
    if out is None:
        return None
    path = Path(out.replace("{host}", socket.gethostname()))
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".monitor-probe-"):
            pass
    except OSError as error:
        raise BadInput(f"cannot write to --out {out}: {error.strerror or error}") from None
    return path


def check_command(command: list[str]) -> None:
    """Refuses a command that cannot start before anything is measured."""
    program = command[0]
    if os.sep in program:
        if not os.path.isfile(program):
            raise BadInput(f"cannot run {program}: no such file")
        if not os.access(program, os.X_OK):
            raise BadInput(f"cannot run {program}: not executable")
    elif shutil.which(program) is None:
        raise BadInput(f"cannot run {program}: not found on PATH")


@dataclass
class Sources:
    """What the monitor reads: a Meter (GPUs, with the CPU where readable) or the CPU alone."""
    meter: Any = None
    cpu: Any = None
    gpu_problem: str | None = None
    cpu_problems: tuple[str, ...] = ()

    def start(self) -> None:
        if self.meter is not None:
            self.meter.start()
        elif self.cpu is not None:
            self.cpu.start()

    def stop(self) -> None:
        if self.meter is not None:
            self.meter.stop()
        elif self.cpu is not None:
            self.cpu.stop()

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
        elif self.cpu is not None:
            self.cpu.stop()

    def measure(self, start_ns: int, end_ns: int) -> tuple[dict[int, tuple[float, str, bool]], dict[str, float], bool]:
        """Per GPU (energy J, method, complete), per CPU zone energy J, and the CPU's completeness."""
        gpus: dict[int, tuple[float, str, bool]] = {}
        cpu_part = None
        if self.meter is not None:
            m = self.meter.measure_ns(start_ns, end_ns)
            gpus = {i: (d.energy_j, d.method, d.complete) for i, d in m.devices.items()}
            cpu_part = m.cpu
        elif self.cpu is not None:
            cpu_part = self.cpu.energy_ns(start_ns, end_ns)
        if cpu_part is None:
            return gpus, {}, True
        return gpus, dict(cpu_part.zones), cpu_part.complete


def open_sources(args: argparse.Namespace) -> Sources:
    """The meter for this run, or BadInput where there is no GPU and none was allowed."""
    from . import cpu as cpu_module
    from .meter import Meter

    sampler = None
    problems: tuple[str, ...] = ()
    if not args.no_cpu:
        sampler = cpu_module.CpuSampler(interval_s=min(0.05, args.interval), warn=False)
        problems = sampler.problems
        if not sampler.available:
            sampler = None
    gpu_problem = None
    meter: Any
    try:
        meter = Meter(start=False, cpu=sampler if sampler is not None else False)
        if not meter.devices:
            meter.close()
            meter, gpu_problem = None, "the meter found no GPU to read"
    except Exception as error:  # NVMLUnavailableError, or a device selection that fails
        meter, gpu_problem = None, errors.summarize(error)
    if meter is None and not args.allow_no_gpu:
        raise BadInput(f"no GPU to measure ({gpu_problem}); --allow-no-gpu measures the CPU alone")
    return Sources(meter, sampler, gpu_problem, problems)


@dataclass
class Interval:
    start_ns: int
    end_ns: int
    gpus: dict[int, tuple[float, str, bool]]
    cpu_zones: dict[str, float]
    cpu_complete: bool

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass
class Timeline:
    """The run cut into --interval steps from the command's start, each measured once."""
    sources: Sources
    start_ns: int
    interval_ns: int
    rows: list[Interval] = field(default_factory=list)
    measured_while_running: int = 0
    """How many steps were measured before the command ended."""

    def _next_edges(self, end_ns: int) -> tuple[int, int] | None:
        a = self.start_ns + len(self.rows) * self.interval_ns
        if a >= end_ns:
            return None
        return a, min(a + self.interval_ns, end_ns)

    def measure_until(self, end_ns: int, *, whole_only: bool) -> None:
        """Measures every step that ends by ``end_ns`` (and the partial last one unless
        ``whole_only``)."""
        while (edges := self._next_edges(end_ns)) is not None:
            a, b = edges
            if whole_only and b - a < self.interval_ns:
                return
            self.rows.append(Interval(a, b, *self.sources.measure(a, b)))


class _Forwarder:
    """Passes signals on to the child. A Ctrl-C typed at the terminal already reaches every
    process of the foreground group, the child included: it is not sent a second time."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.received: list[str] = []
        self._previous: dict[int, Any] = {}
        try:
            self._tty: int | None = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
        except OSError:
            self._tty = None

    def _from_terminal(self, signum: int) -> bool:
        if signum not in (signal.SIGINT, signal.SIGQUIT) or self._tty is None:
            return False
        try:
            return os.tcgetpgrp(self._tty) == os.getpgrp()
        except OSError:
            return False

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signal.Signals(signum).name)
        child = self.child
        if child is None or child.returncode is not None or self._from_terminal(signum):
            return
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> _Forwarder:
        for s in FORWARDED_SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self._tty is not None:
            os.close(self._tty)


@dataclass
class Run:
    """A finished command and what was measured over it."""
    command: list[str]
    returncode: int
    start_ns: int
    end_ns: int
    start_unix_s: float
    timeline: Timeline
    signals: list[str]

    @property
    def exit_code(self) -> int:
        return self.returncode if self.returncode >= 0 else 128 - self.returncode

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S


def run_command(command: list[str], sources: Sources, interval_s: float,
                final_after_s: float = FINAL_AFTER_S) -> Run:
    """Runs ``command`` with the sources reading, and measures it step by step."""
    sources.start()
    with _Forwarder() as forwarder:
        start_unix_s = time.time()
        start_ns = time.monotonic_ns()
        try:
            child = subprocess.Popen(command)
        except OSError as error:
            sources.close()
            raise BadInput(f"cannot run {command[0]}: {error.strerror or error}") from None
        forwarder.child = child
        ended = threading.Event()
        end_ns = [0]

        def wait() -> None:
            child.wait()
            end_ns[0] = time.monotonic_ns()  # stamped by the thread that sees the exit first
            ended.set()

        threading.Thread(target=wait, name="ecomeasure-monitor-wait", daemon=True).start()
        timeline = Timeline(sources, start_ns, int(round(interval_s * NS_PER_S)))
        while not ended.wait(min(interval_s, 1.0)):
            timeline.measure_until(time.monotonic_ns() - int(final_after_s * NS_PER_S), whole_only=True)
        timeline.measured_while_running = len(timeline.rows)
        # Measure the end while the sampler still runs, so that it holds readings past it.
        timeline.measure_until(end_ns[0], whole_only=False)
        sources.stop()
        returncode = child.returncode
    return Run(command, returncode, start_ns, end_ns[0], start_unix_s, timeline, forwarder.received)


def _energy(energy_j: float, seconds: float, powers_w: list[float]) -> dict[str, float]:
    return {"energy_j": energy_j, "energy_wh": energy_j / _WH,
            "mean_power_w": energy_j / seconds if seconds > 0 else NAN,
            "peak_power_w": max(powers_w) if powers_w else NAN}


def _peak_rows(run: Run) -> list[Interval]:
    # A last step of a few ms says little about peak power: peaks come from steps of at least
    # half the interval, unless the command was shorter than that.
    rows = run.timeline.rows
    long = [r for r in rows if r.end_ns - r.start_ns >= run.timeline.interval_ns / 2]
    return long or rows


def summarize(run: Run, sources: Sources, out: Path | None) -> dict[str, Any]:
    """The summary: the command, its exit, its energy per GPU and CPU zone."""
    rows, peak_rows = run.timeline.rows, _peak_rows(run)
    summary: dict[str, Any] = {
        "command": run.command, "exit_code": run.exit_code,
        "signal": signal.Signals(-run.returncode).name if run.returncode < 0 else None,
        "signals_received": run.signals, "host": socket.gethostname(),
        "start_utc": datetime.datetime.fromtimestamp(run.start_unix_s, datetime.timezone.utc).isoformat(),
        "start_monotonic_ns": run.start_ns, "end_monotonic_ns": run.end_ns, "duration_s": run.duration_s,
        "interval_s": run.timeline.interval_ns / NS_PER_S, "gpu": None, "gpu_problem": sources.gpu_problem,
        "cpu": None, "cpu_problems": list(sources.cpu_problems),
    }
    meter = sources.meter
    if meter is not None:
        devices = []
        for d in meter.devices:
            energy_j = float(sum(r.gpus[d.index][0] for r in rows))
            methods = sorted({r.gpus[d.index][1] for r in rows})
            devices.append({"index": d.index, "name": d.name, "uuid": d.uuid,
                            **_energy(energy_j, run.duration_s,
                                      [r.gpus[d.index][0] / r.duration_s for r in peak_rows if r.duration_s > 0]),
                            "method": methods[0] if len(methods) == 1 else "mixed: " + ", ".join(methods),
                            "complete": all(r.gpus[d.index][2] for r in rows)})
        total_j = float(sum(dev["energy_j"] for dev in devices))
        methods = sorted({dev["method"] for dev in devices})
        summary["gpu"] = {**_energy(total_j, run.duration_s,
                                    [sum(g[0] for g in r.gpus.values()) / r.duration_s
                                     for r in peak_rows if r.duration_s > 0]),
                          "method": methods[0] if len(methods) == 1 else "mixed",
                          "complete": all(dev["complete"] for dev in devices), "devices": devices}
    labels = list(rows[0].cpu_zones) if rows else []
    if labels:
        zones: list[dict[str, Any]] = []
        for label in labels:
            energy_j = float(sum(r.cpu_zones[label] for r in rows))
            zones.append({"label": label, **_energy(energy_j, run.duration_s,
                                                    [r.cpu_zones[label] / r.duration_s
                                                     for r in peak_rows if r.duration_s > 0])})
        total_j = float(sum(z["energy_j"] for z in zones))
        summary["cpu"] = {**_energy(total_j, run.duration_s,
                                    [sum(r.cpu_zones.values()) / r.duration_s for r in peak_rows if r.duration_s > 0]),
                          "complete": all(r.cpu_complete for r in rows), "zones": zones}
    if out is not None:
        summary["files"] = {"summary": "summary.json", "timeline": "timeline.csv", "traces": "traces.npz"}
    return summary


def write_timeline(path: Path, run: Run) -> None:
    rows = run.timeline.rows
    gpus = sorted(rows[0].gpus) if rows else []
    zones = list(rows[0].cpu_zones) if rows else []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start_s", "end_s", *(f"gpu{i}_power_w" for i in gpus),
                         *(f"cpu_{z}_power_w" for z in zones)])
        for r in rows:
            seconds = r.duration_s
            # Times to the nanosecond they were cut at: rounded to microseconds, a short step's
            # length times its power would miss the summary's energy by up to a watt-microsecond.
            writer.writerow([f"{(r.start_ns - run.start_ns) / NS_PER_S:.9f}", f"{(r.end_ns - run.start_ns) / NS_PER_S:.9f}",
                             *(repr(r.gpus[i][0] / seconds) for i in gpus),
                             *(repr(r.cpu_zones[z] / seconds) for z in zones)])


def write_traces(path: Path, sources: Sources) -> None:
    if sources.meter is not None:
        sources.meter.save(path)
        return
    # The CPU alone, in the layout Meter.save writes, so that load_traces reads it too.
    arrays: dict[str, np.ndarray] = sources.cpu.snapshot().arrays() if sources.cpu is not None else {}
    report = {"driver_version": None, "devices": [], "capabilities": {}, "settings": {},
              "calibration_min_span_ns": 0,
              **({"cpu": sources.cpu.report()} if sources.cpu is not None else {})}
    arrays["report"] = np.array(json.dumps(report))
    with open(path, "wb") as f:
        np.savez_compressed(f, allow_pickle=False, **arrays)


def _line(label: str, part: dict[str, Any]) -> str:
    return (f"  {label}: {part['energy_j']:.1f} J ({part['energy_wh']:.4f} Wh)  mean {part['mean_power_w']:.1f} W"
            f"  peak {part['peak_power_w']:.1f} W")


def format_summary(summary: dict[str, Any], out: Path | None) -> str:
    command = shlex.join(summary["command"])
    if len(command) > 80:
        command = command[:77] + "..."
    ended = f"was ended by {summary['signal']}" if summary["signal"] else f"exited with {summary['exit_code']}"
    lines = [f"ecomeasure.monitor: `{command}` {ended} after {summary['duration_s']:.3f} s"]
    gpu = summary["gpu"]
    if gpu is None:
        lines.append(f"  GPU: not measured ({summary['gpu_problem']})")
    else:
        for d in gpu["devices"]:
            incomplete = "" if d["complete"] else ", incomplete"
            lines.append(_line(f"GPU {d['index']} {d['name']}", d) + f"  [{d['method']}{incomplete}]")
        if len(gpu["devices"]) > 1:
            lines.append(_line(f"GPUs ({len(gpu['devices'])})", gpu))
    cpu = summary["cpu"]
    if cpu is not None:
        for z in cpu["zones"]:
            lines.append(_line(f"CPU {z['label']}", z))
        if len(cpu["zones"]) > 1:
            lines.append(_line("CPU", cpu) + ("" if cpu["complete"] else "  [incomplete]"))
    for problem in summary["cpu_problems"]:
        lines.append(f"  CPU: not measured: {problem}" if cpu is None else f"  CPU: {problem}")
    if out is not None:
        lines.append(f"  written: {out}/ (summary.json, timeline.csv, traces.npz)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, command = parse_args(sys.argv[1:] if argv is None else argv)
        out = prepare_out(args.out)
        check_command(command)
        sources = open_sources(args)
        run = run_command(command, sources, args.interval)
    except BadInput as error:
        print(f"ecomeasure.monitor: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = summarize(run, sources, out)
    try:
        if out is not None:
            write_traces(out / "traces.npz", sources)
            write_timeline(out / "timeline.csv", run)
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as error:
        print(f"ecomeasure.monitor: cannot write to {out}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        sources.close()
    print(json.dumps(summary) if args.json else format_summary(summary, out), file=sys.stderr)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
