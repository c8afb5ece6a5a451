// pybind11 bindings of the C++ sample-Transformer engine (csrc/cpu/transformer_engine.h). Python
// types, dtypes and layouts are checked here; the engine checks names, shapes, ranges and
// finiteness. Both raise before any memory is touched. prefill() and generate() run with the GIL
// released.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>

#include <cmath>
#include <memory>
#include <string>

#include "bind_checks.h"
#include "bind_engine.h"
#include "cpu/transformer_engine.h"

namespace py = pybind11;

namespace fastwave {
namespace {

using namespace bind;
using cpu::TransformerEngine;

cpu::TransformerShape shape_from(py::handle config_arg) {
  const py::dict config = config_dict(config_arg, "transformer", "SampleTransformer");
  cpu::TransformerShape shape;
  shape.layers = config_int(config, "layers");
  shape.heads = config_int(config, "heads");
  shape.width = config_int(config, "width");
  shape.mlp_ratio = config_int(config, "mlp_ratio");
  shape.context = config_int(config, "context");
  shape.classes = config_int(config, "classes");
  if (!config.contains("rope_base")) throw py::value_error("config is missing 'rope_base'");
  const py::handle base = config["rope_base"];
  if (!py::isinstance<py::float_>(base) && !py::isinstance<py::int_>(base)) {
    throw py::type_error("config['rope_base'] must be a number, got " + type_name(base));
  }
  shape.rope_base = PyFloat_AsDouble(base.ptr());  // an int too large for a double raises OverflowError
  if (PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("config['rope_base'] must be a finite number, got " + std::string(py::repr(base)));
  }
  shape.cond_window = config_int(config, "cond_window");
  if (shape.cond_window > 0) {
    shape.cond_hop = config_int(config, "cond_hop");
    shape.cond_channels = config_int(config, "cond_channels");
    shape.cond_kernel = config_int(config, "cond_kernel");
    shape.cond_patches = config_int(config, "cond_patches");
    shape.cond_dilations = config_ints(config, "cond_dilations");
  }
  return shape;
}

std::unique_ptr<TransformerEngine> make_engine(py::handle config, py::handle weights_arg, py::handle batch_arg,
                                               py::handle threads_arg, const std::string& isa,
                                               const std::string& precision) {
  const cpu::TransformerShape shape = shape_from(config);
  WeightArrays weights(weights_arg, "SampleTransformer");
  const int64_t batch = batch_arg_value(batch_arg);
  const int threads = threads_arg_value(threads_arg);
  return std::make_unique<TransformerEngine>(shape, weights.map, batch, threads, isa, precision);
}

}  // namespace

void register_transformer_cpu(py::module_& m) {
  py::class_<TransformerEngine> cls(m, "TransformerCpuEngine",
                                    "The C++ sample-Transformer generation engine over "
                                    "SampleTransformer.export_weights(); see csrc/cpu/transformer_engine.h. "
                                    "Not for concurrent use from several threads.");
  cls.def(py::init(&make_engine), py::arg("config"), py::arg("weights"), py::arg("batch"), py::arg("threads"),
          py::arg("isa") = "auto", py::arg("precision") = "fp32",
          "config, weights: SampleTransformer.export_weights() (either variant); batch >= 1 streams; "
          "threads >= 1; isa 'auto' (or $FASTWAVE_ISA) or one of cpu_isas(); precision 'fp32', "
          "'fp16' (matrices and KV cache stored as half, arithmetic in float) or 'int8' (int8 matrices "
          "with a scale per output channel and an int8 KV cache with a scale per slot).");
  bind_engine_methods<TransformerEngine>(cls);
  bind::engine_property(cls, "context", &TransformerEngine::context, "Positions each position attends to.");
}

}  // namespace fastwave
