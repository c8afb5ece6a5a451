// The C++ WaveNet generation engine: Fast-WaveNet incremental steps over the weights of
// fastwave.WaveNet.export_weights(), batches of independent streams, a team of threads, SIMD picked
// at run time, and the shared sampling contract. No Python per sample: the bindings release the GIL
// around prefill() and generate().
//
// Threads: with batch >= threads, each thread runs its own rows and never waits for another; with
// fewer rows than threads, a group of threads shares rows and splits every layer's gate channels
// (and the head's hidden channels), exchanging partial sums once per layer. At batch 1 on two cores
// that also halves the weights each core streams from its cache.
//
// precision: "fp32" (the parity contract with the torch engine), "fp16" (the matrices stored as IEEE
// half, arithmetic in float: half the bytes a step streams) or "int8" (int8 weights with a scale per
// output channel, inputs quantised per row and step, integer dot products: int8_weights.h). Biases,
// the embedding, the local projection and the ring buffers stay float in every mode.
//
// Every argument is validated here (names, shapes, ranges, finiteness) and refused with
// std::invalid_argument (ValueError in Python) before any memory is touched.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/sampling.h"
#include "cpu/engine_support.h"
#include "cpu/int8_pack.h"
#include "cpu/isa_kernels.h"
#include "cpu/stored_matrices.h"
#include "cpu/wavenet_plan.h"
#include "cpu/worker_pool.h"

namespace fastwave {
namespace cpu {

// The WaveNetConfig fields the engine reads (fastwave/models/wavenet.py).
struct WaveNetShape {
  int64_t layers = 0, kernel_size = 0, residual = 0, gate = 0, skip = 0, classes = 0;
  int64_t global_classes = 0, global_channels = 0, local_channels = 0, hop = 1;
  std::vector<int64_t> dilations;
};

class WaveNetEngine {
 public:
  // global_ids: (batch,) in [0, global_classes) when the model has global conditioning, else null.
  // local: (batch, local_channels, frames) when it has local conditioning, else null; copied.
  WaveNetEngine(const WaveNetShape& shape, const WeightMap& weights, int64_t batch, int threads,
                const int64_t* global_ids, const float* local, int64_t frames,
                const std::string& isa, const std::string& precision = "fp32");

  // Resets the state and feeds prompt (batch, length) row-major, tokens in [0, classes). With
  // logits_out (batch, length, classes) every position's next-sample logits are written there
  // (teacher forcing); otherwise only the last receptive field of the prompt is run, which leaves the
  // same state.
  void prefill(const int64_t* prompt, int64_t length, float* logits_out);

  // Samples n tokens per row into tokens_out (batch, n) from the current logits, feeding each back;
  // sample i of row b uses Philox (seed, step0 + i, b). `final`: the last token is not fed, and
  // prefill() must run before the next generate().
  void generate(int64_t n, uint64_t seed, uint32_t step0, const SamplingParams& params, bool final,
                int64_t* tokens_out);

  int64_t batch() const { return batch_; }
  int64_t classes() const { return shape_.classes; }
  int threads() const { return pool_->size(); }
  const char* isa() const { return kernels_->name; }
  const char* precision() const;
  uint64_t position() const { return position_; }
  int64_t receptive_field() const { return receptive_field_; }
  // Waits of over ~0.5 ms for a partner (descheduled), over every thread (step_job.h).
  uint64_t late_waits() const { return late_waits_of(tasks_); }
  // Bytes of the generation state (the ring buffers), for a batch.
  int64_t state_bytes() const { return ring_floats_ * static_cast<int64_t>(sizeof(float)); }

 private:
  void validate(const WeightMap& weights) const;
  void pack_weights(const WeightMap& weights, const int64_t* global_ids);
  void plan_threads(int threads);
  int64_t sliced_index(int64_t rows, int64_t row, int64_t column) const;
  void build_tasks();
  // The matrices of the float plan, with the layout of their column blocks (int8_pack.h).
  MatrixBlocks conv_blocks() const;
  template <typename W, typename Convert>
  void derive_plan(WaveNetPlan<W>& plan, std::vector<WaveNetLayerPlan<W>>& layers, Convert convert);
  void make_half_plan();
  void make_int8_plan();
  void run(const StepJob& job);
  void check_local_coverage(uint64_t end_position, const char* what) const;

  WaveNetShape shape_;
  WeightStorage precision_ = WeightStorage::fp32;
  int64_t batch_, Rp_, Hp_, Sp_, Ap_, receptive_field_ = 1, frames_ = 0;
  int64_t ring_floats_ = 0;
  ThreadPlan threads_;
  // Each member's gate channels [h0, h1) and head hidden channels [s0, s1); the same in every group.
  std::vector<std::pair<int64_t, int64_t>> gate_slices_, hidden_slices_;
  const IsaKernels* kernels_;
  FloatBuffer weights_, rings_, local_, scratch_;
  int64_t weight_floats_ = 0;
  std::unique_ptr<HalfMatrices> half_matrices_;
  std::unique_ptr<Int8Matrices> int8_matrices_;
  std::unique_ptr<ExchangeBuffers> exchange_;
  std::vector<WaveNetLayerPlan<float>> layers_;
  std::vector<WaveNetLayerPlan<uint16_t>> half_layers_;
  std::vector<WaveNetLayerPlan<uint8_t>> int8_layers_;
  WaveNetPlan<float> plan_{};
  WaveNetPlan<uint16_t> half_plan_{};
  WaveNetPlan<uint8_t> int8_plan_{};
  std::vector<MemberTask> tasks_;
  std::vector<std::unique_ptr<SamplingScratch>> sampling_;
  std::vector<std::unique_ptr<int64_t[]>> sampled_;
  std::unique_ptr<WorkerPool> pool_;
  uint64_t position_ = 0;
  bool has_logits_ = false;
  std::mutex busy_;
};

}  // namespace cpu
}  // namespace fastwave
