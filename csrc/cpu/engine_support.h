// What every C++ generation engine shares outside the per-ISA step code: argument refusal with
// clear messages, overflow-checked sizes, zeroed 64-byte aligned float buffers carved from one
// arena, the weight map the bindings hand over and its shape / finiteness check, and the split of
// channel blocks between the threads of a group.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cpu/isa_kernels.h"
#include "cpu/step_job.h"

namespace fastwave {
namespace cpu {

constexpr int kMaxThreads = 1024;
// Refuse states and buffers beyond 2^38 floats (1 TiB) up front, before any size can overflow.
constexpr int64_t kMaxFloats = int64_t{1} << 38;

// A float32 C-contiguous array the caller owns for the duration of the engine's constructor.
struct WeightView {
  const float* data;
  std::vector<int64_t> shape;
};
using WeightMap = std::map<std::string, WeightView>;
using WeightShapes = std::map<std::string, std::vector<int64_t>>;

struct BufferFree {
  void operator()(void* p) const;
};
using FloatBuffer = std::unique_ptr<float[], BufferFree>;
using HalfBuffer = std::unique_ptr<uint16_t[], BufferFree>;  // IEEE binary16 bits
using ByteBuffer = std::unique_ptr<uint8_t[], BufferFree>;

inline int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// (2, 3) or (4,) as Python prints a tuple.
std::string shape_text(const std::vector<int64_t>& shape);

// Throws std::invalid_argument (ValueError in Python).
[[noreturn]] void refuse(const std::string& message);
void require_range(int64_t value, int64_t low, int64_t high, const std::string& name);

// "fp32", "fp16" or "int8" (anything else is refused), and back.
WeightStorage weight_storage(const std::string& precision);
const char* precision_name(WeightStorage storage);

// Multiplies sizes, refusing any product over kMaxFloats (so no int64 overflow downstream).
int64_t checked_size(std::initializer_list<int64_t> factors, const std::string& what);

// count floats (at least one), 64-byte aligned and zeroed: zero padding is part of every layout.
FloatBuffer allocate_floats(int64_t count);
HalfBuffer allocate_halves(int64_t count);
ByteBuffer allocate_bytes(int64_t count);

// dst[i] = src[i] rounded to IEEE half (nearest even), refusing values beyond its range (65504),
// naming `what`.
void to_half(const float* src, int64_t count, uint16_t* dst, const std::string& what);

// Refuses unexpected or missing names, wrong shapes and non-finite values, naming the entry.
void validate_weights(const WeightMap& weights, const WeightShapes& expected);

// Hands out 64-byte aligned pieces of one allocation, in the order they were counted.
class Arena {
 public:
  int64_t reserve(int64_t floats);
  int64_t size() const { return size_; }

 private:
  int64_t size_ = 0;
};

// Splits [0, total) into `parts` near-equal ranges of whole `unit`s (the last unit may be partial);
// returns part `index`. A part may be empty when there are more parts than units.
std::pair<int64_t, int64_t> split_range(int64_t total, int64_t unit, int parts, int index);

// How a team of threads covers the batch: min(batch, threads) groups of rows, each run by
// threads / groups members that split the channels of every layer (see wavenet_engine.h).
struct ThreadPlan {
  int groups = 1, members = 1;
  int64_t row0(int group, int64_t batch) const { return batch * group / groups; }
  int64_t rows(int group, int64_t batch) const { return row0(group + 1, batch) - row0(group, batch); }
};
ThreadPlan plan_threads(int64_t batch, int threads);

// Group exchange buffers (step_job.h) for `groups` groups of `members`, each part `part_floats`.
struct ExchangeBuffers {
  std::unique_ptr<uint64_t[]> flags;
  std::unique_ptr<uint32_t[]> wake;  // per group: the wake word and the sleeper count, a line apart
  FloatBuffer parts;
  std::vector<GroupExchange> groups;
  ExchangeBuffers(const ThreadPlan& plan, int64_t part_floats);
};

// Refuses tokens outside [0, classes), naming the first bad one by flat index.
void check_tokens(const int64_t* tokens, int64_t count, int64_t classes, const std::string& name);

// generate()'s checks, common to the engines: a prefill first, n in range, the Philox step in 32 bits.
void check_generate(int64_t n, int64_t batch, uint32_t step0, const SamplingParams& params, bool has_logits);

// The jobs prefill() and generate() hand the step loops (step_job.h): feed prompt positions
// [start, length) teacher-forced, or sample n tokens from `position` on.
StepJob prefill_job(const int64_t* prompt, int64_t length, int64_t start, float* logits_out);
StepJob generate_job(int64_t n, uint64_t position, uint64_t seed, uint32_t step0, const SamplingParams& params,
                     bool final, int64_t* tokens_out);

// Locks an engine for one call, refusing (std::runtime_error) a second thread that calls meanwhile.
std::unique_lock<std::mutex> claim(std::mutex& busy);

// The sum of the tasks' seat.late (the engines' late_waits()).
template <typename Task>
uint64_t late_waits_of(const std::vector<Task>& tasks) {
  uint64_t total = 0;
  for (const Task& task : tasks) total += task.seat.late;
  return total;
}

// After a free-running call: refuses (std::invalid_argument) when a member met non-finite logits,
// naming the position and stream. The engine must be prefilled again (the caller clears its logits).
template <typename Task>
void check_finite_logits(const std::vector<Task>& tasks, uint64_t position) {
  for (const Task& task : tasks) {
    if (task.status.nonfinite_step < 0) continue;
    refuse("the model's logits became non-finite (inf or NaN) before sample " +
           std::to_string(position + static_cast<uint64_t>(task.status.nonfinite_step)) + " of stream " +
           std::to_string(task.status.nonfinite_row) +
           ": its activations overflow float32 (check the weights); prefill() again before generating");
  }
}

// A sampler's buffers sized for `classes`, so sampling allocates nothing per step.
std::unique_ptr<SamplingScratch> make_sampling_scratch(int64_t classes);

}  // namespace cpu
}  // namespace fastwave
