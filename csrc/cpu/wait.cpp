#include "cpu/wait.h"

#include <climits>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fastwave {
namespace cpu {

void sleep_while_equal(const uint32_t* word, uint32_t seen) {
#if defined(__linux__)
  // Private futex: the word lives in this process. Returns at once if *word != seen (EAGAIN), on a
  // wake-up or a signal (EINTR); the caller re-checks in every case.
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
#else
  (void)word;
  (void)seen;
  std::this_thread::yield();
#endif
}

void wake_all(uint32_t* word) {
#if defined(__linux__)
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

}  // namespace cpu
}  // namespace fastwave
