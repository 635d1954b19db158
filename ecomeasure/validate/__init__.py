"""``python -m ecomeasure.validate``: how accurate each energy method is on this GPU, per
window length, against a truth that no method under test provides.

Synthetic workloads (steady load, a step, square waves, isolated bursts of 0.1-10 s) run on
the GPU; each window's energy by every method (the native meter's headline and each of its
NVML sources, the seed's 10 Hz reference, the counter read at the edges) is set against a
truth from the energy counter over long runs (``truth.py``). The same logic runs on the fake
NVML with a ``ScriptedWorkload``, where the exact energy is known (tests).

Modules: ``plan`` (what runs), ``workloads`` / ``gpu`` (running it), ``methods`` (the methods
under test), ``truth``, ``run`` (playing and evaluating), ``analysis`` (errors and goals),
``tables`` / ``plots`` / ``report`` / ``output`` (the files).
"""
from .analysis import HEADLINE_GOALS, GoalCheck, SummaryRow, check_goals, summarize
from .gpu import MatmulWorkload, open_backend
from .methods import METHODS, EdgeCounter, window_energies
from .output import write_outputs
from .plan import Item, Op, PlanSettings, Schedule, build_plan, default_settings, schedule
from .run import (ItemResult, Recording, StepTrace, Validation, WindowResult, evaluate, execute,
                  run_validation)
from .truth import DifferentialTruth, counter_energy_j, differential_truth
from .workloads import Burst, ScheduledMark, ScriptedWorkload, Workload

__all__ = [
    "HEADLINE_GOALS", "METHODS", "MatmulWorkload", "open_backend", "Burst", "DifferentialTruth", "EdgeCounter", "GoalCheck", "Item", "ItemResult",
    "Op", "PlanSettings", "Recording", "Schedule", "ScheduledMark", "ScriptedWorkload", "StepTrace",
    "SummaryRow", "Validation", "WindowResult", "Workload", "build_plan", "check_goals", "counter_energy_j",
    "default_settings", "differential_truth", "evaluate", "execute", "run_validation", "schedule", "summarize",
    "window_energies", "write_outputs",
]
