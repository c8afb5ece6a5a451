// The WaveNet step loop of the C++ engine, compiled once per instruction set: CMake builds this file
// with -march=x86-64-v4 (namespace avx512), -march=x86-64-v3 (avx2) and the baseline (generic), and
// isa.cpp picks one at run time. Vectors are GCC/Clang vector extensions, so the same source becomes
// AVX-512, AVX2, SSE or NEON code.
//
// Everything but the entry point sits in an anonymous namespace and calls no inline function of a
// shared header (vector_ops.h says why). Atomics are the __atomic builtins.
//
// One step of one position, for a member of a thread group (wavenet_plan.h):
//   x = embedding[token]
//   per layer: z = gate_bias + Σ_taps ring[t - k d] @ conv_k + x @ conv_last   (owned gate columns)
//              h = tanh(z_tanh) * sigmoid(z_sigmoid);  skip += h @ skip_w
//              ring[t] = x;  x += res_bias + h @ res_w   (partials summed across the group)
//   logits = head1_bias + relu(head0_bias + relu(skip_bias + skip) @ head0) @ head1
//
// The loop is a template over the weight storage W (wavenet_plan.h): float, half or int8. Every
// product goes through prepare() (int8: quantise the input rows) and multiply().
#include <cstdint>

#include "cpu/isa_kernels.h"
#include "cpu/kernels/vector_ops.h"
#include "cpu/kernels/weight_products.h"
#include "cpu/wavenet_plan.h"

