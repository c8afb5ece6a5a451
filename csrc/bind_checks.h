// Argument checks shared by the pybind11 binding files: each names the argument and what was
// expected, and raises TypeError (wrong type or dtype) or ValueError (wrong shape or value).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace fastwave {
namespace bind {

namespace py = pybind11;

constexpr uint64_t kMaxUint32 = 0xFFFFFFFFull;
constexpr uint64_t kMaxUint64 = std::numeric_limits<uint64_t>::max();

inline std::string type_name(py::handle value) { return py::str(py::type::of(value).attr("__name__")); }

inline std::string shape_text(const py::array& array) {
  std::string text = "(";
  for (py::ssize_t d = 0; d < array.ndim(); ++d) {
    text += std::to_string(array.shape(d)) + (array.ndim() == 1 || d + 1 < array.ndim() ? "," : "");
  }
  return text + ")";
}

// A Python integer (anything with __index__, so not a float) in [0, max]; `range` describes it.
inline uint64_t checked_uint(py::handle value, const std::string& name, uint64_t max,
                      const std::string& range) {
  PyObject* index = PyNumber_Index(value.ptr());
  if (index == nullptr) {
    PyErr_Clear();
    throw py::type_error(name + " must be an integer, got " + type_name(value));
  }
  const py::object owned = py::reinterpret_steal<py::object>(index);
  const unsigned long long result = PyLong_AsUnsignedLongLong(index);
  const bool out_of_range = (result == static_cast<unsigned long long>(-1) && PyErr_Occurred());
  if (out_of_range) PyErr_Clear();  // negative or >= 2^64
  if (out_of_range || result > max) {
    throw py::value_error(name + " must be an integer in " + range + ", got " +
                          std::string(py::str(owned)));
  }
  return result;
}

// A numpy array of exactly dtype T: no silent casts.
template <typename T>
void require_dtype(py::handle value, const std::string& name, const char* dtype_name) {
  if (!py::isinstance<py::array>(value)) {
    throw py::type_error(name + " must be a numpy array of dtype " + dtype_name + ", got " +
                         type_name(value));
  }
  if (!py::array_t<T>::check_(value)) {
    throw py::type_error(name + " must have dtype " + dtype_name + ", got " +
                         std::string(py::str(py::reinterpret_borrow<py::array>(value).dtype())));
  }
}

// A new C-contiguous copy of `array` that no other thread can reach, in numpy's aligned memory: for
// inputs read with the GIL released, which another Python thread could otherwise rewrite or resize
// (freeing the memory) while the native code reads them.
template <typename T>
py::array_t<T, py::array::c_style> private_copy(const py::array_t<T, py::array::c_style>& array) {
  py::array_t<T, py::array::c_style> copy(std::vector<py::ssize_t>(array.shape(), array.shape() + array.ndim()));
  if (array.size() > 0) std::memcpy(copy.mutable_data(), array.data(), static_cast<size_t>(array.nbytes()));
  return copy;
}

// `array` itself when its data is aligned for T, else an aligned copy: a contiguous view at an odd
// offset (np.frombuffer(buf, offset=1)) would make every T load a misaligned one (undefined
// behaviour; UBSan reports it).
template <typename T>
py::array_t<T, py::array::c_style> aligned(py::array_t<T, py::array::c_style> array) {
  if (reinterpret_cast<uintptr_t>(array.data()) % alignof(T) == 0) return array;
  return private_copy(array);
}

// A numpy array of exactly dtype T as an aligned C-contiguous array: the same memory when it already
// is one, otherwise a copy (the caller's array is never written).
template <typename T>
py::array_t<T, py::array::c_style> checked_array(py::handle value, const std::string& name,
                                                 const char* dtype_name) {
  require_dtype<T>(value, name, dtype_name);
  return aligned(py::array_t<T, py::array::c_style>::ensure(value));
}

inline void require_ndim(const py::array& array, const std::string& name, py::ssize_t ndim,
                  const char* layout) {
  if (array.ndim() != ndim) {
    throw py::value_error(name + " must have shape " + layout + ", got shape " + shape_text(array));
  }
}

// Like checked_array, but a non-contiguous array is refused instead of copied: for inputs whose
// layout is part of the contract (exported weights, engine inputs), or too large to copy quietly.
template <typename T>
py::array_t<T, py::array::c_style> contiguous_array(py::handle value, const std::string& name,
                                                    const char* dtype_name) {
  require_dtype<T>(value, name, dtype_name);
  if (!(py::reinterpret_borrow<py::array>(value).flags() & py::array::c_style)) {
    throw py::value_error(name + " must be C-contiguous (use np.ascontiguousarray)");
  }
  return aligned(py::array_t<T, py::array::c_style>::ensure(value));
}

}  // namespace bind
}  // namespace fastwave
