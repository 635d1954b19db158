// Marks: points in time on the meter's clock. A host mark is stamped at once; a stream mark
// is stamped by a host function that the CUDA driver runs when the GPU reaches that point
// in the stream, so a window cut by stream marks holds exactly the GPU work queued between
// them, without the caller synchronising.
#pragma once
#include <cstdint>

namespace ecomeasure::marks {

using MarkId = std::uint64_t;

MarkId mark_now();
// Throws CudaUnavailable or InvalidStream.
MarkId mark_on_stream(std::uintptr_t stream);

// The mark's time in monotonic ns, or -1 if still pending; never blocks.
std::int64_t time_ns(MarkId id);
// Waits (up to timeout_ns) for the GPU to reach the mark; -1 on timeout.
std::int64_t wait(MarkId id, std::int64_t timeout_ns);

}  // namespace ecomeasure::marks
