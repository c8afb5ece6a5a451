#include "cpu/transformer_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "cpu/isa.h"

namespace fastwave {
namespace cpu {
namespace {

constexpr int64_t kMaxChannels = 1 << 16;
constexpr int64_t kMaxContextKernel = 8;     // the step code keeps one operand per tap on the stack
constexpr int64_t kMaxPassRows = 64;          // prefill: positions x rows per pass, as matrix rows
constexpr int64_t kMaxPassPositions = 32;

}  // namespace

void rope_angles(uint64_t position, const double* inv_freq, int64_t half, float* out) {
  for (int64_t d = 0; d < half; ++d) {
    const double angle = static_cast<double>(position) * inv_freq[d];
    out[d] = static_cast<float>(std::cos(angle));
    out[half + d] = static_cast<float>(std::sin(angle));
  }
}

TransformerEngine::TransformerEngine(const TransformerShape& shape, const WeightMap& weights, int64_t batch,
                                     int threads, const std::string& isa, const std::string& precision)
    : shape_(shape), batch_(batch), precision_(weight_storage(precision)) {
  const TransformerShape& s = shape_;
  require_range(s.layers, 1, 4096, "config['layers']");
  require_range(s.heads, 1, 4096, "config['heads']");
  require_range(s.width, 2, kMaxChannels, "config['width']");
  if (s.width % s.heads != 0 || (s.width / s.heads) % 2 != 0) {
    refuse("config['width'] (" + std::to_string(s.width) + ") must split into config['heads'] (" +
           std::to_string(s.heads) + ") heads of an even size");
  }
  require_range(s.mlp_ratio, 1, 256, "config['mlp_ratio']");
  require_range(s.width * s.mlp_ratio, 1, kMaxChannels * 4, "config['width'] * config['mlp_ratio']");
  require_range(s.context, 1, int64_t{1} << 24, "config['context']");
  require_range(s.classes, 2, kMaxChannels, "config['classes']");
  if (!std::isfinite(s.rope_base) || s.rope_base <= 1.0) {
    refuse("config['rope_base'] must be a finite number > 1, got " + std::to_string(s.rope_base));
  }
  require_range(s.cond_window, 0, int64_t{1} << 32, "config['cond_window']");
  if (s.cond_window > 0) {
    require_range(s.cond_hop, 1, int64_t{1} << 20, "config['cond_hop']");
    require_range(s.cond_channels, 1, kMaxChannels, "config['cond_channels']");
    require_range(s.cond_kernel, 2, kMaxContextKernel, "config['cond_kernel']");
    // The CNN reads exactly cond_patches = kernel ** layers patches: dilations 1, k, k^2, ...
    int64_t patches = 1;
    for (size_t j = 0; j < s.cond_dilations.size(); ++j) {
      if (s.cond_dilations[j] != patches || patches > (int64_t{1} << 24)) {
        refuse("config['cond_dilations'] must be 1, cond_kernel, cond_kernel**2, ..., got entry " +
               std::to_string(j) + " = " + std::to_string(s.cond_dilations[j]));
      }
      patches *= s.cond_kernel;
    }
    if (s.cond_patches != patches) {
      refuse("config['cond_patches'] must be cond_kernel ** len(cond_dilations) = " + std::to_string(patches) +
             ", got " + std::to_string(s.cond_patches));
    }
  }
  require_range(batch, 1, int64_t{1} << 20, "batch");
  require_range(threads, 1, kMaxThreads, "threads");
  validate(weights);
  kernels_ = &select_isa(isa);

  D_ = s.width / s.heads;
  Dq_ = round_up(D_, kBlock);
  Wp_ = round_up(s.width, kBlock);
  Fp_ = round_up(s.width * s.mlp_ratio, kBlock);
  Ap_ = round_up(s.classes, kBlock);
  Kp_ = round_up(s.context, kKeySpan);
  receptive_field_ = s.layers * (s.context - 1) + 1;
  if (s.cond_window > 0) {
    Cp_ = round_up(s.cond_channels, kBlock);
    for (int64_t d : s.cond_dilations) cond_ring_slots_ += (s.cond_kernel - 1) * d;
    receptive_field_ += (s.cond_patches + 1) * s.cond_hop;
  }
  for (int64_t d = 0; d < D_ / 2; ++d) inv_freq_.push_back(std::pow(s.rope_base, -(static_cast<double>(d) * (2.0 / D_))));
  threads_ = plan_threads(batch_, threads);
  for (int m = 0; m < threads_.members; ++m) {
    head_slices_.push_back(split_range(s.heads, 1, threads_.members, m));
    // int8 quantises the hidden units in blocks of kSplitBlock: split them on those blocks.
    hidden_slices_.push_back(split_range(Fp_, precision_ == WeightStorage::int8 ? kSplitBlock : kBlock,
                                         threads_.members, m));
    logit_slices_.push_back(split_range(Ap_, kBlock, threads_.members, m));
    logit_bounds_.push_back(logit_slices_.back().first);
  }
  logit_bounds_.push_back(Ap_);
  pack_weights(weights);
  build_tasks();
}

void TransformerEngine::validate(const WeightMap& weights) const {
  const TransformerShape& s = shape_;
  const int64_t W = s.width, F = s.width * s.mlp_ratio, A = s.classes, C = s.cond_channels;
  WeightShapes expected{
      {"embedding", {A, W}}, {"norm_weight", {W}}, {"norm_bias", {W}},
      {"head_weight", {A, W}}, {"head_bias", {A}},
  };
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const char* norm : {"norm1_", "norm2_"}) {
      expected[p + norm + "weight"] = {W};
      expected[p + norm + "bias"] = {W};
    }
    expected[p + "qkv_weight"] = {3 * W, W};
    expected[p + "qkv_bias"] = {3 * W};
    expected[p + "out_weight"] = {W, W};
    expected[p + "out_bias"] = {W};
    expected[p + "fc_weight"] = {F, W};
    expected[p + "fc_bias"] = {F};
    expected[p + "proj_weight"] = {W, F};
    expected[p + "proj_bias"] = {W};
  }
  if (s.cond_window > 0) {
    expected["context.amplitude"] = {A};
    expected["context.patch_weight"] = {C, s.cond_hop};
    expected["context.patch_bias"] = {C};
    for (size_t j = 0; j < s.cond_dilations.size(); ++j) {
      expected["context.convs." + std::to_string(j) + ".weight"] = {s.cond_kernel, C, C};
      expected["context.convs." + std::to_string(j) + ".bias"] = {C};
    }
    expected["context.proj_weight"] = {W, C};
    expected["context.proj_bias"] = {W};
  }
  validate_weights(weights, expected);
}

