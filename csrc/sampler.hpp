// The sampler: one native thread per meter that reads every NVML power and energy source of
// each device and keeps (time, value) traces on the monotonic clock. It never touches
// Python, so it never needs the GIL; callers read the traces under a short lock.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <memory>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "energy.hpp"
#include "nvml.hpp"

namespace ecomeasure {

// The sampler's traces: the energy sources, then GPU utilization (percent, not power, so it
// is kept out of the energy sources).
constexpr int kUtilization = kSourceCount;
constexpr int kTraceCount = kSourceCount + 1;

struct SourceStatus {
  bool available = false;
  std::string reason;           // why not available
  double update_period_s = 0;   // observed spacing of new values; 0 until known
  std::uint64_t readings = 0;   // kept in the trace
  std::uint64_t errors = 0;     // failed reads while running
  std::uint64_t clamped = 0;    // stamps that went backwards (wall clock stepped), moved up
  std::uint64_t dropped = 0;    // oldest readings let go (trace_keep_ns)
  std::string last_error;
  std::vector<Gap> gaps;        // spans where driver samples were lost
};

struct DeviceInfo {
  unsigned index = 0;
  std::string name, uuid;
  unsigned architecture = 0;  // nvmlDeviceArchitecture_t
};

struct SamplerOptions {
  std::vector<unsigned> devices;                    // NVML indices; empty = all
  // Defaults keep the thread under ~1 % of a core on an H200 (each read's cost measured there).
  std::int64_t poll_interval_ns = 10'000'000;       // instant and average power (~3 us a read)
  std::int64_t drain_interval_ns = 200'000'000;     // driver buffer (~0.5 ms; ring holds ~2.4 s)
  std::int64_t counter_interval_ns = 1'000'000'000; // energy counter (~4 ms of CPU a read)
  std::int64_t keepalive_ns = 100'000'000;          // keep an unchanged value this often
  std::int64_t gap_threshold_ns = 250'000'000;      // driver samples further apart = lost
  // The headline's calibration uses the counter readings within reach of the window on
  // each side, once they span the minimum.
  std::int64_t calibration_min_span_ns = 30'000'000'000;
  std::int64_t calibration_reach_ns = 60'000'000'000;
  // Traces keep about the newest this much (up to 1.25x) so a day-long run stays bounded
  // (~5-7 MB per GPU-hour); 0 keeps everything.
  std::int64_t trace_keep_ns = 4 * 3600 * 1'000'000'000LL;
  // The counter changes every ~100 ms, so a read returns a value that is on average half
  // of that old; its time stamp is moved back by this much.
  std::int64_t counter_lag_ns = 50'000'000;
  std::string nvml_library;                         // empty: $ECOMEASURE_NVML_LIBRARY or default
};

struct SamplerStats {
  double cpu_time_s = 0;   // the sampler thread's own CPU time
  double wall_time_s = 0;  // time it has been running
  std::uint64_t loops = 0;
  // Backward steps of the wall clock (NTP) seen when re-measuring its offset: the driver
  // stamps its samples on that clock, so a step may drop (gap) or clamp driver samples.
  std::uint64_t wall_clock_steps_back = 0;
  double wall_clock_step_back_s = 0;  // the sum of those steps
};

// After fork() the child holds a copy of the sampler without its thread, and with its lock
// and condition variables copied in whatever state the parent's thread left them. In such a
// child stop(), close() and the destructor do nothing, and the destructor leaks the thread and
// synchronisation objects on purpose: joining or destroying them could hang forever.
class Sampler {
 public:
  explicit Sampler(SamplerOptions options);  // throws NvmlUnavailable
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void start();  // idempotent
  void stop();   // idempotent; joins the thread
  void close();  // stops and lets go of NVML; the traces stay readable
  bool running() const { return running_.load() && !forked(); }
  // True in a child forked after this sampler was made: it owns nothing of it.
  bool forked() const;

  const std::vector<DeviceInfo>& devices() const { return infos_; }
  const std::string& driver_version() const { return driver_version_; }

