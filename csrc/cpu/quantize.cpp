// Threaded quantize driver and its Python binding:
//   _C.quantize(qtype, src_ptr, src_nbytes, rows, cols, dst_ptr, dst_nbytes, nthreads=0)
// src: float32 [rows, cols] contiguous; dst: rows * row_bytes(qtype, cols) bytes.
// Output bytes equal llama.cpp's ggml_quantize_chunk(type, src, dst, 0, rows, cols, NULL).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>

#include "common/qtypes.h"
#include "cpu/cpu_features.h"
#include "cpu/error.h"
#include "cpu/quantize_common.h"
#include "cpu/threadpool.h"

namespace py = pybind11;

namespace pq {

namespace {

QuantizeBlocksFn avx2_quantizer_for(int qtype) {
#if !defined(PYQUANT_HAVE_AVX2_BUILD)
  (void)qtype;
  return nullptr;  // non-x86 build: the AVX2 files compile to nothing
#else
  switch (static_cast<QType>(qtype)) {
    case QType::Q4_0: return quantize_blocks_q4_0_avx2;
    case QType::Q4_1: return quantize_blocks_q4_1_avx2;
    case QType::Q5_0: return quantize_blocks_q5_0_avx2;
    case QType::Q5_1: return quantize_blocks_q5_1_avx2;
    case QType::Q8_0: return quantize_blocks_q8_0_avx2;
    case QType::Q2_K: return quantize_blocks_q2_k_avx2;
    case QType::Q3_K: return quantize_blocks_q3_k_avx2;
    case QType::Q4_K: return quantize_blocks_q4_k_avx2;
    case QType::Q5_K: return quantize_blocks_q5_k_avx2;
    case QType::Q6_K: return quantize_blocks_q6_k_avx2;
    case QType::IQ4_NL: return quantize_blocks_iq4_nl_avx2;
    case QType::IQ4_XS: return quantize_blocks_iq4_xs_avx2;
    default: return nullptr;
  }
#endif
}

QuantizeBlocksFn quantizer_for(int qtype) {
  if (active_isa() == Isa::Avx2)
    if (QuantizeBlocksFn f = avx2_quantizer_for(qtype)) return f;
  switch (static_cast<QType>(qtype)) {
    case QType::Q4_0: return quantize_blocks_q4_0;
    case QType::Q4_1: return quantize_blocks_q4_1;
    case QType::Q5_0: return quantize_blocks_q5_0;
    case QType::Q5_1: return quantize_blocks_q5_1;
    case QType::Q8_0: return quantize_blocks_q8_0;
    case QType::Q2_K: return quantize_blocks_q2_k;
    case QType::Q3_K: return quantize_blocks_q3_k;
    case QType::Q4_K: return quantize_blocks_q4_k;
    case QType::Q5_K: return quantize_blocks_q5_k;
    case QType::Q6_K: return quantize_blocks_q6_k;
    case QType::IQ4_NL: return quantize_blocks_iq4_nl;
    case QType::IQ4_XS: return quantize_blocks_iq4_xs;
    default: return nullptr;
  }
}

void quantize_py(int qtype, uintptr_t src_ptr, int64_t src_nbytes, int64_t rows, int64_t cols, uintptr_t dst_ptr,
                 int64_t dst_nbytes, int nthreads) {
  QuantizeBlocksFn fn = (qtype >= 0 && qtype < kMaxQType) ? quantizer_for(qtype) : nullptr;
  PQ_CHECK(fn != nullptr, "quantize: no quantizer for ggml type id ", qtype,
           " (supported: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS)");
  const QTypeGeometry g = qtype_geometry(qtype);
  PQ_CHECK(rows >= 0 && cols >= 0, "quantize: negative shape (", rows, ", ", cols, ")");
  PQ_CHECK(cols % g.block_size == 0, "quantize: row length ", cols, " is not a multiple of the block size ",
           g.block_size);
  const int64_t nb = cols / g.block_size;
  PQ_CHECK(cols == 0 || rows <= INT64_MAX / cols / 4, "quantize: shape (", rows, ", ", cols, ") overflows");
  PQ_CHECK(src_nbytes >= rows * cols * 4, "quantize: source has ", src_nbytes, " bytes, float32 (", rows, ", ",
           cols, ") needs ", rows * cols * 4);
  const int64_t need_dst = rows * nb * g.type_size;  // < rows*cols*4: type_size <= 4*block_size here
  PQ_CHECK(dst_nbytes >= need_dst, "quantize: destination has ", dst_nbytes, " bytes, needs ", need_dst);
  if (rows == 0 || cols == 0) return;
  PQ_CHECK(src_ptr != 0 && dst_ptr != 0, "quantize: null pointer");
  const float* src = reinterpret_cast<const float*>(src_ptr);
  uint8_t* dst = reinterpret_cast<uint8_t*>(dst_ptr);

  // Blocks are independent, so split the flat block range (not rows: a single long row, e.g.
  // an embedding transposed, still uses every thread). ~8K elements per work unit keeps the
  // pool's per-range overhead negligible next to k-quant search costs (~1 us per 256 values).
  const int64_t total = rows * nb;
  const int64_t grain = std::max<int64_t>(1, 8192 / g.block_size);
  py::gil_scoped_release nogil;
  parallel_for(total, grain, nthreads, [&](int64_t b0, int64_t b1) {
    fn(src + b0 * g.block_size, dst + b0 * g.type_size, b1 - b0);
  });
}

}  // namespace

void register_quantize_bindings(py::module_& m) {
  m.def("quantize", &quantize_py, py::arg("qtype"), py::arg("src_ptr"), py::arg("src_nbytes"), py::arg("rows"),
        py::arg("cols"), py::arg("dst_ptr"), py::arg("dst_nbytes"), py::arg("nthreads") = 0,
        "Quantize float32 [rows, cols] (pointer + byte size) into ggml blocks, byte-identical to "
        "llama.cpp's ggml_quantize_chunk without an importance matrix.");
  m.def("has_quantizer", [](int qtype) { return qtype >= 0 && qtype < kMaxQType && quantizer_for(qtype); },
        py::arg("qtype"));
}

}  // namespace pq
