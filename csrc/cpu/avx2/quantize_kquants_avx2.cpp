// AVX2 k-quant scale searches, byte-identical to the scalar path (and so to llama.cpp).
//
// Trick: the expensive part of Q2_K/Q4_K/Q5_K/Q6_K is a per-sub-block search (make_qkx2_quants,
// make_qx_quants) whose sums must be accumulated element by element in order -- vectorizing
// *within* a sub-block would reorder those float sums and change bytes. The sub-blocks are
// independent, though, so each SIMD lane runs one sub-block's search: lane j executes exactly
// the scalar operation sequence of sub-block j (IEEE add/mul/div/sqrt are correctly rounded in
// both), branches become per-lane masks. Inputs are transposed so element i of all 8 sub-blocks
// is one vector. This file is compiled with -ffp-contract=off like the rest: no FMA fusion.
#if defined(PYQUANT_HAVE_AVX2_BUILD)  // x86-64 builds only (CMake adds -mavx2 -mfma -mf16c here)
#include <immintrin.h>

#include "cpu/quantize_common.h"

namespace pq {
using namespace quant;

namespace {
constexpr int QK_K = 256;

inline __m256i nearest_int_v(__m256 f) {  // quant::nearest_int, lane-wise
  const __m256i i = _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12582912.f)));
  return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}
inline __m256 abs_v(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// Per lane: amax = max |x|, max = the signed x that has it (first one wins on ties, as the
// scalar `if (ax > amax)` loop in make_qx_quants / make_q3_quants).
inline void signed_absmax_lanes(const __m256* X, int n, __m256* amax_out, __m256* max_out) {
  __m256 amax = _mm256_setzero_ps(), max = _mm256_setzero_ps();
  for (int i = 0; i < n; ++i) {
    const __m256 ax = abs_v(X[i]);
    const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
    amax = _mm256_blendv_ps(amax, ax, gt);
    max = _mm256_blendv_ps(max, X[i], gt);
  }
  *amax_out = amax;
  *max_out = max;
}
inline __m256i clamp_v(__m256i l, int lo, int hi) {  // MAX(lo, MIN(hi, l))
  return _mm256_max_epi32(_mm256_set1_epi32(lo), _mm256_min_epi32(_mm256_set1_epi32(hi), l));
}
inline __m256i blend_i(__m256i a, __m256i b, __m256 mask) {
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), mask));
}

// Loads element i of sub-blocks first..first+7 (each n floats) into X[i].
template <int N>
inline void load_transposed(const float* x, int first, __m256* X) {
  alignas(32) float t[N * 8];
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < N; ++i) t[i * 8 + j] = x[N * (first + j) + i];
  for (int i = 0; i < N; ++i) X[i] = _mm256_load_ps(t + i * 8);
}

template <int N, typename T>
inline void store_transposed(const __m256i* Lv, int first, T* L) {
  alignas(32) int32_t t[8];
  for (int i = 0; i < N; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), Lv[i]);
    for (int j = 0; j < 8; ++j) L[N * (first + j) + i] = (T)t[j];
  }
}

