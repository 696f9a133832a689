// Portable kernels over unpacked chunks: the reference the AVX2 path is tested against, and
// the fallback on CPUs without AVX2 (or with PYQUANT_FORCE_SCALAR=1).
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/fp16.h"
#include "common/qtypes.h"
#include "cpu/act_quant.h"
#include "cpu/cpu_features.h"
#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

namespace {

void dot_x32(const UChunk* u, int64_t nch, const XQRow* x, int mr, float* out) {
  for (int i = 0; i < mr; ++i) {
    float acc = 0.f;
    for (int64_t c = 0; c < nch; ++c) {
      const int8_t* xq = x[i].q + c * kChunk;
      for (int j = 0; j < 8; ++j) {
        int32_t isum = 0;
        for (int e = 0; e < 32; ++e) isum += (int32_t)u[c].q[32 * j + e] * xq[32 * j + e];
        acc += u[c].a[j] * x[i].d[8 * c + j] * (float)isum + u[c].b[j] * x[i].s[8 * c + j];
      }
    }
    out[i] = acc;
  }
}

void dot_x256(const UChunk* u, int64_t nch, const XQRow* x, int mr, float* out) {
  for (int i = 0; i < mr; ++i) {
    float acc = 0.f;
    for (int64_t c = 0; c < nch; ++c) {
      const int8_t* xq = x[i].q + c * kChunk;
      int32_t isum = 0, msum = 0;
      for (int g = 0; g < 16; ++g) {
        int32_t gs = 0;
        for (int e = 0; e < 16; ++e) gs += (int32_t)u[c].q[16 * g + e] * xq[16 * g + e];
        isum += gs * u[c].sc[g];
        msum += (int32_t)u[c].mn[g] * x[i].bsum[16 * c + g];
      }
      acc += x[i].d[c] * (u[c].d * (float)isum - u[c].dmin * (float)msum);
    }
    out[i] = acc;
  }
}

void dot_f(const float* w, const float* const* x, int mr, int64_t k, float* out) {
  for (int i = 0; i < mr; ++i) {
    float acc = 0.f;
    for (int64_t e = 0; e < k; ++e) acc += w[e] * x[i][e];
    out[i] = acc;
  }
}

void chunks_to_float(Kind kind, const UChunk* u, int64_t nch, float* out) {
  for (int64_t c = 0; c < nch; ++c, out += kChunk) {
    if (kind == Kind::X32) {
      for (int e = 0; e < kChunk; ++e) out[e] = u[c].a[e / 32] * u[c].q[e] + u[c].b[e / 32];
    } else {
      for (int e = 0; e < kChunk; ++e)
        out[e] = u[c].d * (float)u[c].sc[e / 16] * u[c].q[e] - u[c].dmin * (float)u[c].mn[e / 16];
    }
  }
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k{dot_x32, dot_x32, dot_x256, dot_x256, dot_f, chunks_to_float,
                         quant_x32_scalar, quant_x256_scalar, quant_residual};
  return k;
}

void row_to_float(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, float* out, UChunk* scratch,
                  bool avx2) {
  const TypeInfo* ti = type_info(w);
  if (ti->kind == Kind::Float) {
    const int64_t e0 = c0 * kChunk, e1 = std::min(w.k, c1 * kChunk);
    const uint8_t* row = w.data + r * w.row_bytes;
    const uint16_t* h = reinterpret_cast<const uint16_t*>(row) + e0;
    const int64_t n = e1 - e0;
    if (w.qtype == (int)QType::F32) std::memcpy(out, row + 4 * e0, (size_t)n * 4);
    else if (w.qtype == (int)QType::F16 && avx2) f16_row_to_float_avx2(h, n, out);
    else if (w.qtype == (int)QType::BF16 && avx2) bf16_row_to_float_avx2(h, n, out);
    else if (w.qtype == (int)QType::F16) for (int64_t e = 0; e < n; ++e) out[e] = fp16_to_fp32(h[e]);
    else for (int64_t e = 0; e < n; ++e) out[e] = bf16_to_fp32(h[e]);
    for (int64_t e = n; e < (c1 - c0) * kChunk; ++e) out[e] = 0.f;
    return;
  }
  const UnpackRowFn unpack = avx2 && ti->unpack_avx2 ? ti->unpack_avx2 : ti->unpack_scalar;
  unpack(w, r, c0, c1, scratch);
  const Kernels& kern = avx2 ? avx2_kernels() : scalar_kernels();
  kern.chunks_to_float(ti->kind, scratch, c1 - c0, out);
}

// Reference GEMM: one dequantized weight row at a time, dotted with every activation row.
void gemm_scalar(const GemmArgs& a) {
  const int64_t nch = n_chunks(a.k);
  std::vector<UChunk> scratch((size_t)nch);
  std::vector<float> wrow((size_t)(nch * kChunk));
  std::vector<float> col((size_t)a.m);
  for (int64_t r = a.n0; r < a.n1; ++r) {
    row_to_float(*a.w, r, 0, nch, wrow.data(), scratch.data(), false);
    for (int64_t i = 0; i < a.m; ++i) {
      const float* x = a.x + i * a.k;
      float acc = 0.f;
      for (int64_t e = 0; e < a.k; ++e) acc += wrow[e] * x[e];
      col[i] = acc;
    }
    a.store(r, 1, col.data(), 1);
  }
}

}  // namespace mm
}  // namespace pq
