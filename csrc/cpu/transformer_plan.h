// What the C++ sample-Transformer loop reads and writes, as plain data: the engine
// (transformer_engine.cpp) owns the memory and fills these structs; the per-ISA step code
// (kernels/transformer_steps.cpp) runs them. POD only, like wavenet_plan.h.
//
// Padding: the width W, each head's q / k / v (Dq = D rounded up to kBlock), the MLP's hidden
// units F and the classes are padded to multiples of kBlock with zero weights, so padded features
// stay exactly 0 and products need no remainder loop. Matrices are stored "in x out" (y += x @ W).
// A matrix whose output columns are split between the threads of a group is stored as one
// contiguous (in, c1 - c0) block per thread, at in * c0.
//
// The KV cache: position t of a row lives in slot s = (t - origin) % context, where origin is the
// first position prefill() fed; attention at t reads slots [0, min(t - origin + 1, context)), so
// once the context is full each new position overwrites the oldest (a sliding window). Both caches
// are read front to back once per step, each as one stream:
//   keys   (batch, heads, Kp / kKeySpan, D, kKeySpan): spans of kKeySpan slots, feature-major, so
//          scores are broadcast multiply-adds over 8 vectors of slots at a time (no horizontal sums);
//   values (batch, heads, context, Dq): one row per slot, so the weighted sum is a broadcast of each
//          slot's probability times its row, summed into Dq features (again no horizontal sums);
// Kp = context rounded up to kKeySpan (whole spans of keys; values need no rounding).
#pragma once

#include <cstdint>

#include "cpu/int8_weights.h"
#include "cpu/step_job.h"

