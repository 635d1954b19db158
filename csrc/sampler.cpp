#include "sampler.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>

#include <unistd.h>

#include "clock.hpp"
#include "errors.hpp"

namespace ecomeasure {

namespace {

constexpr std::int64_t kNsPerUs = 1000;
constexpr std::int64_t kWallOffsetRefreshNs = 10'000'000'000;
constexpr std::int64_t kRetryNs = 5'000'000;  // pace of the loop while a request is not met
// Traces are reserved for an hour of readings up front so the thread rarely allocates.
constexpr std::size_t kReserveSamples = 3600 * 60;
constexpr std::size_t kReservePolled = 3600 * 20;

double as_double(int type, const nvml::Value& v) {
  switch (type) {
    case nvml::DOUBLE: return v.dVal;
    case nvml::UNSIGNED_INT: return v.uiVal;
    case nvml::UNSIGNED_LONG: return double(v.ulVal);
    case nvml::UNSIGNED_LONG_LONG: return double(v.ullVal);
    case nvml::SIGNED_LONG_LONG: return double(v.sllVal);
    case nvml::SIGNED_INT: return v.siVal;
    default: return v.uiVal;
  }
}

std::string read_string(nvml::Return (*fn)(nvml::Device, char*, unsigned), nvml::Device d) {
  char buf[256] = {0};
  if (fn && fn(d, buf, sizeof buf) == nvml::SUCCESS) return buf;
  return "";
}

std::int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

Sampler::Sampler(SamplerOptions options) : options_(std::move(options)), owner_pid_(getpid()) {
  try {
    api_ = &nvml::load(options_.nvml_library);
  } catch (const std::exception& e) {
    throw NvmlUnavailable(e.what());
  }
  if (const nvml::Return r = api_->nvmlInit_v2(); r != nvml::SUCCESS)
    throw NvmlUnavailable("NVML did not initialise (" + nvml::describe(*api_, r) +
                          "); is the NVIDIA driver loaded and a GPU visible?");
  char version[96] = {0};
  if (api_->nvmlSystemGetDriverVersion &&
      api_->nvmlSystemGetDriverVersion(version, sizeof version) == nvml::SUCCESS)
    driver_version_ = version;

  unsigned count = 0;
  if (const nvml::Return r = api_->nvmlDeviceGetCount_v2(&count); r != nvml::SUCCESS) {
    api_->nvmlShutdown();
    throw NvmlUnavailable("NVML cannot count devices: " + nvml::describe(*api_, r));
  }
  std::vector<unsigned> wanted = options_.devices;
  if (wanted.empty())
    for (unsigned i = 0; i < count; ++i) wanted.push_back(i);
  if (wanted.empty()) {
    api_->nvmlShutdown();
    throw NvmlUnavailable("NVML reports no GPU");
  }
  devices_.resize(wanted.size());
  for (std::size_t k = 0; k < wanted.size(); ++k) {
    DeviceInfo info;
    info.index = wanted[k];
    nvml::Device handle = nullptr;
    if (wanted[k] >= count ||
        api_->nvmlDeviceGetHandleByIndex_v2(wanted[k], &handle) != nvml::SUCCESS) {
      api_->nvmlShutdown();
      throw NvmlUnavailable("no GPU with NVML index " + std::to_string(wanted[k]) + " (NVML sees " +
                            std::to_string(count) + ")");
    }
    info.name = read_string(api_->nvmlDeviceGetName, handle);
    info.uuid = read_string(api_->nvmlDeviceGetUUID, handle);
    if (api_->nvmlDeviceGetArchitecture) api_->nvmlDeviceGetArchitecture(handle, &info.architecture);
    devices_[k].handle = handle;
    infos_.push_back(info);
    probe(devices_[k]);
  }
  wall_offset_ns_ = measure_wall_offset_ns();
}

Sampler::~Sampler() {
  if (forked()) {
    (void)sync_.release();  // deliberately leaked: see the class comment
    return;
  }
  close();
}

bool Sampler::forked() const { return getpid() != owner_pid_; }

void Sampler::close() {
  if (forked()) return;  // NVML and the thread belong to the parent
  stop();
  std::lock_guard<std::mutex> lifecycle(lifecycle_);
  if (closed_) return;
  closed_ = true;
  api_->nvmlShutdown();
}

void Sampler::probe(DeviceData& d) {
  // A source the driver lacks is off for good; any other failure may pass, so the source
  // stays on and the failure is counted.
  auto set = [&](SourceData& sd, nvml::Return r, bool present) {
    SourceStatus& st = sd.status;
    st.available = present && r != nvml::ERROR_NOT_SUPPORTED;
    if (!present) st.reason = "this NVML has no such function";
    else if (r == nvml::ERROR_NOT_SUPPORTED) st.reason = nvml::describe(*api_, r);
    else if (r != nvml::SUCCESS) {
      ++st.errors;
      st.last_error = nvml::describe(*api_, r);
    }
  };
  // Driver sample rings: a count query answers the ring size.
  auto probe_ring = [&](Ring& ring, int trace) {
    int type = 0;
    unsigned n = 0;
    nvml::Return r = nvml::ERROR_FUNCTION_NOT_FOUND;
    if (api_->nvmlDeviceGetSamples)
      r = api_->nvmlDeviceGetSamples(d.handle, ring.type, 0, &type, &n, nullptr);
    if (r == nvml::SUCCESS && n == 0) r = nvml::ERROR_NOT_SUPPORTED;
    set(d.source[trace], r, api_->nvmlDeviceGetSamples != nullptr);
    constexpr unsigned kRingIfUnknown = 256;  // Hopper's power ring holds 120
    ring.buffer.resize(r == nvml::SUCCESS ? n : kRingIfUnknown);
  };
  probe_ring(d.power, int(Source::samples));
  probe_ring(d.utilization, kUtilization);
  {
    nvml::FieldValue f{};
    f.fieldId = nvml::FI_POWER_INSTANT;
    nvml::Return r = nvml::ERROR_FUNCTION_NOT_FOUND;
    if (api_->nvmlDeviceGetFieldValues) {
      r = api_->nvmlDeviceGetFieldValues(d.handle, 1, &f);
      if (r == nvml::SUCCESS) r = f.nvmlReturn;
    }
    set(d.source[int(Source::instant)], r, api_->nvmlDeviceGetFieldValues != nullptr);
  }
  {
    unsigned mw = 0;
    nvml::Return r = nvml::ERROR_FUNCTION_NOT_FOUND;
    if (api_->nvmlDeviceGetPowerUsage) r = api_->nvmlDeviceGetPowerUsage(d.handle, &mw);
    set(d.source[int(Source::average)], r, api_->nvmlDeviceGetPowerUsage != nullptr);
  }
  {
    unsigned long long mj = 0;
    nvml::Return r = nvml::ERROR_FUNCTION_NOT_FOUND;
    if (api_->nvmlDeviceGetTotalEnergyConsumption)
      r = api_->nvmlDeviceGetTotalEnergyConsumption(d.handle, &mj);
    set(d.source[int(Source::counter)], r, api_->nvmlDeviceGetTotalEnergyConsumption != nullptr);
  }
  d.source[int(Source::samples)].trace.t_ns.reserve(kReserveSamples);
  d.source[int(Source::samples)].trace.value.reserve(kReserveSamples);
  d.source[kUtilization].trace.t_ns.reserve(kReservePolled);
  d.source[kUtilization].trace.value.reserve(kReservePolled);
  for (Source s : {Source::instant, Source::average, Source::counter}) {
    d.source[int(s)].trace.t_ns.reserve(kReservePolled);
    d.source[int(s)].trace.value.reserve(kReservePolled);
  }
}

void Sampler::start() {
  if (forked())
    throw MeterFailure("this meter was made in the process that forked this one; create a new one here");
  std::lock_guard<std::mutex> lifecycle(lifecycle_);
  if (closed_) throw MeterFailure("this meter was closed; create a new one");
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_) return;
  stop_requested_ = false;
  started_ns_ = monotonic_ns();
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void Sampler::stop() {
  if (forked()) return;
  std::lock_guard<std::mutex> lifecycle(lifecycle_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!running_) return;
    stop_requested_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  run_ns_before_ += monotonic_ns() - started_ns_;
  running_ = false;
  data_.notify_all();
}

void Sampler::keep(SourceData& sd, std::int64_t t, double v) {
  append(sd.trace, t, v, options_.trace_keep_ns);
  ++sd.status.readings;
  auto& gaps = sd.status.gaps;
  if (!gaps.empty() && gaps.front().to_ns < sd.trace.t_ns.front())  // gone with its readings
    gaps.erase(gaps.begin(), std::find_if(gaps.begin(), gaps.end(),
                                          [&](const Gap& g) { return g.to_ns >= sd.trace.t_ns.front(); }));
}

void Sampler::record_error(SourceData& sd, nvml::Return r) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++sd.status.errors;
  sd.last_read_failed = true;
  sd.status.last_error = nvml::describe(*api_, r);
}

void Sampler::clear_failure(SourceData& sd) {
  if (!sd.last_read_failed) return;  // only this thread writes it, so reading is safe
  std::lock_guard<std::mutex> lock(mutex_);
  sd.last_read_failed = false;
}

// Whether a waiter for time t still needs a reading of this source. The counter's stamps
// are moved back by its expected age, so for it a read made after t is enough.
bool Sampler::needs(const SourceData& sd, int trace, std::int64_t t) const {
  if (t < 0) return false;
  if (trace == int(Source::counter)) return sd.last_read_ns < t;
  return sd.trace.t_ns.empty() || sd.trace.t_ns.back() < t;
}

// Instant and average power change only every ~100 ms, so a fast poll keeps a reading
// when the value changes (stamped at first sight), when it has not been kept for
// keepalive_ns, or when a waiter needs a reading this late.
void Sampler::poll_power(DeviceData& d, Source s, std::int64_t now, bool on_demand) {
  double w = 0;
  nvml::Return r;
  if (s == Source::instant) {
    nvml::FieldValue f{};
    f.fieldId = nvml::FI_POWER_INSTANT;
    r = api_->nvmlDeviceGetFieldValues(d.handle, 1, &f);
    if (r == nvml::SUCCESS) r = f.nvmlReturn;
    w = as_double(f.valueType, f.value) / 1000.0;
  } else {
    unsigned mw = 0;
    r = api_->nvmlDeviceGetPowerUsage(d.handle, &mw);
    w = mw / 1000.0;
  }
  const std::int64_t t = (now + monotonic_ns()) / 2;
  SourceData& sd = d.source[int(s)];
  if (r != nvml::SUCCESS) return record_error(sd, r);
  const bool changed = sd.last_kept_ns < 0 || w != sd.last_value;
  if (!changed && !on_demand && t - sd.last_kept_ns < options_.keepalive_ns) {
    clear_failure(sd);
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  sd.last_read_failed = false;
  if (changed && sd.last_kept_ns >= 0) {
    if (sd.changes++ == 0) sd.first_change_ns = t;
    sd.last_change_ns = t;
  }
  sd.last_value = w;
  sd.last_kept_ns = t;
  keep(sd, t, w);
}

void Sampler::drain(DeviceData& d, SourceData& sd, Ring& ring) {
  int type = 0;
  unsigned n = unsigned(ring.buffer.size());
  const nvml::Return r = api_->nvmlDeviceGetSamples(d.handle, ring.type, ring.last_us, &type, &n,
                                                    ring.buffer.data());
  if (r == nvml::ERROR_NOT_FOUND) {  // nothing new since last time; n is not to be read
    clear_failure(sd);
    return;
  }
  if (r != nvml::SUCCESS) return record_error(sd, r);
  const std::int64_t offset = wall_offset_ns_.load();
  std::lock_guard<std::mutex> lock(mutex_);
  sd.last_read_failed = false;
  for (unsigned i = 0; i < n; ++i) {
    const nvml::Sample& s = ring.buffer[i];
    if (s.timeStamp <= ring.last_us) continue;
    const std::int64_t t = std::int64_t(s.timeStamp) * kNsPerUs - offset;
    if (ring.track_gaps && ring.last_t_ns >= 0) {
      // From the last kept sample as it was placed then: if the wall clock stepped back, the
      // driver's samples stop until it catches up, and that hole must show as lost.
      const std::int64_t prev = ring.last_t_ns;
      // A full ring, or a hole longer than the driver ever leaves, means samples were lost.
      const bool ring_full = i == 0 && n == ring.buffer.size();
      if (ring_full || t - prev > options_.gap_threshold_ns) sd.status.gaps.push_back({prev, t});
    }
    ring.last_us = s.timeStamp;
    ring.last_t_ns = t;
    keep(sd, t, as_double(type, s.sampleValue) * ring.scale);
  }
}

void Sampler::read_counter(DeviceData& d) {
  unsigned long long mj = 0;
  const std::int64_t before = monotonic_ns();
  const nvml::Return r = api_->nvmlDeviceGetTotalEnergyConsumption(d.handle, &mj);
  // The call takes ~4 ms on Hopper: stamp its middle, less the value's expected age.
  const std::int64_t t = (before + monotonic_ns()) / 2 - options_.counter_lag_ns;
  SourceData& sd = d.source[int(Source::counter)];
  if (r != nvml::SUCCESS) return record_error(sd, r);
  std::lock_guard<std::mutex> lock(mutex_);
  sd.last_read_failed = false;
  sd.last_read_ns = t + options_.counter_lag_ns;
  if (!d.have_counter_origin) {
    d.have_counter_origin = true;
    d.counter_origin_mj = mj;
  }
  const double j = double(mj - d.counter_origin_mj) / 1000.0;
  if (sd.last_kept_ns >= 0 && j != sd.last_value) {
    if (sd.changes++ == 0) sd.first_change_ns = t;
    sd.last_change_ns = t;
  }
  sd.last_value = j;
  sd.last_kept_ns = t;
  keep(sd, t, j);
}

void Sampler::run() {
  const std::int64_t cpu_at_start = thread_cpu_ns() - cpu_ns_.load();
  std::int64_t next_drain = 0, next_counter = 0;
  std::int64_t next_offset = monotonic_ns() + kWallOffsetRefreshNs;
  for (;;) {
    const std::int64_t now = monotonic_ns();
    const std::int64_t wanted = wanted_ns_.load();
    const std::int64_t wanted_busy = wanted_busy_ns_.load();
    const bool drain_due = now >= next_drain;
    const bool counter_due = now >= next_counter;
    if (drain_due) next_drain = now + options_.drain_interval_ns;
    if (counter_due) next_counter = now + options_.counter_interval_ns;
    for (DeviceData& d : devices_) {
      for (Source s : {Source::instant, Source::average}) {
        SourceData& sd = d.source[int(s)];
        if (sd.status.available) poll_power(d, s, now, needs(sd, int(s), wanted));
      }
      SourceData& samples = d.source[int(Source::samples)];
      if (samples.status.available && (drain_due || needs(samples, int(Source::samples), wanted)))
        drain(d, samples, d.power);
      SourceData& busy = d.source[kUtilization];
      if (busy.status.available && (drain_due || needs(busy, kUtilization, wanted_busy)))
        drain(d, busy, d.utilization);
      SourceData& counter = d.source[int(Source::counter)];
      if (counter.status.available && (counter_due || needs(counter, int(Source::counter), wanted)))
        read_counter(d);
    }
    if (now >= next_offset) {
      const std::int64_t offset = measure_wall_offset_ns();
      // NTP slews by microseconds; a step back of more than a millisecond is recorded.
      if (const std::int64_t back = wall_offset_ns_.load() - offset; back > 1'000'000) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++wall_steps_back_;
        wall_step_back_ns_ += back;
      }
      wall_offset_ns_ = offset;
      next_offset = now + kWallOffsetRefreshNs;
    }
    cpu_ns_ = thread_cpu_ns() - cpu_at_start;
    ++loops_;
    std::unique_lock<std::mutex> lock(mutex_);
    // A request is done once its data is in: the thread then goes back to its own pace.
    std::int64_t done = wanted;
    if (wanted >= 0 && satisfied(wanted, false)) wanted_ns_.compare_exchange_strong(done, -1);
    done = wanted_busy;
    if (wanted_busy >= 0 && satisfied(wanted_busy, true)) wanted_busy_ns_.compare_exchange_strong(done, -1);
    data_.notify_all();
    // While a request waits for a driver sample past its time, look again soon rather than
    // at the next poll: the driver adds a sample every ~20 ms.
    const bool pending = wanted_ns_.load() >= 0 || wanted_busy_ns_.load() >= 0;
    const std::int64_t pause = pending ? std::min(options_.poll_interval_ns, kRetryNs) : options_.poll_interval_ns;
    const auto deadline = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(now + pause));
    // CLOCK_MONOTONIC is steady_clock's clock on Linux, so the deadline is on our clock.
    wake_.wait_until(lock, deadline, [&] { return stop_requested_ || wake_requested_; });
    wake_requested_ = false;
    if (stop_requested_) break;
  }
}

