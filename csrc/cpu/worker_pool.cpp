#include "cpu/worker_pool.h"

#include <fstream>
#include <set>
#include <string>
#include <utility>

#include "cpu/wait.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace fastwave {
namespace cpu {

WorkerPool::WorkerPool(int size) {
  for (int i = 1; i < size; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void WorkerPool::run(const std::function<void(int)>& work) {
  if (workers_.empty()) {
    work(0);
    return;
  }
  __atomic_store_n(&pending_, static_cast<uint32_t>(workers_.size()), __ATOMIC_RELAXED);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    work_ = &work;
    ++generation_;
  }
  wake_.notify_all();
  work(0);
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
    const std::function<void(int)>* work = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      work = work_;
    }
    (*work)(index);
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
