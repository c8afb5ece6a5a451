// The engines' int8 mode, as plain data (POD only, like step_job.h): how int8 weight matrices are
// laid out and how the inputs of a product are quantised. The arithmetic is in
// kernels/int8_ops.h; the engine packs the weights (int8_pack.cpp).
//
// Weights: per output column c, scale[c] = max_i |w[i][c]| / 127 and q = round(w / scale[c]) in
// [-127, 127], stored as the unsigned byte q + 128. A matrix (in, cols) is stored in groups of four
// inputs: element (i, c) at byte ((i / 4) * cols + c) * 4 + i % 4, so one 32-bit lane holds four
// inputs of one column and a vector of lanes covers consecutive columns -- the operand shape of
// vpdpbusd (AVX-512 VNNI) and of vpmaddubsw + vpmaddwd (AVX2, AVX-512 without VNNI). `in` is always
// a multiple of 16, so the groups of a row range starting at a multiple of 4 begin at the same
// element offset as in the float layout.
//
// Inputs: each row of a product's input x is quantised on the fly with its own scale,
// s = max |x| / 63 and x_q = round(x / s) in [-63, 63] (signed bytes). Seven bits, not eight:
// vpmaddubsw adds two products of a byte (<= 255) and a signed byte into a saturating int16, and
// 2 * 255 * 63 = 32130 cannot saturate, so every ISA computes the same exact integer sums.
//   Σ_i x[i] w[i][c] ~= s * scale[c] * Σ_i x_q[i] q[i][c]
//                     = s * scale[c] * (Σ_i x_q[i] (q[i][c] + 128) - 128 Σ_i x_q[i])
// Rows are quantised independently, so a stream's results never depend on the rest of the batch.
#pragma once

#include <cstdint>

namespace fastwave {
namespace cpu {

constexpr int kInt8Group = 4;         // inputs per 32-bit lane
constexpr int kWeightLevels = 127;    // |q| <= 127 (q + 128 in [1, 255])
constexpr int kInputLevels = 63;      // |x_q| <= 63

// One member's buffer of quantised inputs (rows, ld) with each row's scale and sum of x_q.
struct QuantizedRows {
  int8_t* q;
  int64_t ld;
  float* scale;
  int32_t* sum;
};

}  // namespace cpu
}  // namespace fastwave