// A source that fails or that the GPU lacks is not waited for: its part of the window is
// marked incomplete instead.
bool Sampler::satisfied(std::int64_t t, bool utilization) const {
  const int traces = utilization ? kTraceCount : kSourceCount;
  for (const DeviceData& d : devices_)
    for (int k = 0; k < traces; ++k) {
      const SourceData& sd = d.source[k];
      if (sd.status.available && !sd.last_read_failed && needs(sd, k, t)) return false;
    }
  return true;
}

void Sampler::raise_to(std::atomic<std::int64_t>& wanted, std::int64_t t) {
  std::int64_t w = wanted.load();
  while (w < t && !wanted.compare_exchange_weak(w, t)) {
  }
}

bool Sampler::has_data(std::int64_t t_ns, bool utilization) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return satisfied(t_ns, utilization);
}

void Sampler::request(std::int64_t t_ns) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!running_ || satisfied(t_ns, false)) return;
    raise_to(wanted_ns_, t_ns);
    wake_requested_ = true;
  }
  wake_.notify_all();
}

bool Sampler::wait_for_data(std::int64_t t_ns, std::int64_t timeout_ns, bool utilization) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (satisfied(t_ns, utilization)) return true;
  if (!running_) return false;
  raise_to(wanted_ns_, t_ns);
  if (utilization) raise_to(wanted_busy_ns_, t_ns);
  wake_requested_ = true;
  wake_.notify_all();
  return data_.wait_for(lock, std::chrono::nanoseconds(timeout_ns),
                        [&] { return satisfied(t_ns, utilization) || !running_; }) &&
         satisfied(t_ns, utilization);
}

