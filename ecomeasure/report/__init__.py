"""The report: benchmark results -> the seed's tables, statistics, findings and plots.

``python -m ecomeasure.report results/`` (see ``__main__``), or from Python::

    from ecomeasure.report import build_report, load_results_dir, load_seed
    build_report([load_results_dir("results"), load_seed()], "report", method="both")

Needs scipy and matplotlib (``pip install 'ecomeasure[report]'``); they load on first use of
a name that needs them, so reading results works without them.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "SEED_LABEL": "load", "Config": "load", "Dataset": "load", "ReportInputError": "load",
    "load_results_dir": "load", "load_seed": "load",
    "Comparison": "stats", "MeanCI": "stats", "cohens_d": "stats", "compare_dataset": "stats",
    "mean_ci": "stats", "welch": "stats",
    "CLAIMS": "findings", "Finding": "findings", "check_dataset": "findings",
    "Report": "document", "build_report": "document",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
