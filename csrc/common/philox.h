// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", Random123), the one
// counter-based RNG every fastwave engine shares: the same (seed, step, stream) gives the same
// uniform on the CPU, on the GPU and in the torch twin (fastwave/engines/sampling.py).
//
// Header-only so CUDA kernels and C++ loops compile the very same code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FASTWAVE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTWAVE_HOST_DEVICE inline
#endif

namespace fastwave {

struct PhiloxWords {
  uint32_t w[4];
};

namespace philox_detail {

constexpr uint32_t kMultiplier0 = 0xD2511F53u;
constexpr uint32_t kMultiplier1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kRounds = 10;

FASTWAVE_HOST_DEVICE void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

}  // namespace philox_detail

// The raw generator: 4 output words for one 128-bit counter and 64-bit key.
FASTWAVE_HOST_DEVICE PhiloxWords philox4x32_10(const uint32_t counter[4], const uint32_t key[2]) {
  using namespace philox_detail;
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) {  // the key schedule bumps the key between rounds, not before the first
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMultiplier0, c0, hi0, lo0);
    mulhilo(kMultiplier1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return PhiloxWords{{c0, c1, c2, c3}};
}

// The sampling uniform of step `step` in stream `stream`: key = seed (low, high words),
// counter = (step, stream, 0, 0); the top 24 bits of the first word, scaled into [0, 1).
// 24 bits because that is exactly what a float32 mantissa holds, so the value is exact.
FASTWAVE_HOST_DEVICE float philox_uniform(uint64_t seed, uint32_t step, uint32_t stream) {
  const uint32_t counter[4] = {step, stream, 0u, 0u};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const uint32_t word = philox4x32_10(counter, key).w[0];
  return static_cast<float>(word >> 8) * 5.9604644775390625e-08f;  // 2^-24
}

}  // namespace fastwave
