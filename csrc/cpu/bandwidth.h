// How fast this machine streams data the size of a model's weights: the ceiling a bandwidth-bound
// generation step runs into, measured rather than looked up (caches differ between machines and VMs).
#pragma once

#include <cstdint>
#include <string>

namespace fastwave {
namespace cpu {

// Each of `threads` threads reads its own buffer of bytes_per_thread repeatedly with the selected
// ISA's vector loads, for about `seconds`; returns the aggregate rate in bytes per second.
double read_bandwidth(int64_t bytes_per_thread, int threads, double seconds, const std::string& isa);

}  // namespace cpu
}  // namespace fastwave
