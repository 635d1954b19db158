"""``python -m ecomeasure.validate``: how accurate each energy method is on this GPU, per
window length, against a truth that no method under test provides.

Synthetic workloads (steady load, a step, square waves, isolated bursts of 0.1-10 s) run on
the GPU; each window's energy by every method (the native meter's headline and each of its
NVML sources, the seed's 10 Hz reference, the counter read at the edges) is set against a
truth from the energy counter over long runs (``truth.py``). The same logic runs on the fake
NVML with a ``ScriptedWorkload``, where the exact energy is known (tests).

Data flow one way, each module importing only those before it: ``plan`` (what runs) ->
``workloads`` (the scripted fake, the GPU's matmuls) -> ``run`` (playing it: a ``Recording``)
-> ``methods`` / ``truth`` -> ``analysis`` (windows, errors, goals: a ``Validation``) ->
``report`` / ``plots`` (the files) -> ``saved`` (the folder, written and read back) ->
``__main__``.
"""
from .analysis import (HEADLINE_GOALS, GoalCheck, ItemResult, StepTrace, SummaryRow, Validation, WindowResult,
                       analyse, check_goals, evaluate, run_validation, summarize)
from .methods import METHODS, EdgeCounter, window_energies
from .plan import Item, Op, PlanSettings, Schedule, build_plan, default_settings, schedule
from .run import Recording, execute, record
from .saved import RAW_FILES, load, write_outputs
from .truth import DifferentialTruth, counter_energy_j, differential_truth
from .workloads import (Burst, MatmulWorkload, ScheduledMark, ScriptedWorkload, SetupError, Workload,
                        open_backend)

__all__ = [
    "HEADLINE_GOALS", "METHODS", "RAW_FILES", "Burst", "DifferentialTruth", "EdgeCounter", "GoalCheck", "Item",
    "ItemResult", "MatmulWorkload", "Op", "PlanSettings", "Recording", "Schedule", "ScheduledMark",
    "ScriptedWorkload", "SetupError", "StepTrace", "SummaryRow", "Validation", "WindowResult", "Workload",
    "analyse", "build_plan", "check_goals", "counter_energy_j", "default_settings", "differential_truth",
    "evaluate", "execute", "load", "open_backend", "record", "run_validation", "schedule", "summarize",
    "window_energies", "write_outputs",
]
