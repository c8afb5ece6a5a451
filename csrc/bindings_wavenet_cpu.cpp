// pybind11 bindings of the C++ WaveNet engine (csrc/cpu). Python types, dtypes and layouts are
// checked here; the engine checks names, shapes, ranges and finiteness. Both raise before any memory
// is touched. prefill() and generate() run with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "bind_checks.h"
#include "bind_engine.h"
#include "cpu/bandwidth.h"
#include "cpu/multiply_rate.h"
#include "cpu/isa.h"
#include "cpu/wavenet_engine.h"
#include "cpu/worker_pool.h"

namespace py = pybind11;

namespace fastwave {
namespace {

using namespace bind;
using cpu::WaveNetEngine;

cpu::WaveNetShape shape_from(py::handle config_arg) {
  const py::dict config = config_dict(config_arg, "wavenet", "WaveNet");
  cpu::WaveNetShape shape;
  shape.layers = config_int(config, "layers");
  shape.kernel_size = config_int(config, "kernel_size");
  shape.residual = config_int(config, "residual_channels");
  shape.gate = config_int(config, "gate_channels");
  shape.skip = config_int(config, "skip_channels");
  shape.classes = config_int(config, "classes");
  shape.global_classes = config_int(config, "global_classes");
  shape.global_channels = config_int(config, "global_channels");
  shape.local_channels = config_int(config, "local_channels");
  shape.hop = config_int(config, "cond_hop");
  shape.dilations = config_ints(config, "dilations");
  return shape;
}

std::unique_ptr<WaveNetEngine> make_engine(py::handle config, py::handle weights_arg,
                                           py::handle batch_arg, py::handle threads_arg,
                                           py::handle global_arg, py::handle local_arg,
                                           const std::string& isa, const std::string& precision) {
  const cpu::WaveNetShape shape = shape_from(config);
  WeightArrays weights(weights_arg, "WaveNet");
  const int64_t batch = batch_arg_value(batch_arg);
  const int threads = threads_arg_value(threads_arg);

  const int64_t* global_ids = nullptr;
  py::array_t<int64_t, py::array::c_style> global;
  if (!global_arg.is_none()) {
    global = contiguous_array<int64_t>(global_arg, "global_cond", "int64");
    if (global.ndim() != 1 || global.shape(0) != batch) {
      throw py::value_error("global_cond must have shape (batch,) = (" + std::to_string(batch) +
                            ",), got " + shape_text(global));
    }
    global_ids = global.data();
  }
  const float* local = nullptr;
  int64_t frames = 0;
  py::array_t<float, py::array::c_style> local_array;
  if (!local_arg.is_none()) {
    local_array = contiguous_array<float>(local_arg, "local_cond", "float32");
    const bool wanted = shape.local_channels > 0;  // if not, the engine refuses it by name
    if (wanted && (local_array.ndim() != 3 || local_array.shape(0) != batch ||
                   local_array.shape(1) != shape.local_channels)) {
      throw py::value_error("local_cond must have shape (batch, local_channels, frames) = (" +
                            std::to_string(batch) + ", " + std::to_string(shape.local_channels) +
                            ", F), got " + shape_text(local_array));
    }
    local = local_array.data();
    frames = wanted ? local_array.shape(2) : 0;
  }
  return std::make_unique<WaveNetEngine>(shape, weights.map, batch, threads, global_ids, local, frames, isa,
                                         precision);
}

// e^x of a float64 array as the C++ engines' sampling computes it, for the tests of its accuracy.
py::array_t<double> cpu_exp(py::handle x_arg, const std::string& isa) {
  const auto x = checked_array<double>(x_arg, "x", "float64");
  const cpu::IsaKernels& kernels = cpu::select_isa(isa);
  py::array_t<double> result(x.request().shape);
  std::copy(x.data(), x.data() + x.size(), result.mutable_data());
  kernels.exp_doubles(result.mutable_data(), static_cast<int64_t>(result.size()));
  return result;
}

// y = x @ w through the int8 mode's quantisation and product (cpu/int8_weights.h), for its tests.
py::array_t<float> int8_matmul(py::handle x_arg, py::handle w_arg, const std::string& isa, int64_t block) {
  const auto x = checked_array<float>(x_arg, "x", "float32");
  const auto w = checked_array<float>(w_arg, "w", "float32");
  if (x.ndim() != 2 || w.ndim() != 2 || x.shape(1) != w.shape(0)) {
    throw py::value_error("x (rows, in) and w (in, cols) must be 2-d with matching in, got " + shape_text(x) +
                          " and " + shape_text(w));
  }
  const int64_t rows = x.shape(0), in = w.shape(0), cols = w.shape(1);
  if (rows < 1 || in < 16 || in % 16 || cols < 16 || cols % 16 || rows * in > (1 << 26) || in * cols > (1 << 26)) {
    throw py::value_error("int8_matmul needs rows >= 1, in and cols positive multiples of 16 and at most 2**26 "
                          "elements per array, got x " + shape_text(x) + " and w " + shape_text(w));
  }
  if (block < 0 || block % 16 != 0) {
    throw py::value_error("block must be 0 (whole rows) or a positive multiple of 16, got " + std::to_string(block));
  }
  for (int64_t i = 0; i < rows * in; ++i) {
    if (!std::isfinite(x.data()[i])) throw py::value_error("x must be finite");
  }
  for (int64_t i = 0; i < in * cols; ++i) {
    if (!std::isfinite(w.data()[i])) throw py::value_error("w must be finite");
  }
  const cpu::IsaKernels& kernels = cpu::select_isa(isa);
  const cpu::StoredProduct product(w.data(), rows, in, cols, cpu::WeightStorage::int8, block);
  py::array_t<float> y({rows, cols});
  std::fill(y.mutable_data(), y.mutable_data() + rows * cols, 0.0f);
  product.run(kernels, x.data(), y.mutable_data(), 1);
  return y;
}

}  // namespace

void register_wavenet_cpu(py::module_& m) {
  py::class_<WaveNetEngine> cls(m, "WaveNetCpuEngine",
                                "The C++ WaveNet generation engine over WaveNet.export_weights(); see "
                                "csrc/cpu/wavenet_engine.h. Not for concurrent use from several threads.");
  cls.def(py::init(&make_engine), py::arg("config"), py::arg("weights"), py::arg("batch"),
           py::arg("threads"), py::arg("global_cond") = py::none(), py::arg("local_cond") = py::none(),
           py::arg("isa") = "auto", py::arg("precision") = "fp32",
           "config, weights: WaveNet.export_weights(); batch >= 1 streams; threads >= 1; "
           "global_cond int64 (batch,) ids; local_cond float32 (batch, local_channels, frames), "
           "copied; isa 'auto' (or $FASTWAVE_ISA) or one of cpu_isas(); precision 'fp32', 'fp16' "
           "(matrices stored as half, arithmetic in float) or 'int8' (int8 weights with a scale per "
           "output channel, inputs quantised per row, block and step, integer dot products).");
  bind_engine_methods<WaveNetEngine>(cls);
  m.def("cpu_isas", &cpu::supported_isas,
        "Instruction-set variants compiled in and supported by this CPU, best first.");
  m.def("physical_cores", &cpu::physical_cores,
        "Physical cores this process may run on (the C++ engine's default thread count).");
  m.def("usable_cpus", &cpu::usable_cpus,
        "Logical CPUs this process may run on: fastwave's engine wrappers cap threads at this.");
  m.def("cpu_exp", &cpu_exp, py::arg("x"), py::arg("isa") = "auto",
        "e^x of a float64 array (a new array of its shape) as the C++ engines' sampling computes it "
        "with the given instruction-set variant: within an ulp of libm's exp.");
  m.def("int8_matmul", &int8_matmul, py::arg("x"), py::arg("w"), py::arg("isa") = "auto", py::arg("block") = 0,
        "x (rows, in) @ w (in, cols), float32, through the C++ engines' int8 mode with the given "
        "instruction-set variant: w quantised per column to int8, each row of x to 7 bits per block of "
        "`block` inputs (0: the whole row), exact integer dot products per block scaled back to float "
        "and summed in order. in and cols: multiples of 16.");
  m.def("multiply_rate", &cpu::multiply_rate, py::arg("precision"), py::arg("rows"), py::arg("inputs"),
        py::arg("cols"), py::arg("threads") = 1, py::arg("seconds") = 0.2, py::arg("isa") = "auto",
        "Aggregate multiply-adds/s of `threads` threads each repeating the C++ engines' product of "
        "(rows, inputs) @ (inputs, cols) with weights stored at `precision` ('fp32', 'fp16', 'int8'), "
        "in its caches: the compute ceiling of a generation step. inputs, cols: multiples of 16.");
  m.def("read_bandwidth", &cpu::read_bandwidth, py::arg("bytes_per_thread"), py::arg("threads"),
        py::arg("seconds") = 0.2, py::arg("isa") = "auto",
        "Aggregate bytes/s of `threads` threads each re-reading its own buffer of bytes_per_thread.");
}

}  // namespace fastwave
