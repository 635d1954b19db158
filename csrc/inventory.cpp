#include "inventory.hpp"

#include "errors.hpp"
#include "nvml.hpp"

namespace ecomeasure {

namespace {
std::string read_string(nvml::Return (*fn)(nvml::Device, char*, unsigned), nvml::Device d) {
  char buf[256] = {0};
  if (fn && fn(d, buf, sizeof buf) == nvml::SUCCESS) return buf;
  return "";
}
}  // namespace

Inventory inventory(const std::string& nvml_library, const std::vector<std::string>& mig_uuids) {
  const nvml::Api* api = nullptr;
  try {
    api = &nvml::load(nvml_library);
  } catch (const std::exception& e) {
    throw NvmlUnavailable(e.what());
  }
  if (const nvml::Return r = api->nvmlInit_v2(); r != nvml::SUCCESS)
    throw NvmlUnavailable("NVML did not initialise (" + nvml::describe(*api, r) +
                          "); is the NVIDIA driver loaded and a GPU visible?");
  Inventory out;
  unsigned count = 0;
  if (const nvml::Return r = api->nvmlDeviceGetCount_v2(&count); r != nvml::SUCCESS) {
    api->nvmlShutdown();
    throw NvmlUnavailable("NVML cannot count devices: " + nvml::describe(*api, r));
  }
  for (unsigned i = 0; i < count; ++i) {
    nvml::Device handle = nullptr;
    if (api->nvmlDeviceGetHandleByIndex_v2(i, &handle) != nvml::SUCCESS) continue;
    out.gpus.push_back({i, read_string(api->nvmlDeviceGetName, handle),
                        read_string(api->nvmlDeviceGetUUID, handle)});
  }
  for (const std::string& mig : mig_uuids) {
    long parent_index = -1;
    nvml::Device instance = nullptr, parent = nullptr;
    unsigned index = 0;
    if (api->nvmlDeviceGetHandleByUUID && api->nvmlDeviceGetDeviceHandleFromMigDeviceHandle &&
        api->nvmlDeviceGetIndex && api->nvmlDeviceGetHandleByUUID(mig.c_str(), &instance) == nvml::SUCCESS &&
        api->nvmlDeviceGetDeviceHandleFromMigDeviceHandle(instance, &parent) == nvml::SUCCESS &&
        api->nvmlDeviceGetIndex(parent, &index) == nvml::SUCCESS)
      parent_index = long(index);
    out.mig_parents.push_back(parent_index);
  }
  api->nvmlShutdown();
  return out;
}

}  // namespace ecomeasure
