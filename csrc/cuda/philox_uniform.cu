#include "cuda/philox_uniform.h"

#include <algorithm>

#include "common/philox.h"

namespace fastwave {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 4096;  // a grid-stride loop covers the rest

__global__ void philox_uniform_kernel(float* out, int64_t total, int64_t n_streams, uint64_t seed,
                                      uint32_t step0) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const uint32_t t = static_cast<uint32_t>(i / n_streams);
    const uint32_t b = static_cast<uint32_t>(i % n_streams);
    out[i] = philox_uniform(seed, step0 + t, b);
  }
}

}  // namespace

std::string launch_philox_uniform(float* out, int64_t n_steps, int64_t n_streams, uint64_t seed,
                                  uint32_t step0, cudaStream_t stream) {
  const int64_t total = n_steps * n_streams;
  if (total == 0) return "";
  const int64_t blocks = std::min((total + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks);
  philox_uniform_kernel<<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(
      out, total, n_streams, seed, step0);
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    return std::string("philox_uniform kernel launch failed: ") + cudaGetErrorName(status) + ": " +
           cudaGetErrorString(status);
  }
  return "";
}

}  // namespace fastwave
