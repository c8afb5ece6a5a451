// Vector arithmetic shared by the per-ISA step loops (csrc/cpu/kernels/*.cpp): vectors of the
// widest float type the ISA has, exp / tanh / sigmoid / GELU to about an ulp, register-tiled products
// y += x @ w over rows, and the exchange between the threads of a group (step_job.h).
//
// Every function sits in an anonymous namespace inside the ISA's namespace, so each variant's copy
// has internal linkage: an inline function with external linkage instantiated in the AVX-512 copy
// would be a weak symbol the linker may pick for every caller, crashing older CPUs. For the same
// reason nothing here calls an inline function of a shared header (no STL, no <cmath>).
#pragma once

#include <sched.h>

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cpu/step_job.h"
#include "cpu/wait.h"

#ifndef FASTWAVE_ISA
#error "FASTWAVE_ISA must name the variant's namespace (avx512, avx2 or generic)"
#endif

namespace fastwave {
namespace cpu {
namespace FASTWAVE_ISA {
namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kMaxAccumulators = 16;  // of 32 vector registers, leaving room for weights
#elif defined(__AVX2__) || defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kMaxAccumulators = 8;  // of 16
#else
constexpr int kLanes = 4;  // SSE2 / NEON / any target GCC or Clang vectorises
constexpr int kMaxAccumulators = 8;
#endif
static_assert(kBlock % kLanes == 0, "a channel block must hold whole vectors");

typedef float V __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(kLanes * sizeof(float))));

inline V load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, V v) { __builtin_memcpy(p, &v, sizeof v); }

// Half-precision storage (IEEE binary16 bits in uint16_t; the engines' fp16 mode): loads widen to
// float (one instruction with F16C, which x86-64-v3 and v4 have), stores round to nearest even.
// GCC 12 turns __builtin_convertvector on _Float16 vectors into one scalar conversion per lane, so
// the F16C intrinsics are called directly where the ISA has them (they are always-inline: no
// out-of-line copies for the linker to mix up).
inline V load(const uint16_t* p) {
#if defined(__AVX512F__)
  return (V)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__F16C__) && defined(__AVX__)
  return (V)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  typedef _Float16 VH __attribute__((vector_size(kLanes * sizeof(_Float16))));
  VH h;
  __builtin_memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, V);
#endif
}
inline void store_scalar(float* p, float value) { *p = value; }
inline void store_scalar(uint16_t* p, float value) {
  // Saturate rather than overflow to inf: a cached key of inf would turn every score into NaN.
  value = value > 65504.0f ? 65504.0f : value < -65504.0f ? -65504.0f : value;
  const _Float16 h = static_cast<_Float16>(value);
  __builtin_memcpy(p, &h, sizeof h);
}
// A broadcast. Not a lane-by-lane loop: GCC turned that into 16 chained masked broadcasts, which
// cost the attention scores half their speed. value - 0 keeps -0.0f (0.0f + -0.0f would not).
inline V splat(float value) {
#if defined(__AVX512F__)
  return (V)_mm512_set1_ps(value);
#elif defined(__AVX__)
  return (V)_mm256_set1_ps(value);
#else
  return value - V{};
#endif
}
inline V select(VI mask, V a, V b) { return (V)((mask & (VI)a) | (~mask & (VI)b)); }
// a < b ? a : b and a > b ? a : b, which is exactly what minps / maxps compute (b when either is NaN
// or both are zeros), so one instruction where the ISA has it: GCC leaves the select form as three.
inline V vmin(V a, V b) {
#if defined(__AVX512F__)
  return (V)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
  return (V)_mm256_min_ps((__m256)a, (__m256)b);
#else
  return select(a < b, a, b);
#endif
}
inline V vmax(V a, V b) {
#if defined(__AVX512F__)
  return (V)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__)
  return (V)_mm256_max_ps((__m256)a, (__m256)b);
#else
  return select(a > b, a, b);
#endif
}

