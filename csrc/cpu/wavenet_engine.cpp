#include "cpu/wavenet_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "cpu/isa.h"
#include "cpu/multiply_rate.h"

namespace fastwave {
namespace cpu {
namespace {

constexpr int64_t kMaxKernelSize = 8;     // the step code keeps one operand per tap on the stack
constexpr int64_t kMaxChannels = 1 << 16;

// Column of gate channel g in the packed conv layout: kBlock-wide [tanh | sigmoid] pairs.
int64_t gate_column(int64_t g, int64_t half) {
  const int64_t sigmoid = g >= half ? 1 : 0, c = g - sigmoid * half;
  return (c / kBlock) * 2 * kBlock + sigmoid * kBlock + c % kBlock;
}

}  // namespace

WaveNetEngine::WaveNetEngine(const WaveNetShape& shape, const WeightMap& weights, int64_t batch,
                             int threads, const int64_t* global_ids, const float* local,
                             int64_t frames, const std::string& isa, const std::string& precision)
    : shape_(shape), batch_(batch), precision_(weight_storage(precision)) {
  const WaveNetShape& s = shape_;
  require_range(s.layers, 1, 4096, "config['layers']");
  require_range(s.kernel_size, 1, kMaxKernelSize, "config['kernel_size']");
  require_range(s.residual, 1, kMaxChannels, "config['residual_channels']");
  require_range(s.gate, 2, kMaxChannels, "config['gate_channels']");
  if (s.gate % 2 != 0) refuse("config['gate_channels'] must be even, got " + std::to_string(s.gate));
  require_range(s.skip, 1, kMaxChannels, "config['skip_channels']");
  require_range(s.classes, 2, kMaxChannels, "config['classes']");
  require_range(s.global_classes, 0, kMaxChannels, "config['global_classes']");
  require_range(s.global_channels, s.global_classes ? 1 : 0, kMaxChannels, "config['global_channels']");
  require_range(s.local_channels, 0, kMaxChannels, "config['local_channels']");
  require_range(s.hop, 1, int64_t{1} << 32, "config['cond_hop']");
  if (static_cast<int64_t>(s.dilations.size()) != s.layers) {
    refuse("config['dilations'] must list one dilation per layer (" + std::to_string(s.layers) +
           "), got " + std::to_string(s.dilations.size()));
  }
  for (int64_t d : s.dilations) require_range(d, 1, int64_t{1} << 24, "each of config['dilations']");
  require_range(batch, 1, int64_t{1} << 20, "batch");
  require_range(threads, 1, kMaxThreads, "threads");
  if (s.global_classes > 0) {
    if (global_ids == nullptr) refuse("global_cond is required: the model has global conditioning");
    for (int64_t b = 0; b < batch; ++b) require_range(global_ids[b], 0, s.global_classes - 1, "global_cond");
  } else if (global_ids != nullptr) {
    refuse("global_cond was given but the model has no global conditioning (global_classes = 0)");
  }
  if (s.local_channels > 0) {
    if (local == nullptr) refuse("local_cond is required: the model has local conditioning");
    require_range(frames, 1, kMaxFloats, "local_cond frames");
    const int64_t count = checked_size({batch, s.local_channels, frames}, "local_cond");
    for (int64_t i = 0; i < count; ++i) {
      if (!std::isfinite(local[i])) refuse("local_cond must be finite, got " + std::to_string(local[i]) +
                                           " at flat index " + std::to_string(i));
    }
  } else if (local != nullptr) {
    refuse("local_cond was given but the model has no local conditioning (local_channels = 0)");
  }
  validate(weights);
  kernels_ = &select_isa(isa);

  Rp_ = round_up(s.residual, kBlock);
  Hp_ = round_up(s.gate / 2, kBlock);
  Sp_ = round_up(s.skip, kBlock);
  Ap_ = round_up(s.classes, kBlock);
  for (int64_t d : s.dilations) receptive_field_ += (s.kernel_size - 1) * d;
  plan_threads(threads);
  pack_weights(weights, global_ids);
  if (local != nullptr) {
    frames_ = frames;
    const int64_t count = batch * s.local_channels * frames;
    local_ = allocate_floats(count);
    std::memcpy(local_.get(), local, static_cast<size_t>(count) * sizeof(float));
    plan_.local_features = local_.get();
    plan_.local_channels = s.local_channels;
    plan_.frames = frames;
  }
  if (precision_ == WeightStorage::fp16) make_half_plan();
  if (precision_ == WeightStorage::int8) make_int8_plan();
  build_tasks();
}

const char* WaveNetEngine::precision() const {
  return precision_name(precision_);
}

void WaveNetEngine::validate(const WeightMap& weights) const {
  const WaveNetShape& s = shape_;
  WeightShapes expected{
      {"embedding", {s.classes, s.residual}},
      {"head.0.weight", {s.skip, s.skip}},
      {"head.0.bias", {s.skip}},
      {"head.1.weight", {s.classes, s.skip}},
      {"head.1.bias", {s.classes}},
  };
  if (s.global_classes > 0) expected["global_embedding"] = {s.global_classes, s.global_channels};
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    expected[p + "conv_weight"] = {s.kernel_size, s.gate, s.residual};
    expected[p + "conv_bias"] = {s.gate};
    if (i + 1 < s.layers) {
      expected[p + "res_weight"] = {s.residual, s.gate / 2};
      expected[p + "res_bias"] = {s.residual};
    }
    expected[p + "skip_weight"] = {s.skip, s.gate / 2};
    expected[p + "skip_bias"] = {s.skip};
    if (s.global_classes > 0) expected[p + "global_weight"] = {s.gate, s.global_channels};
    if (s.local_channels > 0) expected[p + "local_weight"] = {s.gate, s.local_channels};
  }
  validate_weights(weights, expected);
}

void WaveNetEngine::pack_weights(const WeightMap& weights, const int64_t* global_ids) {
  const WaveNetShape& s = shape_;
  const int64_t L = s.layers, K = s.kernel_size, R = s.residual, H = s.gate / 2, S = s.skip;
  const int64_t A = s.classes, C = s.local_channels, Dg = s.global_channels, G2 = 2 * Hp_;
  auto w = [&](const std::string& name) { return weights.at(name).data; };
  auto layer_name = [](int64_t i, const char* what) { return "layers." + std::to_string(i) + "." + what; };

  Arena arena;
  const int64_t embedding = arena.reserve(A * Rp_), skip_bias = arena.reserve(Sp_);
  const int64_t head0 = arena.reserve(Sp_ * Sp_), head0_bias = arena.reserve(Sp_);
  const int64_t head1 = arena.reserve(Sp_ * Ap_), head1_bias = arena.reserve(Ap_);
  const int64_t base_bias = arena.reserve(checked_size({batch_, L, G2}, "the gate biases"));
  const int64_t gate_bias = arena.reserve(batch_ * L * G2);
  std::vector<int64_t> conv(L), residual(L), residual_bias(L), skip(L), local(L);
  for (int64_t i = 0; i < L; ++i) {
    conv[i] = arena.reserve(K * Rp_ * G2);
    residual[i] = arena.reserve(Hp_ * Rp_);
    residual_bias[i] = arena.reserve(Rp_);
    skip[i] = arena.reserve(Hp_ * Sp_);
    local[i] = arena.reserve(C * G2);
  }
  weight_floats_ = arena.size();
  weights_ = allocate_floats(weight_floats_);
  float* base = weights_.get();

  for (int64_t a = 0; a < A; ++a) std::memcpy(base + embedding + a * Rp_, w("embedding") + a * R, R * sizeof(float));
  auto transpose_into = [](float* dst, int64_t ld, const float* src, int64_t rows, int64_t cols) {
    for (int64_t o = 0; o < rows; ++o)  // src (rows = out, cols = in) -> dst[in * ld + out]
      for (int64_t i = 0; i < cols; ++i) dst[i * ld + o] = src[o * cols + i];
  };
  const float* h0w = w("head.0.weight");  // (S out, S in) -> each member's (Sp in, s1 - s0 out)
  for (int m = 0; m < threads_.members; ++m) {
    const auto [s0, s1] = hidden_slices_[m];
    for (int64_t o = s0; o < std::min(s1, S); ++o)
      for (int64_t i = 0; i < S; ++i) base[head0 + Sp_ * s0 + i * (s1 - s0) + (o - s0)] = h0w[o * S + i];
  }
  std::memcpy(base + head0_bias, w("head.0.bias"), S * sizeof(float));
  transpose_into(base + head1, Ap_, w("head.1.weight"), A, S);
  std::memcpy(base + head1_bias, w("head.1.bias"), A * sizeof(float));

  layers_.assign(L, WaveNetLayerPlan<float>{});
  int64_t ring_offset = 0;
  for (int64_t i = 0; i < L; ++i) {
    WaveNetLayerPlan<float>& layer = layers_[i];
    const float* cw = w(layer_name(i, "conv_weight"));  // (K, G, R)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t g = 0; g < 2 * H; ++g)
        for (int64_t r = 0; r < R; ++r)
          base[conv[i] + sliced_index(K * Rp_, k * Rp_ + r, gate_column(g, H))] = cw[(k * 2 * H + g) * R + r];
    layer.conv = base + conv[i];
    if (i + 1 < L) {
      transpose_into(base + residual[i], Rp_, w(layer_name(i, "res_weight")), R, H);
      std::memcpy(base + residual_bias[i], w(layer_name(i, "res_bias")), R * sizeof(float));
      layer.residual = base + residual[i];
      layer.residual_bias = base + residual_bias[i];
    }
    transpose_into(base + skip[i], Sp_, w(layer_name(i, "skip_weight")), S, H);
    layer.skip = base + skip[i];
    const float* sb = w(layer_name(i, "skip_bias"));
    for (int64_t j = 0; j < S; ++j) base[skip_bias + j] += sb[j];
    if (C > 0) {
      const float* lw = w(layer_name(i, "local_weight"));  // (G, C)
      for (int64_t g = 0; g < 2 * H; ++g)
        for (int64_t c = 0; c < C; ++c) base[local[i] + sliced_index(C, c, gate_column(g, H))] = lw[g * C + c];
      layer.local = base + local[i];
    }
    // Per row: conv bias + global projection of the row's embedding, in the packed column order.
    const float* cb = w(layer_name(i, "conv_bias"));
    for (int64_t b = 0; b < batch_; ++b) {
      float* bias = base + base_bias + (b * L + i) * G2;
      for (int64_t g = 0; g < 2 * H; ++g) {
        double value = cb[g];
        if (s.global_classes > 0) {
          const float* gw = w(layer_name(i, "global_weight")) + g * Dg;
          const float* ge = w("global_embedding") + global_ids[b] * Dg;
          float sum = 0.0f;
          for (int64_t c = 0; c < Dg; ++c) sum += gw[c] * ge[c];
          value += sum;
        }
        bias[gate_column(g, H)] = static_cast<float>(value);
      }
    }
    layer.dilation = s.dilations[i];
    layer.ring_slots = (K - 1) * s.dilations[i];
    ring_offset += checked_size({layer.ring_slots, batch_, Rp_}, "the ring buffers");
  }
  std::memcpy(base + gate_bias, base + base_bias, batch_ * L * G2 * sizeof(float));
  ring_floats_ = checked_size({1, ring_offset}, "the ring buffers");
  rings_ = allocate_floats(ring_floats_);
  for (int64_t i = 0, offset = 0; i < L; ++i) {
    layers_[i].ring = rings_.get() + offset;
    offset += layers_[i].ring_slots * batch_ * Rp_;
  }

  plan_.layers = L;
  plan_.kernel_size = K;
  plan_.batch = batch_;
  plan_.classes = A;
  plan_.Rp = Rp_;
  plan_.Hp = Hp_;
  plan_.Sp = Sp_;
  plan_.Ap = Ap_;
  plan_.layer = layers_.data();
  plan_.embedding = base + embedding;
  plan_.skip_bias = base + skip_bias;
  plan_.head0 = base + head0;
  plan_.head0_bias = base + head0_bias;
  plan_.head1 = base + head1;
  plan_.head1_bias = base + head1_bias;
  plan_.base_bias = base + base_bias;
  plan_.gate_bias = base + gate_bias;
  plan_.hop = s.hop;
}

MatrixBlocks WaveNetEngine::conv_blocks() const {
  MatrixBlocks blocks{shape_.kernel_size * Rp_, {}};
  for (const auto& [h0, h1] : gate_slices_) blocks.blocks.emplace_back(2 * h0, 2 * h1);
  return blocks;
}

// The plan of another weight storage: every matrix of the float plan through
// convert(matrix, blocks, name, &scale) -> const W*; everything else shared with the float plan.
template <typename W, typename Convert>
void WaveNetEngine::derive_plan(WaveNetPlan<W>& plan, std::vector<WaveNetLayerPlan<W>>& layers, Convert convert) {
  const MatrixBlocks conv = conv_blocks(), residual{Hp_, {{0, Rp_}}}, skip{Hp_, {{0, Sp_}}};
  const MatrixBlocks head0{Sp_, hidden_slices_}, head1{Sp_, {{0, Ap_}}};
  layers.assign(layers_.size(), WaveNetLayerPlan<W>{});
  for (size_t i = 0; i < layers_.size(); ++i) {
    const WaveNetLayerPlan<float>& f = layers_[i];
    WaveNetLayerPlan<W>& d = layers[i];
    static_cast<WaveNetLayerState&>(d) = f;
    const std::string name = "layers." + std::to_string(i) + ".";
    d.conv = convert(f.conv, conv, name + "conv_weight", &d.conv_scale);
    if (f.residual != nullptr) d.residual = convert(f.residual, residual, name + "res_weight", &d.residual_scale);
    d.skip = convert(f.skip, skip, name + "skip_weight", &d.skip_scale);
  }
  static_cast<WaveNetPlanBase&>(plan) = plan_;
  plan.layer = layers.data();
  plan.head0 = convert(plan_.head0, head0, "head.0.weight", &plan.head0_scale);
  plan.head1 = convert(plan_.head1, head1, "head.1.weight", &plan.head1_scale);
}

// fp16: the matrices converted to half at their float offsets.
void WaveNetEngine::make_half_plan() {
  half_matrices_ = std::make_unique<HalfMatrices>(weights_.get(), weight_floats_);
  derive_plan(half_plan_, half_layers_,
              [&](const float* matrix, const MatrixBlocks& shape, const std::string& name, const float** scale) {
                *scale = nullptr;
                return half_matrices_->convert(matrix, shape, name);
              });
}

// int8: the matrices quantised per output column at their float offsets (stored_matrices.h).
void WaveNetEngine::make_int8_plan() {
  int8_matrices_ = std::make_unique<Int8Matrices>(weights_.get(), weight_floats_, 3 * shape_.layers + 2);
  derive_plan(int8_plan_, int8_layers_,
              [&](const float* matrix, const MatrixBlocks& shape, const std::string&, const float** scale) {
                return int8_matrices_->convert(matrix, shape, scale);
              });
}

void WaveNetEngine::plan_threads(int threads) {
  threads_ = cpu::plan_threads(batch_, threads);
  // int8 quantises the split units' activations in blocks of kSplitBlock: split them on those blocks.
  const int64_t unit = precision_ == WeightStorage::int8 ? kSplitBlock : kBlock;
  for (int m = 0; m < threads_.members; ++m) {
    gate_slices_.push_back(split_range(Hp_, unit, threads_.members, m));
    hidden_slices_.push_back(split_range(Sp_, unit, threads_.members, m));
  }
}

// Index into a matrix of `rows` rows whose packed gate columns are split into one contiguous
// (rows, 2 (h1 - h0)) block per member (wavenet_plan.h): element (row, column).
int64_t WaveNetEngine::sliced_index(int64_t rows, int64_t row, int64_t column) const {
  for (const auto& [h0, h1] : gate_slices_) {
    if (column < 2 * h1) return rows * 2 * h0 + row * 2 * (h1 - h0) + (column - 2 * h0);
  }
  throw std::logic_error("gate column outside every slice");
}

void WaveNetEngine::build_tasks() {
  const int groups = threads_.groups, members = threads_.members;
  const int64_t largest_rows = (batch_ + groups - 1) / groups;
  exchange_ = std::make_unique<ExchangeBuffers>(threads_, largest_rows * std::max({Rp_, Sp_, Ap_}));

  Arena arena;
  struct Offsets { int64_t x, z, h, skip, hidden, logits, local, quantized[2][3]; };
  // int8: each member quantises a product's input rows (at most max(Rp, Hp, Sp) wide) into one of
  // two buffers of bytes, with a float scale and an int32 sum per row and block (int8_weights.h).
  const int64_t quantized_width = precision_ == WeightStorage::int8 ? std::max({Rp_, Hp_, Sp_}) : 0;
  std::vector<Offsets> offsets;
  for (int g = 0; g < groups; ++g) {
    const int64_t rows = threads_.rows(g, batch_);
    for (int m = 0; m < members; ++m) {
      const auto [h0, h1] = gate_slices_[m];
      Offsets o{arena.reserve(rows * Rp_), arena.reserve(rows * 2 * (h1 - h0)),
                arena.reserve(rows * (h1 - h0)), arena.reserve(rows * Sp_),
                arena.reserve(rows * Sp_), arena.reserve(rows * Ap_),
                arena.reserve(shape_.local_channels), {}};
      if (quantized_width > 0) {
        for (auto& q : o.quantized) {
          q[0] = arena.reserve(rows * quantized_width / 4);  // bytes, in floats
          q[1] = arena.reserve(rows * quantized_width / kBlock);
          q[2] = arena.reserve(rows * quantized_width / kBlock);
        }
      }
      offsets.push_back(o);
    }
  }
  scratch_ = allocate_floats(arena.size());
  float* base = scratch_.get();

  tasks_.clear();
  for (int g = 0; g < groups; ++g) {
    const int64_t row0 = threads_.row0(g, batch_), rows = threads_.rows(g, batch_);
    for (int m = 0; m < members; ++m) {
      const Offsets& o = offsets[tasks_.size()];
      MemberTask task{};
      task.row0 = row0;
      task.rows = rows;
      std::tie(task.h0, task.h1) = gate_slices_[m];
      std::tie(task.s0, task.s1) = hidden_slices_[m];
      task.seat = {&exchange_->groups[g], m, 0};
      task.frame = -1;
      task.x = base + o.x;
      task.z = base + o.z;
      task.h = base + o.h;
      task.skip = base + o.skip;
      task.hidden = base + o.hidden;
      task.logits = base + o.logits;
      task.local_column = base + o.local;
      for (int k = 0; k < 2 && quantized_width > 0; ++k) {
        task.quantized[k] = {reinterpret_cast<int8_t*>(base + o.quantized[k][0]), quantized_width,
                             base + o.quantized[k][1], reinterpret_cast<int32_t*>(base + o.quantized[k][2]), 0};
      }
      sampling_.push_back(make_sampling_scratch(shape_.classes));
      task.scratch = sampling_.back().get();
      sampled_.push_back(std::make_unique<int64_t[]>(static_cast<size_t>(rows)));
      task.sampled = sampled_.back().get();
      tasks_.push_back(task);
    }
  }
  pool_ = std::make_unique<WorkerPool>(static_cast<int>(tasks_.size()));
}

void WaveNetEngine::run(const StepJob& job) {
  switch (precision_) {
    case WeightStorage::fp32:
      pool_->run([&](int index) { kernels_->run_wavenet_steps(plan_, tasks_[index], job); });
      break;
    case WeightStorage::fp16:
      pool_->run([&](int index) { kernels_->run_wavenet_steps_half(half_plan_, tasks_[index], job); });
      break;
    case WeightStorage::int8:
      pool_->run([&](int index) { kernels_->run_wavenet_steps_int8(int8_plan_, tasks_[index], job); });
      break;
  }
}

void WaveNetEngine::check_local_coverage(uint64_t end_position, const char* what) const {
  if (shape_.local_channels == 0) return;
  const uint64_t covered = static_cast<uint64_t>(frames_) * static_cast<uint64_t>(shape_.hop);
  if (end_position > covered) {
    refuse(std::string(what) + " reads positions up to " + std::to_string(end_position) +
           " but local_cond covers " + std::to_string(covered) + " (" + std::to_string(frames_) +
           " frames x cond_hop " + std::to_string(shape_.hop) + ")");
  }
}

void WaveNetEngine::prefill(const int64_t* prompt, int64_t length, float* logits_out) {
  const auto lock = claim(busy_);
  require_range(length, 1, kMaxFloats, "prompt length");
  check_tokens(prompt, checked_size({batch_, length}, "prompt"), shape_.classes, "prompt");
  check_local_coverage(static_cast<uint64_t>(length), "the prompt");
  // Zero rings are the causal padding. Without logits to return, positions more than a receptive
  // field before the end cannot reach the final state: start there, from zeros.
  std::memset(rings_.get(), 0, static_cast<size_t>(ring_floats_) * sizeof(float));
  for (MemberTask& task : tasks_) task.frame = -1;
  const int64_t start = logits_out != nullptr ? 0 : std::max<int64_t>(0, length - receptive_field_);
  has_logits_ = false;
  run(prefill_job(prompt, length, start, logits_out));
  position_ = static_cast<uint64_t>(length);
  has_logits_ = true;
}

void WaveNetEngine::generate(int64_t n, uint64_t seed, uint32_t step0, const SamplingParams& params,
                             bool final, int64_t* tokens_out) {
  const auto lock = claim(busy_);
  check_generate(n, batch_, step0, params, has_logits_);
  if (n == 0) return;
  const uint64_t fed = static_cast<uint64_t>(n) - (final ? 1 : 0);
  check_local_coverage(position_ + fed, "generate()");
  has_logits_ = false;  // until the call succeeds: after a refusal the state is partly advanced
  run(generate_job(n, position_, seed, step0, params, final, tokens_out));
  check_finite_logits(tasks_, position_);
  position_ += fed;
  has_logits_ = !final;
}

}  // namespace cpu
}  // namespace fastwave
