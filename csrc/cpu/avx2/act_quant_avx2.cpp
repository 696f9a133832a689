// AVX2 activation quantizer: bit-identical to act_quant.cpp (same IEEE ops; vcvtps2dq rounds to
// nearest even like nearbyint).
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "cpu/act_quant.h"

namespace pq {
namespace mm {

namespace {

inline int hsum_epi32(__m256i v) {
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  h = _mm_hadd_epi32(h, h);
  h = _mm_hadd_epi32(h, h);
  return _mm_cvtsi128_si32(h);
}

// 32 int32 values (4 registers, each within int8) -> 32 int8 in order at q (the packs interleave
// 128-bit lanes; the permute puts them back).
inline void store_i8x32(const __m256i i32[4], int8_t* q) {
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
  _mm256_storeu_si256((__m256i*)q, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// Quantizes 8*nv floats (nv = 4 or 32) at x into q; returns d and the integer sum.
// `valid` < 8*nv means a partial block: it is copied to a zero-padded buffer first.
float quant_block(const float* x, int64_t valid, int nv, int8_t* q, int16_t* sums16, int& total) {
  alignas(32) float pad[256];
  const int n = 8 * nv;
  if (valid < n) {
    std::memset(pad, 0, sizeof(float) * n);
    if (valid > 0) std::memcpy(pad, x, sizeof(float) * valid);
    x = pad;
  }
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 vmax = _mm256_setzero_ps(), vnan = _mm256_setzero_ps();
  for (int v = 0; v < nv; ++v) {
    const __m256 xv = _mm256_loadu_ps(x + 8 * v);
    vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, xv));
    vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(xv, xv, _CMP_UNORD_Q));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float amax = _mm_cvtss_f32(m);
  const bool nan = _mm256_movemask_ps(vnan) != 0;
  const float id = 127.f / amax;
  total = 0;
  if (nan || !std::isfinite(amax) || !std::isfinite(id)) {
    std::memset(q, 0, n);
    if (sums16) std::memset(sums16, 0, sizeof(int16_t) * (n / 16));
    return nan ? NAN : std::isfinite(amax) ? 0.f : amax;
  }
  const __m256 vid = _mm256_set1_ps(id);
  __m256i vsum = _mm256_setzero_si256();
  for (int v = 0; v < nv; v += 4) {
    __m256i i32[4];
    for (int t = 0; t < 4; ++t) {
      i32[t] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * (v + t)), vid));
      vsum = _mm256_add_epi32(vsum, i32[t]);
      if (sums16 && (t & 1))  // one 16-value group done: i32[t-1] and i32[t]
        sums16[(8 * (v + t)) / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(i32[t - 1], i32[t]));
    }
    store_i8x32(i32, q + 8 * v);
  }
  total = hsum_epi32(vsum);
  return amax / 127.f;
}

}  // namespace

void quant_x32_avx2(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t*) {
  for (int64_t b = 0; b < kp / 32; ++b) {
    int total;
    const float db = quant_block(x + 32 * b, k - 32 * b, 4, q + 32 * b, nullptr, total);
    d[b] = db;
    s[b] = db * (float)total;
  }
}

// quant_residual with the same IEEE ops 8 lanes at a time: r = x - d1 * q1 (a mul, then a sub: no
// FMA, as the scalar build), t = round-to-nearest-even(r * 256/d1), clamped to +-127: bit-identical
// q2 / d2 / s2 / bsum2. Why: the scalar loop was 8% of a SmolLM2 Q4_K_M prompt (perf, 2 threads).
void quant_residual_avx2(const float* x, int64_t k, int64_t kp, bool x256, const int8_t* q1, const float* d1,
                         int8_t* q2, float* d2, float* s2, int16_t* bsum2) {
  const int64_t B = x256 ? 256 : 32;
  alignas(32) float pad[256];
  const __m256 lim = _mm256_set1_ps(127.f), nlim = _mm256_set1_ps(-127.f);
  for (int64_t b = 0; b < kp / B; ++b) {
    const float db = d1[b];
    d2[b] = db * (1.0f / 256.0f);   // exact (a power of two), NaN / inf carried along
    int8_t* qb = q2 + b * B;
    if (!(std::isfinite(db) && db != 0.f)) {
      std::memset(qb, 0, (size_t)B);
      if (x256) std::memset(bsum2 + b * 16, 0, 32);
      else s2[b] = d2[b] * 0.f;
      continue;
    }
    const float* xb = x + b * B;
    const int64_t valid = k - b * B;
    if (valid < B) {   // the last, partial block (or past k): zeros, whose residual is 0
      std::memset(pad, 0, sizeof(float) * (size_t)B);
      if (valid > 0) std::memcpy(pad, xb, sizeof(float) * (size_t)valid);
      xb = pad;
    }
    const __m256 vd = _mm256_set1_ps(db), vid = _mm256_set1_ps(256.0f / db);
    __m256i vsum = _mm256_setzero_si256();
    for (int64_t v = 0; v < B; v += 32) {
      __m256i i32[4];
      for (int t = 0; t < 4; ++t) {
        const __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(q1 + b * B + v + 8 * t))));
        const __m256 r = _mm256_sub_ps(_mm256_loadu_ps(xb + v + 8 * t), _mm256_mul_ps(vd, qf));
        const __m256 rt = _mm256_round_ps(_mm256_mul_ps(r, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        i32[t] = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(rt, lim), nlim));   // clamped as floats, as the scalar
        vsum = _mm256_add_epi32(vsum, i32[t]);
        if (x256 && (t & 1))   // a 16-value group: i32[t-1] and i32[t]
          bsum2[(b * B + v + 8 * t) / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(i32[t - 1], i32[t]));
      }
      store_i8x32(i32, qb + v);
    }
    if (!x256) s2[b] = d2[b] * (float)hsum_epi32(vsum);
  }
}

void quant_x256_avx2(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float*, int16_t* bsum) {
  for (int64_t b = 0; b < kp / 256; ++b) {
    int total;
    d[b] = quant_block(x + 256 * b, k - 256 * b, 32, q + 256 * b, bsum + 16 * b, total);
  }
}

}  // namespace mm
}  // namespace pq
