// The entry points each ISA variant of csrc/cpu/kernels provides (POD only: this header is compiled
// into every variant; see step_job.h).
#pragma once

#include <cstdint>

#include "cpu/transformer_plan.h"
#include "cpu/wavenet_plan.h"

namespace fastwave {
namespace cpu {

struct IsaKernels {
  const char* name;  // "avx512vnni", "avx512", "avx2" or "generic"
  // Runs one member's share of a job. Throws nothing: every input was validated before the plan
  // was built.
  void (*run_wavenet_steps)(const WaveNetPlan<float>& plan, MemberTask& task, const StepJob& job);
  void (*run_wavenet_steps_half)(const WaveNetPlan<uint16_t>& plan, MemberTask& task, const StepJob& job);
  void (*run_wavenet_steps_int8)(const WaveNetPlan<uint8_t>& plan, MemberTask& task, const StepJob& job);
  void (*run_transformer_steps)(const TransformerPlan<float>& plan, TransformerTask& task, const StepJob& job);
  void (*run_transformer_steps_half)(const TransformerPlan<uint16_t>& plan, TransformerTask& task, const StepJob& job);
  // Reads n floats `repeats` times with vector loads and returns their sum: a bandwidth probe.
  float (*read_floats)(const float* data, int64_t n, int64_t repeats);
  // y (rows, cols) = x (rows, in) @ w with x quantised per row into `buffer` and w an int8 matrix
  // (in, cols) with per-column scales (int8_weights.h): the int8 mode's product, for its tests.
  // in and cols are multiples of kBlock.
  void (*int8_matmul)(const float* x, int64_t rows, int64_t in, const uint8_t* w, const float* scale,
                      int64_t cols, const QuantizedRows& buffer, float* y);
  // x[i] = e^x[i] for i < n: the exponential the engines' sampling uses (vector_ops.h).
  void (*exp_doubles)(double* x, int64_t n);
};

// One definition per compiled variant (CMake defines FASTWAVE_HAVE_<ISA> for each).
namespace avx512vnni { extern const IsaKernels kernels; }
namespace avx512 { extern const IsaKernels kernels; }
namespace avx2 { extern const IsaKernels kernels; }
namespace generic { extern const IsaKernels kernels; }

}  // namespace cpu
}  // namespace fastwave
