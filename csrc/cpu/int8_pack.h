// Packing float weight matrices into the engines' int8 layout (int8_weights.h).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace fastwave {
namespace cpu {

// A matrix of an engine's float layout: `in` rows, its columns split into blocks [c0, c1) (one per
// thread that owns them), each stored as a row-major (in, c1 - c0) matrix at element in * c0.
struct MatrixBlocks {
  int64_t in;
  std::vector<std::pair<int64_t, int64_t>> blocks;
};

// Quantises `matrix` (float layout) into dst (the int8 layout, each block at the same element
// offset) and scale[c] for every column c of the whole matrix: per column, scale = max |w| / 127
// and q = round(w / scale), stored as q + 128 (an all-zero column: scale 0, q 0). in % 4 == 0.
void pack_int8(const float* matrix, const MatrixBlocks& shape, uint8_t* dst, float* scale);

}  // namespace cpu
}  // namespace fastwave
