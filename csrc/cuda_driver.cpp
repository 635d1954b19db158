#include "cuda_driver.hpp"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "errors.hpp"

namespace ecomeasure::cuda {

namespace {
constexpr Result kSuccess = 0;

std::string name_of(const Api& api, Result code) {
  const char* name = nullptr;
  if (api.cuGetErrorName && api.cuGetErrorName(code, &name) == kSuccess && name) return name;
  return "CUDA error " + std::to_string(code);
}
}  // namespace

const Api& load() {
  static Api api;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("ECOMEASURE_CUDA_LIBRARY");
    const std::string path = (env && *env) ? env : "libcuda.so.1";
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = dlerror();
      failure = "no CUDA driver (" + path + ": " + (why ? why : "not found") +
                "); a stream mark needs an NVIDIA GPU and driver. Pass stream=None for "
                "host-time marks.";
      return;
    }
#define ECOMEASURE_CUDA_LOOKUP(name, ret, params) \
  api.name = reinterpret_cast<ret(*) params>(dlsym(handle, #name));
    ECOMEASURE_CUDA_FUNCTIONS(ECOMEASURE_CUDA_LOOKUP)
#undef ECOMEASURE_CUDA_LOOKUP
    if (!api.cuInit || !api.cuLaunchHostFunc) {
      failure = path + " lacks cuInit or cuLaunchHostFunc (driver older than CUDA 10?)";
      return;
    }
    if (const Result r = api.cuInit(0); r != kSuccess) {
      failure = "cuInit failed: " + name_of(api, r) + "; is a GPU visible to this process?";
    }
  });
  if (!failure.empty()) throw CudaUnavailable(failure);
  return api;
}

void launch_host_function(std::uintptr_t stream, HostFn fn, void* user) {
  const Api& api = load();
  const Result r = api.cuLaunchHostFunc(reinterpret_cast<Stream>(stream), fn, user);
  if (r != kSuccess)
    throw InvalidStream("cuLaunchHostFunc refused stream " + std::to_string(stream) + ": " +
                        name_of(api, r) +
                        " (is it a live stream of the current CUDA context?)");
}

void create_event(Event& event) {
  const Api& api = load();
  constexpr unsigned kDefaultFlags = 0;  // timing enabled
  if (!api.cuEventCreate || api.cuEventCreate(&event, kDefaultFlags) != kSuccess) event = nullptr;
}

bool record_event(Event& event, std::uintptr_t stream) {
  const Api& api = load();
  if (!api.cuEventRecord) return false;
  const Stream s = reinterpret_cast<Stream>(stream);
  if (event && api.cuEventRecord(event, s) == kSuccess) return true;
  if (event && api.cuEventDestroy_v2) api.cuEventDestroy_v2(event);
  create_event(event);
  return event && api.cuEventRecord(event, s) == kSuccess;
}

std::vector<std::string> visible_device_uuids() {
  const Api& api = load();
  const auto get_uuid = api.cuDeviceGetUuid_v2 ? api.cuDeviceGetUuid_v2 : api.cuDeviceGetUuid;
  if (!api.cuDeviceGetCount || !api.cuDeviceGet || !get_uuid)
    throw CudaUnavailable("this CUDA driver cannot list device UUIDs (cuDeviceGetUuid missing)");
  int count = 0;
  if (const Result r = api.cuDeviceGetCount(&count); r != kSuccess)
    throw CudaUnavailable("cuDeviceGetCount failed: " + name_of(api, r));
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    int device = 0;
    Uuid uuid{};
    if (const Result r = api.cuDeviceGet(&device, i); r != kSuccess)
      throw CudaUnavailable("cuDeviceGet(" + std::to_string(i) + ") failed: " + name_of(api, r));
    if (const Result r = get_uuid(&uuid, device); r != kSuccess)
      throw CudaUnavailable("cuDeviceGetUuid failed: " + name_of(api, r));
    char text[64];
    const unsigned char* b = uuid.bytes;
    std::snprintf(text, sizeof text,
                  "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    out.push_back(text);
  }
  return out;
}

float elapsed_ms(Event from, Event to) {
  const Api& api = load();
  float ms = -1;
  if (!from || !to || !api.cuEventElapsedTime) return -1;
  if (api.cuEventElapsedTime(&ms, from, to) == kSuccess) return ms;
  // The host function after an event can run before the driver marks the event complete.
  if (!api.cuEventSynchronize || api.cuEventSynchronize(from) != kSuccess ||
      api.cuEventSynchronize(to) != kSuccess || api.cuEventElapsedTime(&ms, from, to) != kSuccess)
    return -1;
  return ms;
}

}  // namespace ecomeasure::cuda
