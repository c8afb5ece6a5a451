// A fixed team of threads for one engine: run(work) calls work(i) on threads 0..size-1 (0 is the
// caller) and returns when all are done. Workers sleep between calls; inside a call the engine's
// threads synchronise among themselves (GroupExchange), not through the pool.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fastwave {
namespace cpu {

class WorkerPool {
 public:
  explicit WorkerPool(int size);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Rethrows the first exception a thread's work(i) raised, after every thread is done.
  void run(const std::function<void(int)>& work);

 private:
  void worker_loop(int index);
  void run_one(int index);
  void wait_for_workers();
  void rethrow();
  void stop();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(int)>* work_ = nullptr;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  uint32_t pending_ = 0;  // workers still running the current call (__atomic; a futex word)
  std::exception_ptr error_;
};

// Physical cores this process may run on (hyper-threads share one core's vector units, so they add
// little to a loop that is bound by them); at least 1.
int physical_cores();

// Logical CPUs this process may run on (its affinity mask); at least 1. fastwave's engine wrappers
// never ask for more threads than this: a thread beyond it only waits for a core, and at every
// exchange the others wait for it. (The engines themselves take up to kMaxThreads, so tests can
// split work more ways than the machine has cores.)
int usable_cpus();

}  // namespace cpu
}  // namespace fastwave
