// M = 1 on row-interleaved 4-bit weights (cpu/interleave.h): 8 weight rows per pass.
//
// Per group-block (8 rows x 32 weights, Q4_0: 144 bytes): 4 loads of 32 bytes (4 rows x 8 bytes
// each), 12 uops to split nibbles, 8 vpmaddubsw against the activation block's 4 quarters
// broadcast from memory (vpbroadcastq: load port only), 6 vpaddw (int16 sums of 8 products of
// 15 * 127 fit), 2 vpmaddwd + 1 vphaddd -> the 8 rows' int32 dots, 1 cvt, 1 vcvtph2ps for the 8
// scales, 1 mul + 2 FMAs: ~38 uops for 8 (row, block) pairs, vs ~11 per pair row by row
// (gemv_x32_pair). int8x2 adds 8 vpmaddubsw + 6 vpaddw + 2 vpmaddwd + 2 vpaddd for the residual.
// Prediction (standalone prototype, one core, L2-resident, 4096 x 14336 Q4_0): 4.33 -> 2.80
// cycles per (row, block) for the pair, 3.64 -> 1.65 for one int8 row; cold at 2 threads the pair
// 1.71 -> 1.29 ms. Measured in the package: see docs/kernels.md ("Row-interleaved weights").
#include <immintrin.h>

#include <cstring>

#include "common/qtypes.h"
#include "cpu/interleave.h"

namespace pq {
namespace mm {
namespace {

// Lanes come out of vphaddd as rows [0 1 4 5 | 2 3 6 7].
inline __m256i to_hadd_order() { return _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7); }

inline __m256i bcast8(const int8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_set1_epi64x(v);
}

// Sums over the block of q * x for rows 0-3 (lo) and 4-7 (hi) as int16 pairs per row:
// q0/q1: chunk 0 (weights 0-7 low nibbles, 16-23 high) of rows 0-3 / 4-7; q2/q3: chunk 1 (8-15, 24-31).
struct Split {
  __m256i l0, l1, l2, l3, h0, h1, h2, h3;
  explicit Split(const uint8_t* q) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i q0 = _mm256_loadu_si256((const __m256i*)q), q1 = _mm256_loadu_si256((const __m256i*)(q + 32));
    const __m256i q2 = _mm256_loadu_si256((const __m256i*)(q + 64)), q3 = _mm256_loadu_si256((const __m256i*)(q + 96));
    l0 = _mm256_and_si256(q0, m4); l1 = _mm256_and_si256(q1, m4);
    l2 = _mm256_and_si256(q2, m4); l3 = _mm256_and_si256(q3, m4);
    h0 = _mm256_and_si256(_mm256_srli_epi16(q0, 4), m4); h1 = _mm256_and_si256(_mm256_srli_epi16(q1, 4), m4);
    h2 = _mm256_and_si256(_mm256_srli_epi16(q2, 4), m4); h3 = _mm256_and_si256(_mm256_srli_epi16(q3, 4), m4);
  }
  // int16 lanes: 4 products each (2 per vpmaddubsw lane x 2 adds) .. 8: |sum| <= 8 * 15 * 127
  void dot(const int8_t* x, __m256i& lo, __m256i& hi) const {
    const __m256i xa = bcast8(x), xb = bcast8(x + 8), xc = bcast8(x + 16), xd = bcast8(x + 24);
    lo = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(l0, xa), _mm256_maddubs_epi16(l2, xb)),
                          _mm256_add_epi16(_mm256_maddubs_epi16(h0, xc), _mm256_maddubs_epi16(h2, xd)));
    hi = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(l1, xa), _mm256_maddubs_epi16(l3, xb)),
                          _mm256_add_epi16(_mm256_maddubs_epi16(h1, xc), _mm256_maddubs_epi16(h3, xd)));
  }
};

