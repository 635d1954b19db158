// Energy of a window from a trace. Pure functions over sorted time stamps (monotonic ns),
// so they can be tested exactly.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ecomeasure {

struct Integral {
  double energy_j = 0;
  std::size_t inside = 0;  // trace points strictly inside the window
  bool covered = false;    // the trace has points at or before t0 and at or after t1
};

// Power trace (W): trapezoid rule over the piecewise-linear curve through the points, with
// the curve interpolated at t0 and t1; outside the trace the nearest value is held. A
// window shorter than the spacing of the points still gets its share (never zero).
Integral trapezoid(const std::int64_t* t_ns, const double* power_w, std::size_t n,
                   std::int64_t t0_ns, std::int64_t t1_ns);

// Cumulative energy trace (J): the curve interpolated at t1 minus at t0.
Integral cumulative_delta(const std::int64_t* t_ns, const double* energy_j, std::size_t n,
                          std::int64_t t0_ns, std::int64_t t1_ns);

// The piecewise-linear curve at t (held outside the points); n must be > 0. Where several
// points share a time stamp the curve jumps there: `from_right` picks the value after the
// jump (a window's start), otherwise the value before it (a window's end).
double value_at(const std::int64_t* t_ns, const double* value, std::size_t n, std::int64_t t,
                bool from_right = false);

// Utilization trace (percent; each sample is the share of the period since the previous
// stamp, (t[i-1], t[i]], in which a kernel ran): the time-weighted mean busy fraction (0..1)
// over the part of [t0, t1] that samples cover. NaN where none covers it; a zero-length
// window gets the value of the sample that covers its instant. The first sample covers
// nothing, since the period it speaks for is unknown.
double busy_share(const std::int64_t* t_ns, const double* percent, std::size_t n,
                  std::int64_t t0_ns, std::int64_t t1_ns);

}  // namespace ecomeasure
