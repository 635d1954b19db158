#include "nvml.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace ecomeasure::nvml {

const Api& load(const std::string& requested) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<Api>> opened;

  std::string path = requested;
  if (path.empty()) {
    const char* env = std::getenv("ECOMEASURE_NVML_LIBRARY");
    path = (env && *env) ? env : "libnvidia-ml.so.1";
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = opened.find(path); it != opened.end()) return *it->second;

  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    throw std::runtime_error("cannot load NVML (" + path + "): " + (why ? why : "unknown") +
                             ". Is the NVIDIA driver installed? Set ECOMEASURE_NVML_LIBRARY "
                             "to the path of libnvidia-ml.so.1 if it is elsewhere.");
  }
  auto api = std::make_unique<Api>();
  api->path = path;
#define ECOMEASURE_NVML_LOOKUP(name, ret, params) \
  api->name = reinterpret_cast<ret(*) params>(dlsym(handle, #name));
  ECOMEASURE_NVML_FUNCTIONS(ECOMEASURE_NVML_LOOKUP)
#undef ECOMEASURE_NVML_LOOKUP
  if (!api->nvmlInit_v2 || !api->nvmlDeviceGetCount_v2 || !api->nvmlDeviceGetHandleByIndex_v2)
    throw std::runtime_error("library " + path + " is not NVML (nvmlInit_v2 missing)");
  return *opened.emplace(path, std::move(api)).first->second;
}

std::string describe(const Api& api, Return code) {
  std::string text = "NVML error " + std::to_string(code);
  if (api.nvmlErrorString) {
    if (const char* s = api.nvmlErrorString(code)) text += std::string(": ") + s;
  }
  return text;
}

}  // namespace ecomeasure::nvml
