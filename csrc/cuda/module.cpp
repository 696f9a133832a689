// pyquant._C_cuda: the CUDA kernels. Raw device pointers, byte sizes and the CUDA stream come in as
// integers (tensor.data_ptr(), nbytes, torch.cuda.current_stream().cuda_stream); every entry
// validates them in C++ before launching (see kernels.h).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime.h>

#include "cpu/error.h"
#include "cpu/py_error.h"
#include "cuda/kernels.h"

namespace py = pybind11;

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "pyquant CUDA kernels (GGUF dequantize, fused GEMV / GEMM for GGUF, int4, int8 and EXL2 weights)";
  pq::register_kernel_error();   // pq::Error -> pyquant.errors.KernelError

  m.def("device_count", [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }, "CUDA devices visible to this module's runtime (0 when there is no driver or GPU).");
  m.def("runtime_version", [] {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
  });

  m.def("has_dequantizer", &pq::cuda::has_dequantizer, py::arg("qtype"));
  m.def("dequant_types", &pq::cuda::dequant_types);
  m.def("dequant_geometry", &pq::cuda::dequant_geometry, "(ggml id, block size, bytes per block) per dequantizer");
  m.def("dequantize", &pq::cuda::dequantize, py::arg("qtype"), py::arg("src_ptr"), py::arg("src_nbytes"),
        py::arg("dst_ptr"), py::arg("dst_nbytes"), py::arg("dtype"), py::arg("rows"), py::arg("cols"),
        py::arg("stream") = 0,
        "Dequantize rows x cols elements of a ggml type on the GPU into float32/float16/bfloat16 (async on stream).");

  m.def("gemv_supports", &pq::cuda::gemv_supports, py::arg("qtype"));
  m.def("gguf_gemv", &pq::cuda::gguf_gemv, py::arg("qtype"), py::arg("w_ptr"), py::arg("w_nbytes"), py::arg("n"),
        py::arg("k"), py::arg("x_ptr"), py::arg("x_nbytes"), py::arg("x_dtype"), py::arg("m"), py::arg("y_ptr"),
        py::arg("y_nbytes"), py::arg("bias_ptr"), py::arg("bias_nbytes"), py::arg("stream") = 0,
        "y[m, n] = x[m, k] @ W[n, k].T (+ bias) with W in a GGUF block type: fused dequant GEMV.");
  m.def("int4_gemv", &pq::cuda::int4_gemv, py::arg("qw_ptr"), py::arg("qw_nbytes"), py::arg("scales_ptr"),
        py::arg("mins_ptr"), py::arg("sm_nbytes"), py::arg("group_size"), py::arg("n"), py::arg("k"),
        py::arg("x_ptr"), py::arg("x_nbytes"), py::arg("x_dtype"), py::arg("m"), py::arg("y_ptr"),
        py::arg("y_nbytes"), py::arg("bias_ptr"), py::arg("bias_nbytes"), py::arg("stream") = 0);
  m.def("int8_gemv", &pq::cuda::int8_gemv, py::arg("qw_ptr"), py::arg("qw_nbytes"), py::arg("scales_ptr"),
        py::arg("scales_nbytes"), py::arg("n"), py::arg("k"), py::arg("x_ptr"), py::arg("x_nbytes"),
        py::arg("x_dtype"), py::arg("m"), py::arg("y_ptr"), py::arg("y_nbytes"), py::arg("bias_ptr"),
        py::arg("bias_nbytes"), py::arg("stream") = 0);
  m.def("exl2_gemv", &pq::cuda::exl2_gemv, py::arg("w_ptr"), py::arg("w_nbytes"), py::arg("row_bytes"),
        py::arg("bits_ptr"), py::arg("bits_nbytes"), py::arg("off_ptr"), py::arg("off_nbytes"), py::arg("n"),
        py::arg("k"), py::arg("x_ptr"), py::arg("x_nbytes"), py::arg("x_dtype"), py::arg("m"), py::arg("y_ptr"),
        py::arg("y_nbytes"), py::arg("bias_ptr"), py::arg("bias_nbytes"), py::arg("stream") = 0,
        "y[m, n] = x[m, k] @ W[n, k].T (+ bias) with W in EXL2's own widths: fused dequant GEMV.");
  m.def("exl2_dequant", &pq::cuda::exl2_dequant, py::arg("w_ptr"), py::arg("w_nbytes"), py::arg("row_bytes"),
        py::arg("bits_ptr"), py::arg("bits_nbytes"), py::arg("off_ptr"), py::arg("off_nbytes"), py::arg("n"),
        py::arg("k"), py::arg("dst_ptr"), py::arg("dst_nbytes"), py::arg("dtype"), py::arg("stream") = 0);
  m.def("int4_dequant", &pq::cuda::int4_dequant, py::arg("qw_ptr"), py::arg("qw_nbytes"), py::arg("scales_ptr"),
        py::arg("mins_ptr"), py::arg("sm_nbytes"), py::arg("group_size"), py::arg("n"), py::arg("k"),
        py::arg("dst_ptr"), py::arg("dst_nbytes"), py::arg("dtype"), py::arg("stream") = 0);
  m.def("int8_dequant", &pq::cuda::int8_dequant, py::arg("qw_ptr"), py::arg("qw_nbytes"), py::arg("scales_ptr"),
        py::arg("scales_nbytes"), py::arg("n"), py::arg("k"), py::arg("dst_ptr"), py::arg("dst_nbytes"),
        py::arg("dtype"), py::arg("stream") = 0);
}
