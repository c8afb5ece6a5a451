// The sample-Transformer step loop of the C++ engine, compiled once per instruction set like
// wavenet_steps.cpp. One pass feeds n positions of every row of a member's group (prefill: up to
// `chunk` positions at once, so the projections are matrix products; decoding: one):
//   x = embedding[token] (+ the block's latent, conditioned variant)
//   per layer: h = LN1(x);  q, k, v = h @ Wqkv + b for the owned heads;  rotate q and k;
//              per position, in order: write k, v to the cache, then attend over the window
//              x += out_b + attended @ Wout                     (partials summed across the group)
//              x += proj_b + gelu(LN2(x) @ Wfc + fc_b) @ Wproj  (the same)
//   logits = head_b + LN(x) @ Whead                             (owned columns, gathered)
// Writing position t's keys before attending from t, one position at a time, is what lets a pass
// of many positions share the ring with the window: the slot t overwrites held position
// t - context, which no position from t on attends to.
#include <cstdint>

#include "cpu/isa_kernels.h"
#include "cpu/kernels/int8_ops.h"
#include "cpu/kernels/vector_ops.h"
#include "cpu/kernels/weight_products.h"
#include "cpu/transformer_plan.h"

namespace fastwave {
namespace cpu {
namespace FASTWAVE_ISA {
namespace {

constexpr float kMasked = -3.0e38f;

enum class HeadRows { kNone, kLast, kEvery };

// LayerNorm (eps 1e-5) of `rows` rows of x (row stride ldx) over their first W features -> y
// (rows, Wp). The padded features of x are 0, so they add nothing to the sum; their share of the
// squared deviations, (Wp - W) mean^2, is taken back out. Padded outputs are 0 (zero gain and bias).
template <typename T>
void layer_norm(const float* x, int64_t ldx, float* y, int64_t rows, const TransformerPlan<T>& p,
                const float* gain, const float* bias) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * p.Wp;
    V sum{};
    for (int64_t i = 0; i < p.Wp; i += kLanes) sum += load(xr + i);
    const float mean = horizontal_sum(sum) / static_cast<float>(p.W);
    const V centre = splat(mean);
    V squares{};
    for (int64_t i = 0; i < p.Wp; i += kLanes) {
      const V d = load(xr + i) - centre;
      squares += d * d;
    }
    float variance = (horizontal_sum(squares) - static_cast<float>(p.Wp - p.W) * mean * mean) /
                     static_cast<float>(p.W);
    variance = variance > 0.0f ? variance : 0.0f;
    const V scale = splat(1.0f / __builtin_sqrtf(variance + 1e-5f));
    for (int64_t i = 0; i < p.Wp; i += kLanes) {
      store(yr + i, (load(xr + i) - centre) * scale * load(gain + i) + load(bias + i));
    }
  }
}

// y (rows, cols) = bias broadcast, then += x @ w (the conditioning CNN's float matrices).
void affine(float* y, int64_t rows, int64_t cols, const float* bias, const float* x, int64_t ldx,
            const float* w, int64_t in) {
  if (cols == 0) return;
  for (int64_t r = 0; r < rows; ++r) copy_floats(y + r * cols, bias, cols);
  product1(y, cols, rows, cols, x, ldx, w, in, cols);
}

// The same for a matrix of the plan's storage W, with int8's column scales (shifted to the first
// column read) and the member's buffer of quantised inputs.
template <typename W>
void affine(float* y, int64_t rows, int64_t cols, const float* bias, const float* x, int64_t ldx,
            const W* w, const float* scale, int64_t in, TransformerTask& m) {
  if (cols == 0) return;
  for (int64_t r = 0; r < rows; ++r) copy_floats(y + r * cols, bias, cols);
  multiply(y, cols, rows, cols, prepare(w, x, ldx, rows, in, m.inputs), w, scale, in, cols);
}

// x (rows, Wp) += bias + in @ w, where each member of the group holds its own share of the input
// features (its heads, its hidden units) and w's matching rows: the partial products are exchanged
// and added in member order, so every member ends with the same bits.
// int8 quantises the input in blocks of `block` features, which the split between members never
// cuts (int8_weights.h).
template <typename T>
void add_projection(const TransformerPlan<T>& p, TransformerTask& m, int64_t rows, const float* in,
                    int64_t in_count, int64_t block, const T* w, const float* scale, const float* bias) {
  if (m.seat.group->members == 1) {
    add_bias(m.x, bias, rows, p.Wp);
    if (in_count > 0) {
      multiply(m.x, p.Wp, rows, p.Wp, prepare(w, in, in_count, rows, in_count, m.inputs, block), w, scale,
               in_count, p.Wp);
    }
    return;
  }
  float* part = my_part(m.seat);
  fill_zero(part, rows * p.Wp);
  if (in_count > 0) {
    multiply(part, p.Wp, rows, p.Wp, prepare(w, in, in_count, rows, in_count, m.inputs, block), w, scale,
             in_count, p.Wp);
  }
  exchange(m.seat);
  add_bias(m.x, bias, rows, p.Wp);
  for (int k = 0; k < m.seat.group->members; ++k) add(m.x, part_of(m.seat, k), rows * p.Wp);
}

// The conditioned variant's CNN, one patch for every row: x = gelu(patch_b + wave @ patch), then per
// layer x += gelu(conv_b + Σ_taps ring @ conv_k + x @ conv_last) with the layer's input saved in its
// ring, and latent = proj_b + x @ proj: the latent of the block that starts after this patch.
template <typename T>
void context_step(const TransformerPlan<T>& p, TransformerTask& m) {
  const ContextPlan& c = p.context_cnn;
  const int64_t rows = m.rows, Cp = c.Cp;
  affine(m.cond_x, rows, Cp, c.patch_bias, m.wave, c.hop, c.patch, c.hop);
  gelu(m.cond_x, rows * Cp);
  const uint64_t patch = m.cond_patches_fed++;
  float* ring = m.cond_rings;
  for (int64_t j = 0; j < c.layers; ++j) {
    const int64_t d = c.dilations[j], slots = (c.kernel - 1) * d;
    const float* conv = c.conv + j * c.kernel * Cp * Cp;
    Operand ops[8];  // the engine refuses kernels above 8
    int n_ops = 0;
    for (int64_t k = 0; k + 1 < c.kernel; ++k) {  // taps at patch - (K-1-k) d, oldest first
      const uint64_t back = static_cast<uint64_t>((c.kernel - 1 - k) * d);
      const int64_t slot = static_cast<int64_t>((patch + slots - back) % static_cast<uint64_t>(slots));
      ops[n_ops++] = {ring + slot * rows * Cp, Cp, conv + k * Cp * Cp, Cp};
    }
    ops[n_ops++] = {m.cond_x, Cp, conv + (c.kernel - 1) * Cp * Cp, Cp};
    for (int64_t r = 0; r < rows; ++r) copy_floats(m.cond_z + r * Cp, c.conv_bias + j * Cp, Cp);
    product(m.cond_z, Cp, rows, Cp, ops, n_ops, Cp);
    copy_floats(ring + static_cast<int64_t>(patch % static_cast<uint64_t>(slots)) * rows * Cp, m.cond_x, rows * Cp);
    gelu(m.cond_z, rows * Cp);
    add(m.cond_x, m.cond_z, rows * Cp);
    ring += slots * rows * Cp;
  }
  affine(m.latent, rows, p.Wp, c.proj_bias, m.cond_x, Cp, c.proj, Cp);
}

// At the origin the CNN has heard silence: the model pads the waveform with cond_patches patches of
// zeros, so feed exactly those (the engine zeroed the state).
template <typename T>
void start_context(const TransformerPlan<T>& p, TransformerTask& m) {
  if (p.context_cnn.hop == 0) return;
  fill_zero(m.wave, m.rows * p.context_cnn.hop);
  for (int64_t i = 0; i < p.context_cnn.patches; ++i) context_step(p, m);
}

// x[b * n + i] = embedding[token of row b at position t0 + i] (+ the row's latent); the conditioned
// variant also records each token's sample and runs the CNN when a patch completes.
template <typename T>
void embed(const TransformerPlan<T>& p, TransformerTask& m, const int64_t* tokens, int64_t stride,
           uint64_t t0, int64_t n) {
  const ContextPlan& c = p.context_cnn;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t since_origin = t0 + static_cast<uint64_t>(i) - p.origin;
    for (int64_t b = 0; b < m.rows; ++b) {
      const int64_t token = tokens[b * stride + i];
      float* x = m.x + (b * n + i) * p.Wp;
      copy_floats(x, p.embedding + token * p.Wp, p.Wp);
      if (c.hop == 0) continue;
      add(x, m.latent + b * p.Wp, p.Wp);
      m.wave[b * c.hop + static_cast<int64_t>(since_origin % static_cast<uint64_t>(c.hop))] = c.amplitude[token];
    }
    if (c.hop != 0 && (since_origin + 1) % static_cast<uint64_t>(c.hop) == 0) context_step(p, m);
  }
}

// A layer's LayerNorm and q, k, v projection (this member's heads) of `rows` rows of x -> qkv.
template <typename T>
void project_qkv(const TransformerPlan<T>& p, const TransformerLayerPlan<T>& layer, TransformerTask& m,
                 const float* x, int64_t rows, float* qkv) {
  const int64_t heads = m.e1 - m.e0;
  layer_norm(x, p.Wp, m.normed, rows, p, layer.norm1_weight, layer.norm1_bias);
  affine(qkv, rows, 3 * p.Dq * heads, layer.qkv_bias + 3 * p.Dq * m.e0, m.normed, p.Wp,
         layer.qkv + p.Wp * 3 * p.Dq * m.e0, shifted(layer.qkv_scale, 3 * p.Dq * m.e0), p.Wp, m);
}

// Fills m.token_qkv: every token's embedding through project_qkv, as many tokens per call as a pass
// has rows. Each output is the same chain of operations as when a step computes it.
template <typename T>
void fill_token_qkv(const TransformerPlan<T>& p, TransformerTask& m) {
  const int64_t per_call = m.rows * m.chunk, ld = 3 * p.Dq * (m.e1 - m.e0);
  for (int64_t c0 = 0; c0 < p.classes; c0 += per_call) {
    const int64_t count = p.classes - c0 < per_call ? p.classes - c0 : per_call;
    project_qkv(p, p.layer[0], m, p.embedding + c0 * p.Wp, count, m.token_qkv + c0 * ld);
  }
  m.token_qkv_ready = true;
}

// Rotary positions on the q and k of every owned head: features d and d + D/2 by the angles of the
// row's position (m.rope, filled per pass).
template <typename T>
void rotate(const TransformerPlan<T>& p, TransformerTask& m, int64_t n) {
  const int64_t half = p.D / 2, ld = 3 * p.Dq * (m.e1 - m.e0);
  for (int64_t r = 0; r < m.rows * n; ++r) {
    const float* cosines = m.rope + (r % n) * p.D;
    const float* sines = cosines + half;
    for (int64_t e = 0; e < m.e1 - m.e0; ++e) {
      for (int which = 0; which < 2; ++which) {  // q, then k
        float* v = m.qkv + r * ld + e * 3 * p.Dq + which * p.Dq;
        for (int64_t d = 0; d < half; ++d) {
          const float a = v[d], b = v[d + half];
          v[d] = a * cosines[d] - b * sines[d];
          v[d + half] = b * cosines[d] + a * sines[d];
        }
      }
    }
  }
}

// Stores G vectors of scores at `scores`, the slots from `valid` on (counted from the first) as
// kMasked (not written yet); returns the lane-wise max of what it stored.
template <int G>
V store_scores(V* score, int64_t valid, float* scores) {
  V best = splat(kMasked);
  for (int g = 0; g < G; ++g) {
    const int64_t left = valid - g * kLanes;
    if (left < kLanes) {
      VI lane;
      for (int i = 0; i < kLanes; ++i) lane[i] = i;
      score[g] = select(lane < static_cast<int32_t>(left), score[g], splat(kMasked));
    }
    store(scores + g * kLanes, score[g]);
    best = vmax(best, score[g]);
  }
  return best;
}

// Walks the vectors of slots [0, filled) in groups of up to 8 (8 chains in flight) that never
// straddle a span of keys (kKeySpan holds a multiple of 8 vectors on every ISA), calling
// group(Count<G>{}, v) for the group from vector v; returns the largest of what they return.
template <typename Group>
float for_each_score_group(int64_t filled, Group&& group) {
  static_assert(kKeySpan / kLanes % 8 == 0, "a span must hold whole groups of 8 vectors");
  const int64_t vectors = (filled + kLanes - 1) / kLanes;
  V best = splat(kMasked);
  for (int64_t v = 0; v < vectors;) {
    const int64_t n = vectors - v < 8 ? vectors - v : 8;
    switch (n) {
      case 8: best = vmax(best, group(Count<8>{}, v)); break;
      case 7: best = vmax(best, group(Count<7>{}, v)); break;
      case 6: best = vmax(best, group(Count<6>{}, v)); break;
      case 5: best = vmax(best, group(Count<5>{}, v)); break;
      case 4: best = vmax(best, group(Count<4>{}, v)); break;
      case 3: best = vmax(best, group(Count<3>{}, v)); break;
      case 2: best = vmax(best, group(Count<2>{}, v)); break;
      default: best = vmax(best, group(Count<1>{}, v)); break;
    }
    v += n;
  }
  return horizontal_max(best);
}

// scores[0, G kLanes) = scale * q . key for G vectors of slots inside one span of keys (`keys`
// points at the first: the span's feature-0 row, offset to the group), masked from `valid` on.
template <int G, typename T>
V score_vectors(const float* q, const T* keys, int64_t D, float scale, int64_t valid, float* scores) {
  V acc[G] = {};
  for (int64_t d = 0; d < D; ++d) {
    const V qd = splat(q[d]);
    for (int g = 0; g < G; ++g) acc[g] += qd * load(keys + d * kKeySpan + g * kLanes);
  }
  for (int g = 0; g < G; ++g) acc[g] *= scale;
  return store_scores<G>(acc, valid, scores);
}

// scores[s] = scale * q . key[s] for the slots [0, filled) (rounded up to whole vectors, the rest
// kMasked). Returns the largest score.
template <typename T>
float score_slots(const float* q, const T* keys, int64_t D, float scale, int64_t filled, float* scores) {
  constexpr int64_t kPerSpan = kKeySpan / kLanes;
  return for_each_score_group(filled, [&](auto group, int64_t v) {
    const T* k = keys + (v / kPerSpan) * D * kKeySpan + (v % kPerSpan) * kLanes;
    return score_vectors<decltype(group)::value>(q, k, D, scale, filled - v * kLanes, scores + v * kLanes);
  });
}

// probs[s] = exp(scores[s] - top) in place for the slots [0, filled) rounded up to whole vectors
// (the unwritten ones set to exactly 0); returns their sum. Two sums in flight.
inline float exponentiate(float* probs, int64_t filled, float top) {
  const V shift = splat(top);
  const int64_t whole = filled / kLanes * kLanes;
  V sums[2] = {};
  int64_t s = 0;
  for (; s + 2 * kLanes <= whole; s += 2 * kLanes) {
    for (int u = 0; u < 2; ++u) {
      const V e = exp_v(load(probs + s + u * kLanes) - shift);
      store(probs + s + u * kLanes, e);
      sums[u] += e;
    }
  }
  for (; s < whole; s += kLanes) {
    const V e = exp_v(load(probs + s) - shift);
    store(probs + s, e);
    sums[0] += e;
  }
  if (whole < filled) {  // the last vector: exp_v clamps, so its unwritten slots are zeroed by hand
    store(probs + whole, exp_v(load(probs + whole) - shift));
    for (int64_t i = filled; i < whole + kLanes; ++i) probs[i] = 0.0f;
    sums[1] += load(probs + whole);
  }
  return horizontal_sum(sums[0] + sums[1]);
}

// out[f0, f0 + G kLanes) = Σ_{s < filled} probs[s] * value[s][f0 ...]: P = 8 / G slots in flight,
// each a broadcast times G vectors of its row, so the values stream front to back once.
template <int G, typename T>
void weigh_rows(const float* probs, const T* values, int64_t Dq, int64_t filled, int64_t f0, float* out) {
  constexpr int P = 8 / G;
  V acc[P][G] = {};
  const T* row = values + f0;
  int64_t s = 0;
  for (; s + P <= filled; s += P) {
    for (int u = 0; u < P; ++u) {
      const V pu = splat(probs[s + u]);
      for (int g = 0; g < G; ++g) acc[u][g] += pu * load(row + (s + u) * Dq + g * kLanes);
    }
  }
  for (; s < filled; ++s) {
    const V ps = splat(probs[s]);
    for (int g = 0; g < G; ++g) acc[0][g] += ps * load(row + s * Dq + g * kLanes);
  }
  for (int g = 0; g < G; ++g) {
    V total = acc[0][g];
    for (int u = 1; u < P; ++u) total += acc[u][g];
    store(out + f0 + g * kLanes, total);
  }
}

template <typename T>
void weigh_values(const float* probs, const T* values, int64_t Dq, int64_t filled, float* out) {
  for (int64_t f = 0; f < Dq;) {
    const int64_t left = (Dq - f) / kLanes;
    if (left >= 8) {
      weigh_rows<8>(probs, values, Dq, filled, f, out);
      f += 8 * kLanes;
    } else if (left >= 4) {
      weigh_rows<4>(probs, values, Dq, filled, f, out);
      f += 4 * kLanes;
    } else if (left >= 2) {
      weigh_rows<2>(probs, values, Dq, filled, f, out);
      f += 2 * kLanes;
    } else {
      weigh_rows<1>(probs, values, Dq, filled, f, out);
      f += kLanes;
    }
  }
}

// One (row, head)'s part of a layer's caches (transformer_plan.h); the scales are int8's.
template <typename T>
struct HeadCache {
  T* keys;
  T* values;
  float* key_scale;
  float* value_scale;
};

// Writes slot `slot` of a head's cache: its key k (D,) and value v (Dq,).
template <typename T>
void write_slot(const TransformerPlan<T>& p, const HeadCache<T>& c, int64_t slot, const float* k, const float* v) {
  T* key_slot = c.keys + (slot / kKeySpan) * p.D * kKeySpan + slot % kKeySpan;
  for (int64_t d = 0; d < p.D; ++d) store_scalar(key_slot + d * kKeySpan, k[d]);
  T* value_row = c.values + slot * p.Dq;
  for (int64_t d = 0; d < p.Dq; ++d) store_scalar(value_row + d, v[d]);
}

// max |x[i]| / 127 for i < n, and 1 / that (0 for an all-zero x).
inline float slot_scale(const float* x, int64_t n, float* inverse) {
  float top = 0.0f;
  for (int64_t i = 0; i < n; ++i) top = __builtin_fabsf(x[i]) > top ? __builtin_fabsf(x[i]) : top;
  *inverse = top > 0.0f ? static_cast<float>(kWeightLevels) / top : 0.0f;
  return top / static_cast<float>(kWeightLevels);
}

inline int32_t round_to_int(float x) { return static_cast<int32_t>(__builtin_rintf(x)); }

void write_slot(const TransformerPlan<uint8_t>& p, const HeadCache<uint8_t>& c, int64_t slot, const float* k,
                const float* v) {
  float inverse;
  c.key_scale[slot] = slot_scale(k, p.D, &inverse);
  uint8_t* span = c.keys + (slot / kKeySpan) * p.Dq * kKeySpan + (slot % kKeySpan) * kInt8Group;
  for (int64_t d = 0; d < p.Dq; ++d) {  // padded features (d >= D) store q = 0
    const int32_t q = d < p.D ? round_to_int(k[d] * inverse) : 0;
    span[(d / kInt8Group) * kKeySpan * kInt8Group + d % kInt8Group] = static_cast<uint8_t>(q + 128);
  }
  c.value_scale[slot] = slot_scale(v, p.Dq, &inverse);
  int8_t* row = reinterpret_cast<int8_t*>(c.values) + slot * p.Dq;
  for (int64_t d = 0; d < p.Dq; ++d) row[d] = static_cast<int8_t>(round_to_int(v[d] * inverse));
}

// Scores from int8 keys: for G vectors of slots inside one span (`keys` at the group's first
// lane of feature group 0), integer dot products of the quantised query with each slot's key, then
// scale * query scale * the slot's key scale; masked from `valid` on.
template <int G>
V score_vectors_q8(const QuantizedRows& q, const uint8_t* keys, const float* key_scale, int64_t Dq, float scale,
                   int64_t valid, float* scores) {
  VI acc[G] = {};
  for (int64_t d = 0; d < Dq; d += kInt8Group) {
    int32_t four;
    __builtin_memcpy(&four, q.q + d, sizeof four);
    const VI qd = VI{} + four;
    const uint8_t* group = keys + d * kKeySpan;
    for (int g = 0; g < G; ++g) acc[g] = dot4(acc[g], load_lanes(group + g * kLanes * kInt8Group), qd);
  }
  const int32_t offset = 128 * q.sum[0];  // the keys' +128, times Σ q_q
  const float factor = q.scale[0] * scale;
  V score[G];
  for (int g = 0; g < G; ++g) {
    score[g] = __builtin_convertvector(acc[g] - offset, V) * (load(key_scale + g * kLanes) * factor);
  }
  return store_scores<G>(score, valid, scores);
}

float score_slots_q8(const QuantizedRows& q, const HeadCache<uint8_t>& c, int64_t Dq, float scale, int64_t filled,
                     float* scores) {
  constexpr int64_t kPerSpan = kKeySpan / kLanes;
  return for_each_score_group(filled, [&](auto group, int64_t v) {
    const uint8_t* k = c.keys + (v / kPerSpan) * Dq * kKeySpan + (v % kPerSpan) * kLanes * kInt8Group;
    return score_vectors_q8<decltype(group)::value>(q, k, c.key_scale + v * kLanes, Dq, scale, filled - v * kLanes,
                                                    scores + v * kLanes);
  });
}

// softmax(q . keys) @ values over the window, unnormalised -> out (Dq,); returns the softmax's sum.
template <typename T>
float attend_window(const TransformerPlan<T>& p, const HeadCache<T>& c, TransformerTask& m, const float* q,
                    int64_t filled, float* out) {
  const float top = score_slots(q, c.keys, p.D, p.scale, filled, m.scores);
  const float sum = exponentiate(m.scores, filled, top);
  weigh_values(m.scores, c.values, p.Dq, filled, out);
  return sum;
}

float attend_window(const TransformerPlan<uint8_t>& p, const HeadCache<uint8_t>& c, TransformerTask& m,
                    const float* q, int64_t filled, float* out) {
  const QuantizedRows query = quantize_rows(q, p.Dq, 1, p.Dq, p.Dq, m.query);
  const float top = score_slots_q8(query, c, p.Dq, p.scale, filled, m.scores);
  const float sum = exponentiate(m.scores, filled, top);
  // Each slot's probability times its value scale: the weights of the rows as stored.
  for (int64_t s = 0; s < filled; ++s) m.scores[s] *= c.value_scale[s];
  weigh_values(m.scores, reinterpret_cast<const int8_t*>(c.values), p.Dq, filled, out);
  return sum;
}

// One head of one row at position t: store its key and value in the cache, then softmax-attend
// over the window -> out (Dq,), padded features 0.
template <typename T>
void attend_head(const TransformerPlan<T>& p, const HeadCache<T>& c, TransformerTask& m, const float* q,
                 const float* k, const float* v, uint64_t t, float* out) {
  const uint64_t since_origin = t - p.origin;
  const int64_t slot = static_cast<int64_t>(since_origin % static_cast<uint64_t>(p.context));
  const int64_t filled = since_origin + 1 < static_cast<uint64_t>(p.context) ? static_cast<int64_t>(since_origin + 1) : p.context;
  write_slot(p, c, slot, k, v);
  const float inverse = 1.0f / attend_window(p, c, m, q, filled, out);
  for (int64_t i = 0; i < p.Dq; ++i) out[i] *= inverse;
}

// Every owned head of every row, position by position (see the file comment for why in order).
template <typename T>
void attend(const TransformerPlan<T>& p, const TransformerLayerPlan<T>& layer, TransformerTask& m,
            uint64_t t0, int64_t n) {
  const int64_t heads = m.e1 - m.e0, ld_qkv = 3 * p.Dq * heads, ld_out = p.Dq * heads;
  const int64_t key_count = p.Kp * p.D, value_count = p.context * p.Dq;  // one (row, head)
  const int64_t key_bytes = p.Kp * p.Dq;                                    // int8 keys of one (row, head)
  for (int64_t b = 0; b < m.rows; ++b) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = b * n + i;
      for (int64_t e = 0; e < heads; ++e) {
        const float* qkv = m.qkv + r * ld_qkv + e * 3 * p.Dq;
        const int64_t cache = (m.row0 + b) * p.heads + m.e0 + e;
        const bool int8 = layer.key_scale != nullptr;
        const HeadCache<T> c{layer.keys + cache * (int8 ? key_bytes : key_count), layer.values + cache * value_count,
                             int8 ? layer.key_scale + cache * p.Kp : nullptr,
                             int8 ? layer.value_scale + cache * p.context : nullptr};
        attend_head(p, c, m, qkv, qkv + p.Dq, qkv + 2 * p.Dq, t0 + static_cast<uint64_t>(i),
                    m.attended + r * ld_out + e * p.Dq);
      }
    }
  }
}

