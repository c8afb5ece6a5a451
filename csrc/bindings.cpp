// pybind11 bindings for fastwave._native. Takes numpy arrays and raw device pointers; never links
// libtorch. Every argument is validated here, before any pointer is touched; nothing passed in is
// modified. Errors: TypeError for a wrong type or dtype, ValueError for a wrong shape or value,
// RuntimeError for a failed CUDA call -- each naming the argument and what was expected.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "bind_checks.h"
#include "common/philox.h"
#include "common/sampling.h"

#ifdef FASTWAVE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "cuda/philox_uniform.h"
#endif

namespace py = pybind11;

namespace fastwave {
void register_wavenet_cpu(py::module_& m);      // bindings_wavenet_cpu.cpp
void register_transformer_cpu(py::module_& m);  // bindings_transformer_cpu.cpp
}

namespace {

using namespace fastwave::bind;

// Steps and streams are 32-bit Philox counter words: every value must lie in [0, 2^32).
void require_uint32_values(const py::array_t<int64_t, py::array::c_style>& values,
                           const std::string& name) {
  const int64_t* data = values.data();
  for (py::ssize_t i = 0; i < values.size(); ++i) {
    if (data[i] < 0 || static_cast<uint64_t>(data[i]) > kMaxUint32) {
      throw py::value_error(name + " must hold integers in [0, 2**32), got " +
                            std::to_string(data[i]));
    }
  }
}

py::tuple philox4x32(py::handle counter, py::handle key) {
  auto words = [](py::handle sequence, const std::string& name, size_t count) {
    const std::string expected = name + " must be a sequence of " + std::to_string(count) +
                                 " integers in [0, 2**32)";
    if (!py::isinstance<py::sequence>(sequence) || py::isinstance<py::str>(sequence)) {
      throw py::type_error(expected + ", got " + type_name(sequence));
    }
    const py::sequence items = py::reinterpret_borrow<py::sequence>(sequence);
    if (items.size() != count) {
      throw py::value_error(expected + ", got " + std::to_string(items.size()) + " items");
    }
    std::vector<uint32_t> result;
    for (size_t i = 0; i < count; ++i) {
      result.push_back(static_cast<uint32_t>(
          checked_uint(items[i], name + "[" + std::to_string(i) + "]", kMaxUint32, "[0, 2**32)")));
    }
    return result;
  };
  const std::vector<uint32_t> counter_words = words(counter, "counter", 4);
  const std::vector<uint32_t> key_words = words(key, "key", 2);
  const fastwave::PhiloxWords out = fastwave::philox4x32_10(counter_words.data(), key_words.data());
  return py::make_tuple(out.w[0], out.w[1], out.w[2], out.w[3]);
}

py::array_t<float> philox_uniform(py::handle seed_arg, py::handle steps_arg,
                                  py::handle streams_arg) {
  const uint64_t seed = checked_uint(seed_arg, "seed", kMaxUint64, "[0, 2**64)");
  // Private copies: they are read with the GIL released.
  const auto steps = private_copy(checked_array<int64_t>(steps_arg, "steps", "int64"));
  const auto streams = private_copy(checked_array<int64_t>(streams_arg, "streams", "int64"));
  const std::vector<py::ssize_t> shape(steps.shape(), steps.shape() + steps.ndim());
  if (std::vector<py::ssize_t>(streams.shape(), streams.shape() + streams.ndim()) != shape) {
    throw py::value_error("streams must have the shape of steps " + shape_text(steps) +
                          ", got shape " + shape_text(streams));
  }
  require_uint32_values(steps, "steps");
  require_uint32_values(streams, "streams");

  py::array_t<float> out(shape);
  const int64_t* step_data = steps.data();
  const int64_t* stream_data = streams.data();
  float* out_data = out.mutable_data();
  const py::ssize_t count = steps.size();
  {
    py::gil_scoped_release no_gil;
    for (py::ssize_t i = 0; i < count; ++i) {
      out_data[i] = fastwave::philox_uniform(seed, static_cast<uint32_t>(step_data[i]),
                                             static_cast<uint32_t>(stream_data[i]));
    }
  }
  return out;
}

void require_finite_logits(const float* logits, py::ssize_t count) {
  for (py::ssize_t i = 0; i < count; ++i) {
    if (!std::isfinite(logits[i])) {
      throw py::value_error("logits must be finite, got " + std::to_string(logits[i]) +
                            " at flat index " + std::to_string(i));
    }
  }
}

void require_unit_interval(const float* u, py::ssize_t count) {
  for (py::ssize_t i = 0; i < count; ++i) {
    if (!(u[i] >= 0.0f && u[i] < 1.0f)) {  // written this way round so NaN fails too
      throw py::value_error("u must hold values in [0, 1), got " + std::to_string(u[i]) +
                            " at index " + std::to_string(i));
    }
  }
}

py::array_t<int64_t> sample_tokens(py::handle logits_arg, py::handle u_arg, double temperature,
                                   int64_t top_k, double top_p) {
  const fastwave::SamplingParams params{temperature, top_k, top_p};
  fastwave::validate(params);
  // Private copies: they are read with the GIL released.
  const auto logits = private_copy(checked_array<float>(logits_arg, "logits", "float32"));
  const auto u = private_copy(checked_array<float>(u_arg, "u", "float32"));
  require_ndim(logits, "logits", 2, "(batch, num_classes)");
  require_ndim(u, "u", 1, "(batch,)");
  const py::ssize_t batch = logits.shape(0);
  const py::ssize_t num_classes = logits.shape(1);
  if (num_classes < 1) throw py::value_error("logits must have at least one class, got shape " +
                                             shape_text(logits));
  if (u.shape(0) != batch) {
    throw py::value_error("u must have shape (batch,) = (" + std::to_string(batch) +
                          ",) to match logits, got shape " + shape_text(u));
  }
  require_finite_logits(logits.data(), logits.size());
  require_unit_interval(u.data(), u.size());

  py::array_t<int64_t> tokens(batch);
  const float* logit_rows = logits.data();
  const float* u_data = u.data();
  int64_t* token_data = tokens.mutable_data();
  {
    py::gil_scoped_release no_gil;
    fastwave::SamplingScratch scratch;
    for (py::ssize_t row = 0; row < batch; ++row) {
      token_data[row] = fastwave::sample_token(logit_rows + row * num_classes, num_classes,
                                               u_data[row], params, scratch);
    }
  }
  return tokens;
}

#ifdef FASTWAVE_WITH_CUDA

void check_cuda(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it, so the next call does not report it again
    throw std::runtime_error(what + " failed: " + cudaGetErrorName(status) + ": " +
                             cudaGetErrorString(status));
  }
}

