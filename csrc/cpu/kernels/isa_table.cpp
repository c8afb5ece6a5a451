// This ISA variant's entry points (isa_kernels.h): the step loops, the bandwidth probe and the
// sampler's exponential.
#include <cstdint>

#include "cpu/isa_kernels.h"
#include "cpu/kernels/int8_ops.h"
#include "cpu/kernels/vector_ops.h"

namespace fastwave {
namespace cpu {
namespace FASTWAVE_ISA {

void run_wavenet_steps(const WaveNetPlan<float>& plan, MemberTask& task, const StepJob& job);  // wavenet_steps.cpp
void run_wavenet_steps_half(const WaveNetPlan<uint16_t>& plan, MemberTask& task, const StepJob& job);
void run_wavenet_steps_int8(const WaveNetPlan<uint8_t>& plan, MemberTask& task, const StepJob& job);
void run_transformer_steps(const TransformerPlan<float>& plan, TransformerTask& task, const StepJob& job);  // transformer_steps.cpp
void run_transformer_steps_half(const TransformerPlan<uint16_t>& plan, TransformerTask& task, const StepJob& job);
void run_transformer_steps_int8(const TransformerPlan<uint8_t>& plan, TransformerTask& task, const StepJob& job);

namespace {

float read_floats(const float* data, int64_t n, int64_t repeats) {
  V acc[4] = {};
  for (int64_t rep = 0; rep < repeats; ++rep) {
    for (int64_t i = 0; i + 4 * kLanes <= n; i += 4 * kLanes) {
      for (int j = 0; j < 4; ++j) acc[j] += load(data + i + j * kLanes);
    }
  }
  return horizontal_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

void multiply(WeightStorage precision, const float* x, int64_t rows, int64_t in, const void* w, const float* scale,
              int64_t cols, const QuantizedRows& buffer, float* y, int64_t repeats) {
  for (int64_t r = 0; r < repeats; ++r) {
    switch (precision) {
      case WeightStorage::fp32:
        product1(y, cols, rows, cols, x, in, static_cast<const float*>(w), in, cols);
        break;
      case WeightStorage::fp16:
        product1(y, cols, rows, cols, x, in, static_cast<const uint16_t*>(w), in, cols);
        break;
      case WeightStorage::int8:
        product_q8(y, cols, rows, cols, quantize_rows(x, in, rows, in, buffer.block > 0 ? buffer.block : in, buffer),
                   static_cast<const uint8_t*>(w), scale, in, cols);
        break;
    }
  }
}

}  // namespace

#define FASTWAVE_STRINGIFY(name) FASTWAVE_STRINGIFY_VALUE(name)
#define FASTWAVE_STRINGIFY_VALUE(name) #name
extern const IsaKernels kernels{FASTWAVE_STRINGIFY(FASTWAVE_ISA), &run_wavenet_steps, &run_wavenet_steps_half,
                                &run_wavenet_steps_int8, &run_transformer_steps,
                                &run_transformer_steps_half, &run_transformer_steps_int8, &read_floats, &multiply, &exp_doubles};

}  // namespace FASTWAVE_ISA
}  // namespace cpu
}  // namespace fastwave