SourceStatus Sampler::status(std::size_t device, int trace) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const SourceData& sd = devices_.at(device).source[trace];
  SourceStatus st = sd.status;
  st.clamped = sd.trace.clamped;
  st.dropped = sd.trace.dropped;
  if (trace == int(Source::samples) || trace == kUtilization) {  // every driver sample is kept
    const auto& t = sd.trace.t_ns;
    if (t.size() >= 2) st.update_period_s = double(t.back() - t.front()) * 1e-9 / double(t.size() - 1);
  } else if (sd.changes >= 2) {
    st.update_period_s = double(sd.last_change_ns - sd.first_change_ns) * 1e-9 / double(sd.changes - 1);
  }
  return st;
}

Trace Sampler::trace(std::size_t device, int trace) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return devices_.at(device).source[trace].trace;
}

DeviceEnergy Sampler::energy(std::size_t device, std::int64_t t0, std::int64_t t1) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const DeviceData& d = devices_.at(device);
  DeviceTraces view;
  for (int k = 0; k < kSourceCount; ++k) {
    view.source[k] = &d.source[k].trace;
    view.available[k] = d.source[k].status.available;
  }
  view.gaps = &d.source[int(Source::samples)].status.gaps;
  if (d.source[kUtilization].status.available) view.utilization = &d.source[kUtilization].trace;
  return window_energy(view, t0, t1, options_.calibration_min_span_ns, options_.calibration_reach_ns);
}

SamplerStats Sampler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  SamplerStats s;
  s.cpu_time_s = double(cpu_ns_.load()) * 1e-9;
  s.wall_time_s = double(run_ns_before_ + (running_ ? monotonic_ns() - started_ns_ : 0)) * 1e-9;
  s.loops = loops_.load();
  s.wall_clock_steps_back = wall_steps_back_;
  s.wall_clock_step_back_s = double(wall_step_back_ns_) * 1e-9;
  return s;
}

}  // namespace ecomeasure
