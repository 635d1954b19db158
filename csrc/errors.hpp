// The failures a caller can act on, each its own type so the bindings map them to typed
// Python exceptions.
#pragma once
#include <stdexcept>

namespace ecomeasure {

// Base of the meter's own failures.
struct MeterFailure : std::runtime_error { using std::runtime_error::runtime_error; };
// NVML cannot be loaded or initialised, or names no usable device.
struct NvmlUnavailable : MeterFailure { using MeterFailure::MeterFailure; };
// A stream mark was asked for but the CUDA driver cannot be loaded or initialised.
struct CudaUnavailable : MeterFailure { using MeterFailure::MeterFailure; };
// The CUDA driver refused the stream handle.
struct InvalidStream : MeterFailure { using MeterFailure::MeterFailure; };

}  // namespace ecomeasure
