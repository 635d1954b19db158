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
};

// CUDA events recorded beside stream marks. Creating an event costs ~50 us on an H200, so a
// ring of them is created once and reused; each remembers which mark last recorded it, so a
// mark older than the ring falls back to its host stamp instead of borrowing a newer time.
constexpr std::uint64_t kEvents = 1024;

struct EventRing {
  cuda::Event event[kEvents] = {};
  std::atomic<MarkId> owner[kEvents] = {};
  std::once_flag created;
};

EventRing& events() {
  static EventRing* r = new EventRing();  // leaked like the table, for the same reason
  return *r;
}

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
  s.id.store(id, std::memory_order_release);
  return s;
}

// Records the mark's event on the stream (creating the ring on first use, in the caller's
// context); without events the mark keeps only its host stamp.
void record_event(MarkId id, std::uintptr_t stream) {
  EventRing& r = events();
  std::call_once(r.created, [&] {
    for (cuda::Event& e : r.event) cuda::create_event(e);
  });
  const std::uint64_t k = id % kEvents;
  r.owner[k].store(0, std::memory_order_relaxed);
  if (cuda::record_event(r.event[k], stream)) r.owner[k].store(id, std::memory_order_release);
}

cuda::Event event_of(MarkId id) {
  EventRing& r = events();
  const std::uint64_t k = id % kEvents;
  return r.owner[k].load(std::memory_order_acquire) == id ? r.event[k] : nullptr;
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

bool has_event(MarkId id) { return event_of(id) != nullptr; }

MarkId mark_now() {
  const MarkId id = table().next.fetch_add(1);
  claim(id).t_ns.store(monotonic_ns(), std::memory_order_release);
  return id;
}

MarkId mark_on_stream(std::uintptr_t stream) {
  cuda::load();  // fail before claiming a slot
  const MarkId id = table().next.fetch_add(1);
  claim(id);
  record_event(id, stream);
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
  const cuda::Event ea = event_of(first), eb = event_of(second);
  if (!ea || !eb) return {a, b};
  const float gpu_ms = cuda::elapsed_ms(ea, eb);
  if (gpu_ms < 0) return {a, b};
  const auto gpu_ns = std::int64_t(double(gpu_ms) * 1e6);
  const std::int64_t start = std::min(a, b - gpu_ns);
  return {start, start + gpu_ns};
}

}  // namespace ecomeasure::marks
