// The failures a caller can act on, each its own type so the bindings map them to typed
// Python exceptions.
#pragma once
#include <stdexcept>

namespace ecomeasure {

// NVML cannot be loaded or initialised, or names no usable device.
struct NvmlUnavailable : std::runtime_error { using std::runtime_error::runtime_error; };
// A stream mark was asked for but the CUDA driver cannot be loaded or initialised.
struct CudaUnavailable : std::runtime_error { using std::runtime_error::runtime_error; };
// The CUDA driver refused the stream handle.
struct InvalidStream : std::runtime_error { using std::runtime_error::runtime_error; };

}  // namespace ecomeasure