// make_qkx2_quants for 8 sub-blocks of N at once (see quantize_search.cpp for the scalar one).
template <int N, bool kMad>
void make_qkx2_lanes(const __m256* X, const __m256* W, int nmax, float rmin, float rdelta, int nstep, __m256i* L,
                     __m256* scale_out, __m256* the_min_out) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 mn = X[0], mx = X[0];
  __m256 sum_w = W[0];
  __m256 sum_x = _mm256_mul_ps(sum_w, X[0]);
  for (int i = 1; i < N; ++i) {
    mn = _mm256_min_ps(X[i], mn);  // x < min ? x : min, NaN-ordering as the C `if`
    mx = _mm256_max_ps(X[i], mx);
    sum_w = _mm256_add_ps(sum_w, W[i]);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(W[i], X[i]));
  }
  mn = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
  const __m256 flat = _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ);  // upstream returns early for these lanes
  const __m256 flat_min = mn;
  __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(mx, mn));
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
  __m256 best_error = zero;
  auto error_term = [&](__m256 s, __m256 m, __m256i l, int i) {
    __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(s, _mm256_cvtepi32_ps(l)), m), X[i]);
    diff = kMad ? abs_v(diff) : _mm256_mul_ps(diff, diff);
    return _mm256_mul_ps(W[i], diff);
  };
  for (int i = 0; i < N; ++i) {
    L[i] = clamp_v(nearest_int_v(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], mn))), 0, nmax);
    best_error = _mm256_add_ps(best_error, error_term(scale, mn, L[i], i));
  }
  __m256i Laux[N];
  for (int is = 0; is <= nstep; ++is) {
    // (max - min) with the min of the best solution so far: upstream updates `min` in this loop
    iscale = _mm256_div_ps(_mm256_set1_ps(rmin + rdelta * (float)is + (float)nmax), _mm256_sub_ps(mx, mn));
    __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
    for (int i = 0; i < N; ++i) {
      Laux[i] = clamp_v(nearest_int_v(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], mn))), 0, nmax);
      const __m256 wl = _mm256_mul_ps(W[i], _mm256_cvtepi32_ps(Laux[i]));
      sum_l = _mm256_add_ps(sum_l, wl);
      sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, _mm256_cvtepi32_ps(Laux[i])));
      sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, X[i]));
    }
    const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
    const __m256 d_pos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
    if (!_mm256_movemask_ps(d_pos)) continue;
    __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
    __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
    const __m256 min_pos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
    this_min = _mm256_blendv_ps(this_min, zero, min_pos);
    this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), min_pos);
    __m256 cur_error = zero;
    for (int i = 0; i < N; ++i) cur_error = _mm256_add_ps(cur_error, error_term(this_scale, this_min, Laux[i], i));
    const __m256 better = _mm256_and_ps(d_pos, _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ));
    if (!_mm256_movemask_ps(better)) continue;
    for (int i = 0; i < N; ++i) L[i] = blend_i(L[i], Laux[i], better);
    best_error = _mm256_blendv_ps(best_error, cur_error, better);
    scale = _mm256_blendv_ps(scale, this_scale, better);
    mn = _mm256_blendv_ps(mn, this_min, better);
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int i = 0; i < N; ++i) L[i] = blend_i(L[i], _mm256_setzero_si256(), flat);
  *scale_out = _mm256_blendv_ps(scale, zero, flat);
  *the_min_out = _mm256_xor_ps(_mm256_blendv_ps(mn, flat_min, flat), sign);  // -min
}

// make_qx_quants(16, 32, x, L, rmse_type=1, NULL) for 8 sub-blocks of 16 (Q6_K).
void make_qx_lanes_q6(const __m256* X, __m256i* L, __m256* scale_out) {
  constexpr int N = 16, nmax = 32;
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax, max;
  signed_absmax_lanes(X, N, &amax, &max);
  const __m256 all_zero = _mm256_cmp_ps(amax, _mm256_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
  __m256 W[N];
  for (int i = 0; i < N; ++i) W[i] = _mm256_mul_ps(X[i], X[i]);
  auto pass = [&](__m256 iscale, __m256i* Lout, __m256* sumlx_out, __m256* suml2_out) {
    __m256 sumlx = zero, suml2 = zero;
    for (int i = 0; i < N; ++i) {
      const __m256i l = clamp_v(nearest_int_v(_mm256_mul_ps(iscale, X[i])), -nmax, nmax - 1);
      Lout[i] = _mm256_add_epi32(l, _mm256_set1_epi32(nmax));
      const __m256 lf = _mm256_cvtepi32_ps(l);
      sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(W[i], X[i]), lf));
      suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(W[i], lf), lf));
    }
    *sumlx_out = sumlx;
    *suml2_out = suml2;
  };
  __m256 sumlx, suml2;
  pass(_mm256_div_ps(_mm256_set1_ps((float)(-nmax)), max), L, &sumlx, &suml2);
  __m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
  __m256 best = _mm256_mul_ps(scale, sumlx);
  __m256i Ltmp[N];
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    pass(_mm256_div_ps(_mm256_set1_ps(-((float)nmax + 0.1f * (float)is)), max), Ltmp, &sumlx, &suml2);
    const __m256 better = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                        _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
    if (!_mm256_movemask_ps(better)) continue;
    for (int i = 0; i < N; ++i) L[i] = blend_i(L[i], Ltmp[i], better);
    const __m256 s = _mm256_div_ps(sumlx, suml2);
    scale = _mm256_blendv_ps(scale, s, better);
    best = _mm256_blendv_ps(best, _mm256_mul_ps(s, sumlx), better);
  }
  for (int i = 0; i < N; ++i) L[i] = blend_i(L[i], _mm256_setzero_si256(), all_zero);
  *scale_out = _mm256_blendv_ps(scale, zero, all_zero);
}

