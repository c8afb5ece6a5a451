// The sampling contract every fastwave engine keeps, on the CPU (and CUDA-callable).
// Its vectorised twin is fastwave/engines/sampling.py.
//
// Given float32 logits z[0..A-1] and a uniform u in [0, 1):
//   greedy (temperature == 0 or top_k == 1): argmax, lowest index on ties.
//   otherwise, in float64: top-k keeps the k largest z (lower index first on ties; the same
//   classes as the k largest z / temperature); w = exp((z - max kept z) / temperature) -- the max
//   is subtracted before dividing, so a tiny temperature gives weights 0 and 1 (greedy), never
//   inf - inf; top-p keeps the smallest prefix of the kept classes, ordered by w descending (lower
//   index first on ties), whose running sum reaches p * (sum of kept w); finally, over the kept
//   classes in ascending index order, the token is the first whose running sum of w exceeds
//   u * (the total), or the last kept class if rounding leaves none.
// Every sum is a plain left-to-right double sum in both implementations. They still agree token for
// token only up to DESIGN's exception: the exponentials may differ in the last bit (std::exp,
// torch.exp and the CPU engines' vectorised exp each round their own way), which can change a token
// only when u (or p) lands within rounding of a running-sum boundary.
#pragma once

#include <cstdint>
#include <vector>

namespace fastwave {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off; valid range (0, 1]

  bool greedy() const { return temperature == 0.0 || top_k == 1; }
};

// Throws std::invalid_argument (ValueError in Python) naming the field that is out of range:
// temperature must be finite and >= 0, top_k >= 0, 0 < top_p <= 1.
void validate(const SamplingParams& params);

// A class and the value it is ranked by (z for top-k, w for top-p), kept side by side so sorting
// compares contiguous memory.
struct RankedClass {
  double value;
  int64_t index;
};

// Buffers sample_token reuses, so a generation loop that samples every step allocates only on
// its first call (or when num_classes grows). One per thread.
struct SamplingScratch {
  std::vector<double> scaled;   // z_i as double, by class
  std::vector<double> weights;  // w_i = exp((z_i - m) / temperature), by class (kept classes only)
  std::vector<int64_t> kept;    // kept classes, ascending index order
  std::vector<RankedClass> ranked;  // classes being ranked by top-k or top-p
  std::vector<double> work;     // exponents, then running sums, in kept order
};

// x[i] = e^x[i] for i < n, in place: how sample_token exponentiates. nullptr = std::exp; the CPU
// engines pass their vectorised exp (csrc/cpu/kernels/vector_ops.h, within an ulp of std::exp).
using ExpInPlace = void (*)(double* x, int64_t n);

// philox_uniform(seed, step, stream) as an out-of-line function: code compiled for a wider ISA
// (csrc/cpu/kernels) calls this instead of instantiating the header's inline version, whose
// AVX-512 copy the linker could otherwise pick for every caller.
float sampling_uniform(uint64_t seed, uint32_t step, uint32_t stream);

// One token in [0, num_classes). Preconditions, checked by the callers at the native boundary:
// num_classes >= 1, every logit finite, 0 <= u < 1, validate(params) passes.
int64_t sample_token(const float* logits, int64_t num_classes, float u,
                     const SamplingParams& params, SamplingScratch& scratch,
                     ExpInPlace exp_in_place = nullptr);

}  // namespace fastwave