// The final LayerNorm and the head: logits of every position (kEvery, rows b * n + i) or of the
// last position of each row (kLast, rows b), complete in every member.
template <typename T>
void run_head(const TransformerPlan<T>& p, TransformerTask& m, int64_t n, HeadRows which) {
  const bool every = which == HeadRows::kEvery;
  const int64_t rows = every ? m.rows * n : m.rows;
  layer_norm(every ? m.x : m.x + (n - 1) * p.Wp, every ? p.Wp : n * p.Wp, m.normed, rows, p,
             p.norm_weight, p.norm_bias);
  const int64_t width = m.a1 - m.a0;
  if (m.seat.group->members == 1) {
    affine(m.logits, rows, p.Ap, p.head_bias, m.normed, p.Wp, p.head, p.head_scale, p.Wp, m);
    return;
  }
  affine(my_part(m.seat), rows, width, p.head_bias + m.a0, m.normed, p.Wp, p.head + p.Wp * m.a0,
         shifted(p.head_scale, m.a0), p.Wp, m);
  exchange(m.seat);
  for (int k = 0; k < m.seat.group->members; ++k) {
    const int64_t a0 = p.logit_bounds[k], columns = p.logit_bounds[k + 1] - a0;
    const float* part = part_of(m.seat, k);
    for (int64_t r = 0; r < rows; ++r) copy_floats(m.logits + r * p.Ap + a0, part + r * columns, columns);
  }
}