// kMin: Q4_1 (header d, m per row; w = d*q + m); else Q4_0 (header d; w = d*(q - 8)).
// kPair: x[0] and its residual x[1] (d2 = d1/256 exactly): 256*S1 + S2 in int32, scaled by d * d2.
template <bool kMin, bool kPair>
void group8_q4(const WeightRef& w, int64_t r0, const XQRow* x, float* out) {
  constexpr int kH = kMin ? 4 : 2, kTs = 8 * (kH + 16);
  const int64_t nb = w.k / 32;
  const uint8_t* g = w.data + r0 * w.row_bytes;
  const __m256i ones = _mm256_set1_epi16(1), k256 = _mm256_set1_epi16(256), perm = to_hadd_order();
  const float* dx = kPair ? x[1].d : x[0].d;
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, accb[2] = {acc[0], acc[1]};
  const int64_t pf = prefetch_bytes();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = g + kTs * b;
    if (pf)
      for (int o = 0; o < kTs; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + pf + o, _MM_HINT_T0);
    __m256 d, m;   // per row, in vphaddd's lane order
    if (kMin) {   // [d0 m0 d1 m1 d2 m2 d3 m3], [d4 m4 ..]: shuffle_ps picks d0 d1 d4 d5 | d2 d3 d6 d7
      const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p));
      const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 16)));
      d = _mm256_shuffle_ps(v0, v1, 0x88);
      m = _mm256_shuffle_ps(v0, v1, 0xdd);
    } else {
      d = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)), perm);
      m = d;
    }
    const Split q(p + 8 * kH);
    const int8_t* x1 = x[0].q + 32 * b;
    __m256i lo, hi, a, c;
    q.dot(x1, lo, hi);
    if (kPair) {
      __m256i lo2, hi2;
      q.dot(x[1].q + 32 * b, lo2, hi2);
      a = _mm256_add_epi32(_mm256_madd_epi16(lo, k256), _mm256_madd_epi16(lo2, ones));
      c = _mm256_add_epi32(_mm256_madd_epi16(hi, k256), _mm256_madd_epi16(hi2, ones));
    } else {
      a = _mm256_madd_epi16(lo, ones);
      c = _mm256_madd_epi16(hi, ones);
    }
    const __m256 s = _mm256_cvtepi32_ps(_mm256_hadd_epi32(a, c));
    // two chains each (even / odd blocks): one FMA chain's 4-cycle latency would bound the loop
    acc[b & 1] = _mm256_fmadd_ps(s, _mm256_mul_ps(d, _mm256_set1_ps(dx[b])), acc[b & 1]);
    const float sx = kPair ? x[0].s[b] + x[1].s[b] : x[0].s[b];
    accb[b & 1] = _mm256_fmadd_ps(m, _mm256_set1_ps(sx), accb[b & 1]);
  }
  // offsets: Q4_1 adds m * s, Q4_0 subtracts 8 * d * s
  const __m256 off = _mm256_add_ps(accb[0], accb[1]);
  const __m256 y = kMin ? _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), off)
                        : _mm256_fnmadd_ps(off, _mm256_set1_ps(8.f), _mm256_add_ps(acc[0], acc[1]));
  alignas(32) float t[8];
  _mm256_store_ps(t, y);
  static const int kRow[8] = {0, 1, 4, 5, 2, 3, 6, 7};
  for (int l = 0; l < 8; ++l) out[kRow[l]] = t[l];
}

template <bool kMin>
void group8(const WeightRef& w, int64_t r0, const XQRow* x, bool pair, float* out) {
  if (pair) group8_q4<kMin, true>(w, r0, x, out);
  else group8_q4<kMin, false>(w, r0, x, out);
}

}  // namespace

GemvGroup8Fn avx2_group8(int qtype) {
  switch (qtype) {
    case (int)QType::Q4_0: return group8<false>;
    case (int)QType::Q4_1: return group8<true>;
    default: return nullptr;
  }
}

}  // namespace mm
}  // namespace pq
