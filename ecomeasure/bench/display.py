"""What the user sees: log lines and a progress bar on stderr, the summary table on stdout."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .. import fmt
from ..schema import parse_float


def _num(cell: str | None, digits: int = 0) -> str:
    return fmt.grouped(parse_float(cell), digits)


def _pct(cell: str | None) -> str:
    return fmt.signed_pct(parse_float(cell))


def _pct_of(cell: str | None) -> str:
    """A share (0..1) as a percentage."""
    return fmt.share_pct(parse_float(cell))


class Display:
    """Log lines and progress on stderr (so stdout holds only the summary)."""

    def __init__(self, quiet: bool = False) -> None:
        self.err = Console(stderr=True, quiet=quiet)
        # Piped or captured output is not a terminal: rich would squeeze the table into 80.
        self.out = Console()
        if not self.out.is_terminal:
            self.out = Console(width=200)
        self._progress: Progress | None = None

    def log(self, message: str) -> None:
        self.err.print(message, highlight=False, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.err.print("[yellow]warning:[/yellow] " + message.replace("[", r"\["), highlight=False, soft_wrap=True)

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.err, transient=True) as progress:
            self._progress = progress
            try:
                yield progress
            finally:
                self._progress = None

    def summary(self, rows: Sequence[Mapping[str, str]], title: str) -> None:
        """The seed's table, with both methods: one line per configuration."""
        table = Table(title=title, title_justify="left")
        for name, justify in [("model", "left"), ("quant", "left"), ("bs", "right"), ("regime", "left"),
                              ("tok/s", "right"), ("tok/s CV %", "right"), ("of floor", "right"),
                              ("GPU busy", "right"), ("J/1k native", "right"),
                              ("J/1k net", "right"), ("J/1k ref", "right"), ("ref vs native", "right"),
                              ("vs fp16", "right"), ("method", "left")]:
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in rows:
            if r.get("status") != "ok":
                status = "[red]failed[/red]" if r.get("status") == "failed" else "[yellow]unavailable[/yellow]"
                table.add_row(r["model"], r["quant"], r["batch_size"], r.get("regime", ""), status,
                              *[""] * 8, Text((r.get("error") or "")[:60]))
                continue
            table.add_row(r["model"], r["quant"], r["batch_size"], r.get("regime", ""),
                          _num(r["throughput_tok_s_mean"], 2), _num(r["throughput_cv_pct"], 1),
                          _pct_of(r.get("bandwidth_floor_fraction")), _pct_of(r.get("gpu_busy_share_mean")),
                          _num(r["energy_j_per_1k_mean"]),
                          _num(r["energy_net_j_per_1k_mean"]), _num(r["ref_energy_j_per_1k_mean"]),
                          _pct(r["native_vs_ref_pct"]), _pct(r["delta_vs_fp16_pct"]), r.get("method") or "")
        self.out.print(table)