namespace fastwave {
namespace cpu {

constexpr int64_t kKeySpan = 128;  // a multiple of 8 vectors on every ISA (16, 8 or 4 lanes)

// Storage T: float; uint16_t holding IEEE half bits (fp16: the matrices and the KV cache stored in
// half precision, every product and sum still in float); or uint8_t (int8):
//   matrices: the int8 layout with a scale per output column (int8_weights.h), inputs quantised per
//             row and pass, integer dot products;
//   keys:     per slot, scale = max_d |k[d]| / 127 and q = round(k / scale) stored as q + 128 over
//             the Dq padded features; each span of kKeySpan slots is (Dq / 4, kKeySpan, 4) bytes, so
//             a 32-bit lane holds four features of one slot: the scores are integer dot products with
//             the query quantised to 7 bits per head and step, like any int8 product;
//   values:   per slot, scale = max |v| / 127, q = round(v / scale) as a signed byte (the bytes of
//             `values` are int8_t); the weighted sum is in float: each slot's probability times its
//             scale, times its row widened to float. (Probabilities span too many orders of magnitude
//             to quantise to 7 bits: a long tail of small weights would round to 0.)
// Vectors (norms, biases), the embedding and the conditioning CNN stay float at every precision.
template <typename T>
struct TransformerLayerPlan {
  const float* norm1_weight;  // (Wp,) LayerNorm over the first W features, eps 1e-5
  const float* norm1_bias;
  const T* qkv;           // (Wp, 3 Dq (e1 - e0)) at Wp * 3 Dq * e0: per owned head [q | k | v]
  const float* qkv_bias;      // (heads * 3 Dq,) in the same column order
  const T* out;           // (heads * Dq, Wp): head e's features are rows e * Dq ...
  const float* out_bias;      // (Wp,)
  const float* norm2_weight;
  const float* norm2_bias;
  const T* fc;            // (Wp, f1 - f0) at Wp * f0
  const float* fc_bias;       // (Fp,)
  const T* proj;          // (Fp, Wp)
  const float* proj_bias;     // (Wp,)
  T* keys;                // (batch, heads, Kp / kKeySpan, D, kKeySpan), rotated keys; int8: Dq, not D
  T* values;              // (batch, heads, context, Dq), padded features 0
  // int8 only (nullptr otherwise): each matrix's scale per column of the whole matrix, and the
  // caches' scale per slot.
  const float* qkv_scale;     // (heads * 3 Dq,)
  const float* out_scale;     // (Wp,)
  const float* fc_scale;      // (Fp,)
  const float* proj_scale;    // (Wp,)
  float* key_scale;           // (batch, heads, Kp)
  float* value_scale;         // (batch, heads, context)
};

// The conditioned variant's causal CNN over the past waveform (cond_hop == 0: none). Each member
// keeps its own copy of the state and computes it redundantly: it changes once per cond_hop samples.
struct ContextPlan {
  int64_t hop, Cp, kernel, layers, patches;  // patches: silent patches fed at the origin
  const int64_t* dilations;   // [layers]
  const float* amplitude;     // (classes,) the waveform value of each token
  const float* patch;         // (hop, Cp) the strided conv over one patch of samples
  const float* patch_bias;    // (Cp,)
  const float* conv;          // per layer (kernel * Cp, Cp) at layer * kernel * Cp * Cp; tap k reads
                              // the layer input at patch p - (kernel - 1 - k) * dilation
  const float* conv_bias;     // (layers, Cp)
  const float* proj;      // (Cp, Wp)
  const float* proj_bias;     // (Wp,)
};

// The fields that do not depend on the storage type.
struct TransformerPlanBase {
  int64_t layers, batch, W, Wp, heads, D, Dq, context, Kp, Fp, classes, Ap;
  float scale;                       // 1 / sqrt(D)
  const float* embedding;            // (classes, Wp)
  const float* norm_weight;          // (Wp,) the final LayerNorm
  const float* norm_bias;
  const float* head_bias;            // (Ap,)
  const int64_t* logit_bounds;       // [members + 1]: member k owns logits [bounds[k], bounds[k + 1])
  const double* inv_freq;            // (D / 2,) rope_base ** (-2 d / D)
  uint64_t origin;                   // the first position of the caches (set by prefill)
  ContextPlan context_cnn;
};

template <typename T>
struct TransformerPlan : TransformerPlanBase {
  const TransformerLayerPlan<T>* layer;  // [layers]
  const T* head;                         // (Wp, a1 - a0) at Wp * a0
  const float* head_scale;               // int8: (Ap,); nullptr otherwise
};

// One thread's share: a group of threads runs a range of rows together, each thread some heads,
// a slice of the MLP's hidden units and a slice of the logits. Buffers are the thread's own and hold
// `chunk` positions of every row (prefill runs that many positions per pass; decoding, one).
struct TransformerTask {
  int64_t row0, rows, chunk;
  int64_t e0, e1;        // heads [e0, e1)
  int64_t f0, f1;        // MLP hidden units [f0, f1), multiples of kBlock
  int64_t a0, a1;        // logits [a0, a1), multiples of kBlock
  ExchangeSeat seat;
  float* x;              // (rows * chunk, Wp) the residual stream; row r = b * positions + i
  float* normed;         // (rows * chunk, Wp)
  float* qkv;            // (rows * chunk, 3 Dq (e1 - e0))
  float* attended;       // (rows * chunk, Dq (e1 - e0))
  float* hidden;         // (rows * chunk, f1 - f0)
  float* logits;         // (rows * chunk, Ap) complete logits, identical in every member
  float* scores;         // (Kp,)
  float* rope;           // (chunk, D): cos then sin of each position's angles
  // Unconditioned models: layer 0's input is the token's embedding alone, so its q, k, v (before the
  // rotation) are a function of the token: a table of them, filled on the first pass, replaces
  // layer 0's LayerNorm and projection (the same kernels compute it, so the same bits). nullptr for
  // the conditioned variant, whose layer-0 input also carries the latent.
  float* token_qkv;      // (classes, 3 Dq (e1 - e0))
  bool token_qkv_ready;
  // Conditioned variant only: this member's copy of the CNN state.
  float* wave;           // (rows, hop) the samples of the patch being filled
  float* cond_x;         // (rows, Cp)
  float* cond_z;         // (rows, Cp)
  float* cond_rings;     // per layer (kernel - 1) * dilation slots of (rows, Cp), layer by layer
  float* latent;         // (rows, Wp) added to the embedding of every position of the block
  uint64_t cond_patches_fed;
  // int8: the inputs of the matrix products quantised per row (rows * chunk, max(Wp, Fp, Dq heads)
  // wide), and one head's query (1, Dq) for the scores (int8_weights.h).
  QuantizedRows inputs;
  QuantizedRows query;
  int64_t* sampled;      // (rows,)
  StepStatus status;        // set by each call (step_job.h)
  SamplingScratch* scratch;
};

// cos / sin of position * inv_freq[d] for d < half, computed in double as the torch model does;
// out = [cos (half) | sin (half)]. Out of line (compiled without ISA flags; see vector_ops.h).
void rope_angles(uint64_t position, const double* inv_freq, int64_t half, float* out);

}  // namespace cpu
}  // namespace fastwave
