// One clock for every time stamp: CLOCK_MONOTONIC in nanoseconds, the same clock as
// Python's time.monotonic_ns(), so marks, samples and callers compare directly.
#pragma once
#include <cstdint>
#include <ctime>

namespace ecomeasure {

inline int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

inline int64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// realtime - monotonic, read between two monotonic reads; the tightest of a few tries.
// NVML stamps its samples in wall-clock microseconds; this converts them.
inline int64_t measure_wall_offset_ns() {
  int64_t best_gap = INT64_MAX, offset = 0;
  for (int i = 0; i < 5; ++i) {
    const int64_t m0 = monotonic_ns();
    const int64_t r = realtime_ns();
    const int64_t m1 = monotonic_ns();
    if (m1 - m0 < best_gap) {
      best_gap = m1 - m0;
      offset = r - (m0 + (m1 - m0) / 2);
    }
  }
  return offset;
}

}  // namespace ecomeasure