void TransformerEngine::pack_weights(const WeightMap& weights) {
  const TransformerShape& s = shape_;
  const int64_t L = s.layers, W = s.width, F = s.width * s.mlp_ratio, A = s.classes, H = s.heads;
  auto w = [&](const std::string& name) { return weights.at(name).data; };
  auto layer_name = [](int64_t i, const char* what) { return "layers." + std::to_string(i) + "." + what; };

  Arena arena;
  const int64_t embedding = arena.reserve(A * Wp_), norm_weight = arena.reserve(Wp_), norm_bias = arena.reserve(Wp_);
  const int64_t head = arena.reserve(Wp_ * Ap_), head_bias = arena.reserve(Ap_);
  struct Offsets { int64_t norm1_weight, norm1_bias, qkv, qkv_bias, out, out_bias, norm2_weight, norm2_bias, fc, fc_bias, proj, proj_bias; };
  std::vector<Offsets> offsets;
  for (int64_t i = 0; i < L; ++i) {
    offsets.push_back({arena.reserve(Wp_), arena.reserve(Wp_), arena.reserve(Wp_ * 3 * Dq_ * H),
                       arena.reserve(3 * Dq_ * H), arena.reserve(H * Dq_ * Wp_), arena.reserve(Wp_),
                       arena.reserve(Wp_), arena.reserve(Wp_), arena.reserve(Wp_ * Fp_), arena.reserve(Fp_),
                       arena.reserve(Fp_ * Wp_), arena.reserve(Wp_)});
  }
  const int64_t context_floats = s.cond_window > 0
      ? checked_size({1, A + s.cond_hop * Cp_ + Cp_ + static_cast<int64_t>(s.cond_dilations.size()) * (s.cond_kernel * Cp_ * Cp_ + Cp_) +
                         Cp_ * Wp_ + Wp_}, "the context CNN")
      : 0;
  const int64_t context = arena.reserve(context_floats);
  weight_floats_ = arena.size();
  weights_ = allocate_floats(weight_floats_);
  float* base = weights_.get();

  // Copies a vector of n into its zero-padded slot.
  auto copy = [&](int64_t offset, const float* src, int64_t n) { std::memcpy(base + offset, src, n * sizeof(float)); };
  // (out, in) row-major -> "in x out" with the given output stride: dst[i * ld + o].
  auto transpose = [&](int64_t offset, int64_t ld, const float* src, int64_t out, int64_t in) {
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) base[offset + i * ld + o] = src[o * in + i];
  };
  // (out, in) row-major -> per-member column blocks: member slice [c0, c1) of the padded outputs is
  // its own (Wp, c1 - c0) matrix at Wp * c0; column_of maps a source row to its padded column.
  auto transpose_sliced = [&](int64_t offset, const std::vector<std::pair<int64_t, int64_t>>& slices,
                              const float* src, int64_t out, auto column_of) {
    for (int64_t o = 0; o < out; ++o) {
      const int64_t column = column_of(o);
      for (const auto& [c0, c1] : slices) {
        if (column < c0 || column >= c1) continue;
        for (int64_t i = 0; i < W; ++i) base[offset + Wp_ * c0 + i * (c1 - c0) + column - c0] = src[o * W + i];
      }
    }
  };

  for (int64_t a = 0; a < A; ++a) copy(embedding + a * Wp_, w("embedding") + a * W, W);
  copy(norm_weight, w("norm_weight"), W);
  copy(norm_bias, w("norm_bias"), W);
  transpose_sliced(head, logit_slices_, w("head_weight"), A, [](int64_t a) { return a; });
  copy(head_bias, w("head_bias"), A);

  // qkv row which * W + e * D + d (which: q, k, v) -> padded column e * 3 Dq + which * Dq + d, so
  // each head's q, k and v sit together and a member's heads are one column range.
  const int64_t D = D_, Dq = Dq_;
  auto qkv_column = [W, D, Dq](int64_t row) {
    const int64_t which = row / W, e = (row % W) / D, d = row % D;
    return e * 3 * Dq + which * Dq + d;
  };
  std::vector<std::pair<int64_t, int64_t>> qkv_slices;
  for (const auto& [e0, e1] : head_slices_) qkv_slices.push_back({3 * Dq * e0, 3 * Dq * e1});
  layers_.assign(L, TransformerLayerPlan<float>{});
  for (int64_t i = 0; i < L; ++i) {
    const Offsets& o = offsets[i];
    TransformerLayerPlan<float>& layer = layers_[i];
    copy(o.norm1_weight, w(layer_name(i, "norm1_weight")), W);
    copy(o.norm1_bias, w(layer_name(i, "norm1_bias")), W);
    copy(o.norm2_weight, w(layer_name(i, "norm2_weight")), W);
    copy(o.norm2_bias, w(layer_name(i, "norm2_bias")), W);
    transpose_sliced(o.qkv, qkv_slices, w(layer_name(i, "qkv_weight")), 3 * W, qkv_column);
    const float* qkv_bias = w(layer_name(i, "qkv_bias"));
    for (int64_t row = 0; row < 3 * W; ++row) base[o.qkv_bias + qkv_column(row)] = qkv_bias[row];
    // out (W out, W in): input feature e * D + d is padded row e * Dq + d.
    const float* out = w(layer_name(i, "out_weight"));
    for (int64_t r = 0; r < W; ++r)
      for (int64_t f = 0; f < W; ++f) base[o.out + ((f / D) * Dq + f % D) * Wp_ + r] = out[r * W + f];
    copy(o.out_bias, w(layer_name(i, "out_bias")), W);
    transpose_sliced(o.fc, hidden_slices_, w(layer_name(i, "fc_weight")), F, [](int64_t f) { return f; });
    copy(o.fc_bias, w(layer_name(i, "fc_bias")), F);
    transpose(o.proj, Wp_, w(layer_name(i, "proj_weight")), W, F);
    copy(o.proj_bias, w(layer_name(i, "proj_bias")), W);
    layer = TransformerLayerPlan<float>{};  // the caches and int8's scales stay nullptr here
    layer.norm1_weight = base + o.norm1_weight;
    layer.norm1_bias = base + o.norm1_bias;
    layer.qkv = base + o.qkv;
    layer.qkv_bias = base + o.qkv_bias;
    layer.out = base + o.out;
    layer.out_bias = base + o.out_bias;
    layer.norm2_weight = base + o.norm2_weight;
    layer.norm2_bias = base + o.norm2_bias;
    layer.fc = base + o.fc;
    layer.fc_bias = base + o.fc_bias;
    layer.proj = base + o.proj;
    layer.proj_bias = base + o.proj_bias;
  }

  TransformerPlan<float>& p = plan_;
  p.layers = L;
  p.batch = batch_;
  p.W = W;
  p.Wp = Wp_;
  p.heads = H;
  p.D = D;
  p.Dq = Dq;
  p.context = s.context;
  p.Kp = Kp_;
  p.Fp = Fp_;
  p.classes = A;
  p.Ap = Ap_;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.layer = layers_.data();
  p.embedding = base + embedding;
  p.norm_weight = base + norm_weight;
  p.norm_bias = base + norm_bias;
  p.head = base + head;
  p.head_bias = base + head_bias;
  p.logit_bounds = logit_bounds_.data();
  p.inv_freq = inv_freq_.data();
  if (s.cond_window > 0) {
    float* c = base + context;
    ContextPlan& cnn = p.context_cnn;
    const int64_t C = s.cond_channels, K = s.cond_kernel, hop = s.cond_hop;
    cnn.hop = hop;
    cnn.Cp = Cp_;
    cnn.kernel = K;
    cnn.layers = static_cast<int64_t>(s.cond_dilations.size());
    cnn.patches = s.cond_patches;
    cnn.dilations = shape_.cond_dilations.data();
    std::memcpy(c, w("context.amplitude"), A * sizeof(float));
    cnn.amplitude = c;
    c += round_up(A, 16);
    float* patch = c;  // (C, hop) -> (hop, Cp)
    const float* patch_weight = w("context.patch_weight");
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t t = 0; t < hop; ++t) patch[t * Cp_ + ch] = patch_weight[ch * hop + t];
    cnn.patch = patch;
    c += hop * Cp_;
    std::memcpy(c, w("context.patch_bias"), C * sizeof(float));
    cnn.patch_bias = c;
    c += Cp_;
    float* conv = c;  // per layer (K, C out, C in) -> (K Cp in, Cp out)
    for (int64_t j = 0; j < cnn.layers; ++j) {
      const float* src = w("context.convs." + std::to_string(j) + ".weight");
      for (int64_t k = 0; k < K; ++k)
        for (int64_t co = 0; co < C; ++co)
          for (int64_t ci = 0; ci < C; ++ci) conv[(j * K + k) * Cp_ * Cp_ + ci * Cp_ + co] = src[(k * C + co) * C + ci];
    }
    cnn.conv = conv;
    c += cnn.layers * K * Cp_ * Cp_;
    for (int64_t j = 0; j < cnn.layers; ++j) {
      std::memcpy(c + j * Cp_, w("context.convs." + std::to_string(j) + ".bias"), C * sizeof(float));
    }
    cnn.conv_bias = c;
    c += cnn.layers * Cp_;
    float* proj = c;  // (W, C) -> (Cp, Wp)
    const float* proj_weight = w("context.proj_weight");
    for (int64_t r = 0; r < W; ++r)
      for (int64_t ch = 0; ch < C; ++ch) proj[ch * Wp_ + r] = proj_weight[r * C + ch];
    cnn.proj = proj;
    c += Cp_ * Wp_;
    std::memcpy(c, w("context.proj_bias"), W * sizeof(float));
    cnn.proj_bias = c;
  }
  if (precision_ == WeightStorage::fp16) make_half_plan();
  if (precision_ == WeightStorage::int8) make_int8_plan();
  allocate_caches();
}

