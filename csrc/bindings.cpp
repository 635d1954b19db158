// The one file that knows Python. It converts arguments and results, releases the GIL
// around everything that may block, and maps the core's errors to Python exceptions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "clock.hpp"
#include "energy.hpp"
#include "errors.hpp"
#include "cuda_driver.hpp"
#include "integrate.hpp"
#include "inventory.hpp"
#include "marks.hpp"
#include "sampler.hpp"

namespace py = pybind11;
using namespace ecomeasure;

namespace {

int to_trace(int k) {
  if (k < 0 || k >= kTraceCount) throw py::value_error("trace must be 0..4 (a source, or utilization)");
  return k;
}

py::tuple arrays(const Trace& t) {
  py::array_t<std::int64_t> times(py::ssize_t(t.t_ns.size()));
  py::array_t<double> values(py::ssize_t(t.value.size()));
  std::copy(t.t_ns.begin(), t.t_ns.end(), times.mutable_data());
  std::copy(t.value.begin(), t.value.end(), values.mutable_data());
  return py::make_tuple(times, values);
}

Trace from_arrays(const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& t,
                  const py::array_t<double, py::array::c_style | py::array::forcecast>& v) {
  if (t.ndim() != 1 || v.ndim() != 1 || t.shape(0) != v.shape(0))
    throw py::value_error("times and values must be 1-D arrays of the same length");
  Trace tr;
  tr.t_ns.assign(t.data(), t.data() + t.shape(0));
  tr.value.assign(v.data(), v.data() + v.shape(0));
  if (!std::is_sorted(tr.t_ns.begin(), tr.t_ns.end()))
    throw py::value_error("time stamps must be in ascending order");
  return tr;
}

py::dict to_dict(const DeviceEnergy& e) {
  py::dict sources;
  for (int k = 0; k < kSourceCount; ++k) {
    const SourceEnergy& s = e.source[k];
    if (!s.available) continue;
    sources[source_name(Source(k))] =
        py::dict(py::arg("energy_j") = s.energy_j, py::arg("samples") = s.samples,
                 py::arg("complete") = s.complete);
  }
  return py::dict(py::arg("energy_j") = e.energy_j, py::arg("method") = e.method,
                  py::arg("calibration") = e.calibration, py::arg("complete") = e.complete,
                  py::arg("gpu_busy_share") = e.gpu_busy_share, py::arg("sources") = sources);
}

py::dict to_dict(const SourceStatus& s) {
  py::list gaps;
  for (const Gap& g : s.gaps) gaps.append(py::make_tuple(g.from_ns, g.to_ns));
  return py::dict(py::arg("available") = s.available, py::arg("reason") = s.reason,
                  py::arg("update_period_s") = s.update_period_s, py::arg("readings") = s.readings,
                  py::arg("errors") = s.errors, py::arg("last_error") = s.last_error,
                  py::arg("clamped") = s.clamped, py::arg("dropped") = s.dropped,
                  py::arg("gaps") = gaps);
}

const std::int64_t kDefaultReachNs = SamplerOptions().calibration_reach_ns;

using Int64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

const char* trace_name(int k) { return k == kUtilization ? "utilization" : source_name(Source(k)); }

int trace_index(const std::string& name) {
  for (int k = 0; k < kTraceCount; ++k)
    if (name == trace_name(k)) return k;
  throw py::value_error("unknown trace " + name);
}

// One device's traces held by the core (loaded from a file, or fed by a benchmark), so that
// each window is measured without copying them again.
struct TraceSet {
  std::vector<Trace> traces = std::vector<Trace>(kTraceCount);
  bool present[kTraceCount] = {};
  std::vector<Gap> gaps;
  std::int64_t keep_ns = 0;