// make_q3_quants(16, 4, x, L, do_rmse=true) for 8 sub-blocks of 16 (Q3_K). The coordinate
// descent stops per sub-block when a sweep changes nothing: a lane leaves the `active` mask then
// and its state is frozen, exactly as the scalar `break`.
void make_q3_lanes(const __m256* X, __m256i* L, __m256* scale_out) {
  constexpr int N = 16, nmax = 4;
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax, max;
  signed_absmax_lanes(X, N, &amax, &max);
  const __m256 all_zero = _mm256_cmp_ps(amax, _mm256_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
  const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)(-nmax)), max);
  __m256 W[N], Lf[N];
  __m256 sumlx = zero, suml2 = zero;
  for (int i = 0; i < N; ++i) {
    W[i] = _mm256_mul_ps(X[i], X[i]);
    L[i] = clamp_v(nearest_int_v(_mm256_mul_ps(iscale, X[i])), -nmax, nmax - 1);
    Lf[i] = _mm256_cvtepi32_ps(L[i]);
    sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(W[i], X[i]), Lf[i]));
    suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(W[i], Lf[i]), Lf[i]));
  }
  __m256 active = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int itry = 0; itry < 5; ++itry) {
    __m256 changed = zero;
    for (int i = 0; i < N; ++i) {
      const __m256 wx = _mm256_mul_ps(W[i], X[i]);
      __m256 slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wx, Lf[i]));
      __m256 sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(W[i], Lf[i]), Lf[i]));
      const __m256i new_l = clamp_v(nearest_int_v(_mm256_div_ps(_mm256_mul_ps(X[i], sl2), slx)), -nmax, nmax - 1);
      const __m256 nlf = _mm256_cvtepi32_ps(new_l);
      __m256 cond = _mm256_and_ps(active, _mm256_cmp_ps(slx, zero, _CMP_GT_OQ));
      cond = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(new_l, L[i])), cond);
      if (!_mm256_movemask_ps(cond)) continue;
      slx = _mm256_add_ps(slx, _mm256_mul_ps(wx, nlf));
      sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(W[i], nlf), nlf));
      cond = _mm256_and_ps(cond, _mm256_cmp_ps(sl2, zero, _CMP_GT_OQ));
      cond = _mm256_and_ps(cond, _mm256_cmp_ps(_mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2),
                                               _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl2), _CMP_GT_OQ));
      L[i] = blend_i(L[i], new_l, cond);
      Lf[i] = _mm256_blendv_ps(Lf[i], nlf, cond);
      sumlx = _mm256_blendv_ps(sumlx, slx, cond);
      suml2 = _mm256_blendv_ps(suml2, sl2, cond);
      changed = _mm256_or_ps(changed, cond);
    }
    active = _mm256_and_ps(active, changed);
    if (!_mm256_movemask_ps(active)) break;
  }
  for (int i = 0; i < N; ++i)
    L[i] = blend_i(_mm256_add_epi32(L[i], _mm256_set1_epi32(nmax)), _mm256_setzero_si256(), all_zero);
  const __m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_GT_OQ));
  *scale_out = _mm256_blendv_ps(scale, zero, all_zero);
}

// Q4_K/Q5_K: weights av_x + |x| per sub-block of 32, then the (scale, min) search in 8 lanes.
void search_scale_min_k4_avx2(const float* x, uint8_t* L, float* scales, float* mins, int nmax, float rmin, int nstep) {
  __m256 X[32], W[32];
  load_transposed<32>(x, 0, X);
  __m256 sum_x2 = _mm256_setzero_ps();
  for (int i = 0; i < 32; ++i) sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(X[i], X[i]));
  const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.f)));
  for (int i = 0; i < 32; ++i) W[i] = _mm256_add_ps(av_x, abs_v(X[i]));
  __m256i Lv[32];
  __m256 scale, the_min;
  make_qkx2_lanes<32, false>(X, W, nmax, rmin, 0.1f, nstep, Lv, &scale, &the_min);
  _mm256_storeu_ps(scales, scale);
  _mm256_storeu_ps(mins, the_min);
  store_transposed<32>(Lv, 0, L);
}
// finish_scale_min_k4 with the element loop 8-wide: (x + dm) / d per element has no reduction,
// so lanes here are elements.
void finish_scale_min_k4_avx2(const float* x, uint8_t* y, uint8_t* L, const float* scales, const float* mins,
                              int nmax) {
  quantize_scales_k4(y, scales, mins);
  const float d_all = f16_to_f32(load_u16(y)), dmin_all = f16_to_f32(load_u16(y + 2));
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t s, m;
    get_scale_min_k4(j, y + 4, &s, &m);
    const float d = d_all * (float)s;
    if (d == 0.0f) continue;
    const __m256 vd = _mm256_set1_ps(d), vdm = _mm256_set1_ps(dmin_all * (float)m);
    alignas(32) int32_t t[32];
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + 32 * j + 8 * k), vdm), vd);
      _mm256_store_si256(reinterpret_cast<__m256i*>(t + 8 * k), clamp_v(nearest_int_v(v), 0, nmax));
    }
    for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = (uint8_t)t[ii];
  }
}
void requant_avx2(const float* x, int n, float d, float add, int lo, int hi, int offset, int32_t* out) {
  const __m256 vd = _mm256_set1_ps(d), va = _mm256_set1_ps(add);
  for (int i = 0; i < n; i += 8) {  // n is 16 or 32
    const __m256i l = clamp_v(nearest_int_v(_mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + i), va), vd)), lo, hi);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_add_epi32(l, _mm256_set1_epi32(offset)));
  }
}