// Feeds positions t0 .. t0 + n - 1 (n <= chunk) of every row: the token of row b at position t0 + i
// is tokens[b * stride + i].
template <typename T>
void run_pass(const TransformerPlan<T>& p, TransformerTask& m, const int64_t* tokens, int64_t stride,
              uint64_t t0, int64_t n, HeadRows head) {
  const int64_t rows = m.rows * n, heads = m.e1 - m.e0, hidden = m.f1 - m.f0;
  for (int64_t i = 0; i < n; ++i) rope_angles(t0 + static_cast<uint64_t>(i), p.inv_freq, p.D / 2, m.rope + i * p.D);
  embed(p, m, tokens, stride, t0, n);
  for (int64_t l = 0; l < p.layers; ++l) {
    const TransformerLayerPlan<T>& layer = p.layer[l];
    if (l == 0 && m.token_qkv != nullptr) {  // row b * n + i is token tokens[b * stride + i]
      const int64_t ld = 3 * p.Dq * heads;
      for (int64_t b = 0; b < m.rows; ++b)
        for (int64_t i = 0; i < n; ++i)
          copy_floats(m.qkv + (b * n + i) * ld, m.token_qkv + tokens[b * stride + i] * ld, ld);
    } else {
      project_qkv(p, layer, m, m.x, rows, m.qkv);
    }
    rotate(p, m, n);
    attend(p, layer, m, t0, n);
    add_projection(p, m, rows, m.attended, p.Dq * heads, p.Dq, layer.out + m.e0 * p.Dq * p.Wp, layer.out_scale,
                   layer.out_bias);
    layer_norm(m.x, p.Wp, m.normed, rows, p, layer.norm2_weight, layer.norm2_bias);
    affine(m.hidden, rows, hidden, layer.fc_bias + m.f0, m.normed, p.Wp, layer.fc + p.Wp * m.f0,
           shifted(layer.fc_scale, m.f0), p.Wp, m);
    gelu(m.hidden, rows * hidden);
    add_projection(p, m, rows, m.hidden, hidden, kSplitBlock, layer.proj + m.f0 * p.Wp, layer.proj_scale,
                   layer.proj_bias);
  }
  if (head != HeadRows::kNone) run_head(p, m, n, head);
}