// The kernel may only write memory of the current device: a host or foreign pointer would fault
// asynchronously and poison the context, so it is refused here instead.
void require_current_device_memory(const void* pointer, const std::string& name) {
  cudaPointerAttributes attributes{};
  check_cuda(cudaPointerGetAttributes(&attributes, pointer),
             "cudaPointerGetAttributes(" + name + ")");
  if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) {
    throw py::value_error(name + " must point to CUDA device memory");
  }
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  if (attributes.device != device) {
    throw py::value_error(name + " must be memory of the current CUDA device " +
                          std::to_string(device) + ", got device " +
                          std::to_string(attributes.device));
  }
}

void cuda_philox_uniform(py::handle out_ptr_arg, py::handle out_size_arg, py::handle n_steps_arg,
                         py::handle n_streams_arg, py::handle seed_arg, py::handle step0_arg,
                         py::handle stream_ptr_arg) {
  const uint64_t step0 = checked_uint(step0_arg, "step0", kMaxUint32, "[0, 2**32)");
  const uint64_t n_steps =
      checked_uint(n_steps_arg, "n_steps", (kMaxUint32 + 1) - step0, "[0, 2**32 - step0]");
  const uint64_t n_streams = checked_uint(n_streams_arg, "n_streams", kMaxUint32 + 1, "[0, 2**32]");
  if (n_streams != 0 && n_steps > static_cast<uint64_t>(INT64_MAX) / n_streams) {
    throw py::value_error("n_steps * n_streams must be < 2**63");
  }
  const uint64_t seed = checked_uint(seed_arg, "seed", kMaxUint64, "[0, 2**64)");
  const uint64_t out_ptr = checked_uint(out_ptr_arg, "out_ptr", UINTPTR_MAX, "[0, 2**64)");
  const uint64_t stream_ptr = checked_uint(stream_ptr_arg, "stream_ptr", UINTPTR_MAX, "[0, 2**64)");
  // A raw pointer carries no size: the caller states it, so a short buffer is refused, not overrun.
  const uint64_t out_size = checked_uint(out_size_arg, "out_size", static_cast<uint64_t>(INT64_MAX),
                                         "[0, 2**63)");
  if (n_steps * n_streams > out_size) {
    throw py::value_error("out_size (" + std::to_string(out_size) + " floats) is smaller than n_steps * "
                          "n_streams = " + std::to_string(n_steps * n_streams));
  }
  if (n_steps * n_streams == 0) return;
  if (out_ptr == 0) throw py::value_error("out_ptr must be a device pointer, got 0 (null)");
  float* out = reinterpret_cast<float*>(static_cast<uintptr_t>(out_ptr));
  require_current_device_memory(out, "out_ptr");

  const auto stream = reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(stream_ptr));
  const std::string error = fastwave::launch_philox_uniform(
      out, static_cast<int64_t>(n_steps), static_cast<int64_t>(n_streams), seed,
      static_cast<uint32_t>(step0), stream);
  if (!error.empty()) throw std::runtime_error(error);
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no GPU is an answer (0), not an error
    return 0;
  }
  return count;
}

