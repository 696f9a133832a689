// AVX2 IQ4_NL / IQ4_XS quantizers, byte-identical to quantize_iq4.cpp (and llama.cpp).
// As in quantize_kquants_avx2.cpp, each lane runs one 32-element block's 15-point scale search
// in the scalar operation order (the sums are per block, so lanes never mix). The codebook lookup
// (best_index_int8: a binary search) becomes a branch-free count of codebook values <= x, which
// selects the same interval, then the same nearest-of-two comparison.
#if defined(PYQUANT_HAVE_AVX2_BUILD)  // x86-64 builds only (CMake adds -mavx2 -mfma -mf16c here)
#include <immintrin.h>

#include "common/iq_tables.h"
#include "cpu/quantize_common.h"

namespace pq {
using namespace quant;

namespace {
const int8_t* const kValues = kvalues_iq4nl;  // common/iq_tables.h (generated)

struct Codebook {
  __m256 v[16];   // each value broadcast
  __m256 lo, hi;  // values 0..7 and 8..15, for permutevar lookups
  Codebook() {
    alignas(32) float f[16];
    for (int k = 0; k < 16; ++k) { f[k] = kValues[k]; v[k] = _mm256_set1_ps(f[k]); }
    lo = _mm256_load_ps(f);
    hi = _mm256_load_ps(f + 8);
  }
  __m256 lookup(__m256i idx) const {
    const __m256 a = _mm256_permutevar8x32_ps(lo, idx), b = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));  // bit 3 -> sign
  }
  // best_index_int8(16, values, x) lane-wise.
  __m256i best_index(__m256 x) const {
    __m256i mu = _mm256_setzero_si256();
    for (int k = 1; k < 15; ++k)  // values[0] <= x holds in the interior case; values[15] > x too
      mu = _mm256_sub_epi32(mu, _mm256_castps_si256(_mm256_cmp_ps(v[k], x, _CMP_LE_OQ)));
    mu = _mm256_add_epi32(mu, _mm256_set1_epi32(1));  // mu in 1..15: values[mu-1] <= x < values[mu]
    const __m256i mu1 = _mm256_sub_epi32(mu, _mm256_set1_epi32(1));
    const __m256 closer_lo =
        _mm256_cmp_ps(_mm256_sub_ps(x, lookup(mu1)), _mm256_sub_ps(lookup(mu), x), _CMP_LT_OQ);
    __m256i r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(mu), _mm256_castsi256_ps(mu1), closer_lo));
    const __m256 at_lo = _mm256_cmp_ps(x, v[0], _CMP_LE_OQ);
    const __m256 at_hi = _mm256_or_ps(_mm256_cmp_ps(x, v[15], _CMP_GE_OQ), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(_mm256_set1_epi32(15)), at_hi));
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_setzero_ps(), at_lo));
  }
};

const Codebook& codebook() {
  static const Codebook cb;
  return cb;
}

// X[i]: element i of 8 consecutive 32-element blocks. Returns the 8 block scales d.
__m256 search_scales(const __m256* X, const Codebook& cb) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 W[32];
  __m256 amax = zero, max = zero;
  for (int j = 0; j < 32; ++j) {
    W[j] = _mm256_mul_ps(X[j], X[j]);
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), X[j]);
    const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
    amax = _mm256_blendv_ps(amax, ax, gt);
    max = _mm256_blendv_ps(max, X[j], gt);
  }
  const __m256 all_zero = _mm256_cmp_ps(amax, _mm256_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
  auto sums = [&](__m256 id, __m256* sqx, __m256* sq2) {
    __m256 sumqx = zero, sumq2 = zero;
    for (int j = 0; j < 32; ++j) {
      const __m256 q = cb.lookup(cb.best_index(_mm256_mul_ps(id, X[j])));
      const __m256 wq = _mm256_mul_ps(W[j], q);
      sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, X[j]));
      sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
    }
    *sqx = sumqx;
    *sq2 = sumq2;
  };
  const __m256 d0 = _mm256_div_ps(_mm256_xor_ps(max, _mm256_set1_ps(-0.0f)), _mm256_set1_ps((float)kValues[0]));
  __m256 sumqx, sumq2;
  sums(_mm256_div_ps(_mm256_set1_ps(1.0f), d0), &sumqx, &sumq2);
  __m256 d = _mm256_blendv_ps(zero, _mm256_div_ps(sumqx, sumq2), _mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ));
  __m256 best = _mm256_mul_ps(d, sumqx);
  for (int itry = -7; itry <= 7; ++itry) {
    sums(_mm256_div_ps(_mm256_set1_ps((float)(itry + kValues[0])), max), &sumqx, &sumq2);
    const __m256 better = _mm256_and_ps(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ),
                                        _mm256_cmp_ps(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2), _CMP_GT_OQ));
    if (!_mm256_movemask_ps(better)) continue;
    const __m256 dn = _mm256_div_ps(sumqx, sumq2);
    d = _mm256_blendv_ps(d, dn, better);
    best = _mm256_blendv_ps(best, _mm256_mul_ps(dn, sumqx), better);
  }
  return _mm256_blendv_ps(d, zero, all_zero);
}

