// NVML, opened at run time. No NVML header or library is needed to build: the few types
// the meter uses are declared here with NVML's ABI, and every function is looked up with
// dlsym. A symbol the driver lacks is a null pointer: a missing capability, not a crash.
#pragma once
#include <string>

namespace ecomeasure::nvml {

using Return = int;
constexpr Return SUCCESS = 0;
constexpr Return ERROR_UNINITIALIZED = 1;
constexpr Return ERROR_NOT_SUPPORTED = 3;
constexpr Return ERROR_NOT_FOUND = 6;
constexpr Return ERROR_FUNCTION_NOT_FOUND = 13;

struct DeviceOpaque;
using Device = DeviceOpaque*;

union Value {
  double dVal;
  int siVal;
  unsigned int uiVal;
  unsigned long ulVal;
  unsigned long long ullVal;
  signed long long sllVal;
  unsigned short usVal;
};
enum ValueType : int { DOUBLE = 0, UNSIGNED_INT = 1, UNSIGNED_LONG = 2, UNSIGNED_LONG_LONG = 3,
                       SIGNED_LONG_LONG = 4, SIGNED_INT = 5 };

struct Sample {
  unsigned long long timeStamp;  // microseconds since the epoch (wall clock)
  Value sampleValue;
};

struct FieldValue {
  unsigned int fieldId;
  unsigned int scopeId;
  long long timestamp;
  long long latencyUsec;
  int valueType;
  Return nvmlReturn;
  Value value;
};

constexpr unsigned FI_TOTAL_ENERGY_CONSUMPTION = 83;
constexpr unsigned FI_POWER_AVERAGE = 185;
constexpr unsigned FI_POWER_INSTANT = 186;
constexpr int TOTAL_POWER_SAMPLES = 0;
constexpr int GPU_UTILIZATION_SAMPLES = 1;  // percent of the period since the previous sample

// X(name, return type, parameter list): the one list that makes both the table of function
// pointers and their lookups.
#define ECOMEASURE_NVML_FUNCTIONS(X)                                                          \
  X(nvmlInit_v2, Return, (void))                                                             \
  X(nvmlShutdown, Return, (void))                                                            \
  X(nvmlErrorString, const char*, (Return))                                                  \
  X(nvmlSystemGetDriverVersion, Return, (char*, unsigned int))                               \
  X(nvmlDeviceGetCount_v2, Return, (unsigned int*))                                          \
  X(nvmlDeviceGetHandleByIndex_v2, Return, (unsigned int, Device*))                          \
  X(nvmlDeviceGetName, Return, (Device, char*, unsigned int))                                \
  X(nvmlDeviceGetUUID, Return, (Device, char*, unsigned int))                                \
  X(nvmlDeviceGetHandleByUUID, Return, (const char*, Device*))                               \
  X(nvmlDeviceGetDeviceHandleFromMigDeviceHandle, Return, (Device, Device*))                 \
  X(nvmlDeviceGetIndex, Return, (Device, unsigned int*))                                     \
  X(nvmlDeviceGetArchitecture, Return, (Device, unsigned int*))                              \
  X(nvmlDeviceGetPowerUsage, Return, (Device, unsigned int*))                                \
  X(nvmlDeviceGetTotalEnergyConsumption, Return, (Device, unsigned long long*))              \
  X(nvmlDeviceGetFieldValues, Return, (Device, int, FieldValue*))                            \
  X(nvmlDeviceGetSamples, Return,                                                            \
    (Device, int, unsigned long long, int*, unsigned int*, Sample*))

struct Api {
#define ECOMEASURE_NVML_POINTER(name, ret, params) ret(*name) params = nullptr;
  ECOMEASURE_NVML_FUNCTIONS(ECOMEASURE_NVML_POINTER)
#undef ECOMEASURE_NVML_POINTER
  std::string path;
};

// Opens the library once per path and keeps it open for the life of the process (NVML
// must outlive every thread that may still be calling it). `path` empty means
// $ECOMEASURE_NVML_LIBRARY, else libnvidia-ml.so.1. Throws std::runtime_error with a
// message that says what to do when the library cannot be opened.
const Api& load(const std::string& path);

// "NVML error N: text" using nvmlErrorString where available.
std::string describe(const Api& api, Return code);

}  // namespace ecomeasure::nvml
