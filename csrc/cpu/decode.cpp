// Threaded decode driver and its Python binding: validates sizes, splits rows over threads,
// converts to the requested output dtype.
#include "cpu/decode.h"

#include <pybind11/pybind11.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "common/qtypes.h"
#include "cpu/cpu_features.h"
#include "cpu/decode_kernels.h"
#include "cpu/error.h"
#include "cpu/threadpool.h"

namespace py = pybind11;

namespace pq {

namespace {
struct DecodeEntry {
  DecodeBlocksFn scalar = nullptr;
  DecodeBlocksFn avx2 = nullptr;
};
DecodeEntry* decode_table() {
  static DecodeEntry table[kMaxQType];
  return table;
}
}  // namespace

bool register_decode_kernel(int qtype, DecodeBlocksFn scalar, DecodeBlocksFn avx2) {
  if (qtype < 0 || qtype >= kMaxQType) return false;
  decode_table()[qtype] = {scalar, avx2};
  return true;
}

DecodeBlocksFn decode_kernel(int qtype) {
  if (qtype < 0 || qtype >= kMaxQType) return nullptr;
  const DecodeEntry& e = decode_table()[qtype];
  if (e.avx2 && active_isa() == Isa::Avx2) return e.avx2;
  return e.scalar;
}

bool has_decoder(int qtype) { return decode_kernel(qtype) != nullptr; }

void decode_rows(int qtype, const uint8_t* src, float* dst, int64_t nrows, int64_t ncols) {
  const QTypeGeometry g = qtype_geometry(qtype);
  const int64_t nb = ncols / g.block_size;
  DecodeBlocksFn fn = decode_kernel(qtype);
  fn(src, dst, nb * nrows);  // rows are contiguous in both src and dst
}

namespace {

enum class OutDtype { F32, F16, BF16 };

OutDtype parse_dtype(const std::string& s) {
  if (s == "float32") return OutDtype::F32;
  if (s == "float16") return OutDtype::F16;
  if (s == "bfloat16") return OutDtype::BF16;
  fail("decode: unsupported output dtype '", s, "' (float32, float16 or bfloat16)");
}

// decode(qtype, src_ptr, src_nbytes, dst_ptr, dst_nbytes, dst_dtype, rows, cols, nthreads)
void decode_py(int qtype, uintptr_t src_ptr, int64_t src_nbytes, uintptr_t dst_ptr, int64_t dst_nbytes,
               const std::string& dtype, int64_t rows, int64_t cols, int nthreads) {
  const QTypeGeometry g = qtype_geometry(qtype);
  PQ_CHECK(g.block_size > 0, "decode: unknown ggml type id ", qtype);
  DecodeBlocksFn fn = decode_kernel(qtype);
  PQ_CHECK(fn != nullptr, "decode: no decoder for ggml type id ", qtype);
  PQ_CHECK(rows >= 0 && cols >= 0, "decode: negative shape (", rows, ", ", cols, ")");
  PQ_CHECK(cols % g.block_size == 0, "decode: row length ", cols, " is not a multiple of the block size ",
           g.block_size);
  const int64_t nb = cols / g.block_size;
  // Overflow-safe size arithmetic: a forged shape must not wrap around.
  PQ_CHECK(nb == 0 || rows <= INT64_MAX / nb / g.type_size, "decode: shape (", rows, ", ", cols, ") overflows");
  const int64_t need_src = rows * nb * g.type_size;
  PQ_CHECK(src_nbytes >= need_src, "decode: source has ", src_nbytes, " bytes, shape (", rows, ", ", cols,
           ") needs ", need_src);
  const OutDtype od = parse_dtype(dtype);
  const int64_t esize = od == OutDtype::F32 ? 4 : 2;
  PQ_CHECK(cols == 0 || rows <= INT64_MAX / cols / esize, "decode: output shape overflows");
  PQ_CHECK(dst_nbytes >= rows * cols * esize, "decode: destination has ", dst_nbytes, " bytes, needs ",
           rows * cols * esize);
  if (rows == 0 || cols == 0) return;
  PQ_CHECK(src_ptr != 0 && dst_ptr != 0, "decode: null pointer");
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

void register_decode_bindings(py::module_& m) {
  m.def("decode", &decode_py, py::arg("qtype"), py::arg("src_ptr"), py::arg("src_nbytes"), py::arg("dst_ptr"),
        py::arg("dst_nbytes"), py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("nthreads") = 0,
        "Decode rows x cols elements of a ggml type into float32/float16/bfloat16 (pointers + byte sizes).");
  m.def("has_decoder", &has_decoder, py::arg("qtype"));
}

}  // namespace pq