template <typename W, typename Convert>
void TransformerEngine::derive_plan(TransformerPlan<W>& plan, std::vector<TransformerLayerPlan<W>>& layers,
                                    Convert convert) {
  const int64_t H = shape_.heads;
  MatrixBlocks qkv{Wp_, {}};
  for (const auto& [e0, e1] : head_slices_) qkv.blocks.emplace_back(3 * Dq_ * e0, 3 * Dq_ * e1);
  const MatrixBlocks out{H * Dq_, {{0, Wp_}}}, fc{Wp_, hidden_slices_}, proj{Fp_, {{0, Wp_}}};
  layers.assign(layers_.size(), TransformerLayerPlan<W>{});
  for (size_t i = 0; i < layers_.size(); ++i) {
    const TransformerLayerPlan<float>& f = layers_[i];
    TransformerLayerPlan<W>& d = layers[i];
    const std::string name = "layers." + std::to_string(i) + ".";
    d.norm1_weight = f.norm1_weight;
    d.norm1_bias = f.norm1_bias;
    d.qkv = convert(f.qkv, qkv, name + "qkv_weight", &d.qkv_scale);
    d.qkv_bias = f.qkv_bias;
    d.out = convert(f.out, out, name + "out_weight", &d.out_scale);
    d.out_bias = f.out_bias;
    d.norm2_weight = f.norm2_weight;
    d.norm2_bias = f.norm2_bias;
    d.fc = convert(f.fc, fc, name + "fc_weight", &d.fc_scale);
    d.fc_bias = f.fc_bias;
    d.proj = convert(f.proj, proj, name + "proj_weight", &d.proj_scale);
    d.proj_bias = f.proj_bias;
  }
  static_cast<TransformerPlanBase&>(plan) = plan_;
  plan.layer = layers.data();
  plan.head = convert(plan_.head, MatrixBlocks{Wp_, logit_slices_}, "head_weight", &plan.head_scale);
}

