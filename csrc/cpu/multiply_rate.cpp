#include "cpu/multiply_rate.h"

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cpu/int8_pack.h"
#include "cpu/isa.h"
#include "cpu/worker_pool.h"

namespace fastwave {
namespace cpu {

StoredProduct::StoredProduct(const float* w, int64_t rows, int64_t in, int64_t cols, WeightStorage storage,
                             int64_t block)
    : rows_(rows), in_(in), cols_(cols), storage_(storage) {
  switch (storage) {
    case WeightStorage::fp32:
      floats_ = allocate_floats(in * cols);
      std::memcpy(floats_.get(), w, static_cast<size_t>(in * cols) * sizeof(float));
      break;
    case WeightStorage::fp16:
      halves_ = allocate_halves(in * cols);
      to_half(w, in * cols, halves_.get(), "w");
      break;
    case WeightStorage::int8:
      bytes_ = allocate_bytes(in * cols);
      scales_ = allocate_floats(cols);
      pack_int8(w, MatrixBlocks{in, {{0, cols}}}, bytes_.get(), scales_.get());
      quantized_ = allocate_bytes(rows * in);
      row_scales_ = allocate_floats(2 * rows * (in / kBlock));  // per row and block: scale, then Σ x_q
      buffer_ = {reinterpret_cast<int8_t*>(quantized_.get()), in, row_scales_.get(),
                 reinterpret_cast<int32_t*>(row_scales_.get() + rows * (in / kBlock)), block};
      break;
  }
}

void StoredProduct::run(const IsaKernels& kernels, const float* x, float* y, int64_t repeats) const {
  const void* w = storage_ == WeightStorage::fp32   ? static_cast<const void*>(floats_.get())
                  : storage_ == WeightStorage::fp16 ? static_cast<const void*>(halves_.get())
                                                    : static_cast<const void*>(bytes_.get());
  kernels.multiply(storage_, x, rows_, in_, w, scales_.get(), cols_, buffer_, y, repeats);
}

double multiply_rate(const std::string& precision, int64_t rows, int64_t in, int64_t cols, int threads,
                     double seconds, const std::string& isa) {
  const WeightStorage storage = weight_storage(precision);
  require_range(rows, 1, 4096, "rows");
  require_range(in, kBlock, 1 << 16, "in");
  require_range(cols, kBlock, 1 << 16, "cols");
  if (in % kBlock != 0 || cols % kBlock != 0) refuse("in and cols must be multiples of 16");
  if (rows * in > (int64_t{1} << 26) || in * cols > (int64_t{1} << 26)) refuse("at most 2**26 elements per array");
  // A generation step's products are far smaller; this keeps one repeat well under a second.
  if (rows * in * cols > (int64_t{1} << 32)) refuse("at most 2**32 multiply-adds per product");
  require_range(threads, 1, kMaxThreads, "threads");
  if (!(seconds > 0.0 && seconds <= 60.0)) refuse("seconds must be in (0, 60]");
  const IsaKernels& kernels = select_isa(isa);
  std::vector<double> rates(threads);
  WorkerPool pool(threads);
  pool.run([&](int index) {
    // Small values of both signs, different per thread; every buffer the thread's own.
    std::vector<float> x(static_cast<size_t>(rows * in)), w(static_cast<size_t>(in * cols));
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7 + index) % 13) / 13.0f - 0.5f;
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 5 + index) % 11) / 11.0f - 0.5f;
    std::vector<float> y(static_cast<size_t>(rows * cols));
    const StoredProduct product(w.data(), rows, in, cols, storage);
    product.run(kernels, x.data(), y.data(), 2);  // warm-up: into the caches
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    int64_t done = 0;
    for (int64_t batch = 1;; batch *= 2) {  // double the work until it fills the time
      product.run(kernels, x.data(), y.data(), batch);
      done += batch;
      if (std::chrono::duration<double>(clock::now() - start).count() >= seconds) break;
    }
    rates[index] = static_cast<double>(done * rows * in * cols) /
                   std::chrono::duration<double>(clock::now() - start).count();
  });
  double total = 0.0;
  for (double rate : rates) total += rate;
  return total;
}

}  // namespace cpu
}  // namespace fastwave
