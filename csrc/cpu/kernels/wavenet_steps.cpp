// The WaveNet step loop of the C++ engine, compiled once per instruction set: CMake builds this file
// with -march=x86-64-v4 (namespace avx512), -march=x86-64-v3 (avx2) and the baseline (generic), and
// isa.cpp picks one at run time. Vectors are GCC/Clang vector extensions, so the same source becomes
// AVX-512, AVX2, SSE or NEON code.
//
// Everything here sits in an anonymous namespace and calls no inline function of a shared header
// (no STL, no <cmath>): an inline function instantiated in the AVX-512 copy is a weak symbol the
// linker may pick for every caller, which would crash older CPUs. Atomics are the __atomic builtins.
//
// One step of one position, for a member of a thread group (wavenet_plan.h):
//   x = embedding[token]
//   per layer: z = gate_bias + Σ_taps ring[t - k d] @ conv_k + x @ conv_last   (owned gate columns)
//              h = tanh(z_tanh) * sigmoid(z_sigmoid);  skip += h @ skip_w
//              ring[t] = x;  x += res_bias + h @ res_w   (partials summed across the group)
//   logits = head1_bias + relu(head0_bias + relu(skip_bias + skip) @ head0) @ head1
#include <sched.h>

#include <cstdint>

#include "cpu/isa_kernels.h"
#include "cpu/wavenet_plan.h"

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
inline V splat(float value) {  // not V{} + value: 0.0f + -0.0f is +0.0f
  V v;
  for (int i = 0; i < kLanes; ++i) v[i] = value;
  return v;
}
inline V select(VI mask, V a, V b) { return (V)((mask & (VI)a) | (~mask & (VI)b)); }
inline V vmin(V a, V b) { return select(a < b, a, b); }
inline V vmax(V a, V b) { return select(a > b, a, b); }