template <typename T>
void run_steps(const TransformerPlan<T>& p, TransformerTask& m, const StepJob& job) {
  const bool writes = m.seat.member == 0;  // every member computes the same values; one writes them
  m.status = {-1, -1};
  if (m.token_qkv != nullptr && !m.token_qkv_ready) fill_token_qkv(p, m);
  if (job.tokens != nullptr) {  // prefill: the state starts at the origin
    start_context(p, m);
    for (int64_t i0 = 0; i0 < job.count; i0 += m.chunk) {
      const int64_t n = job.count - i0 < m.chunk ? job.count - i0 : m.chunk;
      const bool last = i0 + n == job.count;
      const HeadRows head = job.need_logits_every_step ? HeadRows::kEvery : last ? HeadRows::kLast : HeadRows::kNone;
      run_pass(p, m, job.tokens + m.row0 * job.tokens_stride + i0, job.tokens_stride,
               job.position + static_cast<uint64_t>(i0), n, head);
      if (writes && job.logits_out != nullptr) {
        for (int64_t b = 0; b < m.rows; ++b)
          for (int64_t i = 0; i < n; ++i)
            copy_floats(job.logits_out + ((m.row0 + b) * job.count + i0 + i) * p.classes,
                        m.logits + (b * n + i) * p.Ap, p.classes);
      }
      if (last && head == HeadRows::kEvery && n > 1) {  // sampling reads row b's next logits at row b
        for (int64_t b = 0; b < m.rows; ++b) copy_floats(m.logits + b * p.Ap, m.logits + (b * n + n - 1) * p.Ap, p.Ap);
      }
    }
    return;
  }
  for (int64_t i = 0; i < job.count; ++i) {
    if (!sample_rows(m.logits, p.Ap, p.classes, m.rows, m.row0, job, i, writes, m.sampled, *m.scratch, m.status)) {
      return;
    }
    if (i + 1 < job.count || !job.final) {
      run_pass(p, m, m.sampled, 1, job.position + static_cast<uint64_t>(i), 1, HeadRows::kLast);
    }
  }
}

}  // namespace

void run_transformer_steps(const TransformerPlan<float>& plan, TransformerTask& task, const StepJob& job) {
  run_steps(plan, task, job);
}

void run_transformer_steps_half(const TransformerPlan<uint16_t>& plan, TransformerTask& task, const StepJob& job) {
  run_steps(plan, task, job);
}

void run_transformer_steps_int8(const TransformerPlan<uint8_t>& plan, TransformerTask& task, const StepJob& job) {
  run_steps(plan, task, job);
}

}  // namespace FASTWAVE_ISA
}  // namespace cpu
}  // namespace fastwave