inline void copy_floats(float* dst, const float* src, int64_t n) {
  __builtin_memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
inline void fill_zero(float* dst, int64_t n) { __builtin_memset(dst, 0, static_cast<size_t>(n) * sizeof(float)); }

// e^x for float32, Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, a degree-6 polynomial in r,
// then 2^n through the exponent bits. About 1 ulp; x is clamped so 2^n stays a normal float.
inline V exp_v(V x) {
  x = vmin(vmax(x, splat(-87.3f)), splat(88.3f));
  const V magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to the nearest integer
  const V n = (x * 1.44269504088896341f + magic) - magic;
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
#if defined(__AVX512F__)
  // p * 2^n in one instruction; the same single rounding of the same exact product as below.
  return (V)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
  const VI exponent = (__builtin_convertvector(n, VI) + 127) << 23;
  return p * (V)exponent;
#endif
}

// Doubles, for the sampler's weights (common/sampling.h): vectors as wide as V.
typedef double VD __attribute__((vector_size(kLanes * sizeof(float))));
typedef int64_t VL __attribute__((vector_size(kLanes * sizeof(float))));
constexpr int kDoubleLanes = kLanes / 2;

inline VD splat_double(double value) { return value - VD{}; }
inline VD select_double(VL mask, VD a, VD b) { return (VD)((mask & (VL)a) | (~mask & (VL)b)); }

// e^x for float64, within an ulp of a correctly rounded exp: x = n ln2 + r (Cody & Waite's two-part
// ln2, so r is exact to far below an ulp; |r| <= ln2 / 2), e^r by its Taylor series to r^13 (the
// first term left out is < 2^-57 relative), then 2^n in one rounding. x is clamped to [-746, 710],
// outside which e^x rounds to 0 (-inf included) or overflows to inf; NaN is not expected.
inline VD exp_vd(VD x) {
  x = select_double(x < splat_double(-746.0), splat_double(-746.0), x);
  x = select_double(x > splat_double(710.0), splat_double(710.0), x);
  const VD magic = splat_double(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
  const VD shifted = x * 1.4426950408889634074 + magic;
  const VD n = shifted - magic;
  VD r = x - n * 6.93147180369123816490e-01;  // ln2's leading 32 bits: n * this is exact
  r = r - n * 1.90821492927058770002e-10;     // the rest of ln2
  VD p = splat_double(1.0 / 6227020800.0);    // 1 / 13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * (r * r) + r + 1.0;
#if defined(__AVX512F__)
  return (VD)_mm512_scalef_pd((__m512d)p, (__m512d)n);
#else
  // 2^n as 2^h * 2^(n - h), both normal for |n| <= 1077: the first product is exact, so the second
  // is the one rounding (to a subnormal, 0 or inf where e^x is one), as with a single scaling.
  const VL k = (VL)shifted - (VL)magic;   // n as an integer (the low bits of `shifted`)
  const VL h = ((k + 2048) >> 1) - 1024;  // floor(n / 2), shifting a non-negative number
  const VD first = (VD)((h + 1023) << 52), second = (VD)((k - h + 1023) << 52);
  return p * first * second;
#endif
}

// x[i] = e^x[i] for i < n, kDoubleLanes at a time (the tail through a padded copy). The generic
// variant (two lanes, no FMA) would be slower than libm's exp, so it calls that.
inline void exp_doubles(double* x, int64_t n) {
#if !defined(__AVX2__) && !defined(__AVX512F__)
  for (int64_t i = 0; i < n; ++i) x[i] = __builtin_exp(x[i]);
#else
  int64_t i = 0;
  for (; i + kDoubleLanes <= n; i += kDoubleLanes) {
    VD v;
    __builtin_memcpy(&v, x + i, sizeof v);
    v = exp_vd(v);
    __builtin_memcpy(x + i, &v, sizeof v);
  }
  if (i < n) {
    VD v = VD{};
    __builtin_memcpy(&v, x + i, static_cast<size_t>(n - i) * sizeof(double));
    v = exp_vd(v);
    __builtin_memcpy(x + i, &v, static_cast<size_t>(n - i) * sizeof(double));
  }
#endif
}

inline V sigmoid_v(V x) { return 1.0f / (1.0f + exp_v(-x)); }

// tanh for float32, Cephes' tanhf: an odd polynomial below |x| = 0.625 (where 1 - 2 / (e^2x + 1)
// would cancel), that formula above it. A few ulp over the whole range.
inline V tanh_v(V x) {
  const VI sign = (VI)x & (VI)splat(-0.0f);
  const V a = (V)((VI)x & ~(VI)splat(-0.0f));
  const V a2 = a * a;
  V small = splat(-5.70498872745e-3f);
  small = small * a2 + 2.06390887954e-2f;
  small = small * a2 - 5.37397155531e-2f;
  small = small * a2 + 1.33314422036e-1f;
  small = small * a2 - 3.33332819422e-1f;
  small = small * a2 * a + a;
  const V large = 1.0f - 2.0f / (exp_v(a + a) + 1.0f);
  return (V)((VI)select(a < splat(0.625f), small, large) | sign);
}

// erf for float32: Abramowitz & Stegun 7.1.26 with the exp above, about 1.5e-7 absolute error
// (the form PyTorch's vectorised CPU erf uses).
inline V erf_v(V x) {
  const VI sign = (VI)x & (VI)splat(-0.0f);
  const V a = (V)((VI)x & ~(VI)splat(-0.0f));
  const V t = 1.0f / (a * 0.3275911f + 1.0f);
  V r = t * 1.061405429f - 1.453152027f;
  r = r * t + 1.421413741f;
  r = r * t - 0.284496736f;
  r = r * t + 0.254829592f;
  const V y = 1.0f - r * t * exp_v(-(a * a));
  return (V)((VI)y | sign);
}

// GELU, erf form (torch.nn.functional.gelu's default), in place over n floats (n a multiple of kLanes).
inline void gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const V v = load(x + i);
    store(x + i, 0.5f * v * (1.0f + erf_v(v * 0.70710678118654752f)));
  }
}

