// Threaded dequantize driver and its Python binding: validates sizes, splits rows over threads,
// converts to the requested output dtype.
#include "cpu/dequant.h"

#include <pybind11/pybind11.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "common/qtypes.h"
#include "cpu/cpu_features.h"
#include "cpu/dequant_args.h"
#include "cpu/dequant_kernels.h"
#include "cpu/error.h"
#include "cpu/threadpool.h"

namespace py = pybind11;

namespace pq {

namespace {
struct DequantEntry {
  DequantBlocksFn scalar = nullptr;
  DequantBlocksFn avx2 = nullptr;
};
DequantEntry* dequant_table() {
  static DequantEntry table[kMaxQType];
  return table;
}
}  // namespace

bool register_dequant_kernel(int qtype, DequantBlocksFn scalar, DequantBlocksFn avx2) {
  if (qtype < 0 || qtype >= kMaxQType) return false;
  dequant_table()[qtype] = {scalar, avx2};
  return true;
}

DequantBlocksFn dequant_kernel(int qtype) {
  if (qtype < 0 || qtype >= kMaxQType) return nullptr;
  const DequantEntry& e = dequant_table()[qtype];
  if (e.avx2 && active_isa() == Isa::Avx2) return e.avx2;
  return e.scalar;
}

bool has_dequantizer(int qtype) { return dequant_kernel(qtype) != nullptr; }

void dequant_rows(int qtype, const uint8_t* src, float* dst, int64_t nrows, int64_t ncols) {
  const QTypeGeometry g = qtype_geometry(qtype);
  const int64_t nb = ncols / g.block_size;
  DequantBlocksFn fn = dequant_kernel(qtype);
  fn(src, dst, nb * nrows);  // rows are contiguous in both src and dst
}

namespace {

enum class OutDtype { F32, F16, BF16 };

OutDtype parse_dtype(const std::string& s) {
  if (s == "float32") return OutDtype::F32;
  if (s == "float16") return OutDtype::F16;
  if (s == "bfloat16") return OutDtype::BF16;
  fail("dequantize: unsupported output dtype '", s, "' (float32, float16 or bfloat16)");
}

// dequantize(qtype, src_ptr, src_nbytes, dst_ptr, dst_nbytes, dst_dtype, rows, cols, nthreads)
void dequantize_py(int qtype, uintptr_t src_ptr, int64_t src_nbytes, uintptr_t dst_ptr, int64_t dst_nbytes,
               const std::string& dtype, int64_t rows, int64_t cols, int nthreads) {
  const QTypeGeometry g = qtype_geometry(qtype);
  PQ_CHECK(g.block_size > 0, "dequantize: unknown ggml type id ", qtype);
  DequantBlocksFn fn = dequant_kernel(qtype);
  PQ_CHECK(fn != nullptr, "dequantize: no dequantizer for ggml type id ", qtype);
  const OutDtype od = parse_dtype(dtype);
  const int64_t esize = od == OutDtype::F32 ? 4 : 2;
  const int64_t nb = check_dequant_args(g, rows, cols, src_nbytes, dst_nbytes, esize).blocks_per_row;
  if (rows == 0 || cols == 0) return;
  PQ_CHECK(src_ptr != 0 && dst_ptr != 0, "dequantize: null pointer");
  const uint8_t* src = reinterpret_cast<const uint8_t*>(src_ptr);

  // Work unit: a run of blocks small enough to stay in L1/L2 when converting to half types.
  const int64_t total_blocks = rows * nb;
  const int64_t chunk_blocks = std::max<int64_t>(1, 16384 / g.block_size);
  py::gil_scoped_release nogil;
  parallel_for(total_blocks, chunk_blocks, nthreads, [&](int64_t b0, int64_t b1) {
    if (od == OutDtype::F32) {
      float* dst = reinterpret_cast<float*>(dst_ptr) + b0 * g.block_size;
      fn(src + b0 * g.type_size, dst, b1 - b0);
      return;
    }
    std::vector<float> tmp((size_t)(chunk_blocks * g.block_size));
    uint16_t* dst = reinterpret_cast<uint16_t*>(dst_ptr);
    for (int64_t b = b0; b < b1; b += chunk_blocks) {
      const int64_t n = std::min(chunk_blocks, b1 - b);
      fn(src + b * g.type_size, tmp.data(), n);
      uint16_t* out = dst + b * g.block_size;
      const int64_t ne = n * g.block_size;
      // F16C / AVX2 converters give the same bits as the scalar ones, ~10x faster.
      const bool avx2 = active_isa() == Isa::Avx2;
      if (od == OutDtype::F16) {
        if (avx2) f32_to_f16_avx2(tmp.data(), out, ne);
        else for (int64_t i = 0; i < ne; ++i) out[i] = fp32_to_fp16(tmp[i]);
      } else {
        if (avx2) f32_to_bf16_avx2(tmp.data(), out, ne);
        else for (int64_t i = 0; i < ne; ++i) out[i] = fp32_to_bf16(tmp[i]);
      }
    }
  });
}

}  // namespace

void register_dequant_bindings(py::module_& m) {
  m.def("dequantize", &dequantize_py, py::arg("qtype"), py::arg("src_ptr"), py::arg("src_nbytes"), py::arg("dst_ptr"),
        py::arg("dst_nbytes"), py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("nthreads") = 0,
        "Dequantize rows x cols elements of a ggml type into float32/float16/bfloat16 (pointers + byte sizes).");
  m.def("has_dequantizer", &has_dequantizer, py::arg("qtype"));
}

}  // namespace pq
