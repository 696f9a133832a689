// AVX2 dot products of one unpacked weight row with 1..4 activation rows (the small-M path).
// The weight chunk is loaded once per 32 elements and reused for every activation row, so the
// packed weight is read from memory once per call whatever M is.
//
// int8 path, per 32 weights and per activation row: vpmaddubsw (u8 q x s8 x -> 16 x i16 pair
// sums), vpmaddwd (-> 8 x i32; by 1 for X32, by the 16-bit sub-block scales for X256), then
//  X32:  cvt + one FMA with a[j] * d_x[j] (the scale differs every 32);
//  X256: an int32 add; the super-block costs one cvt + 2 FMAs (scale and the mins via bsums).
// Overflow: |pair| <= 2*63*127 = 16002 (unsigned q <= 63) or 2*128*127 = 32512 (signed q with the
// sign trick), below int16 saturation; int32 sums stay below 2^31 for k <= 2^24 per chunk run.
#include <immintrin.h>

#include <cstring>

#include "cpu/act_quant.h"
#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// u8 x s8 pair products; signed weights use |q| and x * sign(q).
template <bool S>
inline __m256i mul_pairs(__m256i qw_abs, __m256i qw, __m256i xq) {
  if (S) return _mm256_maddubs_epi16(qw_abs, _mm256_sign_epi8(xq, qw));
  return _mm256_maddubs_epi16(qw, xq);
}

template <bool S, int MR>
void dot_x32_mr(const UChunk* u, int64_t nch, const XQRow* x, float* out) {
  __m256 acc[MR], accb[MR];
  for (int i = 0; i < MR; ++i) acc[i] = accb[i] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) float scale[MR][8];
  for (int64_t c = 0; c < nch; ++c) {
    const UChunk& uc = u[c];
    const __m256 av = _mm256_load_ps(uc.a), bv = _mm256_load_ps(uc.b);
    for (int i = 0; i < MR; ++i) {
      _mm256_store_ps(scale[i], _mm256_mul_ps(av, _mm256_loadu_ps(x[i].d + 8 * c)));
      accb[i] = _mm256_fmadd_ps(bv, _mm256_loadu_ps(x[i].s + 8 * c), accb[i]);
    }
    for (int j = 0; j < 8; ++j) {
      const __m256i qw = _mm256_load_si256((const __m256i*)(uc.q + 32 * j));
      const __m256i qa = S ? _mm256_abs_epi8(qw) : qw;
      for (int i = 0; i < MR; ++i) {
        const __m256i xq = _mm256_loadu_si256((const __m256i*)(x[i].q + c * kChunk + 32 * j));
        const __m256i p = _mm256_madd_epi16(mul_pairs<S>(qa, qw, xq), ones);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(&scale[i][j]), acc[i]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = hsum(_mm256_add_ps(acc[i], accb[i]));
}

template <bool S, int MR>
void dot_x256_mr(const UChunk* u, int64_t nch, const XQRow* x, float* out) {
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t c = 0; c < nch; ++c) {
    const UChunk& uc = u[c];
    __m256i iacc[MR];
    for (int i = 0; i < MR; ++i) iacc[i] = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i qw = _mm256_load_si256((const __m256i*)(uc.q + 32 * j));
      const __m256i qa = S ? _mm256_abs_epi8(qw) : qw;
      const __m256i sc = _mm256_load_si256((const __m256i*)uc.scx[j]);
      for (int i = 0; i < MR; ++i) {
        const __m256i xq = _mm256_loadu_si256((const __m256i*)(x[i].q + c * kChunk + 32 * j));
        iacc[i] = _mm256_add_epi32(iacc[i], _mm256_madd_epi16(mul_pairs<S>(qa, qw, xq), sc));
      }
    }
    const __m256i mn = _mm256_load_si256((const __m256i*)uc.mn);
    for (int i = 0; i < MR; ++i) {
      const float dx = x[i].d[c];
      const __m256i bs = _mm256_loadu_si256((const __m256i*)(x[i].bsum + 16 * c));
      const __m256 msum = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bs));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i]), _mm256_set1_ps(dx * uc.d), acc[i]);
      acc[i] = _mm256_fnmadd_ps(msum, _mm256_set1_ps(dx * uc.dmin), acc[i]);
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = hsum(acc[i]);
}

template <bool S>
void dot_x32(const UChunk* u, int64_t nch, const XQRow* x, int mr, float* out) {
  switch (mr) {
    case 1: dot_x32_mr<S, 1>(u, nch, x, out); break;
    case 2: dot_x32_mr<S, 2>(u, nch, x, out); break;
    case 3: dot_x32_mr<S, 3>(u, nch, x, out); break;
    default: dot_x32_mr<S, 4>(u, nch, x, out); break;
  }
}

template <bool S>
void dot_x256(const UChunk* u, int64_t nch, const XQRow* x, int mr, float* out) {
  switch (mr) {
    case 1: dot_x256_mr<S, 1>(u, nch, x, out); break;
    case 2: dot_x256_mr<S, 2>(u, nch, x, out); break;
    case 3: dot_x256_mr<S, 3>(u, nch, x, out); break;
    default: dot_x256_mr<S, 4>(u, nch, x, out); break;
  }
}