void copy_floats(float* dst, const float* src, int64_t n) {
  __builtin_memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void fill_zero(float* dst, int64_t n) { __builtin_memset(dst, 0, static_cast<size_t>(n) * sizeof(float)); }

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
  const VI exponent = (__builtin_convertvector(n, VI) + 127) << 23;
  return p * (V)exponent;
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

// One input of a product: x (rows, in) with row stride ldx, times w (in, cols) with row stride ldw.
struct Operand {
  const float* x;
  int64_t ldx;
  const float* w;
  int64_t in;
};

// y[NB rows][NT vectors] += Σ_ops x @ w, with the accumulators in registers and every weight vector
// loaded once for all NB rows.
template <int NB, int NT>
void product_tile(float* y, int64_t ldy, const Operand* ops, int n_ops, int64_t ldw, int64_t row,
                  int64_t col) {
  V acc[NB][NT];
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < NT; ++j) acc[b][j] = load(y + b * ldy + j * kLanes);
  for (int o = 0; o < n_ops; ++o) {
    const float* x = ops[o].x + row * ops[o].ldx;
    const int64_t ldx = ops[o].ldx;
    const float* w = ops[o].w + col;
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

// y (rows, cols; row stride ldy) += Σ_ops x @ w. cols is a multiple of kBlock; tiles are as wide as
// the registers allow, so at batch 1 many independent accumulators hide the FMA latency.
void product(float* y, int64_t ldy, int64_t rows, int64_t cols, const Operand* ops, int n_ops,
             int64_t ldw) {
  for (int64_t col = 0; col < cols;) {
    const int64_t vectors = (cols - col) / kLanes;
    const int widest = rows <= 2 ? 8 : 4;
    const int nt = vectors >= 8 && widest >= 8 ? 8 : vectors >= 4 ? 4 : vectors >= 2 ? 2 : 1;
    for (int64_t row = 0; row < rows;) {
      int64_t nb = rows - row;
      if (nb > 4) nb = 4;
      if (nb * nt > kMaxAccumulators) nb = kMaxAccumulators / nt;
      float* tile = y + row * ldy + col;
      switch (nt * 8 + static_cast<int>(nb)) {
#define FASTWAVE_TILE(NB, NT) \
  case NT * 8 + NB: product_tile<NB, NT>(tile, ldy, ops, n_ops, ldw, row, col); break;
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

void product1(float* y, int64_t ldy, int64_t rows, int64_t cols, const float* x, int64_t ldx,
              const float* w, int64_t in, int64_t ldw) {
  const Operand op{x, ldx, w, in};
  product(y, ldy, rows, cols, &op, 1, ldw);
}

// h[r][q kBlock + i] = tanh(z[r][2 q kBlock + i]) * sigmoid(z[r][(2 q + 1) kBlock + i]).
void gate(const float* z, float* h, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* zr = z + r * 2 * width;
    float* hr = h + r * width;
    for (int64_t q = 0; q < width; q += kBlock) {
      for (int64_t v = 0; v < kBlock; v += kLanes) {
        const V a = load(zr + 2 * q + v);
        const V s = load(zr + 2 * q + kBlock + v);
        store(hr + q + v, tanh_v(a) * sigmoid_v(s));
      }
    }
  }
}

void relu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) store(x + i, vmax(load(x + i), V{}));
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) store(y + i, load(y + i) + load(x + i));
}

// y (rows, n) = bias (n,) broadcast + y, for row-contiguous y.
void add_bias(float* y, const float* bias, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) add(y + r * n, bias, n);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// The buffer this member writes its next part into.
float* my_part(MemberTask& m) {
  const GroupExchange& ex = *m.exchange;
  return ex.parts + ((m.exchanges_done & 1) * ex.members + m.member) * ex.part_floats;
}

// Member `member`'s part of the exchange just completed.
const float* part_of(const MemberTask& m, int member) {
  const GroupExchange& ex = *m.exchange;
  return ex.parts + (((m.exchanges_done - 1) & 1) * ex.members + member) * ex.part_floats;
}

// Tells the group this member's part of the next exchange is written.
void publish(MemberTask& m) {
  __atomic_store_n(&m.exchange->flags[m.member * kFlagStride], ++m.exchanges_done, __ATOMIC_RELEASE);
}

// Waits until every member has published the exchange this member published last. Spins bare first
// (the others are on their own cores, usually less than one pause instruction away: ~140 cycles on
// recent Intel cores), then with pauses, then yields so an oversubscribed machine still progresses.
void wait_for_group(const MemberTask& m) {
  const GroupExchange& ex = *m.exchange;
  for (int other = 0; other < ex.members; ++other) {
    if (other == m.member) continue;
    const uint64_t* flag = &ex.flags[other * kFlagStride];
    for (int spins = 0; __atomic_load_n(flag, __ATOMIC_ACQUIRE) < m.exchanges_done; ++spins) {
      if (spins < 4096) continue;
      if (spins < 16384) {
        cpu_relax();
      } else {
        sched_yield();
      }
    }
  }
}

void exchange(MemberTask& m) {
  publish(m);
  wait_for_group(m);
}

// dst (rows, n) = Σ over members of their parts (rows, n), in member order: every member computes
// the same bits.
void sum_parts(const MemberTask& m, float* dst, int64_t n) {
  copy_floats(dst, part_of(m, 0), n);
  for (int k = 1; k < m.exchange->members; ++k) add(dst, part_of(m, k), n);
}

void write_ring(const WaveNetPlan& p, const WaveNetLayerPlan& layer, const MemberTask& m,
                uint64_t t) {
  if (layer.ring_slots == 0) return;
  const int64_t slot = static_cast<int64_t>(t % static_cast<uint64_t>(layer.ring_slots));
  copy_floats(layer.ring + (slot * p.batch + m.row0) * p.Rp, m.x, m.rows * p.Rp);
}

// Adds the local frame of position t to this member's columns of gate_bias, when it changes.
void update_local_frame(const WaveNetPlan& p, MemberTask& m, uint64_t t) {
  const int64_t frame = static_cast<int64_t>(t / static_cast<uint64_t>(p.hop));
  if (p.local_channels == 0 || frame == m.frame) return;
  m.frame = frame;
  const int64_t zw = 2 * (m.h1 - m.h0), width = 2 * p.Hp;
  for (int64_t r = 0; r < m.rows; ++r) {
    const int64_t row = m.row0 + r;
    const float* features = p.local_features + row * p.local_channels * p.frames + frame;
    for (int64_t c = 0; c < p.local_channels; ++c) m.local_column[c] = features[c * p.frames];
    for (int64_t l = 0; l < p.layers; ++l) {
      const int64_t offset = (row * p.layers + l) * width + 2 * m.h0;
      copy_floats(p.gate_bias + offset, p.base_bias + offset, zw);
      product1(p.gate_bias + offset, zw, 1, zw, m.local_column, p.local_channels,
               p.layer[l].local + p.local_channels * 2 * m.h0, p.local_channels, zw);
    }
  }
}

// z = gate bias + the taps on past inputs: all of layer l's conv that does not need this step's
// layer input, so it runs while the member waits for the previous layer's exchange.
void begin_layer(const WaveNetPlan& p, int64_t l, MemberTask& m, uint64_t t) {
  const WaveNetLayerPlan& layer = p.layer[l];
  const int64_t zw = 2 * (m.h1 - m.h0);
  for (int64_t r = 0; r < m.rows; ++r) {
    copy_floats(m.z + r * zw, p.gate_bias + ((m.row0 + r) * p.layers + l) * 2 * p.Hp + 2 * m.h0, zw);
  }
  const float* conv = layer.conv + p.kernel_size * p.Rp * 2 * m.h0;  // this member's (K Rp, zw)
  Operand ops[8];  // the engine refuses kernel sizes above 8
  int n_ops = 0;
  for (int64_t k = 0; k + 1 < p.kernel_size; ++k) {  // taps at t - (K-1-k) d, oldest first
    const uint64_t back = static_cast<uint64_t>((p.kernel_size - 1 - k) * layer.dilation);
    const uint64_t slots = static_cast<uint64_t>(layer.ring_slots);
    const int64_t slot = static_cast<int64_t>((t + slots - back) % slots);
    ops[n_ops++] = {layer.ring + (slot * p.batch + m.row0) * p.Rp, p.Rp, conv + k * p.Rp * zw, p.Rp};
  }
  if (n_ops > 0) product(m.z, zw, m.rows, zw, ops, n_ops, zw);
}

// The rest of layer l (begin_layer(l) has run): the current input's tap, the gate, the skip and
// residual products; then begin_layer(l + 1).
void run_layer(const WaveNetPlan& p, int64_t l, MemberTask& m, uint64_t t, bool want_skip) {
  const WaveNetLayerPlan& layer = p.layer[l];
  const int64_t width = m.h1 - m.h0, zw = 2 * width;
  const bool alone = m.exchange->members == 1, has_next = l + 1 < p.layers;
  const float* current = layer.conv + p.kernel_size * p.Rp * 2 * m.h0 + (p.kernel_size - 1) * p.Rp * zw;
  product1(m.z, zw, m.rows, zw, m.x, p.Rp, current, p.Rp, zw);
  gate(m.z, m.h, m.rows, width);
  const float* residual = layer.residual == nullptr ? nullptr : layer.residual + m.h0 * p.Rp;
  float* part = nullptr;
  if (alone) {
    write_ring(p, layer, m, t);  // every read of the ring is done; x is still the layer input
  } else if (residual != nullptr) {
    // Publish the partial residual first, then work while the others finish theirs.
    part = my_part(m);
    fill_zero(part, m.rows * p.Rp);
    product1(part, p.Rp, m.rows, p.Rp, m.h, width, residual, width, p.Rp);
    publish(m);
  }
  if (want_skip) product1(m.skip, p.Sp, m.rows, p.Sp, m.h, width, layer.skip + m.h0 * p.Sp, width, p.Sp);
  if (alone && residual != nullptr) {
    add_bias(m.x, layer.residual_bias, m.rows, p.Rp);
    product1(m.x, p.Rp, m.rows, p.Rp, m.h, width, residual, width, p.Rp);
  }
  if (has_next) begin_layer(p, l + 1, m, t);
  if (part == nullptr) return;  // alone, or the last layer: its ring is written after the head's exchange
  wait_for_group(m);
  if (m.member == 0) write_ring(p, layer, m, t);  // every member has read this layer's ring
  add_bias(m.x, layer.residual_bias, m.rows, p.Rp);
  for (int k = 0; k < m.exchange->members; ++k) add(m.x, part_of(m, k), m.rows * p.Rp);
}

// Head over the (complete) skip sum: logits (rows, Ap).
void run_head(const WaveNetPlan& p, MemberTask& m) {
  const bool alone = m.exchange->members == 1;
  add_bias(m.skip, p.skip_bias, m.rows, p.Sp);
  relu(m.skip, m.rows * p.Sp);
  const int64_t width = m.s1 - m.s0;
  for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.hidden + r * p.Sp + m.s0, p.head0_bias + m.s0, width);
  product1(m.hidden + m.s0, p.Sp, m.rows, width, m.skip, p.Sp, p.head0 + p.Sp * m.s0, p.Sp, width);
  for (int64_t r = 0; r < m.rows; ++r) relu(m.hidden + r * p.Sp + m.s0, width);
  const float* head1 = p.head1 + m.s0 * p.Ap;
  if (alone) {
    for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.logits + r * p.Ap, p.head1_bias, p.Ap);
    product1(m.logits, p.Ap, m.rows, p.Ap, m.hidden + m.s0, p.Sp, head1, width, p.Ap);
    return;
  }
  float* part = my_part(m);
  fill_zero(part, m.rows * p.Ap);
  product1(part, p.Ap, m.rows, p.Ap, m.hidden + m.s0, p.Sp, head1, width, p.Ap);
  exchange(m);
  for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.logits + r * p.Ap, p.head1_bias, p.Ap);
  for (int k = 0; k < m.exchange->members; ++k) add(m.logits, part_of(m, k), m.rows * p.Ap);
}

