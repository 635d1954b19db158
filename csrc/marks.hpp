// Marks: points in time on the meter's clock. A host mark is stamped at once; a stream mark
// is stamped by a host function that the CUDA driver runs when the GPU reaches that point
// in the stream, so a window cut by stream marks holds exactly the GPU work queued between
// them, without the caller synchronising.
#pragma once
#include <cstdint>
#include <utility>

namespace ecomeasure::marks {

using MarkId = std::uint64_t;

MarkId mark_now();
// Throws CudaUnavailable or InvalidStream.
MarkId mark_on_stream(std::uintptr_t stream);

// Whether a stream mark still owns its CUDA event: a mark older than the event ring (1,024
// marks) has lost it, and a window it cuts is placed by host stamps alone.
bool has_event(MarkId id);

// The mark's time in monotonic ns, or -1 if still pending; never blocks.
std::int64_t time_ns(MarkId id);
// Waits (up to timeout_ns) for the GPU to reach the mark; -1 on timeout.
std::int64_t wait(MarkId id, std::int64_t timeout_ns);

// The times of two marks, waiting for both. A host function runs a little after the GPU
// gets there (tens of us, now and then a millisecond), so where both are stream marks the
// GPU's own clock gives the time between them (CUDA events recorded with the marks) and
// the earlier-looking of the two host stamps places the pair: a late callback can only
// make a mark look later. {-1, -1} on timeout.
std::pair<std::int64_t, std::int64_t> wait_pair(MarkId first, MarkId second, std::int64_t timeout_ns);

}  // namespace ecomeasure::marks