void load_blocks(const float* x, __m256* X) {  // X[i] lane b = x[32*b + i]
  alignas(32) float t[256];
  for (int b = 0; b < 8; ++b)
    for (int i = 0; i < 32; ++i) t[i * 8 + b] = x[32 * b + i];
  for (int i = 0; i < 32; ++i) X[i] = _mm256_load_ps(t + i * 8);
}

// Codes of x[32*b + i] against per-block inverse scales ids (lane b), packed IQ4 nibbles.
void codes_and_pack(const __m256* X, __m256 ids, const Codebook& cb, uint8_t* qs, int stride) {
  alignas(32) int32_t t[32][8];
  for (int i = 0; i < 32; ++i)
    _mm256_store_si256(reinterpret_cast<__m256i*>(t[i]), cb.best_index(_mm256_mul_ps(ids, X[i])));
  for (int b = 0; b < 8; ++b)
    for (int j = 0; j < 16; ++j) qs[b * stride + j] = (uint8_t)(t[j][b] | (t[j + 16][b] << 4));
}

inline __m256 safe_inverse(__m256 d) {  // d ? 1/d : 0
  const __m256 is_zero = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_EQ_OQ);
  return _mm256_blendv_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), _mm256_setzero_ps(), is_zero);
}
}  // namespace

void quantize_blocks_iq4_nl_avx2(const float* x, uint8_t* y, int64_t nb) {
  const Codebook& cb = codebook();
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8, x += 256, y += 8 * 18) {
    __m256 X[32];
    load_blocks(x, X);
    const __m256 d = search_scales(X, cb);
    alignas(32) float ds[8];
    _mm256_store_ps(ds, d);
    for (int b = 0; b < 8; ++b) store_f16(y + 18 * b, ds[b]);
    codes_and_pack(X, safe_inverse(d), cb, y + 2, 18);
  }
  if (i < nb) quantize_blocks_iq4_nl(x, y, nb - i);  // fewer than 8 blocks left
}

void quantize_blocks_iq4_xs_avx2(const float* x, uint8_t* y, int64_t nb) {
  const Codebook& cb = codebook();
  for (int64_t i = 0; i < nb; ++i, x += 256, y += 136) {
    __m256 X[32];
    load_blocks(x, X);
    alignas(32) float scales[8];
    _mm256_store_ps(scales, search_scales(X, cb));
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const float abs_d = std::fabs(scales[ib]);
      if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = scales[ib]; }
    }
    const float d = -max_scale / 32;
    store_f16(y, d);
    const float id = d != 0.0f ? 1 / d : 0.f;
    uint16_t scales_h = 0;
    uint8_t* scales_l = y + 4;
    alignas(32) float idl[8];
    for (int ib = 0; ib < 8; ++ib) {
      int l = nearest_int(id * scales[ib]);
      l = max_(-32, min_(31, l));
      const float dl = d * (float)l;
      idl[ib] = dl != 0.0f ? 1 / dl : 0.f;
      l += 32;
      const uint8_t l_l = (uint8_t)(l & 0xf), l_h = (uint8_t)(l >> 4);
      if (ib % 2 == 0) scales_l[ib / 2] = l_l;
      else scales_l[ib / 2] |= (uint8_t)(l_l << 4);
      scales_h |= (uint16_t)(l_h << 2 * ib);
    }
    y[2] = (uint8_t)(scales_h & 0xff);
    y[3] = (uint8_t)(scales_h >> 8);
    codes_and_pack(X, _mm256_load_ps(idl), cb, y + 8, 16);
  }
}

}  // namespace pq

#endif  // PYQUANT_HAVE_AVX2_BUILD
