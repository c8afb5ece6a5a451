// The entry points each ISA variant of csrc/cpu/kernels provides (POD only: this header is compiled
// into every variant; see step_job.h).
#pragma once

#include <cstdint>

#include "cpu/transformer_plan.h"
#include "cpu/wavenet_plan.h"

namespace fastwave {
namespace cpu {

enum class WeightStorage { fp32, fp16, int8 };

struct IsaKernels {
  const char* name;  // "avx512vnni", "avx512", "avx2" or "generic"
  // Runs one member's share of a job. Throws nothing: every input was validated before the plan
  // was built.
  void (*run_wavenet_steps)(const WaveNetPlan<float>& plan, MemberTask& task, const StepJob& job);
  void (*run_wavenet_steps_half)(const WaveNetPlan<uint16_t>& plan, MemberTask& task, const StepJob& job);
  void (*run_wavenet_steps_int8)(const WaveNetPlan<uint8_t>& plan, MemberTask& task, const StepJob& job);
  void (*run_transformer_steps)(const TransformerPlan<float>& plan, TransformerTask& task, const StepJob& job);
  void (*run_transformer_steps_half)(const TransformerPlan<uint16_t>& plan, TransformerTask& task, const StepJob& job);
  void (*run_transformer_steps_int8)(const TransformerPlan<uint8_t>& plan, TransformerTask& task, const StepJob& job);
  // Reads n floats `repeats` times with vector loads and returns their sum: a bandwidth probe.
  float (*read_floats)(const float* data, int64_t n, int64_t repeats);
  // `repeats` times y (rows, cols) += x (rows, in) @ w with the engines' product for weights w
  // (in, cols) stored as `precision`: float, half bits, or the int8 layout with per-column scales
  // (int8_weights.h; x quantised per row into `buffer` each time). For the tests of the int8
  // arithmetic and the bench's compute floor. in and cols are multiples of kBlock.
  void (*multiply)(WeightStorage precision, const float* x, int64_t rows, int64_t in, const void* w,
                   const float* scale, int64_t cols, const QuantizedRows& buffer, float* y, int64_t repeats);
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