#else

int cuda_device_count() { return 0; }

#endif

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "fastwave native core: Philox RNG, sampling policies, generation engines";
#ifdef FASTWAVE_WITH_CUDA
  m.attr("cuda_compiled") = true;
#else
  m.attr("cuda_compiled") = false;
#endif

  m.def("philox4x32", &philox4x32, py::arg("counter"), py::arg("key"),
        "Philox4x32-10 of one counter (4 uint32 words) under one key (2 uint32 words) -> 4 words.");
  m.def("philox_uniform", &philox_uniform, py::arg("seed"), py::arg("steps"), py::arg("streams"),
        "Sampling uniforms in [0, 1): seed int in [0, 2**64); steps, streams int64 arrays of one "
        "shape, values in [0, 2**32) -> float32 array of that shape.");
  m.def("sample_tokens", &sample_tokens, py::arg("logits"), py::arg("u"), py::arg("temperature"),
        py::arg("top_k"), py::arg("top_p"),
        "One token per row: logits float32 (B, A), u float32 (B,) in [0, 1), temperature >= 0 "
        "(0 = greedy), top_k >= 0 (0 = off), top_p in (0, 1] (1 = off) -> int64 (B,).");
  fastwave::register_wavenet_cpu(m);
  fastwave::register_transformer_cpu(m);
  m.def("cuda_device_count", &cuda_device_count,
        "Number of visible CUDA devices; 0 without a CUDA build, driver or GPU.");
#ifdef FASTWAVE_WITH_CUDA
  m.def("cuda_philox_uniform", &cuda_philox_uniform, py::arg("out_ptr"), py::arg("out_size"),
        py::arg("n_steps"), py::arg("n_streams"), py::arg("seed"), py::arg("step0"),
        py::arg("stream_ptr"),
        "Queue on stream_ptr (a cudaStream_t as int, 0 = default stream) a kernel writing "
        "out[t * n_streams + b] = philox_uniform(seed, step0 + t, b) into out_ptr, device memory "
        "of out_size >= n_steps * n_streams float32 on the current device. Launch errors raise "
        "RuntimeError here; errors during the kernel surface at the stream's next synchronisation.");
#endif
}
