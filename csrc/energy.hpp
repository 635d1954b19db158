// The energy of a window from one device's traces: each source on its own, and the
// headline figure. Shared by the live sampler and by traces loaded back from a file.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ecomeasure {

enum class Source : int { samples = 0, instant = 1, average = 2, counter = 3 };
constexpr int kSourceCount = 4;
const char* source_name(Source s);

struct Trace {
  std::vector<std::int64_t> t_ns;  // monotonic ns
  std::vector<double> value;       // W; for the counter, J since the meter's first reading
  std::size_t clamped = 0;         // readings whose stamp went backwards, moved up (see append)
  std::size_t dropped = 0;         // oldest readings let go to bound memory
};

// Adds a reading. A stamp earlier than the last (a wall clock stepped back under the driver's
// stamps) is moved up to it and counted in `clamped`. keep_ns > 0 bounds the trace to about
// the newest keep_ns (up to 1.25x), dropping older readings and counting them in `dropped`.
void append(Trace& trace, std::int64_t t_ns, double value, std::int64_t keep_ns);

struct Gap {
  std::int64_t from_ns;
  std::int64_t to_ns;
};

struct SourceEnergy {
  bool available = false;
  double energy_j = 0;
  std::size_t samples = 0;  // trace points inside the window
  bool complete = false;    // trace covers both edges, no lost samples inside
};

struct DeviceEnergy {
  SourceEnergy source[kSourceCount];
  double energy_j = 0;       // the headline figure
  std::string method;        // which method produced it
  double calibration = 1.0;  // counter / driver samples, when method == "calibrated"
  bool complete = false;
  // Share of the window in which a kernel ran (NVML utilization samples); NaN if unknown.
  double gpu_busy_share = std::numeric_limits<double>::quiet_NaN();
};

struct DeviceTraces {
  const Trace* source[kSourceCount] = {};
  bool available[kSourceCount] = {};
  const std::vector<Gap>* gaps = nullptr;  // lost driver samples
  const Trace* utilization = nullptr;      // percent; null where the GPU has none
};

// The headline scales the driver samples to the counter readings within calibration_reach_ns
// of the window on each side, when they span at least calibration_min_span_ns.
DeviceEnergy window_energy(const DeviceTraces& traces, std::int64_t t0_ns, std::int64_t t1_ns,
                           std::int64_t calibration_min_span_ns, std::int64_t calibration_reach_ns);

}  // namespace ecomeasure
