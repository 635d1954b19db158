// What NVML sees, without starting a sampler: each GPU's index, name and UUID, and the parent
// GPU of a MIG instance. The package maps the GPUs a process was given (CUDA_VISIBLE_DEVICES)
// onto NVML's indices with it.
#pragma once
#include <string>
#include <vector>

namespace ecomeasure {

struct GpuEntry {
  unsigned index = 0;
  std::string name, uuid;
};

struct Inventory {
  std::vector<GpuEntry> gpus;
  // For each MIG UUID asked about: the NVML index of its parent GPU, or -1 where NVML does
  // not know that instance (or cannot say).
  std::vector<long> mig_parents;
};

// Throws NvmlUnavailable. `nvml_library` as in SamplerOptions.
Inventory inventory(const std::string& nvml_library, const std::vector<std::string>& mig_uuids);

}  // namespace ecomeasure
