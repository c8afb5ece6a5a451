#include "cpu/stored_matrices.h"

#include <stdexcept>

namespace fastwave {
namespace cpu {

HalfMatrices::HalfMatrices(const float* base, int64_t floats) : base_(base), data_(allocate_halves(floats)) {}

const uint16_t* HalfMatrices::convert(const float* matrix, const MatrixBlocks& shape, const std::string& name) {
  uint16_t* dst = data_.get() + (matrix - base_);
  to_half(matrix, shape.in * shape.blocks.back().second, dst, "weights['" + name + "']");
  return dst;
}

// A matrix has at least kBlock rows, so its columns (scales) number at most its floats / kBlock;
// each matrix's may be padded to a whole line.
Int8Matrices::Int8Matrices(const float* base, int64_t floats, int64_t matrices)
    : base_(base), data_(allocate_bytes(floats)), capacity_(floats / kBlock + kBlock * matrices) {
  scales_ = allocate_floats(capacity_);
}

const uint8_t* Int8Matrices::convert(const float* matrix, const MatrixBlocks& shape, const float** scale) {
  uint8_t* dst = data_.get() + (matrix - base_);
  const int64_t columns = round_up(shape.blocks.back().second, kBlock);
  if (used_ + columns > capacity_) throw std::logic_error("int8 scales overflow their buffer");
  float* scales = scales_.get() + used_;
  used_ += columns;
  pack_int8(matrix, shape, dst, scales);
  *scale = scales;
  return dst;
}

}  // namespace cpu
}  // namespace fastwave
