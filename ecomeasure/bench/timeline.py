"""Where a bench process's time went, from the monotonic marks in its run file.

    python -m ecomeasure.bench.timeline RUN.json... [--launched-at SECONDS]

Per run file (one per process; one per rank under torchrun) one line: the imports (process
start to ``main``), the setup (devices, NVML, the ranks' group and plan), then over its
configurations the model loads, the preparing (prompt, graph capture), the measuring (warmup,
iterations, idle baseline), the writing, and what is left between them (weights lookup,
freeing memory), and the end; these add up to the process's life. ``--launched-at``: the
monotonic second of the launch (e.g. ``python3 -c 'import time; print(time.monotonic())'``
just before it), to show how long the process took to start. The second line gives each
configuration's measuring start (after the process start), to compare ranks: all marks are on
one host's monotonic clock. A run file that cannot be read (missing, not JSON, without the
marks) is one line on stderr; the others are still described, and the exit status is 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

PARTS = ("imports", "setup", "loads", "prepare", "measure", "write", "between", "end")


class TimelineError(ValueError):
    """The run file lacks the process's marks (written by an ecomeasure older than them)."""


def parts_s(run: dict[str, Any]) -> dict[str, float]:
    """Seconds of each of :data:`PARTS` in one process's run; they add up to its life (from
    the process start to ``finished``)."""
    marks = run.get("monotonic_s") or {}
    if not all(isinstance(marks.get(k), (int, float)) for k in ("process_started", "main", "ready", "finished")):
        raise TimelineError("no monotonic_s marks (process_started, main, ready, finished) in the run file")
    parts = dict.fromkeys(PARTS, 0.0)
    parts["imports"] = marks["main"] - marks["process_started"]
    parts["setup"] = marks["ready"] - marks["main"]
    last, last_load = marks["ready"], None
    for config in run.get("configurations", []):
        m = config.get("monotonic_s")
        if m is None:  # failed before it began (no weights, a failed load): its time is "between"
            continue
        load = tuple(m["load"])
        gap = m["begin"] - last
        if load != last_load and all(math.isfinite(t) for t in load):  # this configuration's model was loaded
            parts["loads"] += load[1] - load[0]
            gap -= load[1] - load[0]
            last_load = load
        parts["between"] += gap
        prepared = measuring_began(m)
        measured = m.get("measured", prepared)
        parts["prepare"] += prepared - m["begin"]
        parts["measure"] += measured - prepared
        parts["write"] += m["written"] - measured
        last = m["written"]
    parts["end"] = marks["finished"] - last
    return parts


def measuring_began(marks: dict[str, Any]) -> float:
    """When a configuration's meters started; for one that failed before (no later marks),
    when it was written: its time counts as preparing."""
    return marks.get("prepared", marks["written"])


def describe(path: Path, launched_at_s: float | None = None) -> list[str]:
    """The two lines the command prints for one run file."""
    run = json.loads(path.read_text())
    parts = parts_s(run)
    marks = run["monotonic_s"]
    life = marks["finished"] - marks["process_started"]
    head = f"{path.parent.name}/{path.name}"
    started = (f"process started {marks['process_started'] - launched_at_s:.1f} s after the launch; "
               if launched_at_s is not None else "")
    lines = [f"timeline {head}: {started}" + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
             + f" = {life:.1f} s ({len(run.get('configurations', []))} configurations)"]
    measuring = [f"{c['model']} {c['quant']} bs={c['batch_size']} {c['regime']} "
                 f"{measuring_began(c['monotonic_s']) - marks['process_started']:.1f}"
                 for c in run.get("configurations", []) if "monotonic_s" in c]
    lines.append(f"timeline {head}: measuring began (s after the process start): " + "; ".join(measuring))
    return lines


def main(argv: list[str] | None = None) -> int:
    """The command: two lines per run file; returns 2 if any could not be read, else 0."""
    parser = argparse.ArgumentParser(prog="python -m ecomeasure.bench.timeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_files", nargs="+", type=Path, metavar="RUN.json")
    parser.add_argument("--launched-at", type=float, default=None, metavar="SECONDS",
                        help="the monotonic second of the launch")
    args = parser.parse_args(argv)
    status = 0
    for path in args.run_files:
        try:
            print("\n".join(describe(path, args.launched_at)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"{parser.prog}: error: {path}: unreadable ({exc})", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
