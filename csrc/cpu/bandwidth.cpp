#include "cpu/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cpu/isa.h"
#include "cpu/worker_pool.h"

namespace fastwave {
namespace cpu {

double read_bandwidth(int64_t bytes_per_thread, int threads, double seconds, const std::string& isa) {
  if (bytes_per_thread < 1024 || bytes_per_thread > (int64_t{1} << 34)) {
    throw std::invalid_argument("bytes_per_thread must be in [1 KiB, 16 GiB], got " +
                                std::to_string(bytes_per_thread));
  }
  if (threads < 1 || threads > 1024) throw std::invalid_argument("threads must be in [1, 1024]");
  if (!(seconds > 0.0 && seconds <= 60.0)) throw std::invalid_argument("seconds must be in (0, 60]");
  const IsaKernels& kernels = select_isa(isa);
  const int64_t floats = bytes_per_thread / 64 * 16;
  std::vector<double> elapsed(threads);
  std::vector<int64_t> repeats(threads);
  std::vector<float> sinks(threads);
  WorkerPool pool(threads);
  pool.run([&](int index) {
    std::vector<float> data(static_cast<size_t>(floats), 1.0f);  // touched by the thread that reads it
    sinks[index] = kernels.read_floats(data.data(), floats, 2);  // warm-up: into the caches
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    int64_t done = 0;
    for (int64_t batch = 1;; batch *= 2) {  // double the work until it fills the time
      sinks[index] += kernels.read_floats(data.data(), floats, batch);
      done += batch;
      if (std::chrono::duration<double>(clock::now() - start).count() >= seconds) break;
    }
    elapsed[index] = std::chrono::duration<double>(clock::now() - start).count();
    repeats[index] = done;
  });
  double total = 0.0;
  for (int i = 0; i < threads; ++i) total += static_cast<double>(repeats[i] * floats * 4) / elapsed[i];
  if (sinks[0] < 0.0f) throw std::logic_error("unreachable: the sum of ones is positive");
  return total;
}

}  // namespace cpu
}  // namespace fastwave
