"""The truth: each burst's energy from the energy counter over long runs only.

For one item, run A is R repetitions of [burst][idle gap] and run B, right after it, is
idle for as long. Both runs begin and end in idle, far from any power change, and last
seconds to tens of seconds. With E_A, E_B the counter's energy over each run and T_A, T_B
their durations:

    P_idle  = E_B / T_B
    excess  = E_A - P_idle * T_A              (what the bursts added over idle)
    P_burst = P_idle + excess / sum(d_i)      (d_i: each burst's duration, from its marks)
    truth_i = P_burst * d_i

No window shorter than a run enters the truth. E_A and E_B need the cumulative counter at
the three run boundaries (A's start, A's end = B's start, B's end). The meter reads the
counter only every ``counter_interval_s`` (1 s by default), so the two readings that bracket a
boundary may straddle a change of power, and interpolating between them would leak a burst's
energy into the boundary. Every boundary has idle on at least one side (before A starts: the
stretch before it; A's end = B's start: B; B's end: B), and at steady idle power the
cumulative energy is a straight line in time. So each boundary's value is a least-squares
line through the counter readings on its idle side only, within ``FIT_REACH_S`` of it (and
clear of any burst), evaluated at the boundary (``idle_side_counter_j``); with fewer than two
such readings it falls back to interpolation, and ``DifferentialTruth.boundaries`` says so.

What bounds it:

- Counter staleness at the run boundaries. A counter value is up to one update period U
  (~0.1 s on Hopper) old; at a boundary in idle that misplaces the boundary by up to U at
  idle power. The estimator's coefficients on the three boundaries sum to zero, so a common
  delay cancels and the excess is off by at most (1 + T_A / T_B) * U * P_idle
  (``DifferentialTruth.counter_bound``).
- Power above idle after a burst ends (a "tail": clocks and fans winding down) is part of the
  excess, so it is counted in the truth but lies outside the window (``tail_fraction``).
- Idle in A's gaps differing from idle in B (history-dependent idle power), likewise
  (``idle_mismatch_fraction``). Both are estimated from the driver samples, reported, and
  not corrected for, so the reader can judge.
- Bursts are assumed to draw the same power per second of work, whatever their length within
  one item; the counter's own gain error (the GPU's integrator) is not visible without an
  external power meter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..units import NAN, NS_PER_S

FIT_REACH_S = 3.0
"""How far from a run boundary its idle-side counter readings are taken."""
TAIL_GUARD_S = 0.3
"""Readings this soon after a burst's end are not idle (the GPU's tail, the counter's lag)."""
START_GUARD_S = 0.02
"""Readings this soon before a burst's start are not used either (mark jitter)."""


def idle_side_counter_j(t_ns: np.ndarray, cumulative_j: np.ndarray, at_ns: int, side: str,
                        limit_ns: int | None = None, reach_s: float = FIT_REACH_S) -> tuple[float, str]:
    """The cumulative counter at ``at_ns`` from the readings on one side of it only:
    ``side`` ``before`` uses readings in [max(at - reach, limit), at], ``after`` those in
    [at, min(at + reach, limit)]; a least-squares line through them, evaluated at ``at_ns``
    (exact where the power is steady on that side). Returns (value, how): ``fit N`` (N
    readings), or ``interpolated`` (fewer than two readings: plain interpolation between the
    readings around ``at_ns``), or ``none`` (no readings around it: NaN)."""
    t = np.asarray(t_ns, dtype=np.int64)
    e = np.asarray(cumulative_j, dtype=np.float64)
    reach_ns = round(reach_s * NS_PER_S)
    if side == "before":
        lo, hi = at_ns - reach_ns, at_ns
        if limit_ns is not None:
            lo = max(lo, limit_ns)
    elif side == "after":
        lo, hi = at_ns, at_ns + reach_ns
        if limit_ns is not None:
            hi = min(hi, limit_ns)
    else:
        raise ValueError(f"side must be 'before' or 'after', not {side!r}")
    keep = (t >= lo) & (t <= hi)
    if np.count_nonzero(keep) >= 2:
        x = (t[keep] - at_ns).astype(np.float64) / NS_PER_S
        y = e[keep]
        xm, ym = x.mean(), y.mean()
        sxx = float(np.sum((x - xm) ** 2))
        if sxx > 0:
            slope = float(np.sum((x - xm) * (y - ym))) / sxx
            return float(ym - slope * xm), f"fit {int(np.count_nonzero(keep))}"
    if len(t) < 2 or at_ns < t[0] or at_ns > t[-1]:
        return NAN, "none"
    return float(np.interp(float(at_ns), t.astype(np.float64), e)), "interpolated"


