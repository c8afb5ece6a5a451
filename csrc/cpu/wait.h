// Blocking waits for the engines' threads: spin while the awaited thread is probably running, then
// sleep in the kernel so that a partner that was descheduled costs a wake-up, not a burned core.
//
// Plain functions defined once in wait.cpp (never inline: the per-ISA step code calls them, and an
// inline function in a shared header would give the linker several ISA copies; see step_job.h).
#pragma once

#include <cstdint>

namespace fastwave {
namespace cpu {

// Sleeps until *word may differ from `seen` (spurious returns allowed: callers re-check). A futex on
// Linux; elsewhere a yield.
void sleep_while_equal(const uint32_t* word, uint32_t seen);

// Wakes every thread sleeping on word (after the caller changed it).
void wake_all(uint32_t* word);

}  // namespace cpu
}  // namespace fastwave