namespace fastwave {
namespace cpu {
namespace FASTWAVE_ISA {
namespace {

// z (rows, zw) += Σ taps: in one pass over z for float and half; int8 quantises each tap's rows.
template <typename W>
inline void add_taps(float* z, int64_t zw, int64_t rows, const OperandOf<W>* taps, int n, const float*,
                     MemberTask&) {
  product(z, zw, rows, zw, taps, n, zw);
}
inline void add_taps(float* z, int64_t zw, int64_t rows, const OperandOf<uint8_t>* taps, int n,
                     const float* scale, MemberTask& m) {
  for (int o = 0; o < n; ++o) {
    const QuantizedRows x = prepare(taps[o].w, taps[o].x, taps[o].ldx, rows, taps[o].in, m.quantized[0]);
    product_q8(z, zw, rows, zw, x, taps[o].w, scale, taps[o].in, zw);
  }
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

template <typename W>
void write_ring(const WaveNetPlan<W>& p, const WaveNetLayerPlan<W>& layer, const MemberTask& m,
                uint64_t t) {
  if (layer.ring_slots == 0) return;
  const int64_t slot = static_cast<int64_t>(t % static_cast<uint64_t>(layer.ring_slots));
  copy_floats(layer.ring + (slot * p.batch + m.row0) * p.Rp, m.x, m.rows * p.Rp);
}

// Adds the local frame of position t to this member's columns of gate_bias, when it changes.
template <typename W>
void update_local_frame(const WaveNetPlan<W>& p, MemberTask& m, uint64_t t) {
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
template <typename W>
void begin_layer(const WaveNetPlan<W>& p, int64_t l, MemberTask& m, uint64_t t) {
  const WaveNetLayerPlan<W>& layer = p.layer[l];
  const int64_t zw = 2 * (m.h1 - m.h0);
  for (int64_t r = 0; r < m.rows; ++r) {
    copy_floats(m.z + r * zw, p.gate_bias + ((m.row0 + r) * p.layers + l) * 2 * p.Hp + 2 * m.h0, zw);
  }
  const W* conv = layer.conv + p.kernel_size * p.Rp * 2 * m.h0;  // this member's (K Rp, zw)
  OperandOf<W> ops[8];  // the engine refuses kernel sizes above 8
  int n_ops = 0;
  for (int64_t k = 0; k + 1 < p.kernel_size; ++k) {  // taps at t - (K-1-k) d, oldest first
    const uint64_t back = static_cast<uint64_t>((p.kernel_size - 1 - k) * layer.dilation);
    const uint64_t slots = static_cast<uint64_t>(layer.ring_slots);
    const int64_t slot = static_cast<int64_t>((t + slots - back) % slots);
    ops[n_ops++] = {layer.ring + (slot * p.batch + m.row0) * p.Rp, p.Rp, conv + k * p.Rp * zw, p.Rp};
  }
  if (n_ops > 0) add_taps(m.z, zw, m.rows, ops, n_ops, shifted(layer.conv_scale, 2 * m.h0), m);
}

// The rest of layer l (begin_layer(l) has run): the current input's tap, the gate, the skip and
// residual products; then begin_layer(l + 1).
template <typename W>
void run_layer(const WaveNetPlan<W>& p, int64_t l, MemberTask& m, uint64_t t, bool want_skip) {
  const WaveNetLayerPlan<W>& layer = p.layer[l];
  const int64_t width = m.h1 - m.h0, zw = 2 * width;
  const bool alone = m.seat.group->members == 1, has_next = l + 1 < p.layers;
  const W* current = layer.conv + p.kernel_size * p.Rp * 2 * m.h0 + (p.kernel_size - 1) * p.Rp * zw;
  const auto x = prepare(current, m.x, p.Rp, m.rows, p.Rp, m.quantized[0]);
  multiply(m.z, zw, m.rows, zw, x, current, shifted(layer.conv_scale, 2 * m.h0), p.Rp, zw);
  gate(m.z, m.h, m.rows, width);
  // The gated units are split between the group (int8: in blocks the split never cuts).
  const auto h = prepare(layer.skip, m.h, width, m.rows, width, m.quantized[1], kSplitBlock);
  const W* residual = layer.residual == nullptr ? nullptr : layer.residual + m.h0 * p.Rp;
  float* part = nullptr;
  if (alone) {
    write_ring(p, layer, m, t);  // every read of the ring is done; x is still the layer input
  } else if (residual != nullptr) {
    // Publish the partial residual first, then work while the others finish theirs.
    part = my_part(m.seat);
    fill_zero(part, m.rows * p.Rp);
    multiply(part, p.Rp, m.rows, p.Rp, h, residual, layer.residual_scale, width, p.Rp);
    publish(m.seat);
  }
  if (want_skip) multiply(m.skip, p.Sp, m.rows, p.Sp, h, layer.skip + m.h0 * p.Sp, layer.skip_scale, width, p.Sp);
  if (alone && residual != nullptr) {
    add_bias(m.x, layer.residual_bias, m.rows, p.Rp);
    multiply(m.x, p.Rp, m.rows, p.Rp, h, residual, layer.residual_scale, width, p.Rp);
  }
  if (has_next) begin_layer(p, l + 1, m, t);
  if (part == nullptr) return;  // alone, or the last layer: its ring is written after the head's exchange
  wait_for_group(m.seat);
  if (m.seat.member == 0) write_ring(p, layer, m, t);  // every member has read this layer's ring
  add_bias(m.x, layer.residual_bias, m.rows, p.Rp);
  for (int k = 0; k < m.seat.group->members; ++k) add(m.x, part_of(m.seat, k), m.rows * p.Rp);
}

// Head over the (complete) skip sum: logits (rows, Ap).
template <typename W>
void run_head(const WaveNetPlan<W>& p, MemberTask& m) {
  const bool alone = m.seat.group->members == 1;
  add_bias(m.skip, p.skip_bias, m.rows, p.Sp);
  relu(m.skip, m.rows * p.Sp);
  const int64_t width = m.s1 - m.s0;
  for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.hidden + r * p.Sp + m.s0, p.head0_bias + m.s0, width);
  const auto skip = prepare(p.head0, m.skip, p.Sp, m.rows, p.Sp, m.quantized[0]);
  multiply(m.hidden + m.s0, p.Sp, m.rows, width, skip, p.head0 + p.Sp * m.s0, shifted(p.head0_scale, m.s0), p.Sp,
           width);
  for (int64_t r = 0; r < m.rows; ++r) relu(m.hidden + r * p.Sp + m.s0, width);
  const W* head1 = p.head1 + m.s0 * p.Ap;
  const auto hidden = prepare(head1, m.hidden + m.s0, p.Sp, m.rows, width, m.quantized[1], kSplitBlock);
  if (alone) {
    for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.logits + r * p.Ap, p.head1_bias, p.Ap);
    multiply(m.logits, p.Ap, m.rows, p.Ap, hidden, head1, p.head1_scale, width, p.Ap);
    return;
  }
  float* part = my_part(m.seat);
  fill_zero(part, m.rows * p.Ap);
  multiply(part, p.Ap, m.rows, p.Ap, hidden, head1, p.head1_scale, width, p.Ap);
  exchange(m.seat);
  for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.logits + r * p.Ap, p.head1_bias, p.Ap);
  for (int k = 0; k < m.seat.group->members; ++k) add(m.logits, part_of(m.seat, k), m.rows * p.Ap);
}

// Asks for the ring rows that position t's taps will read. Rows of the long dilations were written
// hundreds of steps ago and have left the core's caches; without this, each such layer would stall
// on a cache miss before its first multiply.
template <typename W>
void prefetch_taps(const WaveNetPlan<W>& p, const MemberTask& m, uint64_t t) {
  for (int64_t l = 0; l < p.layers; ++l) {
    const WaveNetLayerPlan<W>& layer = p.layer[l];
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
template <typename W>
void step(const WaveNetPlan<W>& p, MemberTask& m, const int64_t* tokens, int64_t stride, uint64_t t,
          bool want_head) {
  update_local_frame(p, m, t);
  prefetch_taps(p, m, t);
  for (int64_t r = 0; r < m.rows; ++r) copy_floats(m.x + r * p.Rp, p.embedding + tokens[r * stride] * p.Rp, p.Rp);
  if (want_head) fill_zero(m.skip, m.rows * p.Sp);
  begin_layer(p, 0, m, t);
  for (int64_t l = 0; l < p.layers; ++l) run_layer(p, l, m, t, want_head);
  if (m.seat.group->members > 1) {
    // Everyone's skip partials, and the point after which the last layer's ring slot is free.
    if (want_head) copy_floats(my_part(m.seat), m.skip, m.rows * p.Sp);
    exchange(m.seat);
    if (m.seat.member == 0) write_ring(p, p.layer[p.layers - 1], m, t);
    if (want_head) sum_parts(m.seat, m.skip, m.rows * p.Sp);
  }
  if (want_head) run_head(p, m);
}

template <typename W>
void run_steps(const WaveNetPlan<W>& p, MemberTask& m, const StepJob& job) {
  const bool writes = m.seat.member == 0;  // every member computes the same values; one writes them
  m.status = {-1, -1};
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
    if (!sample_rows(m.logits, p.Ap, p.classes, m.rows, m.row0, job, i, writes, m.sampled, *m.scratch, m.status)) {
      return;
    }
    if (i + 1 < job.count || !job.final) step(p, m, m.sampled, 1, t, true);
  }
}

}  // namespace

void run_wavenet_steps(const WaveNetPlan<float>& p, MemberTask& m, const StepJob& job) { run_steps(p, m, job); }
void run_wavenet_steps_half(const WaveNetPlan<uint16_t>& p, MemberTask& m, const StepJob& job) {
  run_steps(p, m, job);
}
void run_wavenet_steps_int8(const WaveNetPlan<uint8_t>& p, MemberTask& m, const StepJob& job) {
  run_steps(p, m, job);
}

}  // namespace FASTWAVE_ISA
}  // namespace cpu
}  // namespace fastwave
