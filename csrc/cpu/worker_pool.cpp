#include "cpu/worker_pool.h"

#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "cpu/wait.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace fastwave {
namespace cpu {

WorkerPool::WorkerPool(int size) {
  try {
    for (int i = 1; i < size; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::exception& error) {
    // The destructor will not run for a half-built pool: stop and join the threads already started
    // here, before their mutex and condition variable go away.
    stop();
    throw std::runtime_error("could not start " + std::to_string(size - 1) + " worker threads (started " +
                             std::to_string(workers_.size()) + "): " + error.what());
  }
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
}

// work(index), keeping the first exception any thread raises (an exception leaving a worker thread
// would end the process) for run() to rethrow once every thread is done.
void WorkerPool::run_one(int index) {
  try {
    (*work_)(index);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void WorkerPool::run(const std::function<void(int)>& work) {
  error_ = nullptr;
  work_ = &work;
  if (workers_.empty()) {
    run_one(0);
    rethrow();
    return;
  }
  __atomic_store_n(&pending_, static_cast<uint32_t>(workers_.size()), __ATOMIC_RELAXED);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++generation_;
  }
  wake_.notify_all();
  run_one(0);
  wait_for_workers();
  rethrow();
}

void WorkerPool::rethrow() {
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void WorkerPool::wait_for_workers() {
  // The workers usually finish within microseconds of the caller: spin, then sleep until the last
  // one is done (a busy machine may have descheduled it).
  for (int spins = 0; spins < 4096; ++spins) {
    if (__atomic_load_n(&pending_, __ATOMIC_ACQUIRE) == 0) return;
  }
  for (uint32_t left; (left = __atomic_load_n(&pending_, __ATOMIC_ACQUIRE)) != 0;) {
    sleep_while_equal(&pending_, left);
  }
}

void WorkerPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    run_one(index);
    if (__atomic_sub_fetch(&pending_, 1u, __ATOMIC_ACQ_REL) == 0) wake_all(&pending_);
  }
}

int usable_cpus() {
#if defined(__linux__)
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) > 0) return CPU_COUNT(&allowed);
#endif
  const unsigned logical = std::thread::hardware_concurrency();
  return logical > 0 ? static_cast<int>(logical) : 1;
}

int physical_cores() {
  const unsigned logical = std::thread::hardware_concurrency();
#if defined(__linux__)
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    std::set<std::pair<std::string, std::string>> cores;  // (package, core id)
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &allowed)) continue;
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream package(base + "physical_package_id"), core(base + "core_id");
      std::string package_id, core_id;
      if (!(package >> package_id) || !(core >> core_id)) return CPU_COUNT(&allowed);  // no topology
      cores.insert({package_id, core_id});
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
  }
#endif
  return logical > 0 ? static_cast<int>(logical) : 1;
}

}  // namespace cpu
}  // namespace fastwave