void finish_q6_k_avx2(const float* x, uint8_t* y, int8_t* L, const float* scales) {
  if (!quantize_scales_q6_k(y, scales)) return;
  const int8_t* sc = reinterpret_cast<const int8_t*>(y + 192);
  const float d_all = f16_to_f32(load_u16(y + 208));
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = d_all * (float)sc[j];
    if (d == 0.0f) continue;
    const __m256 vd = _mm256_set1_ps(d);
    alignas(32) int32_t t[16];
    for (int k = 0; k < 2; ++k) {
      const __m256i l = clamp_v(nearest_int_v(_mm256_div_ps(_mm256_loadu_ps(x + 16 * j + 8 * k), vd)), -32, 31);
      _mm256_store_si256(reinterpret_cast<__m256i*>(t + 8 * k), _mm256_add_epi32(l, _mm256_set1_epi32(32)));
    }
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int8_t)t[ii];
  }
  pack_q6_k(L, y);
}
}  // namespace

void quantize_blocks_q4_k_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 144) {
    uint8_t L[QK_K];
    float scales[8], mins[8];
    search_scale_min_k4_avx2(x, L, scales, mins, 15, -1.f, 20);
    finish_scale_min_k4_avx2(x, y, L, scales, mins, 15);
    pack_q4_k(L, y);
  }
}

void quantize_blocks_q5_k_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 176) {
    uint8_t L[QK_K];
    float scales[8], mins[8];
    search_scale_min_k4_avx2(x, L, scales, mins, 31, -0.5f, 15);
    finish_scale_min_k4_avx2(x, y, L, scales, mins, 31);
    pack_q5_k(L, y);
  }
}

void quantize_blocks_q2_k_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 84) {
    uint8_t L[QK_K];
    float scales[16], mins[16];
    for (int g = 0; g < 2; ++g) {  // 16 sub-blocks of 16 = two groups of 8 lanes
      __m256 X[16], W[16];
      load_transposed<16>(x, 8 * g, X);
      for (int k = 0; k < 16; ++k) W[k] = abs_v(X[k]);
      __m256i Lv[16];
      __m256 scale, the_min;
      make_qkx2_lanes<16, true>(X, W, 3, -0.5f, 0.1f, 15, Lv, &scale, &the_min);
      _mm256_storeu_ps(scales + 8 * g, scale);
      _mm256_storeu_ps(mins + 8 * g, the_min);
      store_transposed<16>(Lv, 8 * g, L);
    }
    finish_q2_k(x, y, L, scales, mins, requant_avx2);
  }
}

void quantize_blocks_q3_k_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 110) {
    int8_t L[QK_K];
    float scales[16];
    for (int g = 0; g < 2; ++g) {
      __m256 X[16];
      load_transposed<16>(x, 8 * g, X);
      __m256i Lv[16];
      __m256 scale;
      make_q3_lanes(X, Lv, &scale);
      _mm256_storeu_ps(scales + 8 * g, scale);
      store_transposed<16>(Lv, 8 * g, L);
    }
    finish_q3_k(x, y, L, scales, requant_avx2);
  }
}

void quantize_blocks_q6_k_avx2(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 210) {
    int8_t L[QK_K];
    float scales[16];
    for (int g = 0; g < 2; ++g) {
      __m256 X[16];
      load_transposed<16>(x, 8 * g, X);
      __m256i Lv[16];
      __m256 scale;
      make_qx_lanes_q6(X, Lv, &scale);
      _mm256_storeu_ps(scales + 8 * g, scale);
      store_transposed<16>(Lv, 8 * g, L);
    }
    finish_q6_k_avx2(x, y, L, scales);
  }
}

}  // namespace pq

#endif  // PYQUANT_HAVE_AVX2_BUILD
