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
// Inputs: each row of a product's input x is quantised on the fly, in blocks of `block` inputs
// (the last one may be shorter), each block with its own scale: s = max |x| / 63 over the block and
// x_q = round(x / s) in [-63, 63] (signed bytes). Seven bits, not eight: vpmaddubsw adds two
// products of a byte (<= 255) and a signed byte into a saturating int16, and 2 * 255 * 63 = 32130
// cannot saturate, so every ISA computes the same exact integer sum for each block:
//   Σ_i x[i] w[i][c] ~= scale[c] * Σ_blocks s_b * Σ_{i in b} x_q[i] q[i][c]
//   Σ_{i in b} x_q[i] q[i][c] = Σ_{i in b} x_q[i] (q[i][c] + 128) - 128 Σ_{i in b} x_q[i]   (exact)
// and the blocks are summed in float, in order. A product whose input is whole in every thread
// (the residual stream, the skip sum) is one block; one whose input the threads of a group split
// between them (a layer's gated units, an attention head's output, the MLP's hidden units) uses
// blocks the split never cuts (kSplitBlock, or a head), so each stream's quantisation is the same
// on any number of threads. Rows are quantised independently, so a stream's results never depend
// on the rest of the batch either.
#pragma once

#include <cstdint>

namespace fastwave {
namespace cpu {

constexpr int kInt8Group = 4;         // inputs per 32-bit lane
constexpr int kWeightLevels = 127;    // |q| <= 127 (q + 128 in [1, 255])
constexpr int kInputLevels = 63;      // |x_q| <= 63
// Inputs per scale of a product whose inputs the threads of a group split; in int8 mode the engines
// split those units in multiples of it.
constexpr int64_t kSplitBlock = 32;

// One member's buffer of quantised inputs: rows of up to ld bytes, and per row and block the
// block's scale and Σ x_q, ld / 16 slots per row (blocks are multiples of 16 inputs).
struct QuantizedRows {
  int8_t* q;        // (rows, ld)
  int64_t ld;
  float* scale;     // (rows, ld / 16)
  int32_t* sum;     // (rows, ld / 16)
  int64_t block;    // inputs per block of the rows last quantised into it
};

}  // namespace cpu
}  // namespace fastwave
