// What the bindings of the C++ generation engines share: reading the exported config and weights,
// batch and thread arguments, and prefill() / generate() for any engine with the same interface
// (csrc/cpu/wavenet_engine.h, csrc/cpu/transformer_engine.h). Both run with the GIL released.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bind_checks.h"
#include "common/sampling.h"
#include "cpu/engine_support.h"

namespace fastwave {
namespace bind {

constexpr uint64_t kMaxConfigValue = uint64_t{1} << 40;  // the engines apply the real ranges

// config (export_weights()[0]) as a dict whose "model", when present, is `model`.
inline py::dict config_dict(py::handle config_arg, const std::string& model, const std::string& cls) {
  if (!py::isinstance<py::dict>(config_arg)) {
    throw py::type_error("config must be a dict (" + cls + ".export_weights()[0]), got " + type_name(config_arg));
  }
  const auto config = py::reinterpret_borrow<py::dict>(config_arg);
  if (config.contains("model") && py::str(config["model"]).cast<std::string>() != model) {
    throw py::value_error("config['model'] must be '" + model + "', got " + std::string(py::repr(config["model"])));
  }
  return config;
}

inline int64_t config_int(const py::dict& config, const char* key) {
  if (!config.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
  return static_cast<int64_t>(checked_uint(config[key], std::string("config['") + key + "']",
                                           kMaxConfigValue, "[0, 2**40]"));
}

inline std::vector<int64_t> config_ints(const py::dict& config, const char* key) {
  if (!config.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
  const py::handle values = config[key];
  if (!py::isinstance<py::sequence>(values) || py::isinstance<py::str>(values)) {
    throw py::type_error(std::string("config['") + key + "'] must be a list of integers, got " + type_name(values));
  }
  std::vector<int64_t> result;
  for (const py::handle v : py::reinterpret_borrow<py::sequence>(values)) {
    result.push_back(static_cast<int64_t>(
        checked_uint(v, std::string("each of config['") + key + "']", kMaxConfigValue, "[0, 2**40]")));
  }
  return result;
}

// The weights dict as the engines' WeightMap, holding the arrays alive while the engine copies them.
struct WeightArrays {
  std::vector<py::array_t<float, py::array::c_style>> keep_alive;
  cpu::WeightMap map;

  WeightArrays(py::handle weights_arg, const std::string& cls) {
    if (!py::isinstance<py::dict>(weights_arg)) {
      throw py::type_error("weights must be a dict of name -> float32 array (" + cls + ".export_weights()[1]), got " +
                           type_name(weights_arg));
    }
    for (const auto& item : py::reinterpret_borrow<py::dict>(weights_arg)) {
      if (!py::isinstance<py::str>(item.first)) {
        throw py::type_error("weights keys must be str, got " + type_name(item.first));
      }
      const std::string name = py::str(item.first);
      keep_alive.push_back(contiguous_array<float>(item.second, "weights['" + name + "']", "float32"));
      const auto& array = keep_alive.back();
      map[name] = {array.data(), std::vector<int64_t>(array.shape(), array.shape() + array.ndim())};
    }
  }
};

inline int64_t batch_arg_value(py::handle batch_arg) {
  const auto batch = static_cast<int64_t>(checked_uint(batch_arg, "batch", 1 << 20, "[1, 2**20]"));
  if (batch < 1) throw py::value_error("batch must be in [1, 2**20], got 0");
  return batch;
}

inline int threads_arg_value(py::handle threads_arg) {
  return static_cast<int>(checked_uint(threads_arg, "threads", 1024, "[1, 1024]"));
}

// The engine behind `self`, refusing one made by __new__ without __init__: pybind11 would hand a
// method fresh uninitialised memory for it (it allocates the value lazily, unconstructed).
template <typename Engine>
Engine& initialized(py::handle self) {
  if (!py::isinstance<Engine>(self)) throw py::type_error("expected an engine object, got " + type_name(self));
  auto* instance = reinterpret_cast<py::detail::instance*>(self.ptr());
  const py::detail::value_and_holder held = instance->get_value_and_holder(py::detail::get_type_info(typeid(Engine)));
  if (!held || !held.holder_constructed()) {
    throw py::type_error(type_name(self) + " object was never initialised (made with __new__ alone): build it by "
                         "calling the class, e.g. " + type_name(self) + "(config, weights, batch, threads)");
  }
  return *held.template value_ptr<Engine>();
}

template <typename Engine>
py::object prefill(py::handle self, py::handle prompt_arg, bool return_logits) {
  Engine& engine = initialized<Engine>(self);
  // A private copy: the engine reads it with the GIL released.
  const auto prompt = private_copy(contiguous_array<int64_t>(prompt_arg, "prompt", "int64"));
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

template <typename Engine>
py::array_t<int64_t> generate(py::handle self, py::handle n_arg, py::handle seed_arg, py::handle step0_arg,
                              double temperature, py::handle top_k_arg, double top_p, bool final) {
  Engine& engine = initialized<Engine>(self);
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

// A read-only property reading `getter` of an initialised engine.
template <typename Engine, typename Class, typename Result>
void engine_property(Class& cls, const char* name, Result (Engine::*getter)() const, const char* doc = "") {
  cls.def_property_readonly(name, [getter](py::handle self) { return (initialized<Engine>(self).*getter)(); }, doc);
}

// The methods and properties every engine class exposes, with their docstrings.
template <typename Engine, typename Class>
void bind_engine_methods(Class& cls) {
  cls.def("prefill", &prefill<Engine>, py::arg("prompt"), py::arg("return_logits") = false,
          "Reset and feed prompt int64 (batch, P). return_logits: also return float32 "
          "(batch, P, classes), the next-sample logits at every position (teacher forcing).")
      .def("generate", &generate<Engine>, py::arg("n"), py::arg("seed"), py::arg("step0"),
           py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("final"),
           "Sample n tokens per stream -> int64 (batch, n); sample i of stream b uses Philox "
           "(seed, step0 + i, b). final: do not feed the last token (prefill again before more).");
  engine_property(cls, "batch", &Engine::batch);
  engine_property(cls, "classes", &Engine::classes);
  engine_property(cls, "threads", &Engine::threads);
  engine_property(cls, "isa", &Engine::isa);
  engine_property(cls, "precision", &Engine::precision);
  engine_property(cls, "position", &Engine::position, "Positions fed so far (prompt included).");
  engine_property(cls, "receptive_field", &Engine::receptive_field);
  engine_property(cls, "state_bytes", &Engine::state_bytes, "Bytes of generation state for the batch.");
  engine_property(cls, "late_waits", &Engine::late_waits,
                  "Exchanges at which a thread waited over ~0.5 ms for a partner (since the engine was "
                  "built): the partner was descheduled by a busy machine.");
}

}  // namespace bind
}  // namespace fastwave
