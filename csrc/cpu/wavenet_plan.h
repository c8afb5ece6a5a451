// What the C++ WaveNet loop reads and writes, as plain data: the engine (wavenet_engine.cpp) owns
// the memory and fills these structs; the per-ISA step code (kernels/wavenet_steps.cpp) runs them.
// Only POD types here: the header is compiled into every ISA variant, and an inline function would
// give the linker several ISA copies of one symbol to choose from.
//
// Padding: every channel count is rounded up to a multiple of kBlock (Rp, Hp, Sp, Ap) with zero
// weights and biases, so the padded activations stay exactly 0 and the kernels never need a
// remainder loop. Matrices are stored "in x out" (y += x @ W): the inner loop runs over contiguous
// output channels for one broadcast input value, for every row of the batch at once.
//
// Weight storage W (the engine's precision): float; uint16_t holding IEEE half bits (fp16); or
// uint8_t holding int8 weights offset by 128 (int8: int8_weights.h gives the layout and the
// arithmetic). The matrices the step streams are stored as W at the float layout's element
// offsets; biases, the embedding and the local projection stay float. Each W matrix has a scale
// per output column for int8 (nullptr otherwise), indexed by the column of the whole matrix.
#pragma once

#include <cstdint>

#include "cpu/int8_weights.h"
#include "cpu/step_job.h"

namespace fastwave {
namespace cpu {

// What a layer reads besides its matrices: the same at every precision.
struct WaveNetLayerState {
  const float* residual_bias;  // (Rp,)
  const float* local;          // (C, 2 (h1 - h0)) at C * 2 h0, laid out like conv; or nullptr
  int64_t dilation;
  int64_t ring_slots;          // (K - 1) * dilation past inputs, the only state the layer keeps
  float* ring;                 // (ring_slots, batch, Rp): slot p % ring_slots holds position p
};

template <typename W>
struct WaveNetLayerPlan : WaveNetLayerState {
  // Gate columns come in kBlock pairs [tanh block q | sigmoid block q], so the thread that owns gate
  // channels [h0, h1) needs the columns [2 h0, 2 h1). Each thread's columns are stored as their own
  // contiguous matrix (the thread streams one block of memory), starting at rows * 2 h0:
  //   conv: (K * Rp, 2 (h1 - h0)) at K * Rp * 2 h0; row k * Rp + r multiplies channel r of the input
  //         at t - (K-1-k) * dilation.
  const W* conv;
  const W* residual;           // (Hp, Rp), or nullptr for the last layer (its residual is unused)
  const W* skip;               // (Hp, Sp)
  const float* conv_scale;     // int8: (2 Hp,) per packed gate column; (Rp,); (Sp,)
  const float* residual_scale;
  const float* skip_scale;
};

// What the step reads besides the matrices: the same at every precision.
struct WaveNetPlanBase {
  int64_t layers, kernel_size, batch;
  int64_t classes, Rp, Hp, Sp, Ap;  // Ap >= classes; logits past `classes` are padding
  const float* embedding;           // (classes, Rp)
  const float* skip_bias;           // (Sp,): every layer's skip bias, summed once
  const float* head0_bias;          // (Sp,)
  const float* head1_bias;          // (Ap,)
  const float* base_bias;           // (batch, layers, 2 * Hp): conv bias + the global term per row
  float* gate_bias;                 // (batch, layers, 2 * Hp): base_bias + the current local frame
  // Local conditioning, or local_channels == 0: features (batch, C, frames), position t reads
  // frame t / hop.
  const float* local_features;
  int64_t local_channels, frames, hop;
};

template <typename W>
struct WaveNetPlan : WaveNetPlanBase {
  const WaveNetLayerPlan<W>* layer; // [layers]
  const W* head0;                   // (Sp, s1 - s0) at Sp * s0 for the thread owning [s0, s1)
  const W* head1;                   // (Sp, Ap)
  const float* head0_scale;         // int8: (Sp,), (Ap,)
  const float* head1_scale;
};

// One thread's share: a group of threads runs a range of rows together, each thread a slice of
// the gate channels and of the head's hidden channels. Buffers are the thread's own.
struct MemberTask {
  int64_t row0, rows;
  int64_t h0, h1;  // gate channels [h0, h1), multiples of kBlock
  int64_t s0, s1;  // head hidden channels [s0, s1), multiples of kBlock
  ExchangeSeat seat;
  int64_t frame;            // local frame whose projection is in gate_bias (-1: none yet)
  float* x;                 // (rows, Rp) the current layer input
  float* z;                 // (rows, 2 * (h1 - h0)) conv output for the owned gate channels
  float* h;                 // (rows, h1 - h0) gated activation
  float* skip;              // (rows, Sp) this member's partial skip sum
  float* hidden;            // (rows, Sp) the head's hidden layer (owned columns)
  float* logits;            // (rows, Ap) the logits of the last step, identical in every member
  float* local_column;      // (local_channels,) one frame's features, gathered
  int64_t* sampled;         // (rows,) the tokens just sampled
  StepStatus status;        // set by each call (step_job.h)
  QuantizedRows quantized[2];  // int8: inputs of the products quantised per row (int8_weights.h)
  SamplingScratch* scratch;
};

}  // namespace cpu
}  // namespace fastwave
