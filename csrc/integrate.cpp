#include "integrate.hpp"

#include <algorithm>
#include <cmath>

namespace ecomeasure {

namespace {
constexpr double kSecondsPerNs = 1e-9;

Integral coverage(const std::int64_t* t, std::size_t n, std::int64_t t0, std::int64_t t1) {
  Integral r;
  if (n == 0) return r;
  r.covered = t[0] <= t0 && t[n - 1] >= t1;
  const auto first = std::upper_bound(t, t + n, t0);
  const auto last = std::lower_bound(t, t + n, t1);
  r.inside = last > first ? std::size_t(last - first) : 0;
  return r;
}
}  // namespace

double value_at(const std::int64_t* t, const double* v, std::size_t n, std::int64_t at,
                bool from_right) {
  if (from_right) {
    const std::size_t j = std::size_t(std::upper_bound(t, t + n, at) - t);
    if (j > 0 && t[j - 1] == at) return v[j - 1];
  }
  const std::size_t i = std::size_t(std::lower_bound(t, t + n, at) - t);
  if (i == 0) return v[0];
  if (i == n) return v[n - 1];
  if (t[i] == at) return v[i];
  const double f = double(at - t[i - 1]) / double(t[i] - t[i - 1]);
  return v[i - 1] + f * (v[i] - v[i - 1]);
}

Integral trapezoid(const std::int64_t* t, const double* p, std::size_t n, std::int64_t t0,
                   std::int64_t t1) {
  Integral r = coverage(t, n, t0, t1);
  if (n == 0 || t1 <= t0) return r;
  std::int64_t prev_t = t0;
  double prev_p = value_at(t, p, n, t0, /*from_right=*/true);
  double sum = 0;  // W * ns
  for (std::size_t i = std::size_t(std::upper_bound(t, t + n, t0) - t); i < n && t[i] < t1; ++i) {
    sum += 0.5 * (prev_p + p[i]) * double(t[i] - prev_t);
    prev_t = t[i];
    prev_p = p[i];
  }
  sum += 0.5 * (prev_p + value_at(t, p, n, t1)) * double(t1 - prev_t);
  r.energy_j = sum * kSecondsPerNs;
  return r;
}

Integral cumulative_delta(const std::int64_t* t, const double* e, std::size_t n,
                          std::int64_t t0, std::int64_t t1) {
  Integral r = coverage(t, n, t0, t1);
  if (n == 0 || t1 <= t0) return r;
  // Readings that share a stamp (a step of the counter, or stamps clamped to the last one)
  // count up to and including that stamp: a window ending there holds the step, a window
  // starting there does not, so windows that tile a run add up to the whole.
  r.energy_j = value_at(t, e, n, t1, /*from_right=*/true) - value_at(t, e, n, t0, /*from_right=*/true);
  return r;
}

double busy_share(const std::int64_t* t, const double* pct, std::size_t n, std::int64_t t0,
                  std::int64_t t1) {
  const double nan = std::nan("");
  if (t1 <= t0) {
    const std::size_t i = std::size_t(std::lower_bound(t, t + n, t0) - t);
    return i >= 1 && i < n ? pct[i] / 100.0 : nan;
  }
  double busy = 0;              // percent * ns
  std::int64_t covered = 0;     // ns
  for (std::size_t i = std::max<std::size_t>(1, std::size_t(std::upper_bound(t, t + n, t0) - t));
       i < n && t[i - 1] < t1; ++i) {
    const std::int64_t overlap = std::min(t[i], t1) - std::max(t[i - 1], t0);
    if (overlap <= 0) continue;
    busy += pct[i] * double(overlap);
    covered += overlap;
  }
  return covered > 0 ? busy / double(covered) / 100.0 : nan;
}

}  // namespace ecomeasure
