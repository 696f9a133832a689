// Large-M (prefill) GEMM: dequantize weight panels into float tiles, then a 6x16 register-blocked
// FMA microkernel (12 accumulators + 2 B vectors + 1 broadcast = 15 of 16 ymm registers).
//
// Blocking (per thread, over its output rows [n0, n1)):
//   for a block of NC = 64 weight rows:            C block [m][64] floats stays in L2
//     for each 256-wide K chunk:
//       decode the 64 x 256 weight tile, transpose into 4 panels [256][16] (64 KB, L1/L2)
//       for every 6-row strip of x (packed once per call, [chunk][strip][256][6]):
//         for each panel: microkernel, 6 x 16 x 256 MACs, accumulating in C
// The decode of a weight tile is amortised over all m rows: at m = 512 it is ~3% of the work
// (one unpack + one float conversion per weight vs 512 FMAs), which is why this path wins only
// from m ~ 32 on (see matmul_path in matmul.cpp for the measured crossover).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>

#include "cpu/avx2/scratch.h"
#include "cpu/avx2/transpose.h"
#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

namespace {

constexpr int kNC = 64;

// kn <= kChunk: the columns of this chunk that exist (K = 576, SmolLM2's width, would otherwise
// spend a quarter of its FMAs on the last chunk's zero padding).
inline void ukernel(const float* A, const float* B, float* C, int64_t ldc, bool accumulate, int64_t kn) {
  __m256 c[kGemmMR][2];
  for (int i = 0; i < kGemmMR; ++i) {
    c[i][0] = accumulate ? _mm256_loadu_ps(C + i * ldc) : _mm256_setzero_ps();
    c[i][1] = accumulate ? _mm256_loadu_ps(C + i * ldc + 8) : _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t kk = 0; kk < kn; ++kk) {
    const __m256 b0 = _mm256_load_ps(B + 16 * kk), b1 = _mm256_load_ps(B + 16 * kk + 8);
    for (int i = 0; i < kGemmMR; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + kGemmMR * kk + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
  }
  for (int i = 0; i < kGemmMR; ++i) {
    _mm256_storeu_ps(C + i * ldc, c[i][0]);
    _mm256_storeu_ps(C + i * ldc + 8, c[i][1]);
  }
}

int64_t n_strips(int64_t m) { return (m + kGemmMR - 1) / kGemmMR; }

// Weight rows t0..t0+7 of the block (rows past nn are zero), chunk c, into the panel columns: decoded
// to float 8 rows at a time, then 8 x 8 register transposes (the scalar strided stores they replace
// were ~1/6 of the GEMM's time at m = 64).
void pack_rows8(const GemmArgs& a, int64_t nb, int t0, int64_t nn, int64_t c, int64_t kn, float* rowf8,
                UChunk* scratch, float* wpack) {
  for (int r = 0; r < 8; ++r) {
    float* dst = rowf8 + r * kChunk;
    if (t0 + r < nn) row_to_float(*a.w, nb + t0 + r, c, c + 1, dst, scratch, true);
    else std::memset(dst, 0, sizeof(float) * kChunk);
  }
  float* panel = wpack + (t0 / kGemmNR) * kChunk * kGemmNR + (t0 % kGemmNR);
  for (int kk = 0; kk < kn; kk += 8) {   // the decoded row is zero past kn: whole 8-columns
    __m256 v[8];
    for (int r = 0; r < 8; ++r) v[r] = _mm256_load_ps(rowf8 + r * kChunk + kk);
    transpose8x8_ps(v);
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (kk + j) * kGemmNR, v[j]);
  }
}

}  // namespace

int64_t gemm_apack_floats(int64_t m, int64_t k) { return n_chunks(k) * n_strips(m) * kChunk * kGemmMR; }

void gemm_pack_a_avx2(const float* x, int64_t m, int64_t k, int64_t strip0, int64_t strip1, float* apack) {
  const int64_t nch = n_chunks(k), strips = n_strips(m);
  for (int64_t s = strip0; s < strip1; ++s) {
    for (int64_t c = 0; c < nch; ++c) {
      float* dst = apack + (c * strips + s) * kChunk * kGemmMR;
      const int64_t kn = std::min<int64_t>(kChunk, k - c * kChunk);
      for (int i = 0; i < kGemmMR; ++i) {
        const int64_t row = s * kGemmMR + i;
        const float* src = x + row * k + c * kChunk;
        for (int64_t kk = 0; kk < kChunk; ++kk)
          dst[kk * kGemmMR + i] = (row < m && kk < kn) ? src[kk] : 0.f;
      }
    }
  }
}

void gemm_avx2(const GemmArgs& a) {
  thread_local Scratch<float> wpack_v, cbuf_v, rowf_v;
  thread_local Scratch<UChunk> scratch_v;
  const int64_t nch = n_chunks(a.k), strips = n_strips(a.m);
  float* wpack = wpack_v.get((size_t)(kNC * kChunk));
  float* cbuf = cbuf_v.get((size_t)(strips * kGemmMR * kNC));
  float* rowf8 = rowf_v.get((size_t)(8 * kChunk));
  UChunk* scratch = scratch_v.get(1);

  for (int64_t nb = a.n0; nb < a.n1; nb += kNC) {
    const int64_t nn = std::min<int64_t>(kNC, a.n1 - nb);
    const int npan = (int)((nn + kGemmNR - 1) / kGemmNR);
    for (int64_t c = 0; c < nch; ++c) {
      const int64_t kn = std::min<int64_t>(kChunk, a.k - c * kChunk);
      for (int t0 = 0; t0 < npan * kGemmNR; t0 += 8) pack_rows8(a, nb, t0, nn, c, kn, rowf8, scratch, wpack);
      for (int64_t s = 0; s < strips; ++s) {
        const float* A = a.apack + (c * strips + s) * kChunk * kGemmMR;
        for (int p = 0; p < npan; ++p)
          ukernel(A, wpack + p * kChunk * kGemmNR, cbuf + s * kGemmMR * kNC + p * kGemmNR, kNC, c > 0, kn);
      }
    }
    a.store(nb, nn, cbuf, kNC);
  }
}

}  // namespace mm
}  // namespace pq