def counter_energy_j(t_ns: np.ndarray, cumulative_j: np.ndarray, start_ns: int, end_ns: int) -> float:
    """Energy between two times from the counter's cumulative trace, linearly interpolated
    between readings; NaN unless readings exist on both sides of both times."""
    if len(t_ns) < 2 or start_ns < t_ns[0] or end_ns > t_ns[-1]:
        return NAN
    t = np.asarray(t_ns, dtype=np.float64)
    e0, e1 = np.interp([float(start_ns), float(end_ns)], t, np.asarray(cumulative_j, dtype=np.float64))
    return float(e1 - e0)


@dataclass(frozen=True)
class DifferentialTruth:
    """One item's truth from its workload run (A) and idle run (B). Energies in J, times in s."""
    active_j: float
    active_s: float
    idle_j: float
    idle_s: float
    burst_s: float
    """Total burst time, the sum of the bursts' durations from their marks."""
    repetitions: int
    counter_update_s: float = 0.1
    boundaries: tuple[str, ...] = ()
    """How the counter was read at A's start, A's end and B's end: ``fit N`` (a line through
    N idle-side readings), ``interpolated`` (the fallback) or ``none``; empty where the energies
    were given directly."""

    @property
    def boundary_note(self) -> str:
        """``idle fit`` where every boundary was fitted, else which fell back."""
        if not self.boundaries:
            return "-"
        names = ("A start", "A end", "B end")
        fallbacks = [f"{n} {how}" for n, how in zip(names, self.boundaries) if not how.startswith("fit")]
        if not fallbacks:
            return "idle fit (" + "/".join(how.split()[1] for how in self.boundaries) + " readings)"
        return "; ".join(fallbacks)

    @property
    def idle_w(self) -> float:
        return self.idle_j / self.idle_s

    @property
    def excess_j(self) -> float:
        return self.active_j - self.idle_w * self.active_s

    @property
    def burst_w(self) -> float:
        """Mean power during the bursts (gross, idle included)."""
        return self.idle_w + self.excess_j / self.burst_s

    def energy_j(self, duration_s: float) -> float:
        """The truth for a window of ``duration_s`` inside a burst (or a whole burst)."""
        return self.burst_w * duration_s

    @property
    def counter_bound_j(self) -> float:
        """Worst error of the excess from the counter's staleness at the run boundaries."""
        return (1.0 + self.active_s / self.idle_s) * self.counter_update_s * self.idle_w

    @property
    def counter_bound(self) -> float:
        """The same, relative to the bursts' energy (every window's truth shares it)."""
        return self.counter_bound_j / (self.burst_w * self.burst_s)


def differential_truth(counter_t_ns: np.ndarray, counter_j: np.ndarray, run_a: tuple[int, int],
                       run_b: tuple[int, int], burst_durations_s: list[float],
                       counter_update_s: float = 0.1, busy_ns: list[tuple[int, int]] | None = None,
                       reach_s: float = FIT_REACH_S) -> DifferentialTruth:
    """The item's truth from the counter's cumulative trace (t ns, J) and its run bounds.

    Each boundary's cumulative counter comes from its idle side only (``idle_side_counter_j``):
    A's start from the readings before it, A's end and B's start from those in B, B's end from
    those before it. ``busy_ns``: every burst of the recording (marks, ns); the idle side is
    cut short ``TAIL_GUARD_S`` after a burst's end and ``START_GUARD_S`` before a burst's start."""
    busy = busy_ns or []
    tail_ns, start_ns = round(TAIL_GUARD_S * NS_PER_S), round(START_GUARD_S * NS_PER_S)

    def value(at: int, side: str) -> tuple[float, str]:
        if side == "before":
            ends = [b + tail_ns for _, b in busy if b <= at]
            limit = max(ends) if ends else None
        else:
            starts = [a - start_ns for a, _ in busy if a >= at]
            limit = min(starts) if starts else None
        return idle_side_counter_j(counter_t_ns, counter_j, at, side, limit, reach_s)

    a0, how_a0 = value(run_a[0], "before")
    a1, how_a1 = value(run_a[1], "after")
    b0, _ = value(run_b[0], "after")  # the same readings as A's end: B's start is A's end
    b1, how_b1 = value(run_b[1], "before")
    return DifferentialTruth(
        active_j=a1 - a0, active_s=(run_a[1] - run_a[0]) / NS_PER_S,
        idle_j=b1 - b0, idle_s=(run_b[1] - run_b[0]) / NS_PER_S,
        burst_s=float(sum(burst_durations_s)), repetitions=len(burst_durations_s),
        counter_update_s=counter_update_s, boundaries=(how_a0, how_a1, how_b1))