  void append(const std::string& name, const Int64Array& t, const DoubleArray& v) {
    if (t.ndim() != 1 || v.ndim() != 1 || t.shape(0) != v.shape(0))
      throw py::value_error("times and values must be 1-D arrays of the same length");
    const int k = trace_index(name);
    present[k] = true;
    for (py::ssize_t i = 0; i < t.shape(0); ++i) ecomeasure::append(traces[k], t.data()[i], v.data()[i], keep_ns);
  }
  DeviceEnergy energy(std::int64_t t0, std::int64_t t1, std::int64_t min_span_ns, std::int64_t reach_ns) const {
    DeviceTraces view;
    for (int k = 0; k < kSourceCount; ++k) {
      view.source[k] = present[k] ? &traces[k] : nullptr;
      view.available[k] = present[k];
    }
    view.utilization = present[kUtilization] ? &traces[kUtilization] : nullptr;
    view.gaps = &gaps;
    return window_energy(view, t0, t1, min_span_ns, reach_ns);
  }
  std::size_t memory_bytes() const {
    std::size_t n = 0;
    for (const Trace& tr : traces) n += tr.t_ns.capacity() * sizeof(std::int64_t) + tr.value.capacity() * sizeof(double);
    return n + gaps.capacity() * sizeof(Gap);
  }
};

TraceSet make_trace_set(const py::dict& traces, const py::list& gaps, std::int64_t keep_ns) {
  TraceSet set;
  set.keep_ns = keep_ns;
  for (auto item : traces) {
    auto pair = item.second.cast<py::tuple>();
    const Trace tr = from_arrays(pair[0].cast<Int64Array>(), pair[1].cast<DoubleArray>());
    const int k = trace_index(item.first.cast<std::string>());
    set.present[k] = true;
    if (keep_ns == 0) {
      set.traces[k] = tr;
    } else {
      for (std::size_t i = 0; i < tr.t_ns.size(); ++i) append(set.traces[k], tr.t_ns[i], tr.value[i], keep_ns);
    }
  }
  for (auto g : gaps) {
    auto p = g.cast<py::tuple>();
    set.gaps.push_back({p[0].cast<std::int64_t>(), p[1].cast<std::int64_t>()});
  }
  return set;
}

template <class F>
auto with_integral(F f) {
  return [f](const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& t,
             const py::array_t<double, py::array::c_style | py::array::forcecast>& v,
             std::int64_t t0, std::int64_t t1) {
    const Trace tr = from_arrays(t, v);
    const Integral r = f(tr.t_ns.data(), tr.value.data(), tr.t_ns.size(), t0, t1);
    return py::make_tuple(r.energy_j, r.inside, r.covered);
  };
}

}  // namespace

