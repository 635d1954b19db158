#include "energy.hpp"

#include <algorithm>
#include <cmath>

#include "integrate.hpp"

namespace ecomeasure {

const char* source_name(Source s) {
  switch (s) {
    case Source::samples: return "samples";
    case Source::instant: return "instant";
    case Source::average: return "average";
    case Source::counter: return "counter";
  }
  return "?";
}

DeviceEnergy window_energy(const DeviceTraces& d, std::int64_t t0, std::int64_t t1,
                           std::int64_t calibration_min_span_ns, std::int64_t calibration_reach_ns) {
  DeviceEnergy out;
  if (const Trace* u = d.utilization; u && !u->t_ns.empty())
    out.gpu_busy_share = busy_share(u->t_ns.data(), u->value.data(), u->t_ns.size(), t0, t1);
  for (int k = 0; k < kSourceCount; ++k) {
    const Trace* tr = d.source[k];
    SourceEnergy& e = out.source[k];
    e.available = d.available[k] && tr && !tr->t_ns.empty();
    if (!e.available) continue;
    const std::size_t n = tr->t_ns.size();
    const Integral in = Source(k) == Source::counter
                            ? cumulative_delta(tr->t_ns.data(), tr->value.data(), n, t0, t1)
                            : trapezoid(tr->t_ns.data(), tr->value.data(), n, t0, t1);
    e.energy_j = in.energy_j;
    e.samples = in.inside;
    bool lost = false;
    if (Source(k) == Source::samples && d.gaps)
      lost = std::any_of(d.gaps->begin(), d.gaps->end(),
                         [&](const Gap& g) { return g.from_ns < t1 && g.to_ns > t0; });
    e.complete = in.covered && !lost;
  }
  // Headline. The driver samples carry exact time stamps every ~20 ms but are instantaneous
  // readings; the counter is integrated in hardware but is read only every ~1 s (a read
  // costs ~4 ms of CPU) and its value may be up to ~100 ms stale. So the samples give the
  // shape inside the window and the counter gives the scale, over the readings within
  // calibration_reach_ns of the window on each side: bounded, so a window costs the same
  // at hour 24 as at hour 1, and its value is final once the run is that far past its end.
  const SourceEnergy& smp = out.source[int(Source::samples)];
  const SourceEnergy& cnt = out.source[int(Source::counter)];
  const Trace* ct = d.source[int(Source::counter)];
  const Trace* st = d.source[int(Source::samples)];
  const bool counter_usable = cnt.available && ct->t_ns.size() >= 2;
  if (smp.available && counter_usable) {
    const auto& ctn = ct->t_ns;
    const std::size_t a = std::size_t(std::lower_bound(ctn.begin(), ctn.end(), t0 - calibration_reach_ns) - ctn.begin());
    const std::size_t b = std::size_t(std::upper_bound(ctn.begin(), ctn.end(), t1 + calibration_reach_ns) - ctn.begin());
    if (b >= a + 2 && ctn[b - 1] - ctn[a] >= calibration_min_span_ns) {
      const Integral s = trapezoid(st->t_ns.data(), st->value.data(), st->t_ns.size(), ctn[a], ctn[b - 1]);
      const double c = ct->value[b - 1] - ct->value[a];
      if (s.energy_j > 0 && c > 0) {
        out.calibration = c / s.energy_j;
        out.energy_j = smp.energy_j * out.calibration;
        out.method = "calibrated";
        out.complete = smp.complete;
        return out;
      }
    }
  }
  // Without calibration, short windows are better served by the samples' 20 ms stamps than
  // by a counter read every second.
  for (Source s : {Source::samples, Source::counter, Source::instant, Source::average}) {
    const SourceEnergy& e = out.source[int(s)];
    if (e.available && (s != Source::counter || counter_usable)) {
      out.energy_j = e.energy_j;
      out.method = source_name(s);
      out.complete = e.complete;
      return out;
    }
  }
  out.energy_j = std::nan("");
  out.method = "none";
  return out;
}

void append(Trace& tr, std::int64_t t_ns, double value, std::int64_t keep_ns) {
  // Time stamps must not go backwards, or the binary searches break: a late stamp is moved
  // up to the last one, and counted.
  if (!tr.t_ns.empty() && t_ns < tr.t_ns.back()) {
    t_ns = tr.t_ns.back();
    ++tr.clamped;
  }
  tr.t_ns.push_back(t_ns);
  tr.value.push_back(value);
  // Drop what is older than keep_ns once a quarter more has piled up, so the cost of moving
  // the rest down is spread over many readings.
  if (keep_ns > 0 && t_ns - tr.t_ns.front() > keep_ns + keep_ns / 4) {
    const auto cut = std::lower_bound(tr.t_ns.begin(), tr.t_ns.end(), t_ns - keep_ns);
    const auto n = cut - tr.t_ns.begin();
    tr.t_ns.erase(tr.t_ns.begin(), cut);
    tr.value.erase(tr.value.begin(), tr.value.begin() + n);
    tr.dropped += std::size_t(n);
  }
}

}  // namespace ecomeasure