@dataclass(frozen=True)
class Diagnostics:
    """What the driver samples say about the truth's two biases (fractions of the bursts'
    energy; positive means the truth is too high for the windows). NaN where the gaps are
    too short to tell."""
    idle_samples_w: float
    """Idle power in run B by the driver samples."""
    tail_j: float
    """Mean energy per burst above idle in the ``tail_s`` after its end, less the same in the
    ``tail_s`` before its start: the samples' interpolation across a power change smears
    about as much energy out of the window at either edge, so the difference is the tail."""
    tail_s: float
    tail_fraction: float
    gap_samples_w: float
    """Idle power in A's gaps (from ``tail_s`` after a burst to ``margin_s`` before the
    next), by the samples."""
    idle_mismatch_fraction: float


def diagnostics(samples_energy_j, truth: DifferentialTruth, run_a: tuple[int, int], run_b: tuple[int, int],
                bursts_ns: list[tuple[int, int]], tail_s: float = 0.1, margin_s: float = 0.05) -> Diagnostics:
    """``samples_energy_j(t0_ns, t1_ns)`` integrates the driver samples. Power levels are
    taken from the samples alone, so any scale error of the samples cancels."""
    idle_w = samples_energy_j(*run_b) / ((run_b[1] - run_b[0]) / NS_PER_S)
    tail_ns, margin_ns = round(tail_s * NS_PER_S), round(margin_s * NS_PER_S)
    tails, gaps_j, gaps_s = [], 0.0, 0.0
    previous_end = run_a[0]
    nexts = [start for start, _ in bursts_ns[1:]] + [run_a[1]]
    for (start, end), next_start in zip(bursts_ns, nexts):
        if min(start - previous_end, next_start - end) >= 2 * tail_ns:  # room on both sides
            tails.append(samples_energy_j(end, end + tail_ns) - samples_energy_j(start - tail_ns, start))
        if next_start - margin_ns - (end + tail_ns) > 0.1 * NS_PER_S:  # long enough to say something
            gaps_j += samples_energy_j(end + tail_ns, next_start - margin_ns)
            gaps_s += (next_start - margin_ns - end - tail_ns) / NS_PER_S
        previous_end = end
    burst_j = truth.burst_w * truth.burst_s
    tail_j = float(np.mean(tails)) if tails else NAN
    gap_w = gaps_j / gaps_s if gaps_s > 0 else NAN
    # Idle time in A outside the tails, which are counted on their own.
    idle_in_a_s = truth.active_s - truth.burst_s - len(bursts_ns) * tail_s
    return Diagnostics(idle_samples_w=idle_w, tail_j=tail_j, tail_s=tail_s,
                       tail_fraction=tail_j * len(bursts_ns) / burst_j, gap_samples_w=gap_w,
                       idle_mismatch_fraction=(gap_w - idle_w) * idle_in_a_s / burst_j)


def interior_bias(samples_energy_j, load_ns: tuple[int, int], settle_s: float) -> float:
    """How much a steady load's mean power (start-up included) exceeds its mean power
    ``settle_s`` clear of both ends, where its windows lie; from the driver samples."""
    start, end = load_ns
    settle_ns = round(settle_s * NS_PER_S)
    inside_s = (end - start - 2 * settle_ns) / NS_PER_S
    if inside_s <= 0:
        return NAN
    whole_w = samples_energy_j(start, end) / ((end - start) / NS_PER_S)
    return whole_w / (samples_energy_j(start + settle_ns, end - settle_ns) / inside_s) - 1.0