inline float horizontal_sum(V v) {
  float total = 0.0f;
  for (int i = 0; i < kLanes; ++i) total += v[i];
  return total;
}

inline float horizontal_max(V v) {
  float best = v[0];
  for (int i = 1; i < kLanes; ++i) best = v[i] > best ? v[i] : best;
  return best;
}

// One input of a product: x (rows, in) with row stride ldx, times w (in, cols) with row stride ldw.
// Weights are float, or uint16_t holding half-precision bits; x and y are always float.
template <typename T>
struct OperandOf {
  const float* x;
  int64_t ldx;
  const T* w;
  int64_t in;
};
using Operand = OperandOf<float>;

// y[NB rows][NT vectors] += Σ_ops x @ w, with the accumulators in registers and every weight vector
// loaded once for all NB rows.
template <int NB, int NT, typename T>
inline void product_tile(float* y, int64_t ldy, const OperandOf<T>* ops, int n_ops, int64_t ldw, int64_t row,
                         int64_t col) {
  V acc[NB][NT];
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < NT; ++j) acc[b][j] = load(y + b * ldy + j * kLanes);
  for (int o = 0; o < n_ops; ++o) {
    const float* x = ops[o].x + row * ops[o].ldx;
    const int64_t ldx = ops[o].ldx;
    const T* w = ops[o].w + col;
    for (int64_t i = 0; i < ops[o].in; ++i, w += ldw) {
      V wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = load(w + j * kLanes);
      for (int b = 0; b < NB; ++b) {
        const float xb = x[b * ldx + i];
        for (int j = 0; j < NT; ++j) acc[b][j] += xb * wv[j];
      }
    }
  }
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < NT; ++j) store(y + b * ldy + j * kLanes, acc[b][j]);
}

template <int N>
struct Count {
  static constexpr int value = N;
};