// fp16: the matrices converted to half at their float offsets.
void TransformerEngine::make_half_plan() {
  half_matrices_ = std::make_unique<HalfMatrices>(weights_.get(), weight_floats_);
  derive_plan(half_plan_, half_layers_,
              [&](const float* matrix, const MatrixBlocks& shape, const std::string& name, const float** scale) {
                *scale = nullptr;
                return half_matrices_->convert(matrix, shape, name);
              });
}

// int8: the matrices quantised per output column at their float offsets (stored_matrices.h).
void TransformerEngine::make_int8_plan() {
  int8_matrices_ = std::make_unique<Int8Matrices>(weights_.get(), weight_floats_, 4 * shape_.layers + 1);
  derive_plan(int8_plan_, int8_layers_,
              [&](const float* matrix, const MatrixBlocks& shape, const std::string&, const float** scale) {
                return int8_matrices_->convert(matrix, shape, scale);
              });
}

// The KV caches of the engine's precision, per layer its keys then its values (layouts in
// transformer_plan.h); int8's per-slot scales in a float buffer of their own.
void TransformerEngine::allocate_caches() {
  const int64_t L = shape_.layers, H = shape_.heads;
  const int64_t keys = checked_size({batch_, H, Kp_, precision_ == WeightStorage::int8 ? Dq_ : D_}, "the KV cache");
  const int64_t per_layer = keys + checked_size({batch_, H, shape_.context, Dq_}, "the KV cache");
  const int64_t count = checked_size({L, per_layer}, "the KV caches");
  auto place = [&](auto& layers, auto* cache) {
    for (int64_t i = 0; i < L; ++i) {
      layers[i].keys = cache + i * per_layer;
      layers[i].values = layers[i].keys + keys;
    }
  };
  switch (precision_) {
    case WeightStorage::fp32:
      caches_ = allocate_floats(count);
      place(layers_, caches_.get());
      state_bytes_ = count * 4;
      break;
    case WeightStorage::fp16:
      half_caches_ = allocate_halves(count);
      place(half_layers_, half_caches_.get());
      state_bytes_ = count * 2;
      break;
    case WeightStorage::int8: {
      int8_caches_ = allocate_bytes(count);
      place(int8_layers_, int8_caches_.get());
      const int64_t key_scales = batch_ * H * Kp_, scales = key_scales + batch_ * H * shape_.context;
      cache_scales_ = allocate_floats(checked_size({L, scales}, "the KV cache's scales"));
      for (int64_t i = 0; i < L; ++i) {
        int8_layers_[i].key_scale = cache_scales_.get() + i * scales;
        int8_layers_[i].value_scale = int8_layers_[i].key_scale + key_scales;
      }
      state_bytes_ = count + L * scales * 4;
      break;
    }
  }
}

