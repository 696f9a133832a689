// Python buffers the C++ side reads or writes through raw pointers, held alive by the object that
// points into them: a weight (_C.Weight), the token step (_C.LlmStep). Sizes come from the buffer
// itself (the buffer protocol), never from a caller's word.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/error.h"

namespace pq {

struct HeldBuffer {
  const uint8_t* ptr;
  int64_t nbytes;
};

// obj's memory (C-contiguous; writable when asked) as pointer + size; obj is appended to `owners`
// so that it lives as long as they do. `what` names it in the error ("LlmStep: qkv weight").
inline HeldBuffer hold(std::vector<pybind11::object>& owners, const pybind11::object& obj, const std::string& what,
                       bool writable) {
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0) {
    PyErr_Clear();
    fail(what, " must be a C-contiguous", writable ? ", writable" : "", " buffer (e.g. tensor.numpy()), got ",
         std::string(pybind11::str(pybind11::type::of(obj))));
  }
  const HeldBuffer b{static_cast<const uint8_t*>(view.buf), (int64_t)view.len};
  PyBuffer_Release(&view);
  owners.push_back(obj);
  return b;
}

}  // namespace pq
