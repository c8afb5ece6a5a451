// Fills a device buffer with the shared Philox sampling uniforms; the first CUDA kernel, and the
// GPU side of the test that holds every engine to one RNG.
#pragma once

#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

namespace fastwave {

// out[t * n_streams + b] = philox_uniform(seed, step0 + t, b) for t < n_steps, b < n_streams.
// `out` is device memory of n_steps * n_streams floats; the launch is queued on `stream`.
// Preconditions (checked by the binding): n_steps, n_streams >= 0, step0 + n_steps <= 2^32,
// n_streams <= 2^32. Returns "" on success, else the CUDA error, described.
std::string launch_philox_uniform(float* out, int64_t n_steps, int64_t n_streams, uint64_t seed,
                                  uint32_t step0, cudaStream_t stream);

}  // namespace fastwave
