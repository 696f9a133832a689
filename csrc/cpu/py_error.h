// pq::Error -> pyquant.errors.KernelError (a PyquantError and a ValueError) for a pybind11 module:
// both extensions (_C, _C_cuda) register it once at import.
#pragma once

#include <pybind11/pybind11.h>

#include "cpu/error.h"

namespace pq {

inline void register_kernel_error() {
  static pybind11::object kernel_error = pybind11::module_::import("pyquant.errors").attr("KernelError");
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(kernel_error.ptr(), e.what());
    }
  });
}

}  // namespace pq
