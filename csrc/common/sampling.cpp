#include "common/sampling.h"

#include "common/philox.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace fastwave {

void validate(const SamplingParams& params) {
  std::ostringstream message;
  if (!(std::isfinite(params.temperature) && params.temperature >= 0.0)) {
    message << "temperature must be finite and >= 0 (0 = greedy), got " << params.temperature;
  } else if (params.top_k < 0) {
    message << "top_k must be >= 0 (0 = off), got " << params.top_k;
  } else if (!(params.top_p > 0.0 && params.top_p <= 1.0)) {  // also rejects NaN
    message << "top_p must be in (0, 1] (1 = off), got " << params.top_p;
  } else {
    return;
  }
  throw std::invalid_argument(message.str());
}

namespace {

int64_t argmax_lowest_index(const float* logits, int64_t num_classes) {
  int64_t best = 0;
  for (int64_t i = 1; i < num_classes; ++i) {
    if (logits[i] > logits[best]) best = i;  // strict: an equal later value never wins
  }
  return best;
}

// Value descending, lower index first on ties: the order both top-k and top-p rank by. A strict
// total order, so std::sort / nth_element give what a stable sort would, without its allocation.
bool ranks_before(const RankedClass& a, const RankedClass& b) {
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

void rank_kept(const double* values, const std::vector<int64_t>& kept,
               std::vector<RankedClass>& ranked) {
  ranked.clear();
  for (int64_t i : kept) ranked.push_back({values[i], i});
}

// Keeps the k classes of largest z; `kept` holds every class on entry, ascending order on exit.
void keep_top_k(const double* scaled, int64_t k, std::vector<int64_t>& kept,
                std::vector<RankedClass>& ranked) {
  rank_kept(scaled, kept, ranked);
  std::nth_element(ranked.begin(), ranked.begin() + k, ranked.end(), ranks_before);
  kept.clear();
  for (int64_t j = 0; j < k; ++j) kept.push_back(ranked[static_cast<size_t>(j)].index);
  std::sort(kept.begin(), kept.end());
}

// Keeps the smallest heaviest-first prefix of `kept` whose running sum reaches p * (its total).
void keep_top_p(const double* weights, double top_p, std::vector<int64_t>& kept,
                std::vector<RankedClass>& ranked) {
  rank_kept(weights, kept, ranked);
  std::sort(ranked.begin(), ranked.end(), ranks_before);
  double total = 0.0;
  for (const RankedClass& c : ranked) total += c.value;
  const double target = top_p * total;
  double running = 0.0;
  kept.clear();
  for (const RankedClass& c : ranked) {
    running += c.value;
    kept.push_back(c.index);
    if (running >= target) break;
  }
  std::sort(kept.begin(), kept.end());
}

// Inverse-CDF draw over the kept classes in ascending index order. `running` (room for every class)
// receives the left-to-right running sums, so the search re-adds nothing: the same bits as summing
// twice.
int64_t draw_kept(const double* weights, const std::vector<int64_t>& kept, float u, double* running) {
  const size_t count = kept.size();
  double sum = 0.0;
  for (size_t j = 0; j < count; ++j) running[j] = sum += weights[kept[j]];
  const double threshold = static_cast<double>(u) * sum;
  for (size_t j = 0; j < count; ++j) {
    if (running[j] > threshold) return kept[j];
  }
  return kept.back();
}

// The largest of z[i] over the kept classes, in four running maxima: the max of finite values does
// not depend on the order, except that a tie of 0.0 and -0.0 may pick either, and then z - m differs
// at most in the sign of a zero, which exp maps to 1 either way.
double max_kept(const double* z, const std::vector<int64_t>& kept) {
  const size_t count = kept.size();
  double best[4] = {z[kept[0]], z[kept[0]], z[kept[0]], z[kept[0]]};
  size_t j = 0;
  for (; j + 4 <= count; j += 4) {
    for (size_t k = 0; k < 4; ++k) best[k] = std::max(best[k], z[kept[j + k]]);
  }
  for (; j < count; ++j) best[0] = std::max(best[0], z[kept[j]]);
  return std::max(std::max(best[0], best[1]), std::max(best[2], best[3]));
}

void exp_with_libm(double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

}  // namespace

float sampling_uniform(uint64_t seed, uint32_t step, uint32_t stream) {
  return philox_uniform(seed, step, stream);
}

int64_t sample_token(const float* logits, int64_t num_classes, float u,
                     const SamplingParams& params, SamplingScratch& scratch, ExpInPlace exp_in_place) {
  if (params.greedy()) return argmax_lowest_index(logits, num_classes);

  const size_t n = static_cast<size_t>(num_classes);
  scratch.scaled.resize(n);
  scratch.weights.resize(n);
  scratch.kept.resize(n);
  scratch.work.resize(n);
  double* scaled = scratch.scaled.data();
  double* weights = scratch.weights.data();
  double* work = scratch.work.data();
  for (size_t i = 0; i < n; ++i) scaled[i] = static_cast<double>(logits[i]);
  std::iota(scratch.kept.begin(), scratch.kept.end(), int64_t{0});

  if (params.top_k > 0 && params.top_k < num_classes) {
    keep_top_k(scaled, params.top_k, scratch.kept, scratch.ranked);
  }

  // Subtract before dividing: (z - m) / T is 0 for the max and -inf or finite otherwise, so a tiny
  // temperature degrades to greedy instead of overflowing into inf - inf = NaN. x / 1 is x, so the
  // common temperature 1 skips the divisions.
  const double top = max_kept(scaled, scratch.kept);
  const size_t count = scratch.kept.size();
  const int64_t* kept = scratch.kept.data();
  for (size_t j = 0; j < count; ++j) work[j] = scaled[kept[j]] - top;
  if (params.temperature != 1.0) {
    for (size_t j = 0; j < count; ++j) work[j] /= params.temperature;
  }
  (exp_in_place != nullptr ? exp_in_place : exp_with_libm)(work, static_cast<int64_t>(count));
  for (size_t j = 0; j < count; ++j) weights[kept[j]] = work[j];

  if (params.top_p < 1.0) keep_top_p(weights, params.top_p, scratch.kept, scratch.ranked);
  return draw_kept(weights, scratch.kept, u, work);
}

}  // namespace fastwave