// Walks y (rows, cols) in register tiles and calls tile(Count<NB>, Count<NT>, row, col) for each:
// NB rows by NT vectors, as wide as the registers allow, so at batch 1 many independent
// accumulators hide the multiply-add latency. cols is a multiple of kBlock.
template <typename Tile>
inline void for_each_tile(int64_t rows, int64_t cols, Tile&& tile) {
  for (int64_t col = 0; col < cols;) {
    const int64_t vectors = (cols - col) / kLanes;
    const int widest = rows <= 2 ? 8 : 4;
    const int nt = vectors >= 8 && widest >= 8 ? 8 : vectors >= 4 ? 4 : vectors >= 2 ? 2 : 1;
    for (int64_t row = 0; row < rows;) {
      int64_t nb = rows - row;
      if (nb > 4) nb = 4;
      if (nb * nt > kMaxAccumulators) nb = kMaxAccumulators / nt;
      switch (nt * 8 + static_cast<int>(nb)) {
#define FASTWAVE_TILE(NB, NT) \
  case NT * 8 + NB: tile(Count<NB>{}, Count<NT>{}, row, col); break;
        FASTWAVE_TILE(1, 1) FASTWAVE_TILE(2, 1) FASTWAVE_TILE(3, 1) FASTWAVE_TILE(4, 1)
        FASTWAVE_TILE(1, 2) FASTWAVE_TILE(2, 2) FASTWAVE_TILE(3, 2) FASTWAVE_TILE(4, 2)
        FASTWAVE_TILE(1, 4) FASTWAVE_TILE(2, 4) FASTWAVE_TILE(3, 4) FASTWAVE_TILE(4, 4)
        FASTWAVE_TILE(1, 8) FASTWAVE_TILE(2, 8)
#undef FASTWAVE_TILE
        default: __builtin_unreachable();
      }
      row += nb;
    }
    col += nt * kLanes;
  }
}

// y (rows, cols; row stride ldy) += Σ_ops x @ w. cols is a multiple of kBlock.
template <typename T>
inline void product(float* y, int64_t ldy, int64_t rows, int64_t cols, const OperandOf<T>* ops, int n_ops,
                    int64_t ldw) {
  for_each_tile(rows, cols, [&](auto nb, auto nt, int64_t row, int64_t col) {
    product_tile<decltype(nb)::value, decltype(nt)::value>(y + row * ldy + col, ldy, ops, n_ops, ldw, row, col);
  });
}

template <typename T>
inline void product1(float* y, int64_t ldy, int64_t rows, int64_t cols, const float* x, int64_t ldx,
                     const T* w, int64_t in, int64_t ldw) {
  const OperandOf<T> op{x, ldx, w, in};
  product(y, ldy, rows, cols, &op, 1, ldw);
}

inline void relu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) store(x + i, vmax(load(x + i), V{}));
}

inline void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) store(y + i, load(y + i) + load(x + i));
}

// y (rows, n) = bias (n,) broadcast + y, for row-contiguous y.
inline void add_bias(float* y, const float* bias, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) add(y + r * n, bias, n);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// A clock for bounding spins: the time-stamp counter (~1-4 GHz, constant rate) on x86; elsewhere
// a count of calls, each about one pause long.
#if defined(__x86_64__) || defined(__i386__)
inline uint64_t ticks() { return __rdtsc(); }
constexpr uint64_t kSpinTicks = 20000;     // 5-20 us
constexpr uint64_t kLateTicks = 1000000;    // 0.25-1 ms
constexpr uint64_t kYieldTicks = 10000000;  // 2.5-10 ms
#else
inline uint64_t ticks() {
  static thread_local uint64_t calls = 0;
  return ++calls;
}
constexpr uint64_t kSpinTicks = 2000;
constexpr uint64_t kLateTicks = 20000;
constexpr uint64_t kYieldTicks = 200000;
#endif

// The buffer this member writes its next part into.
inline float* my_part(ExchangeSeat& m) {
  const GroupExchange& ex = *m.group;
  return ex.parts + ((m.done & 1) * ex.members + m.member) * ex.part_floats;
}

// Member `member`'s part of the exchange just completed.
inline const float* part_of(const ExchangeSeat& m, int member) {
  const GroupExchange& ex = *m.group;
  return ex.parts + (((m.done - 1) & 1) * ex.members + member) * ex.part_floats;
}

// Tells the group this member's part of the next exchange is written, and wakes members that went
// to sleep waiting for it. Sequentially consistent store and load, against the sleeper's increment
// and re-check (wait_for_group): either the publisher sees the sleeper or the sleeper sees the flag.
inline void publish(ExchangeSeat& m) {
  GroupExchange& ex = *m.group;
  __atomic_store_n(&ex.flags[m.member * kFlagStride], ++m.done, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&ex.wake[kFlagStride], __ATOMIC_SEQ_CST) != 0) {
    __atomic_fetch_add(&ex.wake[0], 1u, __ATOMIC_SEQ_CST);
    wake_all(&ex.wake[0]);
  }
}

