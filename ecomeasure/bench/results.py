"""The results directory (``docs/results-format.md``, ``ecomeasure.schema``): appending to it.

Rows are appended as each configuration completes and flushed to disk at once, so an
interrupted sweep keeps everything finished before it; a configuration's files are
written together, with Ctrl-C held off meanwhile, so none is ever half written.

Several processes may share one directory (ranks under torchrun, or two sweeps started by
hand): every read and append of a CSV file holds ``.ecomeasure.lock`` there (an OS file lock,
``filelock``), so a header is written once and rows never interleave. A last row left without
its newline by a crash is moved aside to ``<file>.torn`` before the next append.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..schema import ITERATION_COLUMNS, ITERATIONS_CSV, RESULT_COLUMNS, RESULTS_CSV, TRACES_DIR

LOCK_FILE = ".ecomeasure.lock"
TORN_SUFFIX = ".torn"


def format_value(value: Any) -> str:
    """A CSV cell: empty for None and NaN; floats in full (shortest exact form), so that
    times on the monotonic clock keep their nanoseconds and every figure can be recomputed."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(float(value))  # float(): numpy scalars too
    return str(value)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler, ``kill``), handled like Ctrl-C: finished rows are kept."""


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler that interrupts the main thread the way Ctrl-C does."""
    raise Terminated


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Holds off Ctrl-C (SIGINT) and SIGTERM for the duration, then delivers them as
    KeyboardInterrupt (Terminated for SIGTERM): a group of files is written completely or
    not at all."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in _DEFERRED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if signal.SIGTERM in received:
            raise Terminated
        if received:
            raise KeyboardInterrupt


class HeaderMismatchError(RuntimeError):
    """An existing CSV file has other columns than this version writes."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-") or "model"


class ResultsDir:
    """The files under ``--out``: results.csv, iterations.csv, traces/ and run-*.json."""

    def __init__(self, root: str | os.PathLike[str], warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.results_csv = self.root / RESULTS_CSV
        self.iterations_csv = self.root / ITERATIONS_CSV
        self.traces_dir = self.root / TRACES_DIR
        self.warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Holds the directory's lock: no other process reads or appends its CSV files meanwhile."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / LOCK_FILE):
            yield

    # reading ---------------------------------------------------------------------------
    def rows(self) -> list[dict[str, str]]:
        """Every row of results.csv (empty if there is none)."""
        with self.locked():
            return _read(self.results_csv)

    def iteration_rows(self) -> list[dict[str, str]]:
        with self.locked():
            return _read(self.iterations_csv)

    def check_headers(self) -> None:
        """Raises HeaderMismatchError if an existing file's columns differ from this version's."""
        for path, columns in ((self.results_csv, RESULT_COLUMNS), (self.iterations_csv, ITERATION_COLUMNS)):
            with self.locked():
                header = _header(path)
            if header is not None and tuple(header) != columns:
                raise HeaderMismatchError(
                    f"{path} has other columns than this version of ecomeasure writes; "
                    "choose another --out directory")

    def find(self, *, status: str = "ok", **keys: Any) -> list[dict[str, str]]:
        """Rows whose columns equal ``keys`` (compared as CSV text) and ``status``."""
        wanted = {k: format_value(v) for k, v in keys.items()}
        return [r for r in self.rows() if r.get("status") == status
                and all(r.get(k, "") == v for k, v in wanted.items())]

    # writing ---------------------------------------------------------------------------
    def trace_paths(self, model: str, quant: str, batch_size: int, regime: str) -> tuple[Path, Path]:
        """Free paths for a configuration's native traces (.npz) and reference samples (.csv):
        ``traces/<model>_<quant>_bs<N>_<regime>``, with ``-2``, ``-3``... if a re-run would
        overwrite."""
        stem = f"{_safe(model)}_{_safe(quant)}_bs{batch_size}_{_safe(regime)}"
        candidate, k = stem, 1
        while (self.traces_dir / f"{candidate}.npz").exists() or \
                reference_csv_of(self.traces_dir / f"{candidate}.npz").exists():
            k += 1
            candidate = f"{stem}-{k}"
        npz = self.traces_dir / f"{candidate}.npz"
        return npz, reference_csv_of(npz)

    def append_result(self, row: Mapping[str, Any]) -> None:
        self._append(self.results_csv, RESULT_COLUMNS, [row])

    def append_iterations(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._append(self.iterations_csv, ITERATION_COLUMNS, rows)

    def _append(self, path: Path, columns: tuple[str, ...], rows: Iterable[Mapping[str, Any]]) -> None:
        # Under the lock, the header check, the repair and the rows are one step for every
        # process sharing the directory.
        with self.locked():
            torn = _set_aside_torn_row(path)
            if torn is not None:
                self.warn(f"{path} ended in a row without its newline (a write cut short); "
                          f"moved it to {torn} and appending after the last whole row")
            _append(path, columns, rows)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def write_json(self, path: Path, data: Any) -> None:
        """Writes ``data`` as JSON through a temporary file (never half written)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)


def reference_csv_of(npz: Path) -> Path:
    """The reference samples saved beside a configuration's native traces."""
    return npz.with_name(f"{npz.stem}_reference.csv")


def _header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _set_aside_torn_row(path: Path) -> Path | None:
    """If ``path`` does not end in a newline, appends its unfinished last line to
    ``<path>.torn``, cuts it off ``path`` and returns the ``.torn`` path; else None."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return None
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1  # 0: even the header is torn; it is written again
        torn = path.with_name(path.name + TORN_SUFFIX)
        with open(torn, "ab") as aside:
            aside.write(data[keep:] + b"\n")
            aside.flush()
            os.fsync(aside.fileno())
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return torn


def _append(path: Path, columns: tuple[str, ...], rows: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="raise")
        if new:
            writer.writeheader()
        for row in rows:
            unknown = set(row) - set(columns)
            if unknown:
                raise ValueError(f"not columns of {path.name}: {sorted(unknown)}")
            writer.writerow({c: format_value(row.get(c)) for c in columns})
        f.flush()
        os.fsync(f.fileno())