void TransformerEngine::build_tasks() {
  const TransformerShape& s = shape_;
  const int groups = threads_.groups, members = threads_.members;
  const int64_t largest_rows = (batch_ + groups - 1) / groups;
  const int64_t chunk = std::clamp<int64_t>(kMaxPassRows / largest_rows, 1, kMaxPassPositions);
  const int64_t largest_pass = largest_rows * chunk;
  exchange_ = std::make_unique<ExchangeBuffers>(threads_, checked_size({largest_pass, std::max(Wp_, Ap_)}, "the exchange"));
  const int64_t ring_slots = cond_ring_slots_;
  const bool conditioned = s.cond_window > 0;

  Arena arena;
  struct Offsets { int64_t x, normed, qkv, attended, hidden, logits, scores, rope, token_qkv, wave, cond_x, cond_z, rings, latent,
                   inputs[3], query[3]; };
  // int8: each member quantises a product's input rows (at most max(Wp, Dq heads, Fp) wide) into bytes,
  // with a float scale and an int32 sum per row and block; and one head's query the same way.
  const bool int8 = precision_ == WeightStorage::int8;
  const int64_t input_width = int8 ? std::max({Wp_, Dq_ * s.heads, Fp_}) : 0;
  auto quantized = [&](int64_t rows, int64_t width, int64_t* at) {  // bytes, in floats
    at[0] = arena.reserve(checked_size({rows, width}, "the quantised inputs") / 4);
    at[1] = arena.reserve(rows * width / kBlock);
    at[2] = arena.reserve(rows * width / kBlock);
  };
  std::vector<Offsets> offsets;
  for (int g = 0; g < groups; ++g) {
    const int64_t rows = threads_.rows(g, batch_), pass = rows * chunk;
    for (int m = 0; m < members; ++m) {
      const int64_t heads = head_slices_[m].second - head_slices_[m].first;
      const int64_t hidden = hidden_slices_[m].second - hidden_slices_[m].first;
      offsets.push_back({arena.reserve(checked_size({pass, Wp_}, "the pass buffers")), arena.reserve(pass * Wp_),
                         arena.reserve(checked_size({pass, 3 * Dq_, heads}, "the pass buffers")),
                         arena.reserve(pass * Dq_ * heads), arena.reserve(checked_size({pass, hidden}, "the pass buffers")),
                         arena.reserve(checked_size({pass, Ap_}, "the pass buffers")), arena.reserve(Kp_),
                         arena.reserve(chunk * D_),
                         arena.reserve(conditioned ? 0 : checked_size({s.classes, 3 * Dq_, heads}, "the token table")),
                         arena.reserve(conditioned ? checked_size({rows, s.cond_hop}, "the context CNN") : 0),
                         arena.reserve(conditioned ? rows * Cp_ : 0), arena.reserve(conditioned ? rows * Cp_ : 0),
                         arena.reserve(conditioned ? checked_size({ring_slots, rows, Cp_}, "the context CNN") : 0),
                         arena.reserve(conditioned ? rows * Wp_ : 0), {}, {}});
      quantized(int8 ? pass : 0, input_width, offsets.back().inputs);
      quantized(int8 ? 1 : 0, int8 ? Dq_ : 0, offsets.back().query);
    }
  }
  scratch_ = allocate_floats(arena.size());
  float* base = scratch_.get();
  if (conditioned) state_bytes_ += batch_ * (s.cond_hop + ring_slots * Cp_ + Wp_) * static_cast<int64_t>(sizeof(float));

  tasks_.clear();
  for (int g = 0; g < groups; ++g) {
    for (int m = 0; m < members; ++m) {
      const Offsets& o = offsets[tasks_.size()];
      TransformerTask task{};
      task.row0 = threads_.row0(g, batch_);
      task.rows = threads_.rows(g, batch_);
      task.chunk = chunk;
      std::tie(task.e0, task.e1) = head_slices_[m];
      std::tie(task.f0, task.f1) = hidden_slices_[m];
      std::tie(task.a0, task.a1) = logit_slices_[m];
      task.seat = {&exchange_->groups[g], m, 0};
      task.x = base + o.x;
      task.normed = base + o.normed;
      task.qkv = base + o.qkv;
      task.attended = base + o.attended;
      task.hidden = base + o.hidden;
      task.logits = base + o.logits;
      task.scores = base + o.scores;
      task.rope = base + o.rope;
      task.token_qkv = conditioned ? nullptr : base + o.token_qkv;
      task.token_qkv_ready = false;
      task.wave = base + o.wave;
      task.cond_x = base + o.cond_x;
      task.cond_z = base + o.cond_z;
      task.cond_rings = base + o.rings;
      task.latent = base + o.latent;
      if (int8) {
        task.inputs = {reinterpret_cast<int8_t*>(base + o.inputs[0]), input_width, base + o.inputs[1],
                       reinterpret_cast<int32_t*>(base + o.inputs[2]), 0};
        task.query = {reinterpret_cast<int8_t*>(base + o.query[0]), Dq_, base + o.query[1],
                      reinterpret_cast<int32_t*>(base + o.query[2]), 0};
      }
      sampling_.push_back(make_sampling_scratch(s.classes));
      task.scratch = sampling_.back().get();
      sampled_.push_back(std::make_unique<int64_t[]>(static_cast<size_t>(task.rows)));
      task.sampled = sampled_.back().get();
      tasks_.push_back(task);
    }
  }
  pool_ = std::make_unique<WorkerPool>(static_cast<int>(tasks_.size()));
}

