#include "marks.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>

#include "clock.hpp"
#include "cuda_driver.hpp"

namespace ecomeasure::marks {

namespace {

// One process-wide ring of slots, never freed: the driver may run a host function after
// the meter (or the Python object) that queued it is gone. A slot remembers which mark
// owns it, so a late callback for a reused slot stamps nothing.
constexpr std::uint64_t kSlots = 1u << 16;

struct Slot {
  std::atomic<MarkId> id{0};
  std::atomic<std::int64_t> t_ns{-1};
  cuda::Event event = nullptr;  // recorded with a stream mark; reused by the slot's next mark
  bool timed = false;           // `event` belongs to this mark
};

struct Table {
  Slot slots[kSlots];
  std::atomic<MarkId> next{1};
  std::mutex mutex;
  std::condition_variable reached;
};

Table& table() {
  static Table* t = new Table();  // deliberately leaked, see above
  return *t;
}

Slot& claim(MarkId id) {
  Slot& s = table().slots[id % kSlots];
  s.t_ns.store(-1, std::memory_order_relaxed);
  s.timed = false;
  s.id.store(id, std::memory_order_release);
  return s;
}

Slot& owned(MarkId id) {
  Slot& s = table().slots[id % kSlots];
  if (s.id.load(std::memory_order_acquire) != id)
    throw std::out_of_range("mark " + std::to_string(id) + " is older than the last " +
                            std::to_string(kSlots) + " marks and was forgotten");
  return s;
}

// Runs on the CUDA driver's callback thread when the stream reaches the mark.
void on_reached(void* user) {
  const std::int64_t now = monotonic_ns();
  const MarkId id = reinterpret_cast<std::uintptr_t>(user);
  Table& t = table();
  Slot& s = t.slots[id % kSlots];
  if (s.id.load(std::memory_order_acquire) != id) return;
  {
    std::lock_guard<std::mutex> lock(t.mutex);
    s.t_ns.store(now, std::memory_order_release);
  }
  t.reached.notify_all();
}

}  // namespace

MarkId mark_now() {
  const MarkId id = table().next.fetch_add(1);
  claim(id).t_ns.store(monotonic_ns(), std::memory_order_release);
  return id;
}

MarkId mark_on_stream(std::uintptr_t stream) {
  cuda::load();  // fail before claiming a slot
  const MarkId id = table().next.fetch_add(1);
  Slot& s = claim(id);
  cuda::record_event(s.event, stream);
  s.timed = s.event != nullptr;
  cuda::launch_host_function(stream, &on_reached, reinterpret_cast<void*>(std::uintptr_t(id)));
  return id;
}

std::int64_t time_ns(MarkId id) { return owned(id).t_ns.load(std::memory_order_acquire); }

std::int64_t wait(MarkId id, std::int64_t timeout_ns) {
  Slot& s = owned(id);
  if (const std::int64_t t = s.t_ns.load(std::memory_order_acquire); t >= 0) return t;
  Table& t = table();
  std::unique_lock<std::mutex> lock(t.mutex);
  t.reached.wait_for(lock, std::chrono::nanoseconds(timeout_ns),
                     [&] { return s.t_ns.load(std::memory_order_acquire) >= 0; });
  return s.t_ns.load(std::memory_order_acquire);
}

std::pair<std::int64_t, std::int64_t> wait_pair(MarkId first, MarkId second,
                                                std::int64_t timeout_ns) {
  const std::int64_t deadline = monotonic_ns() + timeout_ns;
  const std::int64_t a = wait(first, timeout_ns);
  const std::int64_t b = wait(second, std::max<std::int64_t>(0, deadline - monotonic_ns()));
  if (a < 0 || b < 0) return {-1, -1};
  const Slot& sa = owned(first);
  const Slot& sb = owned(second);
  if (!sa.timed || !sb.timed) return {a, b};
  const float gpu_ms = cuda::elapsed_ms(sa.event, sb.event);
  if (gpu_ms < 0) return {a, b};
  const auto gpu_ns = std::int64_t(double(gpu_ms) * 1e6);
  const std::int64_t start = std::min(a, b - gpu_ns);
  return {start, start + gpu_ns};
}

}  // namespace ecomeasure::marks
