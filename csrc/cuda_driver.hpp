// The CUDA driver API, opened at run time (libcuda.so.1, or $ECOMEASURE_CUDA_LIBRARY), for
// the one thing the meter needs from it: running a host function when a stream gets there.
#pragma once
#include <cstdint>

namespace ecomeasure::cuda {

using Result = int;
using Stream = void*;
using HostFn = void (*)(void*);

#define ECOMEASURE_CUDA_FUNCTIONS(X)                    \
  X(cuInit, Result, (unsigned int))                     \
  X(cuGetErrorName, Result, (Result, const char**))     \
  X(cuLaunchHostFunc, Result, (Stream, HostFn, void*))

struct Api {
#define ECOMEASURE_CUDA_POINTER(name, ret, params) ret(*name) params = nullptr;
  ECOMEASURE_CUDA_FUNCTIONS(ECOMEASURE_CUDA_POINTER)
#undef ECOMEASURE_CUDA_POINTER
};

// Loaded and initialised once per process; throws CudaUnavailable saying why.
const Api& load();

// Queues fn(user) on the stream; throws InvalidStream if the driver refuses the handle.
void launch_host_function(std::uintptr_t stream, HostFn fn, void* user);

}  // namespace ecomeasure::cuda
