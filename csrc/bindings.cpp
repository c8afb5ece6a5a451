// pybind11 bindings for fastwave._native. Takes numpy arrays and raw device pointers; never links
// libtorch. Every argument is validated here, before any pointer is touched.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
  m.doc() = "fastwave native core: Philox RNG, sampling policies, generation engines";
#ifdef FASTWAVE_WITH_CUDA
  m.attr("cuda_compiled") = true;
#else
  m.attr("cuda_compiled") = false;
#endif
}