// Waits until every member has published the exchange this member published last. Spins first:
// the others are on their own cores, usually well under a microsecond away. A partner still late
// after ~10 us was probably descheduled by a busy machine: yield the core to it (or to whoever
// runs), then sleep until it publishes. A wait past ~0.5 ms counts as late (m.late): a sign of a
// busy machine, on which the engine wrappers shed threads.
inline void wait_for_group(ExchangeSeat& m) {
  GroupExchange& ex = *m.group;
  for (int other = 0; other < ex.members; ++other) {
    if (other == m.member) continue;
    const uint64_t* flag = &ex.flags[other * kFlagStride];
    auto ready = [&] { return __atomic_load_n(flag, __ATOMIC_ACQUIRE) >= m.done; };
    for (int spins = 0; spins < 256 && !ready(); ++spins) {
    }
    if (ready()) continue;
    const uint64_t start = ticks();
    while (!ready() && ticks() - start < kSpinTicks) cpu_relax();
    if (ready()) continue;
    // Yield first: with a busy process on each core, the partner runs as soon as this thread
    // gives up its core, while a sleeper would wait for a wake-up to preempt someone (measured:
    // a fifth of the samples/s). Past a scheduler period, sleep.
    while (!ready() && ticks() - start < kYieldTicks) sched_yield();
    // A partner this late was descheduled, not merely given more work than this member.
    if (ticks() - start > kLateTicks) ++m.late;
    if (ready()) continue;
    uint32_t* sleepers = &ex.wake[kFlagStride];
    for (;;) {
      __atomic_fetch_add(sleepers, 1u, __ATOMIC_SEQ_CST);
      const uint32_t seen = __atomic_load_n(&ex.wake[0], __ATOMIC_SEQ_CST);
      const bool done = __atomic_load_n(flag, __ATOMIC_SEQ_CST) >= m.done;
      if (!done) sleep_while_equal(&ex.wake[0], seen);
      __atomic_fetch_sub(sleepers, 1u, __ATOMIC_SEQ_CST);
      if (done || ready()) break;
    }
  }
}

// Samples token i of the job for rows [0, rows) of a member whose first row is row0, from logits
// (rows, ld) with `classes` used, into sampled[r] (and job.tokens_out when `writes`). A row whose
// logits are not all finite is not sampled: the step is noted in status and false returned.
inline bool sample_rows(const float* logits, int64_t ld, int64_t classes, int64_t rows, int64_t row0,
                        const StepJob& job, int64_t i, bool writes, int64_t* sampled, SamplingScratch& scratch,
                        StepStatus& status) {
  const int64_t padded = (classes + kLanes - 1) / kLanes * kLanes;  // <= ld; the padding holds zeros
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * ld;
    V differences = V{};  // x - x is 0 for a finite x and NaN for inf or NaN; NaN survives the sum
    for (int64_t c = 0; c < padded; c += kLanes) differences += load(row + c) - load(row + c);
    if (!(horizontal_sum(differences) == 0.0f)) {
      status = {i, row0 + r};
      return false;
    }
    const float u = sampling_uniform(job.seed, job.step0 + static_cast<uint32_t>(i), static_cast<uint32_t>(row0 + r));
    sampled[r] = sample_token(row, classes, u, job.params, scratch, exp_doubles);
    if (writes) job.tokens_out[(row0 + r) * job.count + i] = sampled[r];
  }
  return true;
}

inline void exchange(ExchangeSeat& m) {
  publish(m);
  wait_for_group(m);
}

// dst (rows, n) = Σ over members of their parts (rows, n), in member order: every member computes
// the same bits.
inline void sum_parts(const ExchangeSeat& m, float* dst, int64_t n) {
  copy_floats(dst, part_of(m, 0), n);
  for (int k = 1; k < m.group->members; ++k) add(dst, part_of(m, k), n);
}


}  // namespace
}  // namespace FASTWAVE_ISA
}  // namespace cpu
}  // namespace fastwave