// Asks for the ring rows that position t's taps will read. Rows of the long dilations were written
// hundreds of steps ago and have left the core's caches; without this, each such layer would stall
// on a cache miss before its first multiply.
void prefetch_taps(const WaveNetPlan& p, const MemberTask& m, uint64_t t) {
  for (int64_t l = 0; l < p.layers; ++l) {
    const WaveNetLayerPlan& layer = p.layer[l];
    const uint64_t slots = static_cast<uint64_t>(layer.ring_slots);
    for (int64_t k = 0; k + 1 < p.kernel_size; ++k) {
      const uint64_t back = static_cast<uint64_t>((p.kernel_size - 1 - k) * layer.dilation);
      const int64_t slot = static_cast<int64_t>((t + slots - back) % slots);
      const char* row = reinterpret_cast<const char*>(layer.ring + (slot * p.batch + m.row0) * p.Rp);
      const int64_t bytes = m.rows * p.Rp * static_cast<int64_t>(sizeof(float));
      for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b);
    }
  }
}

// Feeds the token of each row (tokens[r * stride]) at position t; with want_head, leaves the logits
// for position t + 1 in m.logits.
void step(const WaveNetPlan& p, MemberTask& m, const int64_t* tokens, int64_t stride, uint64_t t,
          bool want_head) {
  update_local_frame(p, m, t);
  prefetch_taps(p, m, t);
  for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.x + r * p.Rp, p.embedding + tokens[r * stride] * p.Rp, p.Rp);
  if (want_head) fill_zero(m.skip, m.rows * p.Sp);
  begin_layer(p, 0, m, t);
  for (int64_t l = 0; l < p.layers; ++l) run_layer(p, l, m, t, want_head);
  if (m.exchange->members > 1) {
    // Everyone's skip partials, and the point after which the last layer's ring slot is free.
    if (want_head) copy_floats(my_part(m), m.skip, m.rows * p.Sp);
    exchange(m);
    if (m.member == 0) write_ring(p, p.layer[p.layers - 1], m, t);
    if (want_head) sum_parts(m, m.skip, m.rows * p.Sp);
  }
  if (want_head) run_head(p, m);
}