  // `device` is the position in devices(), not the NVML index; `trace` is a Source or
  // kUtilization.
  SourceStatus status(std::size_t device, int trace) const;
  Trace trace(std::size_t device, int trace) const;
  DeviceEnergy energy(std::size_t device, std::int64_t t0_ns, std::int64_t t1_ns) const;
  // Blocks until every working energy source of every device (and GPU utilization too when
  // `utilization`) has a reading at or after t_ns, asking the thread to read at once, or
  // until the timeout; true if the data is there.
  bool wait_for_data(std::int64_t t_ns, std::int64_t timeout_ns, bool utilization = true);
  // Asks the thread, without waiting, to read the energy sources up to t_ns at once (a window
  // ended there) and to keep reading until each holds a reading at or after it.
  void request(std::int64_t t_ns);
  // Whether every working energy source holds a reading at or after t_ns (never blocks).
  bool has_data(std::int64_t t_ns, bool utilization = false) const;
  SamplerStats stats() const;

 private:
  struct SourceData {
    SourceStatus status;
    Trace trace;
    bool last_read_failed = false;
    std::int64_t last_read_ns = -1;  // when it was last read successfully (not its stamp)
    // polling bookkeeping (sampler thread only, read under the lock)
    double last_value = 0;
    std::int64_t last_kept_ns = -1;
    std::uint64_t changes = 0;
    std::int64_t first_change_ns = 0, last_change_ns = 0;
  };
  // A driver ring read with nvmlDeviceGetSamples.
  struct Ring {
    int type;
    double scale;                      // trace units per NVML unit
    bool track_gaps;                   // record lost spans (power samples)
    unsigned long long last_us = 0;    // newest stamp seen
    std::int64_t last_t_ns = -1;       // its time on our clock when it was kept
    std::vector<nvml::Sample> buffer;  // drain buffer, sized once to the driver's ring
  };
  struct DeviceData {
    nvml::Device handle = nullptr;
    SourceData source[kTraceCount];  // Source order, then kUtilization
    Ring power{nvml::TOTAL_POWER_SAMPLES, 1e-3, true};            // mW -> W
    Ring utilization{nvml::GPU_UTILIZATION_SAMPLES, 1.0, false};  // percent
    bool have_counter_origin = false;
    unsigned long long counter_origin_mj = 0;
  };

  void probe(DeviceData& d);
  void run();
  void poll_power(DeviceData& d, Source s, std::int64_t now, bool on_demand);
  void drain(DeviceData& d, SourceData& sd, Ring& ring);
  void read_counter(DeviceData& d);
  void record_error(SourceData& sd, nvml::Return r);
  void keep(SourceData& sd, std::int64_t t, double v);  // caller holds mutex_
  void clear_failure(SourceData& sd);
  bool needs(const SourceData& sd, int trace, std::int64_t t) const;
  bool satisfied(std::int64_t t, bool utilization) const;  // caller holds mutex_
  static void raise_to(std::atomic<std::int64_t>& wanted, std::int64_t t);

  SamplerOptions options_;
  const nvml::Api* api_ = nullptr;
  std::string driver_version_;
  std::vector<DeviceInfo> infos_;
  std::vector<DeviceData> devices_;

  // What a forked child must never join or destroy, on the heap so that it can be leaked.
  struct Sync {
    std::mutex lifecycle;
    std::mutex mutex;
    std::condition_variable wake, data;
    std::thread thread;
  };
  const pid_t owner_pid_;
  std::unique_ptr<Sync> sync_ = std::make_unique<Sync>();
  std::mutex& lifecycle_ = sync_->lifecycle;        // serialises start and stop
  std::mutex& mutex_ = sync_->mutex;                // guards the traces and statuses
  std::condition_variable& wake_ = sync_->wake;     // wakes the sampler (stop, or a waiter wants data now)
  std::condition_variable& data_ = sync_->data;     // tells waiters new readings are in
  std::thread& thread_ = sync_->thread;
  std::atomic<bool> running_{false};
  bool stop_requested_ = false;     // under mutex_
  bool wake_requested_ = false;     // under mutex_: run a loop now, not at the next period
  bool closed_ = false;             // under lifecycle_
  std::atomic<std::int64_t> wanted_ns_{-1};       // energy readings wanted up to here
  std::atomic<std::int64_t> wanted_busy_ns_{-1};  // utilization samples wanted up to here
  std::atomic<std::int64_t> wall_offset_ns_{0};
  std::atomic<std::int64_t> cpu_ns_{0};
  std::atomic<std::uint64_t> loops_{0};
  std::uint64_t wall_steps_back_ = 0;  // under mutex_
  std::int64_t wall_step_back_ns_ = 0;
  std::int64_t started_ns_ = 0, run_ns_before_ = 0;  // for stats(): time spent running
};

}  // namespace ecomeasure
