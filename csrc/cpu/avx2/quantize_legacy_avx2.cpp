// AVX2 Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 quantizers, byte-identical to quantize_legacy.cpp.
// Why the reductions may be vectorized here: min/max are exact in any order, and
// _mm256_{min,max}_ps(x, acc) keeps acc when x is NaN, exactly like the C `if (v < min)` tests.
// The one order-dependent case is Q8_0's MAX(amax, fabsf(v)) macro, which *does* take a NaN and
// then drops it at the next element: blocks holding a NaN go to the scalar code.
// Element conversions replicate x86 C casts: cvttps -> INT32_MIN for NaN/out-of-range, low byte.
#if defined(PYQUANT_HAVE_AVX2_BUILD)  // x86-64 builds only (CMake adds -mavx2 -mfma -mf16c here)
#include <immintrin.h>

#include <cfloat>

#include "cpu/quantize_common.h"

namespace pq {
using namespace quant;

namespace {
struct Block {
  __m256 v[4];
};

inline Block load_block(const float* x) {
  return {{_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)}};
}

inline float hmax(__m256 a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline float hmin(__m256 a) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline __m256 absv(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// max |v| ignoring NaN (the `amax < fabsf(v)` scan), and the first v reaching it (+0 if none).
inline float signed_absmax(const Block& b, const float* x) {
  __m256 acc = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) acc = _mm256_max_ps(absv(b.v[k]), acc);
  const float amax = hmax(acc);
  if (amax == 0.0f) return 0.0f;  // never updated upstream: max stays +0
  const __m256 target = _mm256_set1_ps(amax);
  uint32_t mask = 0;
  for (int k = 0; k < 4; ++k)
    mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(absv(b.v[k]), target, _CMP_EQ_OQ)) << (8 * k);
  return x[__builtin_ctz(mask)];
}

// Low byte of the int32 lanes of four vectors, in element order (a C (int8_t) cast after cvtt).
inline __m256i low_bytes(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ff = _mm256_set1_epi32(0xff);
  const __m256i ab = _mm256_packus_epi32(_mm256_and_si256(a, ff), _mm256_and_si256(b, ff));
  const __m256i cd = _mm256_packus_epi32(_mm256_and_si256(c, ff), _mm256_and_si256(d, ff));
  return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// (int8_t)(x*id + add) for 32 elements, then MIN(limit, .) (limit < 0: no clamp), as bytes.
inline __m256i quant_bytes(const Block& b, __m256 offset, __m256 id, __m256 add, int limit) {
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    __m256i t = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b.v[k], offset), id), add));
    if (limit >= 0) t = _mm256_min_epi32(_mm256_set1_epi32(limit), _mm256_srai_epi32(_mm256_slli_epi32(t, 24), 24));
    q[k] = t;
  }
  return low_bytes(q[0], q[1], q[2], q[3]);
}

// y[j] = q[j] | q[j+16] << 4 (byte-wise, as the C code's uint8_t stores)
inline void store_nibbles(__m256i q, uint8_t* qs, bool mask_low) {
  __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i f = _mm_set1_epi8(0x0f);
  if (mask_low) { lo = _mm_and_si128(lo, f); hi = _mm_and_si128(hi, f); }
  const __m128i hi4 = _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8((char)0xf0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm_or_si128(lo, hi4));
}

inline uint32_t fifth_bits(__m256i q) {  // bit j = bit 4 of byte j
  return (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(q, 3));
}

inline void store_u32(uint8_t* p, uint32_t v) {
  for (int b = 0; b < 4; ++b) p[b] = (uint8_t)(v >> (8 * b));
}

inline bool has_nan(const Block& b) {
  __m256 u = _mm256_cmp_ps(b.v[0], b.v[0], _CMP_UNORD_Q);
  for (int k = 1; k < 4; ++k) u = _mm256_or_ps(u, _mm256_cmp_ps(b.v[k], b.v[k], _CMP_UNORD_Q));
  return _mm256_movemask_ps(u) != 0;
}

// Upstream keeps the *first* element equal to the extreme (strict < / > tests). Only a zero
// extreme has two bit patterns (+0 / -0) comparing equal, so only then does the order matter.
inline float first_equal(const Block& b, const float* x, float value) {
  if (value != 0.0f) return value;
  uint32_t mask = 0;
  for (int k = 0; k < 4; ++k)
    mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(b.v[k], _mm256_setzero_ps(), _CMP_EQ_OQ)) << (8 * k);
  return x[__builtin_ctz(mask)];
}

inline void min_max(const Block& b, const float* x, float* mn, float* mx) {
  __m256 lo = _mm256_set1_ps(FLT_MAX), hi = _mm256_set1_ps(-FLT_MAX);
  for (int k = 0; k < 4; ++k) {
    lo = _mm256_min_ps(b.v[k], lo);
    hi = _mm256_max_ps(b.v[k], hi);
  }
  *mn = first_equal(b, x, hmin(lo));
  *mx = first_equal(b, x, hmax(hi));
}
}  // namespace

void quantize_blocks_q8_0_avx2(const float* x, uint8_t* y, int64_t nb) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 34) {
    const Block b = load_block(x);
    if (has_nan(b)) { quantize_blocks_q8_0(x, y, 1); continue; }
    __m256 acc = zero;
    for (int k = 0; k < 4; ++k) acc = _mm256_max_ps(absv(b.v[k]), acc);
    const float d = hmax(acc) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {  // roundf: half away from zero, via truncation + exact remainder
      const __m256 v = _mm256_mul_ps(b.v[k], vid);
      const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 up = _mm256_cmp_ps(absv(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
      const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
      q[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 2), low_bytes(q[0], q[1], q[2], q[3]));
  }
}

void quantize_blocks_q4_0_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 18) {
    const Block b = load_block(x);
    const float d = signed_absmax(b, x) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    const __m256i q = quant_bytes(b, _mm256_setzero_ps(), _mm256_set1_ps(id), _mm256_set1_ps(8.5f), 15);
    store_nibbles(q, y + 2, false);
  }
}

void quantize_blocks_q5_0_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 22) {
    const Block b = load_block(x);
    const float d = signed_absmax(b, x) / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    const __m256i q = quant_bytes(b, _mm256_setzero_ps(), _mm256_set1_ps(id), _mm256_set1_ps(16.5f), 31);
    store_u32(y + 2, fifth_bits(q));
    store_nibbles(q, y + 6, true);
  }
}

void quantize_blocks_q4_1_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 20) {
    const Block b = load_block(x);
    float mn, mx;
    min_max(b, x, &mn, &mx);
    const float d = (mx - mn) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    store_f16(y + 2, mn);
    const __m256i q = quant_bytes(b, _mm256_set1_ps(mn), _mm256_set1_ps(id), _mm256_set1_ps(0.5f), 15);
    store_nibbles(q, y + 4, false);
  }
}

void quantize_blocks_q5_1_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 24) {
    const Block b = load_block(x);
    float mn, mx;
    min_max(b, x, &mn, &mx);
    const float d = (mx - mn) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    store_f16(y + 2, mn);
    const __m256i q = quant_bytes(b, _mm256_set1_ps(mn), _mm256_set1_ps(id), _mm256_set1_ps(0.5f), -1);
    store_u32(y + 4, fifth_bits(q));
    store_nibbles(q, y + 8, true);
  }
}

}  // namespace pq

#endif  // PYQUANT_HAVE_AVX2_BUILD
