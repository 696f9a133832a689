// Host entry points of the CUDA kernels (defined in the .cu files, bound in module.cpp). Every
// entry takes raw device pointers + byte sizes + the stream as integers, validates all of them
// and throws pq::Error on anything wrong, including a failed launch.
#pragma once
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace pq {
namespace cuda {

// ---- dequant.cu
bool has_dequantizer(int qtype);
std::vector<int> dequant_types();
std::vector<std::tuple<int, int, int>> dequant_geometry();  // (ggml id, block size, bytes per block)
void dequantize(int qtype, uintptr_t src_ptr, int64_t src_nbytes, uintptr_t dst_ptr, int64_t dst_nbytes,
            const std::string& dtype, int64_t rows, int64_t cols, uintptr_t stream);

// ---- gemv.cu (launch only; arguments validated by matmul.cpp)
bool gemv_supports(int qtype);

// ---- matmul.cpp: the Python-facing matmul / dequant entries (CPU contract's argument order,
// plus the stream). `path` picks the kernel: "gemv" (fused, small M) or "dequant" (decode the
// weights to x's dtype into `scratch`, which the caller then multiplies with torch / cuBLAS).
void gguf_gemv(int qtype, uintptr_t w_ptr, int64_t w_nbytes, int64_t n, int64_t k, uintptr_t x_ptr,
               int64_t x_nbytes, const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes,
               uintptr_t bias_ptr, int64_t bias_nbytes, uintptr_t stream);
void int4_gemv(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, uintptr_t mins_ptr, int64_t sm_nbytes,
               int64_t group_size, int64_t n, int64_t k, uintptr_t x_ptr, int64_t x_nbytes,
               const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr,
               int64_t bias_nbytes, uintptr_t stream);
void int8_gemv(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, int64_t scales_nbytes, int64_t n,
               int64_t k, uintptr_t x_ptr, int64_t x_nbytes, const std::string& x_dtype, int64_t m,
               uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr, int64_t bias_nbytes, uintptr_t stream);
// EXL2 in its own widths: w [n rows of row_bytes] (4-byte aligned), block_bits [k / 32] uint8 and
// block_off [k / 32 + 1] int32 (each block's byte offset in a row, then row_bytes) in device memory.
void exl2_gemv(uintptr_t w_ptr, int64_t w_nbytes, int64_t row_bytes, uintptr_t bits_ptr, int64_t bits_nbytes,
               uintptr_t off_ptr, int64_t off_nbytes, int64_t n, int64_t k, uintptr_t x_ptr, int64_t x_nbytes,
               const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr,
               int64_t bias_nbytes, uintptr_t stream);
void exl2_dequant(uintptr_t w_ptr, int64_t w_nbytes, int64_t row_bytes, uintptr_t bits_ptr, int64_t bits_nbytes,
                  uintptr_t off_ptr, int64_t off_nbytes, int64_t n, int64_t k, uintptr_t dst_ptr, int64_t dst_nbytes,
                  const std::string& dtype, uintptr_t stream);
// Dense dequantization of int4 / int8 weights to [n, k] float32/float16/bfloat16.
void int4_dequant(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, uintptr_t mins_ptr,
                  int64_t sm_nbytes, int64_t group_size, int64_t n, int64_t k, uintptr_t dst_ptr,
                  int64_t dst_nbytes, const std::string& dtype, uintptr_t stream);
void int8_dequant(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, int64_t scales_nbytes, int64_t n,
                  int64_t k, uintptr_t dst_ptr, int64_t dst_nbytes, const std::string& dtype, uintptr_t stream);

}  // namespace cuda
}  // namespace pq