void run_wavenet_steps(const WaveNetPlan& p, MemberTask& m, const StepJob& job) {
  const bool writes = m.member == 0;  // every member computes the same values; one writes them
  for (int64_t i = 0; i < job.count; ++i) {
    const uint64_t t = job.position + static_cast<uint64_t>(i);
    if (job.tokens != nullptr) {
      const bool want_head = job.need_logits_every_step || i + 1 == job.count;
      step(p, m, job.tokens + m.row0 * job.tokens_stride + i, job.tokens_stride, t, want_head);
      if (writes && job.logits_out != nullptr) {
        for (int64_t r = 0; r < m.rows; ++r) {
          copy_floats(job.logits_out + ((m.row0 + r) * job.count + i) * p.classes, m.logits + r * p.Ap, p.classes);
        }
      }
      continue;
    }
    int64_t* sampled = m.sampled;
    for (int64_t r = 0; r < m.rows; ++r) {
      const float u = sampling_uniform(job.seed, job.step0 + static_cast<uint32_t>(i),
                                       static_cast<uint32_t>(m.row0 + r));
      sampled[r] = sample_token(m.logits + r * p.Ap, p.classes, u, job.params, *m.scratch);
      if (writes) job.tokens_out[(m.row0 + r) * job.count + i] = sampled[r];
    }
    if (i + 1 < job.count || !job.final) step(p, m, sampled, 1, t, true);
  }
}

float read_floats(const float* data, int64_t n, int64_t repeats) {
  V acc[4] = {};
  for (int64_t rep = 0; rep < repeats; ++rep) {
    for (int64_t i = 0; i + 4 * kLanes <= n; i += 4 * kLanes) {
      for (int j = 0; j < 4; ++j) acc[j] += load(data + i + j * kLanes);
    }
  }
  const V sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  float total = 0.0f;
  for (int j = 0; j < kLanes; ++j) total += sum[j];
  return total;
}

}  // namespace

#define FASTWAVE_STRINGIFY(name) FASTWAVE_STRINGIFY_VALUE(name)
#define FASTWAVE_STRINGIFY_VALUE(name) #name
extern const IsaKernels kernels{FASTWAVE_STRINGIFY(FASTWAVE_ISA), &run_wavenet_steps, &read_floats};

}  // namespace FASTWAVE_ISA
}  // namespace cpu
}  // namespace fastwave