void TransformerEngine::run(const StepJob& job) {
  switch (precision_) {
    case WeightStorage::fp32:
      pool_->run([&](int index) { kernels_->run_transformer_steps(plan_, tasks_[index], job); });
      break;
    case WeightStorage::fp16:
      pool_->run([&](int index) { kernels_->run_transformer_steps_half(half_plan_, tasks_[index], job); });
      break;
    case WeightStorage::int8:
      pool_->run([&](int index) { kernels_->run_transformer_steps_int8(int8_plan_, tasks_[index], job); });
      break;
  }
}

void TransformerEngine::prefill(const int64_t* prompt, int64_t length, float* logits_out) {
  const auto lock = claim(busy_);
  require_range(length, 1, kMaxFloats, "prompt length");
  check_tokens(prompt, checked_size({batch_, length}, "prompt"), shape_.classes, "prompt");
  // Positions more than a receptive field before the end cannot reach the final state: without
  // logits to return, start there (on a block boundary, where the CNN's silence begins).
  int64_t start = logits_out != nullptr ? 0 : std::max<int64_t>(0, length - receptive_field_);
  if (shape_.cond_window > 0) start -= start % shape_.cond_hop;
  // The CNN state (rings, patch samples, latent) starts from zeros; the caches need no clearing:
  // attention reads only slots written since the origin.
  for (TransformerTask& task : tasks_) {
    std::memset(task.cond_rings, 0, static_cast<size_t>(cond_ring_slots_ * task.rows * Cp_) * sizeof(float));
    task.cond_patches_fed = 0;
  }
  plan_.origin = half_plan_.origin = int8_plan_.origin = static_cast<uint64_t>(start);
  has_logits_ = false;
  run(prefill_job(prompt, length, start, logits_out));
  position_ = static_cast<uint64_t>(length);
  has_logits_ = true;
}

void TransformerEngine::generate(int64_t n, uint64_t seed, uint32_t step0, const SamplingParams& params,
                                 bool final, int64_t* tokens_out) {
  const auto lock = claim(busy_);
  check_generate(n, batch_, step0, params, has_logits_);
  if (n == 0) return;
  has_logits_ = false;  // until the call succeeds: after a refusal the state is partly advanced
  run(generate_job(n, position_, seed, step0, params, final, tokens_out));
  check_finite_logits(tasks_, position_);
  position_ += static_cast<uint64_t>(n) - (final ? 1 : 0);
  has_logits_ = !final;
}

}  // namespace cpu
}  // namespace fastwave
