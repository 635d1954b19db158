// The CUDA driver API, opened at run time (libcuda.so.1, or $ECOMEASURE_CUDA_LIBRARY), for
// the one thing the meter needs from it: running a host function when a stream gets there.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ecomeasure::cuda {

using Result = int;
using Stream = void*;
using HostFn = void (*)(void*);
using Event = void*;
struct Uuid {
  unsigned char bytes[16];
};

#define ECOMEASURE_CUDA_FUNCTIONS(X)                       \
  X(cuInit, Result, (unsigned int))                        \
  X(cuGetErrorName, Result, (Result, const char**))        \
  X(cuLaunchHostFunc, Result, (Stream, HostFn, void*))     \
  X(cuEventCreate, Result, (Event*, unsigned int))         \
  X(cuEventRecord, Result, (Event, Stream))                \
  X(cuEventElapsedTime, Result, (float*, Event, Event))    \
  X(cuEventSynchronize, Result, (Event))                   \
  X(cuEventDestroy_v2, Result, (Event))                    \
  X(cuDeviceGetCount, Result, (int*))                      \
  X(cuDeviceGet, Result, (int*, int))                      \
  X(cuDeviceGetUuid, Result, (Uuid*, int))                 \
  X(cuDeviceGetUuid_v2, Result, (Uuid*, int))

struct Api {
#define ECOMEASURE_CUDA_POINTER(name, ret, params) ret(*name) params = nullptr;
  ECOMEASURE_CUDA_FUNCTIONS(ECOMEASURE_CUDA_POINTER)
#undef ECOMEASURE_CUDA_POINTER
};

// Loaded and initialised once per process; throws CudaUnavailable saying why.
const Api& load();

// Queues fn(user) on the stream; throws InvalidStream if the driver refuses the handle.
void launch_host_function(std::uintptr_t stream, HostFn fn, void* user);

// Creates a timing event in the current context; leaves it null if that fails.
void create_event(Event& event);

// Records `event` on the stream, creating it anew if it is null or recording fails (an event
// of another context); false if the driver will not time events here.
bool record_event(Event& event, std::uintptr_t stream);

// The UUID ("GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", the form NVML prints) of each device
// CUDA shows this process, in CUDA's order: the driver has applied CUDA_VISIBLE_DEVICES. A MIG
// instance gives its own UUID, which matches no NVML GPU. Throws CudaUnavailable.
std::vector<std::string> visible_device_uuids();

// GPU time between two completed events in ms, or a negative number if unknown.
float elapsed_ms(Event from, Event to);

}  // namespace ecomeasure::cuda
