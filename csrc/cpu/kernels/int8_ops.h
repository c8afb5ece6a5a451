// int8 products for the per-ISA step loops: quantising a product's input rows and y += x @ w over
// int8 weights (cpu/int8_weights.h gives the layout and the arithmetic). The four-input dot product
// of a 32-bit lane is vpdpbusd with AVX-512 VNNI, vpmaddubsw + vpmaddwd with AVX2 or AVX-512 BW,
// and a scalar loop in the generic variant; all three compute the same exact integers.
//
// Same rules as vector_ops.h: everything in an anonymous namespace of the ISA's namespace, only
// always-inline intrinsics and builtins.
#pragma once

#include <cstdint>

#include "cpu/int8_weights.h"
#include "cpu/kernels/vector_ops.h"

namespace fastwave {
namespace cpu {
namespace FASTWAVE_ISA {
namespace {

typedef int8_t VB __attribute__((vector_size(kLanes)));  // one byte per float lane
typedef uint32_t VU __attribute__((vector_size(kLanes * sizeof(float))));

inline V abs_v(V v) { return (V)((VI)v & ~(VI)splat(-0.0f)); }

// Round to nearest even, without the add of a rounding constant (a fused multiply-add would round
// x * inv and the constant together, differently from the generic variant's separate multiply).
inline V round_v(V v) {
#if defined(__AVX512F__)
  return (V)_mm512_roundscale_ps((__m512)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(__AVX__)
  return (V)_mm256_round_ps((__m256)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
  V r;
  for (int l = 0; l < kLanes; ++l) r[l] = __builtin_rintf(v[l]);
  return r;
#endif
}

// Stores kBlock int32 lanes (values in int8's range) as kBlock bytes. GCC's vector conversion
// extracts the bytes one by one on AVX2, which made quantising a row cost as much as its product:
// two saturating packs and a lane fix-up instead.
inline void store_block_bytes(int8_t* dst, const VI* lanes) {
#if defined(__AVX512F__)
  static_assert(kBlock == kLanes, "one vector per block");
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8((__m512i)lanes[0]));
#elif defined(__AVX2__)
  static_assert(kBlock == 2 * kLanes, "two vectors per block");
  // packs interleaves the 128-bit halves: [a0-3 b0-3 | a4-7 b4-7]; 0xD8 puts them in order.
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32((__m256i)lanes[0], (__m256i)lanes[1]), 0xD8);
  const __m128i bytes = _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), bytes);
#else
  for (int v = 0; v < kBlock / kLanes; ++v) {
    const VB b = __builtin_convertvector(lanes[v], VB);
    __builtin_memcpy(dst + v * kLanes, &b, sizeof b);
  }
#endif
}

// Quantises x (rows, in; row stride ldx) into `buffer` per row and block of `block` inputs, to
// [-kInputLevels, kInputLevels] (int8_weights.h); returns the buffer with its block set. in and
// block are multiples of kBlock, in <= buffer.ld.
inline QuantizedRows quantize_rows(const float* x, int64_t ldx, int64_t rows, int64_t in, int64_t block,
                                   QuantizedRows buffer) {
  buffer.block = block;
  const int64_t slots = buffer.ld / kBlock;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    int8_t* q = buffer.q + r * buffer.ld;
    for (int64_t b0 = 0, k = 0; b0 < in; b0 += block, ++k) {
      const int64_t b1 = b0 + block < in ? b0 + block : in;
      V peak = V{};
      for (int64_t i = b0; i < b1; i += kLanes) peak = vmax(peak, abs_v(load(xr + i)));
      const float top = horizontal_max(peak);
      // top * (63 / top) may round to just above 63: round() still gives 63.
      const float inv = top > 0.0f ? static_cast<float>(kInputLevels) / top : 0.0f;
      VI total = VI{};
      for (int64_t i = b0; i < b1; i += kBlock) {
        VI lanes[kBlock / kLanes];
        for (int v = 0; v < kBlock / kLanes; ++v) {
          lanes[v] = __builtin_convertvector(round_v(load(xr + i + v * kLanes) * inv), VI);
          total += lanes[v];
        }
        store_block_bytes(q + i, lanes);
      }
      int32_t sum = 0;
      for (int l = 0; l < kLanes; ++l) sum += total[l];
      buffer.scale[r * slots + k] = top / static_cast<float>(kInputLevels);
      buffer.sum[r * slots + k] = sum;
    }
  }
  return buffer;
}

// acc + Σ_k w[4 l + k] x[k] in each lane l: w unsigned bytes, x four signed bytes (the same in
// every lane).
inline VI dot4(VI acc, VI w, VI x) {
#if defined(__AVX512VNNI__)
  return (VI)_mm512_dpbusd_epi32((__m512i)acc, (__m512i)w, (__m512i)x);
#elif defined(__AVX512BW__)
  return acc + (VI)_mm512_madd_epi16(_mm512_maddubs_epi16((__m512i)w, (__m512i)x), _mm512_set1_epi16(1));
#elif defined(__AVX2__)
  return acc + (VI)_mm256_madd_epi16(_mm256_maddubs_epi16((__m256i)w, (__m256i)x), _mm256_set1_epi16(1));
#else
  // Byte k of every lane (little-endian) times input k, in plain vector arithmetic (SSE2, NEON).
  for (int k = 0; k < kInt8Group; ++k) {
    const int32_t input = static_cast<int8_t>(x[0] >> (8 * k));
    acc += (VI)(((VU)w >> (8 * k)) & 255u) * input;
  }
  return acc;
#endif
}

// kLanes signed bytes widened to float (the int8 values of the Transformer's cache). As with
// store_block_bytes, GCC's vector conversion would move the bytes one by one on x86.
inline V load(const int8_t* p) {
#if defined(__AVX512F__)
  return (V)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  return (V)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  VB b;
  __builtin_memcpy(&b, p, sizeof b);
  return __builtin_convertvector(b, V);
#endif
}

inline VI load_lanes(const uint8_t* p) {
  VI v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// y[NB rows][NT vectors] += dequantised (x rows [row, row + NB)) @ w, for the columns at w (the
// block's column `col`): per block of inputs, integer accumulators in registers, each weight vector
// loaded once for all NB rows, then scaled and added to y in float.
template <int NB, int NT>
inline void product_q8_tile(float* y, int64_t ldy, const QuantizedRows& x, int64_t row, const uint8_t* w,
                            int64_t ldw, const float* scale, int64_t in) {
  const int8_t* xq = x.q + row * x.ld;
  const int64_t slots = x.ld / kBlock;
  for (int64_t b0 = 0, k = 0; b0 < in; b0 += x.block, ++k) {
    const int64_t b1 = b0 + x.block < in ? b0 + x.block : in;
    VI acc[NB][NT];
    for (int b = 0; b < NB; ++b)
      for (int j = 0; j < NT; ++j) acc[b][j] = VI{};
    for (int64_t g = b0; g < b1; g += kInt8Group, w += kInt8Group * ldw) {
      VI xb[NB];
      for (int b = 0; b < NB; ++b) {
        int32_t four;
        __builtin_memcpy(&four, xq + b * x.ld + g, sizeof four);
        xb[b] = VI{} + four;
      }
      for (int j = 0; j < NT; ++j) {
        const VI wv = load_lanes(w + j * kLanes * kInt8Group);
        for (int b = 0; b < NB; ++b) acc[b][j] = dot4(acc[b][j], wv, xb[b]);
      }
    }
    for (int b = 0; b < NB; ++b) {
      const int64_t slot = (row + b) * slots + k;
      const int32_t offset = 128 * x.sum[slot];  // the weights' +128, times the block's Σ x_q
      const float xs = x.scale[slot];
      for (int j = 0; j < NT; ++j) {
        const V dot = __builtin_convertvector(acc[b][j] - offset, V);
        float* out = y + b * ldy + j * kLanes;
        store(out, load(out) + dot * (load(scale + j * kLanes) * xs));
      }
    }
  }
}

// y (rows, cols; row stride ldy) += x @ w, where x holds `rows` quantised rows of `in` inputs (in
// blocks of x.block) and
// w is an int8 matrix (in, ldw) whose columns [0, cols) are read, with scale[c] per column.
// cols is a multiple of kBlock.
inline void product_q8(float* y, int64_t ldy, int64_t rows, int64_t cols, const QuantizedRows& x,
                       const uint8_t* w, const float* scale, int64_t in, int64_t ldw) {
  for_each_tile(rows, cols, [&](auto nb, auto nt, int64_t row, int64_t col) {
    product_q8_tile<decltype(nb)::value, decltype(nt)::value>(y + row * ldy + col, ldy, x, row,
                                                              w + col * kInt8Group, ldw, scale + col, in);
  });
}

}  // namespace
}  // namespace FASTWAVE_ISA
}  // namespace cpu
}  // namespace fastwave
