// Host-side helpers shared by the CUDA kernels' launchers: error checks that turn CUDA failures
// into pq::Error (-> pyquant.errors.KernelError), and validation of the raw device pointers that
// Python hands over (they come in as integers and are trusted for nothing).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/error.h"

namespace pq {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail(what, ": CUDA error ", (int)err, " (", cudaGetErrorName(err), "): ",
                               cudaGetErrorString(err));
}

// After a launch: a bad configuration shows up here at once; faults inside the kernel surface at
// the next synchronising call (torch reports those).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// `ptr .. ptr+nbytes` must be device memory of the current device (or managed memory). A host
// pointer handed to a kernel would be an illegal address that poisons the whole CUDA context, so
// it is rejected here with a message instead.
inline void check_device_ptr(uintptr_t ptr, int64_t nbytes, const char* what) {
  if (nbytes == 0) return;
  PQ_CHECK(ptr != 0, what, ": null device pointer");
  cudaPointerAttributes attr{};
  cudaError_t err = cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr));
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later launches are not blamed
    fail(what, ": not a CUDA pointer (", cudaGetErrorString(err), ")");
  }
  PQ_CHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged, what,
           ": pointer is not device memory (memory type ", (int)attr.type, ")");
  int dev = -1;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  PQ_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == dev, what, ": tensor is on cuda:", attr.device,
           " but the current device is cuda:", dev);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The conversions every kernel's output goes through (x's dtype).
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };

}  // namespace cuda
}  // namespace pq
