// The engines' product kernel outside an engine: one (rows, in) @ (in, cols) product with weights
// stored at a precision, for the tests of the int8 arithmetic, and the rate at which this machine
// runs it -- the compute ceiling of a generation step, as read_bandwidth (bandwidth.h) gives its
// memory ceiling.
#pragma once

#include <cstdint>
#include <string>

#include "cpu/engine_support.h"
#include "cpu/int8_weights.h"
#include "cpu/isa_kernels.h"

namespace fastwave {
namespace cpu {

// w (in, cols) row-major float, stored as `storage` (int8: quantised per column, int8_weights.h),
// with the buffers IsaKernels::multiply needs for `rows` input rows. in, cols: multiples of kBlock;
// int8 quantises x in blocks of `block` inputs (a multiple of kBlock; 0: whole rows).
class StoredProduct {
 public:
  StoredProduct(const float* w, int64_t rows, int64_t in, int64_t cols, WeightStorage storage, int64_t block = 0);
  // y (rows, cols) += x (rows, in) @ w, `repeats` times.
  void run(const IsaKernels& kernels, const float* x, float* y, int64_t repeats) const;

 private:
  int64_t rows_, in_, cols_;
  WeightStorage storage_;
  FloatBuffer floats_, scales_, row_scales_;
  HalfBuffer halves_;
  ByteBuffer bytes_, quantized_;
  QuantizedRows buffer_{};
};

// Multiply-adds per second of `threads` threads, each repeating its own (rows, in) @ (in, cols)
// product (in its caches) for about `seconds`, aggregated.
double multiply_rate(const std::string& precision, int64_t rows, int64_t in, int64_t cols, int threads,
                     double seconds, const std::string& isa);

}  // namespace cpu
}  // namespace fastwave
