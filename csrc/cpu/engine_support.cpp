#include "cpu/engine_support.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastwave {
namespace cpu {

void BufferFree::operator()(void* p) const { std::free(p); }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

void refuse(const std::string& message) { throw std::invalid_argument(message); }

void require_range(int64_t value, int64_t low, int64_t high, const std::string& name) {
  if (value < low || value > high) {
    refuse(name + " must be in [" + std::to_string(low) + ", " + std::to_string(high) + "], got " +
           std::to_string(value));
  }
}

WeightStorage weight_storage(const std::string& precision) {
  if (precision == "fp32") return WeightStorage::fp32;
  if (precision == "fp16") return WeightStorage::fp16;
  if (precision == "int8") return WeightStorage::int8;
  refuse("precision must be 'fp32', 'fp16' or 'int8', got '" + precision + "'");
}

const char* precision_name(WeightStorage storage) {
  return storage == WeightStorage::fp16 ? "fp16" : storage == WeightStorage::int8 ? "int8" : "fp32";
}

int64_t checked_size(std::initializer_list<int64_t> factors, const std::string& what) {
  int64_t total = 1;
  for (int64_t f : factors) {
    if (f != 0 && total > kMaxFloats / f) refuse(what + " would exceed 2**38 floats");
    total *= f;
  }
  return total;
}

namespace {

// Zeroed memory for `bytes`. Buffers of 1 MB and more (the weights, the KV caches: streamed every
// step) are 2 MB-aligned and asked for transparent huge pages: with 4 KB pages a step's walk over
// them misses the TLB hundreds of times, and scattered physical pages share out the L2's sets
// unevenly, so one thread of a group misses more than the other and the group waits on it.
void* allocate_zeroed(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const bool large = bytes >= kHugePage / 2;
  const size_t alignment = large ? kHugePage : 64;
  bytes = (bytes + alignment - 1) / alignment * alignment;
  void* memory = std::aligned_alloc(alignment, bytes);
  if (memory == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (large) madvise(memory, bytes, MADV_HUGEPAGE);  // a hint: where huge pages are off, 4 KB pages
#endif
  std::memset(memory, 0, bytes);  // after the advice: the first touch decides the page size
  return memory;
}

}  // namespace

FloatBuffer allocate_floats(int64_t count) {
  const size_t count16 = static_cast<size_t>(round_up(std::max<int64_t>(count, 1), 16));
  return FloatBuffer(static_cast<float*>(allocate_zeroed(count16 * sizeof(float))));
}

HalfBuffer allocate_halves(int64_t count) {
  const size_t count32 = static_cast<size_t>(round_up(std::max<int64_t>(count, 1), 32));
  return HalfBuffer(static_cast<uint16_t*>(allocate_zeroed(count32 * sizeof(uint16_t))));
}

ByteBuffer allocate_bytes(int64_t count) {
  const size_t count64 = static_cast<size_t>(round_up(std::max<int64_t>(count, 1), 64));
  return ByteBuffer(static_cast<uint8_t*>(allocate_zeroed(count64)));
}

void to_half(const float* src, int64_t count, uint16_t* dst, const std::string& what) {
  for (int64_t i = 0; i < count; ++i) {
    if (std::fabs(src[i]) > 65504.0f) {
      refuse(what + " holds " + std::to_string(src[i]) + ", beyond half precision's range (65504): "
             "use precision='fp32'");
    }
    const _Float16 h = static_cast<_Float16>(src[i]);
    std::memcpy(dst + i, &h, sizeof h);
  }
}

void validate_weights(const WeightMap& weights, const WeightShapes& expected) {
  for (const auto& [name, view] : weights) {
    if (expected.count(name) == 0) refuse("weights has an unexpected entry '" + name + "' for this config");
  }
  for (const auto& [name, shape] : expected) {
    const auto found = weights.find(name);
    if (found == weights.end()) refuse("weights is missing '" + name + "'");
    if (found->second.shape != shape) {
      refuse("weights['" + name + "'] must have shape " + shape_text(shape) + ", got " +
             shape_text(found->second.shape));
    }
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    const float* data = found->second.data;
    for (int64_t i = 0; i < count; ++i) {
      if (!std::isfinite(data[i])) {
        refuse("weights['" + name + "'] must be finite, got " + std::to_string(data[i]) +
               " at flat index " + std::to_string(i));
      }
    }
  }
}

int64_t Arena::reserve(int64_t floats) {
  const int64_t offset = size_;
  size_ = checked_size({1, size_ + round_up(floats, 16)}, "the engine's buffers");
  return offset;
}

std::pair<int64_t, int64_t> split_range(int64_t total, int64_t unit, int parts, int index) {
  const int64_t units = (total + unit - 1) / unit;  // the last unit may be partial
  return {std::min(total, units * index / parts * unit), std::min(total, units * (index + 1) / parts * unit)};
}

ThreadPlan plan_threads(int64_t batch, int threads) {
  ThreadPlan plan;
  plan.groups = static_cast<int>(std::min<int64_t>(batch, threads));
  plan.members = threads / plan.groups;
  return plan;
}

ExchangeBuffers::ExchangeBuffers(const ThreadPlan& plan, int64_t part_floats) {
  const int groups = plan.groups, members = plan.members;
  flags.reset(new uint64_t[static_cast<size_t>(groups * members * kFlagStride)]());
  wake.reset(new uint32_t[static_cast<size_t>(groups * 4 * kFlagStride)]());
  parts = allocate_floats(checked_size({int64_t{groups}, 2, members, part_floats}, "the exchange buffers"));
  for (int g = 0; g < groups; ++g) {
    this->groups.push_back({members, flags.get() + g * members * kFlagStride,
                            parts.get() + g * 2 * members * part_floats, part_floats,
                            wake.get() + g * 4 * kFlagStride});
  }
}

void check_tokens(const int64_t* tokens, int64_t count, int64_t classes, const std::string& name) {
  for (int64_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || tokens[i] >= classes) {
      refuse(name + " tokens must be in [0, " + std::to_string(classes) + "), got " +
             std::to_string(tokens[i]) + " at flat index " + std::to_string(i));
    }
  }
}

void check_generate(int64_t n, int64_t batch, uint32_t step0, const SamplingParams& params, bool has_logits) {
  if (!has_logits) refuse("generate() needs prefill() first (and again after a final generate())");
  fastwave::validate(params);
  require_range(n, 0, kMaxFloats, "n");
  checked_size({batch, n}, "the generated tokens");
  if (static_cast<uint64_t>(step0) + static_cast<uint64_t>(n) > (uint64_t{1} << 32)) {
    refuse("step0 + n must be <= 2**32: the Philox counter holds the step in 32 bits");
  }
}

StepJob prefill_job(const int64_t* prompt, int64_t length, int64_t start, float* logits_out) {
  StepJob job{};
  job.tokens = prompt + start;
  job.tokens_stride = length;
  job.count = length - start;
  job.position = static_cast<uint64_t>(start);
  job.need_logits_every_step = logits_out != nullptr;
  job.logits_out = logits_out;
  return job;
}

StepJob generate_job(int64_t n, uint64_t position, uint64_t seed, uint32_t step0, const SamplingParams& params,
                     bool final, int64_t* tokens_out) {
  StepJob job{};
  job.count = n;
  job.position = position;
  job.tokens_out = tokens_out;
  job.seed = seed;
  job.step0 = step0;
  job.params = params;
  job.final = final;
  return job;
}

std::unique_lock<std::mutex> claim(std::mutex& busy) {
  std::unique_lock<std::mutex> lock(busy, std::try_to_lock);
  if (!lock.owns_lock()) throw std::runtime_error("this engine is already running in another thread");
  return lock;
}

std::unique_ptr<SamplingScratch> make_sampling_scratch(int64_t classes) {
  auto scratch = std::make_unique<SamplingScratch>();
  const size_t n = static_cast<size_t>(classes);
  scratch->scaled.reserve(n);
  scratch->weights.reserve(n);
  scratch->kept.reserve(n);
  scratch->ranked.reserve(n);
  scratch->work.reserve(n);
  return scratch;
}

}  // namespace cpu
}  // namespace fastwave
