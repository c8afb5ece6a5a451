// Products over any weight storage for the per-ISA step loops: y += x @ w where w is float, half
// bits or the int8 layout (int8_weights.h). A product's input goes through prepare() (int8
// quantises the rows, the others read them in place) and then multiply(); the step code is written
// once as a template over the storage type. Same rules as vector_ops.h.
#pragma once

#include <cstdint>

#include "cpu/int8_weights.h"
#include "cpu/kernels/int8_ops.h"
#include "cpu/kernels/vector_ops.h"

namespace fastwave {
namespace cpu {
namespace FASTWAVE_ISA {
namespace {

// A product's input as float and half weights read it: the float rows themselves.
struct FloatRows {
  const float* x;
  int64_t ld;
};

// The input x (rows, in; row stride ldx) of a product with weights of type W (the first argument
// only picks the overload). int8 quantises the rows into `slot` in blocks of `block` inputs (0: the
// whole row; int8_weights.h says which products need smaller blocks); the others read x in place.
template <typename W>
inline FloatRows prepare(const W*, const float* x, int64_t ldx, int64_t, int64_t, const QuantizedRows&,
                         int64_t = 0) {
  return {x, ldx};
}
inline QuantizedRows prepare(const uint8_t*, const float* x, int64_t ldx, int64_t rows, int64_t in,
                             const QuantizedRows& slot, int64_t block = 0) {
  return quantize_rows(x, ldx, rows, in, block > 0 ? block : in, slot);
}

// y (rows, cols; row stride ldy) += x @ w, w (in, ldw); scale: int8's per-column scales.
template <typename W>
inline void multiply(float* y, int64_t ldy, int64_t rows, int64_t cols, const FloatRows& x, const W* w,
                     const float*, int64_t in, int64_t ldw) {
  product1(y, ldy, rows, cols, x.x, x.ld, w, in, ldw);
}
inline void multiply(float* y, int64_t ldy, int64_t rows, int64_t cols, const QuantizedRows& x,
                     const uint8_t* w, const float* scale, int64_t in, int64_t ldw) {
  product_q8(y, ldy, rows, cols, x, w, scale, in, ldw);
}

// scale + n, where float and half weights have no scales (nullptr stays nullptr).
inline const float* shifted(const float* scale, int64_t n) { return scale == nullptr ? nullptr : scale + n; }

}  // namespace
}  // namespace FASTWAVE_ISA
}  // namespace cpu
}  // namespace fastwave
