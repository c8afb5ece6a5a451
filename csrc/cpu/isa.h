// Run-time choice of the instruction set: csrc/cpu/kernels/*.cpp are compiled once per ISA (CMake
// adds -march flags and a namespace per variant) and the best one the CPU and OS support is picked
// when an engine is built, so one wheel runs on any x86-64 machine and still builds on aarch64.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/isa_kernels.h"

namespace fastwave {
namespace cpu {

// The variants compiled in and supported by this CPU, best first ("generic" is always last).
std::vector<std::string> supported_isas();

// "auto" -> the best supported variant; a name -> that variant, or std::invalid_argument naming
// the supported ones. The environment variable FASTWAVE_ISA, when set, replaces "auto".
const IsaKernels& select_isa(const std::string& name);

}  // namespace cpu
}  // namespace fastwave
