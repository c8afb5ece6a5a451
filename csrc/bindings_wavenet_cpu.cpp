// pybind11 bindings of the C++ WaveNet engine (csrc/cpu). Python types, dtypes and layouts are
// checked here; the engine checks names, shapes, ranges and finiteness. Both raise before any memory
// is touched. prefill() and generate() run with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <string>

#include "bind_checks.h"
#include "cpu/bandwidth.h"
#include "cpu/isa.h"
#include "cpu/wavenet_engine.h"
#include "cpu/worker_pool.h"

namespace py = pybind11;

namespace fastwave {
namespace {

using namespace bind;
using cpu::WaveNetEngine;

constexpr uint64_t kMaxConfigValue = uint64_t{1} << 40;  // the engine applies the real ranges

int64_t config_int(const py::dict& config, const char* key) {
  if (!config.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
  return static_cast<int64_t>(checked_uint(config[key], std::string("config['") + key + "']",
                                           kMaxConfigValue, "[0, 2**40]"));
}

cpu::WaveNetShape shape_from(py::handle config_arg) {
  if (!py::isinstance<py::dict>(config_arg)) {
    throw py::type_error("config must be a dict (WaveNet.export_weights()[0]), got " + type_name(config_arg));
  }
  const auto config = py::reinterpret_borrow<py::dict>(config_arg);
  if (config.contains("model") && py::str(config["model"]).cast<std::string>() != "wavenet") {
    throw py::value_error("config['model'] must be 'wavenet', got " +
                          std::string(py::repr(config["model"])));
  }
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
  if (!config.contains("dilations")) throw py::value_error("config is missing 'dilations'");
  const py::handle dilations = config["dilations"];
  if (!py::isinstance<py::sequence>(dilations) || py::isinstance<py::str>(dilations)) {
    throw py::type_error("config['dilations'] must be a list of integers, got " + type_name(dilations));
  }
  for (const py::handle d : py::reinterpret_borrow<py::sequence>(dilations)) {
    shape.dilations.push_back(static_cast<int64_t>(
        checked_uint(d, "each of config['dilations']", kMaxConfigValue, "[0, 2**40]")));
  }
  return shape;
}

std::vector<int64_t> shape_of(const py::array& array) {
  return std::vector<int64_t>(array.shape(), array.shape() + array.ndim());
}

std::unique_ptr<WaveNetEngine> make_engine(py::handle config, py::handle weights_arg,
                                           py::handle batch_arg, py::handle threads_arg,
                                           py::handle global_arg, py::handle local_arg,
                                           const std::string& isa) {
  const cpu::WaveNetShape shape = shape_from(config);
  if (!py::isinstance<py::dict>(weights_arg)) {
    throw py::type_error("weights must be a dict of name -> float32 array (WaveNet.export_weights()[1]), got " +
                         type_name(weights_arg));
  }
  std::vector<py::array_t<float, py::array::c_style>> keep_alive;
  cpu::WeightMap weights;
  for (const auto& item : py::reinterpret_borrow<py::dict>(weights_arg)) {
    if (!py::isinstance<py::str>(item.first)) {
      throw py::type_error("weights keys must be str, got " + type_name(item.first));
    }
    const std::string name = py::str(item.first);
    keep_alive.push_back(contiguous_array<float>(item.second, "weights['" + name + "']", "float32"));
    weights[name] = {keep_alive.back().data(), shape_of(keep_alive.back())};
  }
  const int64_t batch = static_cast<int64_t>(checked_uint(batch_arg, "batch", 1 << 20, "[1, 2**20]"));
  if (batch < 1) throw py::value_error("batch must be in [1, 2**20], got 0");
  const int threads = static_cast<int>(checked_uint(threads_arg, "threads", 1024, "[1, 1024]"));

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
  return std::make_unique<WaveNetEngine>(shape, weights, batch, threads, global_ids, local, frames, isa);
}

py::object prefill(WaveNetEngine& engine, py::handle prompt_arg, bool return_logits) {
  const auto prompt = contiguous_array<int64_t>(prompt_arg, "prompt", "int64");
  if (prompt.ndim() != 2 || prompt.shape(0) != engine.batch() || prompt.shape(1) < 1) {
    throw py::value_error("prompt must have shape (batch, P) = (" + std::to_string(engine.batch()) +
                          ", P >= 1), got " + shape_text(prompt));
  }
  const int64_t length = prompt.shape(1);
  py::array_t<float> logits;
  float* logits_out = nullptr;
  if (return_logits) {
    if (static_cast<double>(length) * engine.batch() * engine.classes() > static_cast<double>(1LL << 34)) {
      throw py::value_error("return_logits: batch * P * classes floats would exceed 2**34; pass a shorter prompt");
    }
    logits = py::array_t<float>({engine.batch(), length, engine.classes()});
    logits_out = logits.mutable_data();
  }
  {
    py::gil_scoped_release no_gil;
    engine.prefill(prompt.data(), length, logits_out);
  }
  return return_logits ? py::object(logits) : py::object(py::none());
}

py::array_t<int64_t> generate(WaveNetEngine& engine, py::handle n_arg, py::handle seed_arg,
                              py::handle step0_arg, double temperature, py::handle top_k_arg,
                              double top_p, bool final) {
  const auto n = static_cast<int64_t>(checked_uint(n_arg, "n", kMaxUint32 + 1, "[0, 2**32]"));
  const uint64_t seed = checked_uint(seed_arg, "seed", kMaxUint64, "[0, 2**64)");
  const auto step0 = static_cast<uint32_t>(checked_uint(step0_arg, "step0", kMaxUint32, "[0, 2**32)"));
  const auto top_k = static_cast<int64_t>(checked_uint(top_k_arg, "top_k", kMaxUint32, "[0, 2**32)"));
  const SamplingParams params{temperature, top_k, top_p};
  validate(params);
  if (static_cast<double>(n) * engine.batch() > static_cast<double>(1LL << 34)) {
    throw py::value_error("batch * n tokens would exceed 2**34; generate in chunks");
  }
  py::array_t<int64_t> tokens({engine.batch(), n});
  int64_t* out = tokens.mutable_data();
  {
    py::gil_scoped_release no_gil;
    engine.generate(n, seed, step0, params, final, out);
  }
  return tokens;
}

}  // namespace

void register_wavenet_cpu(py::module_& m) {
  py::class_<WaveNetEngine>(m, "WaveNetCpuEngine",
                            "The C++ WaveNet generation engine over WaveNet.export_weights(); see "
                            "csrc/cpu/wavenet_engine.h. Not for concurrent use from several threads.")
      .def(py::init(&make_engine), py::arg("config"), py::arg("weights"), py::arg("batch"),
           py::arg("threads"), py::arg("global_cond") = py::none(), py::arg("local_cond") = py::none(),
           py::arg("isa") = "auto",
           "config, weights: WaveNet.export_weights(); batch >= 1 streams; threads >= 1; "
           "global_cond int64 (batch,) ids; local_cond float32 (batch, local_channels, frames), "
           "copied; isa 'auto' (or $FASTWAVE_ISA) or one of cpu_isas().")
      .def("prefill", &prefill, py::arg("prompt"), py::arg("return_logits") = false,
           "Reset and feed prompt int64 (batch, P). return_logits: also return float32 "
           "(batch, P, classes), the next-sample logits at every position (teacher forcing).")
      .def("generate", &generate, py::arg("n"), py::arg("seed"), py::arg("step0"),
           py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("final"),
           "Sample n tokens per stream -> int64 (batch, n); sample i of stream b uses Philox "
           "(seed, step0 + i, b). final: do not feed the last token (prefill again before more).")
      .def_property_readonly("batch", &WaveNetEngine::batch)
      .def_property_readonly("threads", &WaveNetEngine::threads)
      .def_property_readonly("isa", &WaveNetEngine::isa)
      .def_property_readonly("position", &WaveNetEngine::position,
                             "Positions fed so far (prompt included).")
      .def_property_readonly("receptive_field", &WaveNetEngine::receptive_field)
      .def_property_readonly("state_bytes", &WaveNetEngine::state_bytes,
                             "Bytes of generation state (the ring buffers).");
  m.def("cpu_isas", &cpu::supported_isas,
        "Instruction-set variants compiled in and supported by this CPU, best first.");
  m.def("physical_cores", &cpu::physical_cores,
        "Physical cores this process may run on (the C++ engine's default thread count).");
  m.def("read_bandwidth", &cpu::read_bandwidth, py::arg("bytes_per_thread"), py::arg("threads"),
        py::arg("seconds") = 0.2, py::arg("isa") = "auto",
        "Aggregate bytes/s of `threads` threads each re-reading its own buffer of bytes_per_thread.");
}

}  // namespace fastwave
