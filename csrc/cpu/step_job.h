// The plain data every engine's per-ISA step loop shares: the padding unit, the exchange between the
// threads of a group, and one call's work (StepJob). POD only: this header is compiled into every
// ISA variant, and an inline function would give the linker several ISA copies of one symbol.
#pragma once

#include <cstdint>

#include "common/sampling.h"

namespace fastwave {
namespace cpu {

constexpr int64_t kBlock = 16;  // channel padding and the unit of work split between threads

// Partial sums that the threads of one group hand each other a few times per step. Two buffers,
// alternating: a thread may start writing exchange n + 1 while a slower one still reads exchange n,
// but never n + 2, which it cannot reach before everyone has signalled n + 1.
//
// A member that finds a partner late spins ~10 us, yields its core for up to a scheduler period,
// then sleeps on the group's wake word (cpu/wait.h), so a partner descheduled by a busy machine
// does not cost a burned core (vector_ops.h, wait_for_group). A publisher wakes the word only when
// someone sleeps (`sleepers`): the common case is one store and one load.
struct GroupExchange {
  int members;
  uint64_t* flags;     // flags[member * kFlagStride]: how many exchanges that member has published
  float* parts;        // [2][members][part_floats]
  int64_t part_floats;
  uint32_t* wake;      // wake[0]: bumped by a publisher that saw sleepers; wake[kFlagStride]: sleepers
};
constexpr int64_t kFlagStride = 16;  // one 64-byte cache line per flag: no false sharing

// One member's place in its group's exchange; every member of a group makes the same calls.
struct ExchangeSeat {
  GroupExchange* group;
  int member;
  uint64_t done;   // exchanges this member has published
  uint64_t late;   // waits for a partner that took over ~0.5 ms: it was descheduled (a busy machine)
};

// What a member reports back from a call: the first step whose logits it found non-finite (inf or
// NaN: the model's activations overflowed float32), and the stream; -1 when none. The member stops
// there; its partners in the group stop at the same step (they hold the same logits).
struct StepStatus {
  int64_t nonfinite_step;
  int64_t nonfinite_row;
};

// One call's work for every member: feed `count` positions starting at `position`. Teacher-forced
// (tokens != nullptr: token i of row b at tokens[b * tokens_stride + i]) or free-running (sample
// each token from the current logits with Philox step step0 + i, stream = row, then feed it; the
// last token of a `final` call is not fed).
struct StepJob {
  const int64_t* tokens;
  int64_t tokens_stride;
  int64_t count;
  uint64_t position;
  bool need_logits_every_step;  // teacher-forced: compute the head at every position, not only the last
  float* logits_out;            // (batch, count, classes) or nullptr
  int64_t* tokens_out;          // (batch, count) when free-running
  uint64_t seed;
  uint32_t step0;
  SamplingParams params;
  bool final;
};

}  // namespace cpu
}  // namespace fastwave
