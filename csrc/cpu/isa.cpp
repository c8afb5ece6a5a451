#include "cpu/isa.h"

#include <cstdlib>
#include <stdexcept>

namespace fastwave {
namespace cpu {
namespace {

// __builtin_cpu_supports also checks that the OS saves the wider registers (XSAVE/XGETBV).
bool cpu_has(const std::string& name) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (name == "avx512vnni") return cpu_has("avx512") && __builtin_cpu_supports("avx512vnni");
  if (name == "avx512") {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  if (name == "avx2") {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi2");
  }
#endif
  return name == "generic";
}

std::vector<const IsaKernels*> compiled_variants() {
  return {
#ifdef FASTWAVE_HAVE_AVX512VNNI
      &avx512vnni::kernels,
#endif
#ifdef FASTWAVE_HAVE_AVX512
      &avx512::kernels,
#endif
#ifdef FASTWAVE_HAVE_AVX2
      &avx2::kernels,
#endif
      &generic::kernels,
  };
}

}  // namespace

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const IsaKernels* variant : compiled_variants()) {
    if (cpu_has(variant->name)) names.push_back(variant->name);
  }
  return names;
}

const IsaKernels& select_isa(const std::string& requested) {
  std::string name = requested;
  if (name == "auto") {
    const char* forced = std::getenv("FASTWAVE_ISA");
    name = forced != nullptr && *forced != '\0' ? forced : "auto";
  }
  const std::vector<std::string> supported = supported_isas();
  if (name == "auto") name = supported.front();
  for (const IsaKernels* variant : compiled_variants()) {
    if (variant->name == name && cpu_has(name)) return *variant;
  }
  std::string choices;
  for (const std::string& s : supported) choices += (choices.empty() ? "" : ", ") + s;
  throw std::invalid_argument("isa must be 'auto' or one this CPU and build support (" + choices +
                              "), got '" + name + "'" +
                              (requested == "auto" ? " from FASTWAVE_ISA" : ""));
}

}  // namespace cpu
}  // namespace fastwave