PYBIND11_MODULE(_ecomeasure, m) {
  m.doc() = "ecomeasure's native core: NVML sampler thread, stream marks, integration";
  // The package compares this with its own version, so a source tree run beside an older
  // build says so instead of failing somewhere inside.
  m.attr("__version__") = ECOMEASURE_VERSION;

  auto meter_error = py::register_exception<MeterFailure>(m, "MeterError", PyExc_RuntimeError);
  py::register_exception<NvmlUnavailable>(m, "NVMLUnavailableError", meter_error.ptr());
  py::register_exception<CudaUnavailable>(m, "CudaUnavailableError", meter_error.ptr());
  py::register_exception<InvalidStream>(m, "InvalidStreamError", meter_error.ptr());

  m.attr("SOURCES") = py::make_tuple("samples", "instant", "average", "counter");
  // Every trace the sampler keeps: the energy sources, then GPU utilization (percent).
  m.attr("TRACES") = py::make_tuple("samples", "instant", "average", "counter", "utilization");
  m.def("monotonic_ns", &monotonic_ns, "The meter's clock: CLOCK_MONOTONIC in ns.");

  py::class_<SamplerOptions>(m, "SamplerOptions",
                             "How a Sampler reads NVML; every field named, times in ns (see sampler.hpp).")
      .def(py::init<>())
      .def_readwrite("devices", &SamplerOptions::devices)
      .def_readwrite("poll_interval_ns", &SamplerOptions::poll_interval_ns)
      .def_readwrite("drain_interval_ns", &SamplerOptions::drain_interval_ns)
      .def_readwrite("counter_interval_ns", &SamplerOptions::counter_interval_ns)
      .def_readwrite("keepalive_ns", &SamplerOptions::keepalive_ns)
      .def_readwrite("gap_threshold_ns", &SamplerOptions::gap_threshold_ns)
      .def_readwrite("calibration_min_span_ns", &SamplerOptions::calibration_min_span_ns)
      .def_readwrite("calibration_reach_ns", &SamplerOptions::calibration_reach_ns)
      .def_readwrite("trace_keep_ns", &SamplerOptions::trace_keep_ns)
      .def_readwrite("counter_lag_ns", &SamplerOptions::counter_lag_ns)
      .def_readwrite("nvml_library", &SamplerOptions::nvml_library);

  py::class_<Sampler>(m, "Sampler")
      .def(py::init<SamplerOptions>(), py::arg("options"), py::call_guard<py::gil_scoped_release>())
      .def("start", &Sampler::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &Sampler::stop, py::call_guard<py::gil_scoped_release>())
      .def("close", &Sampler::close, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("running", &Sampler::running)
      .def_property_readonly("driver_version", &Sampler::driver_version)
      .def_property_readonly("devices",
                             [](const Sampler& s) {
                               py::list out;
                               for (const DeviceInfo& d : s.devices())
                                 out.append(py::dict(py::arg("index") = d.index,
                                                     py::arg("name") = d.name,
                                                     py::arg("uuid") = d.uuid,
                                                     py::arg("architecture") = d.architecture));
                               return out;
                             })
      .def("status",
           [](const Sampler& s, std::size_t dev, int src) { return to_dict(s.status(dev, to_trace(src))); })
      .def("trace",
           [](const Sampler& s, std::size_t dev, int src) {
             Trace t;
             {
               py::gil_scoped_release release;
               t = s.trace(dev, to_trace(src));
             }
             return arrays(t);
           })
      .def("energy",
           [](const Sampler& s, std::size_t dev, std::int64_t t0, std::int64_t t1) {
             DeviceEnergy e;
             {
               py::gil_scoped_release release;
               e = s.energy(dev, t0, t1);
             }
             return to_dict(e);
           })
      .def("wait_for_data", &Sampler::wait_for_data, py::arg("t_ns"), py::arg("timeout_ns"),
           py::arg("utilization") = true, py::call_guard<py::gil_scoped_release>())
      .def("request", &Sampler::request, py::arg("t_ns"), py::call_guard<py::gil_scoped_release>())
      .def("has_data", &Sampler::has_data, py::arg("t_ns"), py::arg("utilization") = false,
           py::call_guard<py::gil_scoped_release>())
      .def("stats", [](const Sampler& s) {
        const SamplerStats st = s.stats();
        return py::dict(py::arg("cpu_time_s") = st.cpu_time_s,
                        py::arg("wall_time_s") = st.wall_time_s, py::arg("loops") = st.loops,
                        py::arg("wall_clock_steps_back") = st.wall_clock_steps_back,
                        py::arg("wall_clock_step_back_s") = st.wall_clock_step_back_s);
      });

  m.def(
      "nvml_inventory",
      [](const std::string& nvml_library, const std::vector<std::string>& mig_uuids) {
        Inventory inv;
        {
          py::gil_scoped_release release;
          inv = inventory(nvml_library, mig_uuids);
        }
        py::list gpus;
        for (const GpuEntry& g : inv.gpus)
          gpus.append(py::dict(py::arg("index") = g.index, py::arg("name") = g.name, py::arg("uuid") = g.uuid));
        return py::make_tuple(gpus, inv.mig_parents);
      },
      py::arg("nvml_library"), py::arg("mig_uuids"),
      "NVML's GPUs [{index, name, uuid}] and, per MIG UUID given, its parent's NVML index (-1 unknown).");
  m.def("cuda_visible_uuids", &cuda::visible_device_uuids, py::call_guard<py::gil_scoped_release>(),
        "UUIDs of the devices the CUDA driver shows this process (CUDA_VISIBLE_DEVICES applied).");

  m.def("mark_now", &marks::mark_now, "A mark stamped now.");
  m.def("mark_on_stream", &marks::mark_on_stream, py::arg("stream"),
        "A mark stamped when the GPU reaches this point of the stream (a CUstream handle).");
  m.def("mark_time_ns", &marks::time_ns, py::arg("mark"), "The mark's time, or -1 if pending.");
  m.def("mark_has_event", &marks::has_event, py::arg("mark"),
        "Whether a stream mark still owns its CUDA event (not older than the event ring).");
  m.def("mark_wait", &marks::wait, py::arg("mark"), py::arg("timeout_ns"),
        py::call_guard<py::gil_scoped_release>(),
        "Waits for the GPU to reach the mark; its time, or -1 on timeout.");

  m.def("mark_wait_pair", &marks::wait_pair, py::arg("first"), py::arg("second"),
        py::arg("timeout_ns"), py::call_guard<py::gil_scoped_release>(),
        "Waits for two marks; their times, aligned on the GPU clock where both are stream marks.");

  m.def("trapezoid", with_integral(&trapezoid), py::arg("t_ns"), py::arg("power_w"),
        py::arg("t0_ns"), py::arg("t1_ns"),
        "Energy (J) of a power trace over [t0, t1]: (energy_j, points_inside, covered).");
  m.def("cumulative_delta", with_integral(&cumulative_delta), py::arg("t_ns"),
        py::arg("energy_j"), py::arg("t0_ns"), py::arg("t1_ns"),
        "Energy (J) of a cumulative energy trace over [t0, t1]: (energy_j, points_inside, covered).");
  py::class_<TraceSet>(m, "TraceSet")
      .def(py::init(&make_trace_set), py::arg("traces"), py::arg("gaps"), py::arg("keep_ns") = 0,
           "One device's traces {name: (t_ns, value)} and lost-sample gaps, held by the core; "
           "keep_ns > 0 bounds them as the sampler does.")
      .def("append", &TraceSet::append, py::arg("name"), py::arg("t_ns"), py::arg("value"),
           "Adds readings through the sampler's own append (clamping, keep_ns).")
      .def("energy",
           [](const TraceSet& s, std::int64_t t0, std::int64_t t1, std::int64_t span, std::int64_t reach) {
             DeviceEnergy e;
             {
               py::gil_scoped_release release;
               e = s.energy(t0, t1, span, reach);
             }
             return to_dict(e);
           },
           py::arg("t0_ns"), py::arg("t1_ns"), py::arg("calibration_min_span_ns"),
           py::arg("calibration_reach_ns") = kDefaultReachNs)
      .def("trace", [](const TraceSet& s, const std::string& name) { return arrays(s.traces[trace_index(name)]); })
      .def("counts",
           [](const TraceSet& s, const std::string& name) {
             const Trace& t = s.traces[trace_index(name)];
             return py::dict(py::arg("clamped") = t.clamped, py::arg("dropped") = t.dropped);
           },
           "Readings of one trace whose stamp went backwards (clamped) or that were let go (dropped).")
      .def_property_readonly("memory_bytes", &TraceSet::memory_bytes);
  m.def(
      "window_energy",
      [](py::dict traces, py::list gaps, std::int64_t t0, std::int64_t t1,
         std::int64_t calibration_min_span_ns, std::int64_t calibration_reach_ns) {
        return to_dict(make_trace_set(traces, gaps, 0).energy(t0, t1, calibration_min_span_ns,
                                                               calibration_reach_ns));
      },
      py::arg("traces"), py::arg("gaps"), py::arg("t0_ns"), py::arg("t1_ns"),
      py::arg("calibration_min_span_ns"), py::arg("calibration_reach_ns") = kDefaultReachNs,
      "Per-source and headline energy of one device's traces over [t0, t1] (see TraceSet).");
}
