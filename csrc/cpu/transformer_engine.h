// The C++ generation engine for fastwave.SampleTransformer and its conditioned variant: KV-cache
// decoding over the weights of SampleTransformer.export_weights(), batches of independent streams,
// a team of threads, SIMD picked at run time and the shared sampling contract -- the WaveNet
// engine's machinery (engine_support.h, worker_pool.h, isa.h, the bindings) around a different step.
//
// The cache: per layer and stream, the rotated keys and the values of the last `context` positions,
// preallocated, as a ring (transformer_plan.h); past the context each position overwrites the
// oldest, the model's sliding window. The conditioned variant's CNN runs once per cond_hop samples
// on a waveform ring of one patch and per-layer rings of its dilated taps: O(1) per sample.
//
// Threads: with batch >= threads each thread runs its own rows; with fewer rows than threads, a
// group of threads shares rows and splits every layer's heads and MLP units and the head's classes,
// exchanging partial sums twice per layer and once for the logits. At batch 1 on two cores that
// halves the weights and the cache each core streams per sample.
//
// Every argument is validated here (names, shapes, ranges, finiteness) and refused with
// std::invalid_argument (ValueError in Python) before any memory is touched.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/sampling.h"
#include "cpu/engine_support.h"
#include "cpu/isa_kernels.h"
#include "cpu/stored_matrices.h"
#include "cpu/transformer_plan.h"
#include "cpu/worker_pool.h"

namespace fastwave {
namespace cpu {

// The SampleTransformerConfig fields the engine reads (fastwave/models/transformer.py).
struct TransformerShape {
  int64_t layers = 0, heads = 0, width = 0, mlp_ratio = 0, context = 0, classes = 0;
  double rope_base = 10000.0;
  int64_t cond_window = 0, cond_hop = 1, cond_channels = 0, cond_kernel = 2, cond_patches = 0;
  std::vector<int64_t> cond_dilations;
};

class TransformerEngine {
 public:
  // precision "fp32" (parity with the torch engine); "fp16": the matrices and the KV cache stored
  // as IEEE half, every product and sum in float -- half the bytes a step streams; or "int8": int8
  // matrices and an int8 KV cache with a scale per slot (transformer_plan.h) -- a quarter.
  TransformerEngine(const TransformerShape& shape, const WeightMap& weights, int64_t batch, int threads,
                    const std::string& isa, const std::string& precision);

  // Resets the state and feeds prompt (batch, length) row-major, tokens in [0, classes), in passes
  // of many positions. With logits_out (batch, length, classes) every position's next-sample logits
  // are written there (teacher forcing); otherwise only the prompt's last receptive field is run,
  // which leaves the same state.
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
  uint64_t position() const { return position_; }
  int64_t receptive_field() const { return receptive_field_; }
  // Waits of over ~0.5 ms for a partner (descheduled), over every thread (step_job.h).
  uint64_t late_waits() const { return late_waits_of(tasks_); }
  int64_t context() const { return shape_.context; }
  const char* precision() const { return precision_name(precision_); }
  // Bytes of the generation state for the batch: the KV caches (and the CNN's rings).
  int64_t state_bytes() const { return state_bytes_; }

 private:
  void validate(const WeightMap& weights) const;
  void pack_weights(const WeightMap& weights);
  // The plan of another storage: every matrix of the float plan through
  // convert(matrix, blocks, name, &scale) -> const W*; vectors shared with the float plan.
  template <typename W, typename Convert>
  void derive_plan(TransformerPlan<W>& plan, std::vector<TransformerLayerPlan<W>>& layers, Convert convert);
  void make_half_plan();
  void make_int8_plan();
  void allocate_caches();
  void build_tasks();
  void run(const StepJob& job);

  TransformerShape shape_;
  int64_t batch_, D_, Dq_, Wp_, Fp_, Ap_, Kp_, Cp_ = 0, cond_ring_slots_ = 0;
  int64_t receptive_field_ = 0, state_bytes_ = 0, weight_floats_ = 0;
  WeightStorage precision_;
  ThreadPlan threads_;
  std::vector<std::pair<int64_t, int64_t>> head_slices_, hidden_slices_, logit_slices_;
  std::vector<int64_t> logit_bounds_;
  std::vector<double> inv_freq_;
  const IsaKernels* kernels_;
  FloatBuffer weights_, caches_, scratch_, cache_scales_;
  HalfBuffer half_caches_;
  ByteBuffer int8_caches_;
  std::unique_ptr<HalfMatrices> half_matrices_;
  std::unique_ptr<Int8Matrices> int8_matrices_;
  std::unique_ptr<ExchangeBuffers> exchange_;
  std::vector<TransformerLayerPlan<float>> layers_;
  std::vector<TransformerLayerPlan<uint16_t>> half_layers_;
  std::vector<TransformerLayerPlan<uint8_t>> int8_layers_;
  TransformerPlan<float> plan_{};
  TransformerPlan<uint16_t> half_plan_{};
  TransformerPlan<uint8_t> int8_plan_{};
  std::vector<TransformerTask> tasks_;
  std::vector<std::unique_ptr<SamplingScratch>> sampling_;
  std::vector<std::unique_ptr<int64_t[]>> sampled_;
  std::unique_ptr<WorkerPool> pool_;
  uint64_t position_ = 0;
  bool has_logits_ = false;
  std::mutex busy_;
};

}  // namespace cpu
}  // namespace fastwave
