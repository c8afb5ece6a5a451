#include "cpu/int8_pack.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "cpu/int8_weights.h"

namespace fastwave {
namespace cpu {

void pack_int8(const float* matrix, const MatrixBlocks& shape, uint8_t* dst, float* scale) {
  const int64_t in = shape.in;
  if (in % kInt8Group != 0) throw std::logic_error("int8 matrices need rows in groups of 4");
  for (const auto& [c0, c1] : shape.blocks) {
    const int64_t width = c1 - c0;
    const float* src = matrix + in * c0;
    uint8_t* out = dst + in * c0;
    for (int64_t c = 0; c < width; ++c) {
      float peak = 0.0f;
      for (int64_t i = 0; i < in; ++i) peak = std::max(peak, std::fabs(src[i * width + c]));
      const float s = peak / static_cast<float>(kWeightLevels);
      scale[c0 + c] = s;
      for (int64_t i = 0; i < in; ++i) {
        const float q = s > 0.0f ? std::nearbyint(src[i * width + c] / s) : 0.0f;
        const float clamped = std::min(std::max(q, -float{kWeightLevels}), float{kWeightLevels});
        out[((i / kInt8Group) * width + c) * kInt8Group + i % kInt8Group] = static_cast<uint8_t>(clamped + 128.0f);
      }
    }
  }
}

}  // namespace cpu
}  // namespace fastwave
