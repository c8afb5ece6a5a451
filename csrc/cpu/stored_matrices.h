// An engine's packed float matrices stored again at a lower precision, each matrix at its float
// element offset, so that a plan's pointer arithmetic (a member's column block, a tap's rows) is
// the same at every precision. The engines build their fp16 and int8 plans through these.
#pragma once

#include <cstdint>
#include <string>

#include "cpu/engine_support.h"
#include "cpu/int8_pack.h"

namespace fastwave {
namespace cpu {

// fp16: IEEE half, refusing weights beyond its range.
class HalfMatrices {
 public:
  // base: the engine's float weights, `floats` of them.
  HalfMatrices(const float* base, int64_t floats);
  // The half copy of `matrix` (a matrix inside base, shaped as `shape`); name: for the refusal.
  const uint16_t* convert(const float* matrix, const MatrixBlocks& shape, const std::string& name);

 private:
  const float* base_;
  HalfBuffer data_;
};

// int8: each matrix quantised per output column (int8_pack.h), its column scales one matrix after
// another in a float buffer, each matrix's starting on a 64-byte line.
class Int8Matrices {
 public:
  // base: the engine's float weights, `floats` of them, holding at most `matrices` matrices.
  Int8Matrices(const float* base, int64_t floats, int64_t matrices);
  // The int8 copy of `matrix`; *scale: its scale per column of the whole matrix.
  const uint8_t* convert(const float* matrix, const MatrixBlocks& shape, const float** scale);

 private:
  const float* base_;
  ByteBuffer data_;
  FloatBuffer scales_;
  int64_t capacity_, used_ = 0;
};

}  // namespace cpu
}  // namespace fastwave