// Float activations: two accumulators per row hide the FMA latency at M = 1.
template <int MR>
void dot_f_mr(const float* w, const float* const* x, int64_t k, float* out) {
  __m256 a0[MR], a1[MR];
  for (int i = 0; i < MR; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
  int64_t e = 0;
  for (; e + 16 <= k; e += 16) {
    const __m256 w0 = _mm256_loadu_ps(w + e), w1 = _mm256_loadu_ps(w + e + 8);
    for (int i = 0; i < MR; ++i) {
      a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[i] + e), a0[i]);
      a1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[i] + e + 8), a1[i]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float s = hsum(_mm256_add_ps(a0[i], a1[i]));
    for (int64_t t = e; t < k; ++t) s += w[t] * x[i][t];
    out[i] = s;
  }
}

void dot_f(const float* w, const float* const* x, int mr, int64_t k, float* out) {
  switch (mr) {
    case 1: dot_f_mr<1>(w, x, k, out); break;
    case 2: dot_f_mr<2>(w, x, k, out); break;
    case 3: dot_f_mr<3>(w, x, k, out); break;
    default: dot_f_mr<4>(w, x, k, out); break;
  }
}

// F16 / BF16 weights dotted directly (converted in registers, no float row in memory).
template <bool BF>
inline __m256 load_h8(const uint16_t* p) {
  const __m128i v = _mm_loadu_si128((const __m128i*)p);
  if (BF) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  return _mm256_cvtph_ps(v);
}

template <bool BF, int MR>
void dot_h_mr(const uint16_t* w, const float* const* x, int64_t k, float* out) {
  __m256 a0[MR], a1[MR];
  for (int i = 0; i < MR; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
  int64_t e = 0;
  for (; e + 16 <= k; e += 16) {
    const __m256 w0 = load_h8<BF>(w + e), w1 = load_h8<BF>(w + e + 8);
    for (int i = 0; i < MR; ++i) {
      a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[i] + e), a0[i]);
      a1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[i] + e + 8), a1[i]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float s = hsum(_mm256_add_ps(a0[i], a1[i]));
    for (int64_t t = e; t < k; ++t) {
      float wf;
      if (BF) { const uint32_t b = (uint32_t)w[t] << 16; std::memcpy(&wf, &b, 4); }
      else wf = _cvtsh_ss(w[t]);
      s += wf * x[i][t];
    }
    out[i] = s;
  }
}

inline __m256 cvt8(const int8_t* q) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)q)));
}

void chunks_to_float(Kind kind, const UChunk* u, int64_t nch, float* out) {
  for (int64_t c = 0; c < nch; ++c, out += kChunk) {
    const UChunk& uc = u[c];
    if (kind == Kind::X32) {
      for (int j = 0; j < 8; ++j) {
        const __m256 a = _mm256_set1_ps(uc.a[j]), b = _mm256_set1_ps(uc.b[j]);
        for (int t = 0; t < 4; ++t)
          _mm256_storeu_ps(out + 32 * j + 8 * t, _mm256_fmadd_ps(cvt8(uc.q + 32 * j + 8 * t), a, b));
      }
    } else {
      for (int g = 0; g < 16; ++g) {
        const __m256 s = _mm256_set1_ps(uc.d * (float)uc.sc[g]);
        const __m256 m = _mm256_set1_ps(uc.dmin * (float)uc.mn[g]);
        for (int t = 0; t < 2; ++t)
          _mm256_storeu_ps(out + 16 * g + 8 * t, _mm256_fmsub_ps(cvt8(uc.q + 16 * g + 8 * t), s, m));
      }
    }
  }
}

}  // namespace

void f16_row_to_float_avx2(const uint16_t* src, int64_t k, float* out) {
  int64_t e = 0;
  for (; e + 8 <= k; e += 8)
    _mm256_storeu_ps(out + e, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + e))));
  if (e < k) {
    uint16_t tmp[8] = {0};
    float f[8];
    std::memcpy(tmp, src + e, (size_t)(k - e) * 2);
    _mm256_storeu_ps(f, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)tmp)));
    std::memcpy(out + e, f, (size_t)(k - e) * 4);
  }
}

void bf16_row_to_float_avx2(const uint16_t* src, int64_t k, float* out) {
  int64_t e = 0;
  for (; e + 8 <= k; e += 8) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(src + e)));
    _mm256_storeu_ps(out + e, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
  }
  for (; e < k; ++e) {
    const uint32_t b = (uint32_t)src[e] << 16;
    std::memcpy(out + e, &b, 4);
  }
}

void dot_half_avx2(const uint16_t* w, bool bf16, const float* const* x, int mr, int64_t k, float* out) {
  switch (mr * 2 + (bf16 ? 1 : 0)) {
    case 2: dot_h_mr<false, 1>(w, x, k, out); break;
    case 3: dot_h_mr<true, 1>(w, x, k, out); break;
    case 4: dot_h_mr<false, 2>(w, x, k, out); break;
    case 5: dot_h_mr<true, 2>(w, x, k, out); break;
    case 6: dot_h_mr<false, 3>(w, x, k, out); break;
    case 7: dot_h_mr<true, 3>(w, x, k, out); break;
    case 8: dot_h_mr<false, 4>(w, x, k, out); break;
    default: dot_h_mr<true, 4>(w, x, k, out); break;
  }
}

const Kernels& avx2_kernels() {
  static const Kernels k{dot_x32<false>, dot_x32<true>, dot_x256<false>, dot_x256<true>, dot_f,
                         chunks_to_float, quant_x32_avx2, quant_x256_avx2, quant_residual_avx2};
  return k;
}

}  // namespace mm
}  // namespace pq
