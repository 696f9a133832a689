// M <= 8 on row-interleaved weights (cpu/interleave.h): 8 weight rows per pass, the decode of each
// group-block shared by up to 4 rows of x (run_gemv makes a second pass, from L2, past 4).
//
// Per group-block (8 rows x 32 weights, Q4_0: 144 bytes): 4 loads of 32 bytes (4 rows x 8 bytes
// each), 12 uops to split nibbles, 8 vpmaddubsw against the activation block's 4 quarters
// broadcast from memory (vpbroadcastq: load port only), 6 vpaddw (int16 sums of 8 products of
// 15 * 127 fit), 2 vpmaddwd + 1 vphaddd -> the 8 rows' int32 dots, 1 cvt, 1 vcvtph2ps for the 8
// scales, 1 mul + 2 FMAs: ~38 uops for 8 (row, block) pairs, vs ~11 per pair row by row
// (gemv_x32_pair). int8x2 adds 8 vpmaddubsw + 6 vpaddw + 2 vpmaddwd + 2 vpaddd for the residual.
// Prediction (standalone prototype, one core, L2-resident, 4096 x 14336 Q4_0): 4.33 -> 2.80
// cycles per (row, block) for the pair, 3.64 -> 1.65 for one int8 row; cold at 2 threads the pair
// 1.71 -> 1.29 ms. Measured in the package (AMD EPYC, 2 threads, cold, same run as plain rows):
// 1.53 -> 1.02 ms (Q4_0), Q4_K 1.54 -> 1.06, Q8_0 2.68 -> 1.71, int4-g128 1.45 -> 1.00 (README).
//
// Compiled twice: here for AVX2, and as vnni/gemv_rows8_vnni.cpp with PQ_VNNI = 1 (AVX-512 VNNI +
// VL, on 256-bit registers), where one vpdpbusd replaces vpmaddubsw + vpaddw (+ vpmaddwd): the
// same integer sums, so bit-identical y. Measured standalone (Zen 4, one core, L2-resident Q4_0
// pair, cycles per 8 rows x 32 weights): 22.5 with AVX2, 19.9 with the AVX-512 registers alone,
// 15.5 with vpdpbusd.
#include <immintrin.h>

#include <cstring>

#ifndef PQ_VNNI
#define PQ_VNNI 0
#endif

#include "common/qtypes.h"
#include "cpu/avx2/exl2_decode.h"
#include "cpu/avx2/keep.h"
#include "cpu/exl2_blocks.h"
#include "cpu/interleave.h"

namespace pq {
namespace mm {
namespace {

// Lanes come out of vphaddd as rows [0 1 4 5 | 2 3 6 7].
inline __m256i to_hadd_order() { return _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7); }
// y in that lane order -> out[0..8) in row order
inline void store_rows(__m256 y, float* out) {
  _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(y, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)));
}

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
#if PQ_VNNI
  // int32 lanes (dword j of a row: its weights 4j..4j+3 of each chunk): the sums vpmaddwd by 1
  // makes of dot()'s int16 pairs, exactly.
  void dot32(const int8_t* x, __m256i& lo, __m256i& hi) const {
    const __m256i xa = bcast8(x), xb = bcast8(x + 8), xc = bcast8(x + 16), xd = bcast8(x + 24);
    const __m256i z = _mm256_setzero_si256();
    lo = _mm256_add_epi32(_mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, l0, xa), l2, xb),
                          _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, h0, xc), h2, xd));
    hi = _mm256_add_epi32(_mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, l1, xa), l3, xb),
                          _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, h1, xc), h3, xd));
  }
#endif
  // dot() for two activation rows at once (an int8x2 pair), register by register: each split
  // register meets both rows' broadcasts, and the four int16 sums are kept (keep.h: no spilling
  // tree of partial sums). Integer sums without overflow: the same lo / hi as two dot() calls.
  void dot2(const int8_t* x0, const int8_t* x1, __m256i& lo0, __m256i& hi0, __m256i& lo1, __m256i& hi1) const {
    const __m256i* ql[4] = {&l0, &l2, &h0, &h2};   // rows 0-3, against x quarters 0..3
    const __m256i* qh[4] = {&l1, &l3, &h1, &h3};   // rows 4-7
    lo0 = hi0 = lo1 = hi1 = _mm256_setzero_si256();
    for (int t = 0; t < 4; ++t) {
      const __m256i a = bcast8(x0 + 8 * t), b = bcast8(x1 + 8 * t);
      lo0 = keep(_mm256_add_epi16(lo0, _mm256_maddubs_epi16(*ql[t], a)));
      hi0 = keep(_mm256_add_epi16(hi0, _mm256_maddubs_epi16(*qh[t], a)));
      lo1 = keep(_mm256_add_epi16(lo1, _mm256_maddubs_epi16(*ql[t], b)));
      hi1 = keep(_mm256_add_epi16(hi1, _mm256_maddubs_epi16(*qh[t], b)));
    }
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

// Where the 8 rows' scale d and offset m of a block come from, and w = d * (q + off) or d * q + m:
//   Q4_0: header d per row; w = d * (q - 8)         Q4_1: header (d, m) per row; w = d * q + m
//   int4: no header; scales and mins side arrays, [n/8][ng][8] (a group's 8 rows side by side)
//   Q5_0: header (d, qh[4]); w = d * (q - 16)       Q5_1: header (d, m, qh[4]); w = d * q + m
//         (qh bit j: the 5th bit of weight j)
enum Src { kQ4_0, kQ4_1, kQ5_0, kQ5_1, kInt4Src };

// The 8 headers of a Q5_0 / Q5_1 group-block: d (and m) in vphaddd lane order, the qh dwords of
// rows 0-3 / 4-7 in both lanes. Two rows' headers per 16-byte load, regrouped by shuffles (built
// from 16 scalar loads and inserts they cost ~5 uops per row and block: Q5_0 ran 2.5x Q4_0's time).
struct Q5Headers {
  __m256 d, m;
  __m256i q03, q47;
  Q5Headers(const uint8_t* p, bool q5_1, __m256i perm) {
    if (q5_1) {   // 8-byte headers [d m qh]: dwords (dm, qh) per row
      __m128 dm[2];
      __m128i qh[2];
      for (int h = 0; h < 2; ++h) {
        const __m128 a = _mm_castsi128_ps(_mm_loadu_si128((const __m128i*)(p + 32 * h)));
        const __m128 b = _mm_castsi128_ps(_mm_loadu_si128((const __m128i*)(p + 32 * h + 16)));
        dm[h] = _mm_shuffle_ps(a, b, 0x88);                      // (d, m) of 4 rows
        qh[h] = _mm_castps_si128(_mm_shuffle_ps(a, b, 0xdd));    // qh of 4 rows
      }
      const __m256 v0 = _mm256_cvtph_ps(_mm_castps_si128(dm[0])), v1 = _mm256_cvtph_ps(_mm_castps_si128(dm[1]));
      d = _mm256_shuffle_ps(v0, v1, 0x88);   // [d0 d1 d4 d5 | d2 d3 d6 d7]
      m = _mm256_shuffle_ps(v0, v1, 0xdd);
      q03 = _mm256_broadcastsi128_si256(qh[0]);
      q47 = _mm256_broadcastsi128_si256(qh[1]);
      return;
    }
    // 6-byte headers [d qh]: per 2-row load, dword 0 = (d_a, d_b), 1 = qh_a, 2 = qh_b
    const __m128i sel = _mm_setr_epi8(0, 1, 6, 7, 2, 3, 4, 5, 8, 9, 10, 11, -1, -1, -1, -1);
    __m128i t[4];
    for (int i = 0; i < 4; ++i) t[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i*)(p + 12 * i)), sel);
    const __m128i ab = _mm_unpacklo_epi32(t[0], t[1]), cd = _mm_unpacklo_epi32(t[2], t[3]);   // [d d qh qh]
    const __m128i q03 = _mm_unpacklo_epi32(_mm_unpackhi_epi64(ab, ab), _mm_unpackhi_epi32(t[0], t[1]));
    const __m128i q47 = _mm_unpacklo_epi32(_mm_unpackhi_epi64(cd, cd), _mm_unpackhi_epi32(t[2], t[3]));
    d = m = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_unpacklo_epi64(ab, cd)), perm);
    this->q03 = _mm256_broadcastsi128_si256(q03);
    this->q47 = _mm256_broadcastsi128_si256(q47);
  }
};

// The 5th bits of 4 rows (qh dwords q4 = [qh0 qh1 qh2 qh3] in both lanes) for the register whose
// 64-bit lanes hold those rows' weights 8j..8j+7: 0x10 where set.
inline __m256i bit5(__m256i q4, int j) {
  const __m256i idx = _mm256_setr_epi64x(0x0101010101010101LL * j, 0x0101010101010101LL * (4 + j),
                                         0x0101010101010101LL * (8 + j), 0x0101010101010101LL * (12 + j));
  const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
  const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(q4, idx), bits);
  return _mm256_and_si256(_mm256_cmpeq_epi8(b, bits), _mm256_set1_epi8(0x10));
}

#if !PQ_VNNI
// Split(q) with the 5th bits (bit5) and Split::dot2 in one pass, quarter by quarter: each quarter's
// two registers are decoded, given their 5th bits and met by both rows' broadcasts before the next
// quarter, with the int16 sums kept (keep.h). Decoding all 8 registers first kept them live through
// the 5th bits' shuffles and spilled (llvm-mca, znver3: 23 stack accesses a group-block for Q5_0,
// 39.6 cycles against Q4_0's 17.8). The same registers and int16 sums: the same lo / hi.
inline void q5_dot2(const uint8_t* q, __m256i q03, __m256i q47, const int8_t* x0, const int8_t* x1, __m256i& lo0,
                    __m256i& hi0, __m256i& lo1, __m256i& hi1) {
  const __m256i m4 = _mm256_set1_epi8(15);
  lo0 = hi0 = lo1 = hi1 = _mm256_setzero_si256();
  for (int t = 0; t < 4; ++t) {   // weights 8t..8t+7: chunk t % 2, low nibbles (t < 2) or high
    const __m256i v03 = _mm256_loadu_si256((const __m256i*)(q + 64 * (t & 1)));
    const __m256i v47 = _mm256_loadu_si256((const __m256i*)(q + 64 * (t & 1) + 32));
    const __m256i r03 = _mm256_or_si256(_mm256_and_si256(t < 2 ? v03 : _mm256_srli_epi16(v03, 4), m4), bit5(q03, t));
    const __m256i r47 = _mm256_or_si256(_mm256_and_si256(t < 2 ? v47 : _mm256_srli_epi16(v47, 4), m4), bit5(q47, t));
    const __m256i a = bcast8(x0 + 8 * t), b = bcast8(x1 + 8 * t);
    lo0 = keep(_mm256_add_epi16(lo0, _mm256_maddubs_epi16(r03, a)));
    hi0 = keep(_mm256_add_epi16(hi0, _mm256_maddubs_epi16(r47, a)));
    lo1 = keep(_mm256_add_epi16(lo1, _mm256_maddubs_epi16(r03, b)));
    hi1 = keep(_mm256_add_epi16(hi1, _mm256_maddubs_epi16(r47, b)));
  }
}
#endif

// MR activation units (1..4): a unit is one row x[u], or (kPair) a row and its residual x[2u],
// x[2u+1] (d2 = d1/256 exactly: 256*S1 + S2 in int32, scaled by d * d2). The weight decode is
// shared by the units; out[8u + row].
template <Src kSrc, bool kPair, int MR>
void group8_x32(const WeightRef& w, int64_t r0, const XQRow* x, float* out) {
  constexpr int kH = kSrc == kQ4_0 ? 2 : kSrc == kQ4_1 ? 4 : kSrc == kQ5_0 ? 6 : kSrc == kQ5_1 ? 8 : 0;
  constexpr int kTs = 8 * (kH + 16);
  constexpr bool kQ5 = kSrc == kQ5_0 || kSrc == kQ5_1;
  const int64_t nb = w.k / 32;
  const uint8_t* g = w.data + r0 * w.row_bytes;
  [[maybe_unused]] const __m256i ones = _mm256_set1_epi16(1), k256 = _mm256_set1_epi16(256);
  const __m256i perm = to_hadd_order();
  constexpr int kXs = kPair ? 2 : 1;   // activation rows per unit
  // int4: this group of rows' scales / mins, 8 per weight group
  const int64_t ng = kSrc == kInt4Src ? w.k / w.group_size : 0;
  const float* sc = kSrc == kInt4Src ? w.scales + r0 * ng : nullptr;
  const float* mn = kSrc == kInt4Src ? w.mins + r0 * ng : nullptr;
  const int shift = kSrc == kInt4Src ? int4_group_shift(w) : 0;
  __m256 acc[MR][2], accb[MR][2];
  for (int u = 0; u < MR; ++u) acc[u][0] = acc[u][1] = accb[u][0] = accb[u][1] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = g + kTs * b;
    if (pf)
      for (int o = 0; o < kTs; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + pf + o, _MM_HINT_T0);
    __m256 d, m;   // per row, in vphaddd's lane order
    __m256i q03, q47;   // Q5: the qh dwords of rows 0-3 / 4-7
    if (kSrc == kQ4_1) {   // [d0 m0 d1 m1 d2 m2 d3 m3], [d4 m4 ..]: shuffle_ps picks d0 d1 d4 d5 | d2 d3 d6 d7
      const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p));
      const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 16)));
      d = _mm256_shuffle_ps(v0, v1, 0x88);
      m = _mm256_shuffle_ps(v0, v1, 0xdd);
    } else if (kSrc == kQ4_0) {
      d = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)), perm);
      m = d;
    } else if (kQ5) {
      const Q5Headers hd(p, kSrc == kQ5_1, perm);
      d = hd.d;
      m = hd.m;
      q03 = hd.q03;
      q47 = hd.q47;
    } else {
      const int64_t gi = 8 * (b >> shift);
      d = _mm256_permutevar8x32_ps(_mm256_loadu_ps(sc + gi), perm);
      m = _mm256_permutevar8x32_ps(_mm256_loadu_ps(mn + gi), perm);
    }
#if !PQ_VNNI
    if constexpr (kQ5 && kPair && MR == 1) {   // M = 1, int8x2: quarter by quarter (q5_dot2)
      __m256i lo, hi, lo2, hi2;
      q5_dot2(p + 8 * kH, q03, q47, x[0].q + 32 * b, x[1].q + 32 * b, lo, hi, lo2, hi2);
      const __m256i a = _mm256_add_epi32(_mm256_madd_epi16(lo, k256), _mm256_madd_epi16(lo2, ones));
      const __m256i c = _mm256_add_epi32(_mm256_madd_epi16(hi, k256), _mm256_madd_epi16(hi2, ones));
      const __m256 s = _mm256_cvtepi32_ps(_mm256_hadd_epi32(a, c));
      acc[0][b & 1] = _mm256_fmadd_ps(s, _mm256_mul_ps(d, _mm256_set1_ps(x[1].d[b])), acc[0][b & 1]);
      accb[0][b & 1] = _mm256_fmadd_ps(m, _mm256_set1_ps(x[0].s[b] + x[1].s[b]), accb[0][b & 1]);
      continue;
    }
#endif
    Split q(p + 8 * kH);
    if (kQ5) {   // register -> qh byte: l0/l1 weights 0-7, l2/l3 8-15, h0/h1 16-23, h2/h3 24-31
      q.l0 = _mm256_or_si256(q.l0, bit5(q03, 0)); q.l1 = _mm256_or_si256(q.l1, bit5(q47, 0));
      q.l2 = _mm256_or_si256(q.l2, bit5(q03, 1)); q.l3 = _mm256_or_si256(q.l3, bit5(q47, 1));
      q.h0 = _mm256_or_si256(q.h0, bit5(q03, 2)); q.h1 = _mm256_or_si256(q.h1, bit5(q47, 2));
      q.h2 = _mm256_or_si256(q.h2, bit5(q03, 3)); q.h3 = _mm256_or_si256(q.h3, bit5(q47, 3));
    }
    for (int u = 0; u < MR; ++u) {
      const XQRow* xu = x + kXs * u;
      __m256i lo, hi, a, c;
#if PQ_VNNI
      q.dot32(xu[0].q + 32 * b, lo, hi);
      if (kPair) {   // 256 * S1 + S2, as the AVX2 path's vpmaddwd by 256 and by 1
        __m256i lo2, hi2;
        q.dot32(xu[1].q + 32 * b, lo2, hi2);
        a = _mm256_add_epi32(_mm256_slli_epi32(lo, 8), lo2);
        c = _mm256_add_epi32(_mm256_slli_epi32(hi, 8), hi2);
      } else {
        a = lo;
        c = hi;
      }
#else
      if (kPair) {
        __m256i lo2, hi2;
        q.dot2(xu[0].q + 32 * b, xu[1].q + 32 * b, lo, hi, lo2, hi2);
        a = _mm256_add_epi32(_mm256_madd_epi16(lo, k256), _mm256_madd_epi16(lo2, ones));
        c = _mm256_add_epi32(_mm256_madd_epi16(hi, k256), _mm256_madd_epi16(hi2, ones));
      } else {
        q.dot(xu[0].q + 32 * b, lo, hi);
        a = _mm256_madd_epi16(lo, ones);
        c = _mm256_madd_epi16(hi, ones);
      }
#endif
      const __m256 s = _mm256_cvtepi32_ps(_mm256_hadd_epi32(a, c));
      // two chains each (even / odd blocks): one FMA chain's 4-cycle latency would bound the loop
      const float dx = kPair ? xu[1].d[b] : xu[0].d[b];
      acc[u][b & 1] = _mm256_fmadd_ps(s, _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc[u][b & 1]);
      const float sx = kPair ? xu[0].s[b] + xu[1].s[b] : xu[0].s[b];
      accb[u][b & 1] = _mm256_fmadd_ps(m, _mm256_set1_ps(sx), accb[u][b & 1]);
    }
  }
  // offsets: Q4_1 / Q5_1 / int4 add m * s, Q4_0 subtracts 8 * d * s, Q5_0 16 * d * s
  constexpr float kOff = kSrc == kQ4_0 ? -8.f : kSrc == kQ5_0 ? -16.f : 1.f;
  for (int u = 0; u < MR; ++u) {
    const __m256 off = _mm256_add_ps(accb[u][0], accb[u][1]);
    store_rows(_mm256_fmadd_ps(off, _mm256_set1_ps(kOff), _mm256_add_ps(acc[u][0], acc[u][1])), out + 8 * u);
  }
}

// One entry per type: mr units (1..4), pair or not.
template <template <bool, int> class K>
void by_units(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out) {
  switch (mr * 2 + pair) {
    case 2: return K<false, 1>::run(w, r0, x, out);
    case 3: return K<true, 1>::run(w, r0, x, out);
    case 4: return K<false, 2>::run(w, r0, x, out);
    case 5: return K<true, 2>::run(w, r0, x, out);
    case 6: return K<false, 3>::run(w, r0, x, out);
    case 7: return K<true, 3>::run(w, r0, x, out);
    case 8: return K<false, 4>::run(w, r0, x, out);
    default: return K<true, 4>::run(w, r0, x, out);
  }
}
template <Src kSrc>
struct X32K {
  template <bool kPair, int MR>
  struct K {
    static void run(const WeightRef& w, int64_t r0, const XQRow* x, float* out) {
      group8_x32<kSrc, kPair, MR>(w, r0, x, out);
    }
  };
};
template <Src kSrc>
void group8(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out) {
  by_units<X32K<kSrc>::template K>(w, r0, x, mr, pair, out);
}

// ---------------------------------------------------------------- Q8_0
// Group-block: 8 fp16 d, then 4 chunks of 8 rows x 8 signed bytes (weights 8c..8c+7). Signed
// weights meet vpmaddubsw as |w| and x * sign(w); a lane's 2 products (<= 2 * 127 * 127) leave no
// room for int16 sums, so each 32-byte register goes to int32 (vpmaddwd) before the next is added.
template <bool kPair, int MR>
void group8_q8_0_t(const WeightRef& w, int64_t r0, const XQRow* x, float* out) {
  constexpr int kTs = 8 * 34;
  const int64_t nb = w.k / 32;
  const uint8_t* g = w.data + r0 * w.row_bytes;
  [[maybe_unused]] const __m256i ones = _mm256_set1_epi16(1), k256 = _mm256_set1_epi16(256);
  const __m256i perm = to_hadd_order();
  constexpr int kXs = kPair ? 2 : 1;
  __m256 acc[MR][2];
  for (int u = 0; u < MR; ++u) acc[u][0] = acc[u][1] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = g + kTs * b;
    if (pf)
      for (int o = 0; o < kTs; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + pf + o, _MM_HINT_T0);
    const __m256 d = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)), perm);
    __m256i s[MR][2];   // rows 0-3, 4-7: [r0 r0 r1 r1 | ..]
    for (int u = 0; u < MR; ++u) s[u][0] = s[u][1] = _mm256_setzero_si256();
#if PQ_VNNI
    __m256i s2[MR][2];   // the residual rows' sums (pairs)
    for (int u = 0; u < MR; ++u) s2[u][0] = s2[u][1] = _mm256_setzero_si256();
#endif
    for (int c = 0; c < 4; ++c)
      for (int h = 0; h < 2; ++h) {
        const __m256i v = _mm256_loadu_si256((const __m256i*)(p + 16 + 64 * c + 32 * h));
        const __m256i a = _mm256_abs_epi8(v);
        for (int u = 0; u < MR; ++u) {
          const XQRow* xu = x + kXs * u;
#if PQ_VNNI   // S1 and S2 apart (s2), 256 * S1 + S2 after the block: the same int32 sums
          s[u][h] = _mm256_dpbusd_epi32(s[u][h], a, _mm256_sign_epi8(bcast8(xu[0].q + 32 * b + 8 * c), v));
          if (kPair) s2[u][h] = _mm256_dpbusd_epi32(s2[u][h], a, _mm256_sign_epi8(bcast8(xu[1].q + 32 * b + 8 * c), v));
          continue;
#endif
          const __m256i p1 = _mm256_maddubs_epi16(a, _mm256_sign_epi8(bcast8(xu[0].q + 32 * b + 8 * c), v));
          if (kPair) {   // |256 * S1| <= 256 * 32 * 127 * 127 < 2^31
            const __m256i p2 = _mm256_maddubs_epi16(a, _mm256_sign_epi8(bcast8(xu[1].q + 32 * b + 8 * c), v));
            s[u][h] = _mm256_add_epi32(s[u][h],
                                       _mm256_add_epi32(_mm256_madd_epi16(p1, k256), _mm256_madd_epi16(p2, ones)));
          } else {
            s[u][h] = _mm256_add_epi32(s[u][h], _mm256_madd_epi16(p1, ones));
          }
        }
      }
#if PQ_VNNI
    if (kPair)
      for (int u = 0; u < MR; ++u)
        for (int h = 0; h < 2; ++h) s[u][h] = _mm256_add_epi32(_mm256_slli_epi32(s[u][h], 8), s2[u][h]);
#endif
    for (int u = 0; u < MR; ++u) {
      const __m256 sf = _mm256_cvtepi32_ps(_mm256_hadd_epi32(s[u][0], s[u][1]));
      const float dx = kPair ? x[kXs * u + 1].d[b] : x[u].d[b];
      acc[u][b & 1] = _mm256_fmadd_ps(sf, _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc[u][b & 1]);
    }
  }
  for (int u = 0; u < MR; ++u) store_rows(_mm256_add_ps(acc[u][0], acc[u][1]), out + 8 * u);
}

template <bool kPair, int MR>
struct Q8K {
  static void run(const WeightRef& w, int64_t r0, const XQRow* x, float* out) { group8_q8_0_t<kPair, MR>(w, r0, x, out); }
};
void group8_q8_0(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out) {
  by_units<Q8K>(w, r0, x, mr, pair, out);
}

// ---------------------------------------------------------------- Q4_K
// Group-block: 8 headers (d, dmin, 12 bytes of 6-bit scales / mins) = 128 bytes, then 16 chunks
// of 8 rows x 8 bytes. Chunk c holds qs bytes 8c..8c+7: low nibbles sub-block 2(c/4), high
// nibbles sub-block 2(c/4)+1, weights 8(c%4)..+7 of each. Activations X256 (per 256 one scale,
// per 16 a sum). Per 32-weight sub-block and 4 rows: 4 vpmaddubsw summed in int16 (<= 8 * 15 *
// 127), one vpmaddwd by the rows' 6-bit scales (one vpshufb from the 4 rows' scale bytes), int32
// over the super-block. The 8 headers are decoded together: a 4x4 dword transpose per 128-bit lane
// puts each header word of the 8 rows in one register ("T order", rows [0 2 4 6 | 1 3 5 7]), so
// llama.cpp's get_scale_min_k4 runs once on vectors (decoded row by row it cost ~3 uops per row
// and 32 weights, as much as the dot products: measured 6.1 cycles per row and 32 weights).

// The 8 rows' d, dmin (lane order of the dot sums), scale bytes (sc03: rows 0-3, 8 bytes each;
// sc47) and mins (mn_lo: bytes mn0..3 per row dword, mn_hi: mn4..7; T order).
struct K4Headers {
  __m256 d, dmin;
  __m256i sc03, sc47, mn_lo, mn_hi;
  explicit K4Headers(const uint8_t* p) {
    const __m256i l0 = _mm256_loadu_si256((const __m256i*)p), l1 = _mm256_loadu_si256((const __m256i*)(p + 32));
    const __m256i l2 = _mm256_loadu_si256((const __m256i*)(p + 64)), l3 = _mm256_loadu_si256((const __m256i*)(p + 96));
    const __m256i t0 = _mm256_unpacklo_epi32(l0, l1), t1 = _mm256_unpacklo_epi32(l2, l3);
    const __m256i t2 = _mm256_unpackhi_epi32(l0, l1), t3 = _mm256_unpackhi_epi32(l2, l3);
    const __m256i h = _mm256_unpacklo_epi64(t0, t1), w0 = _mm256_unpackhi_epi64(t0, t1);
    const __m256i w1 = _mm256_unpacklo_epi64(t2, t3), w2 = _mm256_unpackhi_epi64(t2, t3);
    const __m256i m6 = _mm256_set1_epi8(0x3f), m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    const __m256i s0 = _mm256_and_si256(w0, m6);
    const __m256i s1 = _mm256_or_si256(_mm256_and_si256(w2, m4),
                                       _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w0, 6), m2), 4));
    mn_lo = _mm256_and_si256(w1, m6);
    mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, 4), m4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w1, 6), m2), 4));
    // [r0 r2 | r1 r3] 8-byte rows -> [r0 r1 | r2 r3], the chunk loads' row order
    sc03 = _mm256_permute4x64_epi64(_mm256_unpacklo_epi32(s0, s1), 0xd8);
    sc47 = _mm256_permute4x64_epi64(_mm256_unpackhi_epi32(s0, s1), 0xd8);
    // fp16 pairs (d, dmin) in T order -> [d0 d2 d1 d3 | d4 d6 d5 d7] -> lane order
    const __m256 a = _mm256_cvtph_ps(_mm256_castsi256_si128(h)), b = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    d = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(a, b, 0x88), idx);
    dmin = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(a, b, 0xdd), idx);
  }
  // int32 per row (T order, before the final fold): sum over sub-blocks of mn[s] * (x's sum over s)
  __m256i mins(const int16_t* bsum16, __m256i& hi) const {
    const __m256i b = _mm256_loadu_si256((const __m256i*)bsum16);
    const __m256i hb = _mm256_hadd_epi16(b, b);   // [B0..B3 B0..B3 | B4..B7 B4..B7], B: per-32 sums
    const __m256i ba = _mm256_permute4x64_epi64(hb, 0x00), bb = _mm256_permute4x64_epi64(hb, 0xaa);
    const __m256i z = _mm256_setzero_si256();
    hi = _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpackhi_epi8(mn_lo, z), ba),
                          _mm256_madd_epi16(_mm256_unpackhi_epi8(mn_hi, z), bb));   // rows 4 6 | 5 7
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpacklo_epi8(mn_lo, z), ba),
                            _mm256_madd_epi16(_mm256_unpacklo_epi8(mn_hi, z), bb));  // rows 0 2 | 1 3
  }
};

// [r0 r2 r4 r6 | r1 r3 r5 r7] -> lane order [r0 r1 r4 r5 | r2 r3 r6 r7]
inline __m256i t_to_lanes(__m256i lo, __m256i hi) {
  return _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo, hi), _mm256_setr_epi32(0, 4, 2, 6, 1, 5, 3, 7));
}

struct K4Split {
  __m256i lo[4][2], hi[4][2];   // [chunk of the sub-block pair][row quad]
};

// Adds sc[s] * (q . x) for the sub-block pair of q to a03 (rows 0-3, [r0 r0 r1 r1 | r2 r2 r3 r3])
// and a47; xq: the pair's 64 activations; ilo / ihi pick sub-block 2j / 2j+1's scale bytes.
inline void k4_pair_dot(const K4Split& q, const int8_t* xq, __m256i sc03, __m256i sc47, __m256i ilo, __m256i ihi,
                        __m256i& a03, __m256i& a47) {
  __m256i slo[2], shi[2];
  for (int h = 0; h < 2; ++h) slo[h] = shi[h] = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    const __m256i xl = bcast8(xq + 8 * c), xh = bcast8(xq + 32 + 8 * c);
    for (int h = 0; h < 2; ++h) {
      slo[h] = _mm256_add_epi16(slo[h], _mm256_maddubs_epi16(q.lo[c][h], xl));
      shi[h] = _mm256_add_epi16(shi[h], _mm256_maddubs_epi16(q.hi[c][h], xh));
    }
  }
  a03 = _mm256_add_epi32(a03, _mm256_add_epi32(_mm256_madd_epi16(slo[0], _mm256_shuffle_epi8(sc03, ilo)),
                                               _mm256_madd_epi16(shi[0], _mm256_shuffle_epi8(sc03, ihi))));
  a47 = _mm256_add_epi32(a47, _mm256_add_epi32(_mm256_madd_epi16(slo[1], _mm256_shuffle_epi8(sc47, ilo)),
                                               _mm256_madd_epi16(shi[1], _mm256_shuffle_epi8(sc47, ihi))));
}

#if !PQ_VNNI
// k4_pair_dot for two activation rows (an int8x2 pair at M = 1, or M = 2), chunk by chunk: each
// chunk's two row-quad registers are split and meet both rows' broadcasts before the next chunk
// loads, so 4 split registers replace K4Split's 16, which spilled (llvm-mca, znver3: 32 stack
// stores + reloads a sub-block pair, the load/store pipes the bottleneck). The same int16 sums in
// the same order, so the same int32 a03 / a47. AVX2 only: the VNNI build has 32 registers.
template <int NX>
inline void k4_pair_dot_by_chunk(const uint8_t* qj, const XQRow* x, int64_t xoff, __m256i sc03, __m256i sc47,
                                 __m256i ilo, __m256i ihi, __m256i* a03, __m256i* a47) {
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256i slo[NX][2], shi[NX][2];
  for (int i = 0; i < NX; ++i)
    for (int h = 0; h < 2; ++h) slo[i][h] = shi[i][h] = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    __m256i lo[2], hi[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_loadu_si256((const __m256i*)(qj + 64 * c + 32 * h));
      lo[h] = _mm256_and_si256(v, m4);
      hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    for (int i = 0; i < NX; ++i) {
      const __m256i xl = bcast8(x[i].q + xoff + 8 * c), xh = bcast8(x[i].q + xoff + 32 + 8 * c);
      for (int h = 0; h < 2; ++h) {
        slo[i][h] = keep(_mm256_add_epi16(slo[i][h], _mm256_maddubs_epi16(lo[h], xl)));   // keep.h
        shi[i][h] = keep(_mm256_add_epi16(shi[i][h], _mm256_maddubs_epi16(hi[h], xh)));
      }
    }
  }
  for (int i = 0; i < NX; ++i) {
    a03[i] = _mm256_add_epi32(a03[i], _mm256_add_epi32(_mm256_madd_epi16(slo[i][0], _mm256_shuffle_epi8(sc03, ilo)),
                                                       _mm256_madd_epi16(shi[i][0], _mm256_shuffle_epi8(sc03, ihi))));
    a47[i] = _mm256_add_epi32(a47[i], _mm256_add_epi32(_mm256_madd_epi16(slo[i][1], _mm256_shuffle_epi8(sc47, ilo)),
                                                       _mm256_madd_epi16(shi[i][1], _mm256_shuffle_epi8(sc47, ihi))));
  }
}
#endif

#if PQ_VNNI
// k4_pair_dot with vpdpbusd: each dword's sum of 4 products over the 4 chunks (<= 16 * 15 * 127)
// times its row's sub-block scale (vpmulld by sc*: the scale byte in each dword) gives the dwords
// vpmaddwd makes of the int16 sums there: the same int32 a03 / a47.
inline void k4_pair_dot_vnni(const K4Split& q, const int8_t* xq, __m256i sc03l, __m256i sc03h, __m256i sc47l,
                             __m256i sc47h, __m256i& a03, __m256i& a47) {
  __m256i slo[2], shi[2];
  for (int h = 0; h < 2; ++h) slo[h] = shi[h] = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    const __m256i xl = bcast8(xq + 8 * c), xh = bcast8(xq + 32 + 8 * c);
    for (int h = 0; h < 2; ++h) {
      slo[h] = _mm256_dpbusd_epi32(slo[h], q.lo[c][h], xl);
      shi[h] = _mm256_dpbusd_epi32(shi[h], q.hi[c][h], xh);
    }
  }
  a03 = _mm256_add_epi32(a03, _mm256_add_epi32(_mm256_mullo_epi32(slo[0], sc03l), _mm256_mullo_epi32(shi[0], sc03h)));
  a47 = _mm256_add_epi32(a47, _mm256_add_epi32(_mm256_mullo_epi32(slo[1], sc47l), _mm256_mullo_epi32(shi[1], sc47h)));
}
#endif

template <bool kPair, int MR>
void group8_q4_k_t(const WeightRef& w, int64_t r0, const XQRow* x, float* out) {
  constexpr int kTs = 8 * 144, kXs = kPair ? 2 : 1;
  const int64_t nsb = w.k / 256;
  const uint8_t* g = w.data + r0 * w.row_bytes;
  [[maybe_unused]] const __m256i m4 = _mm256_set1_epi8(15), one16 = _mm256_set1_epi16(1);
  // vpshufb indices: int16 lanes 0-3 <- byte s of the lane's first row, 4-7 <- byte 8 + s (second row)
  [[maybe_unused]] const __m256i idx0 = _mm256_setr_epi16(-32768, -32768, -32768, -32768, -32760, -32760, -32760,
                                                          -32760, -32768, -32768, -32768, -32768, -32760, -32760,
                                                          -32760, -32760);
  // VNNI: int32 lanes 0-1 <- byte 0 of the lane's first row, 2-3 <- byte 8 (its second row), zero above
  [[maybe_unused]] const __m256i idx32 = _mm256_setr_epi32(
      (int)0x80808000u, (int)0x80808000u, (int)0x80808008u, (int)0x80808008u,
      (int)0x80808000u, (int)0x80808000u, (int)0x80808008u, (int)0x80808008u);
  [[maybe_unused]] const __m256i one32 = _mm256_set1_epi32(1);
  __m256 acc[MR], accm[MR];
  for (int u = 0; u < MR; ++u) acc[u] = accm[u] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* p = g + kTs * sb;
    if (pf)
      for (int o = 0; o < kTs; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + pf + o, _MM_HINT_T0);
    const K4Headers hd(p);
    const uint8_t* qb = p + 128;
    __m256i a03[MR * kXs], a47[MR * kXs];   // per activation row
    for (int i = 0; i < MR * kXs; ++i) a03[i] = a47[i] = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
#if !PQ_VNNI
      const __m256i ilo = _mm256_add_epi16(idx0, _mm256_set1_epi16((short)(2 * j)));
      const __m256i ihi = _mm256_add_epi16(ilo, one16);
      if constexpr (MR * kXs == 2) {   // no K4Split (one row keeps it: by chunk it measured 4% slower)
        k4_pair_dot_by_chunk<2>(qb + 256 * j, x, 256 * sb + 64 * j, hd.sc03, hd.sc47, ilo, ihi, a03, a47);
        continue;
      }
#endif
      K4Split q;
      for (int c = 0; c < 4; ++c)
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256((const __m256i*)(qb + 64 * (4 * j + c) + 32 * h));
          q.lo[c][h] = _mm256_and_si256(v, m4);
          q.hi[c][h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
#if PQ_VNNI
      // dword d of a 128-bit lane <- scale byte 2j (+1) of its row (bytes 0-7: the lane's first row)
      const __m256i jl = _mm256_add_epi32(idx32, _mm256_set1_epi32(2 * j)), jh = _mm256_add_epi32(jl, one32);
      const __m256i s03l = _mm256_shuffle_epi8(hd.sc03, jl), s03h = _mm256_shuffle_epi8(hd.sc03, jh);
      const __m256i s47l = _mm256_shuffle_epi8(hd.sc47, jl), s47h = _mm256_shuffle_epi8(hd.sc47, jh);
      for (int i = 0; i < MR * kXs; ++i)
        k4_pair_dot_vnni(q, x[i].q + 256 * sb + 64 * j, s03l, s03h, s47l, s47h, a03[i], a47[i]);
#else
      for (int i = 0; i < MR * kXs; ++i)
        k4_pair_dot(q, x[i].q + 256 * sb + 64 * j, hd.sc03, hd.sc47, ilo, ihi, a03[i], a47[i]);
#endif
    }
    for (int u = 0; u < MR; ++u) {
      const XQRow* xu = x + kXs * u;
      __m256i mhi, mlo = hd.mins(xu[0].bsum + 16 * sb, mhi);
      __m256 s = _mm256_cvtepi32_ps(_mm256_hadd_epi32(a03[kXs * u], a47[kXs * u]));
      float dx = xu[0].d[sb];
      if (kPair) {   // d2 = d1 / 256 exactly: one scale for 256 * S1 + S2 (S2 added in float: 256 * S1
                     // would not fit int32 over a super-block), the mins in int32 (< 2^30)
        s = _mm256_fmadd_ps(s, _mm256_set1_ps(256.f),
                            _mm256_cvtepi32_ps(_mm256_hadd_epi32(a03[kXs * u + 1], a47[kXs * u + 1])));
        __m256i mhi2, mlo2 = hd.mins(xu[1].bsum + 16 * sb, mhi2);
        mlo = _mm256_add_epi32(_mm256_slli_epi32(mlo, 8), mlo2);
        mhi = _mm256_add_epi32(_mm256_slli_epi32(mhi, 8), mhi2);
        dx = xu[1].d[sb];
      }
      const __m256 vdx = _mm256_set1_ps(dx);
      acc[u] = _mm256_fmadd_ps(s, _mm256_mul_ps(hd.d, vdx), acc[u]);
      accm[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t_to_lanes(mlo, mhi)), _mm256_mul_ps(hd.dmin, vdx), accm[u]);
    }
  }
  for (int u = 0; u < MR; ++u) store_rows(_mm256_sub_ps(acc[u], accm[u]), out + 8 * u);
}

template <bool kPair, int MR>
struct Q4KK {
  static void run(const WeightRef& w, int64_t r0, const XQRow* x, float* out) { group8_q4_k_t<kPair, MR>(w, r0, x, out); }
};
void group8_q4_k(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out) {
  by_units<Q4KK>(w, r0, x, mr, pair, out);
}

// ---------------------------------------------------------------- Q6_K
// Group-block: the 8 rows' trailers first (scales[16] int8, d fp16: 18 bytes each; the plain block
// keeps them after its quants), then 24 chunks of 8 rows x 8 bytes: chunks 0-15 hold ql (half h of
// the super-block: chunks 8h..8h+7), 16-23 hold qh (half h: 16+4h..16+4h+3). Within a half, ql
// byte l's low nibble is weight l and its high nibble weight l + 64; their 2 high bits sit in qh
// byte l % 32 at bits 2 (l / 32) and 4 + 2 (l / 32); weight i has scale sc[i / 16]. So ql chunks
// 2p, 2p+1 of a half are 16 weights at scale p (low nibbles) and 16 at scale p + 4 (high), with
// qh chunks (2p % 4), (2p % 4) + 1 at shift 2 (p / 2). q6 = 0..63 = value + 32 meets vpmaddubsw
// directly (two products per lane, two lanes per int16: <= 4 * 63 * 127), each 16-group's int16
// sums meet its signed scale in one vpmaddwd, the super-block accumulates in int32 (<= 2^28), and
// the -32 comes from x's per-16 sums: d * dx * (S - 32 * sum_j sc[j] * bsum[j]).

// The 16 scale bytes of each of the 8 rows, transposed: sj[j / 2] holds scale j of rows 0..7 in
// bytes 0-7 (j even) or 8-15 (j odd).
inline void q6_scales(const uint8_t* p, __m128i sj[8]) {
  __m128i r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm_loadu_si128((const __m128i*)(p + 18 * i));
  __m128i a[8], b[8];
  for (int i = 0; i < 4; ++i) {
    a[2 * i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);        // scales 0-7 of rows 2i, 2i+1
    a[2 * i + 1] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);    // scales 8-15
  }
  for (int h = 0; h < 2; ++h) {   // h: scales 0-7 / 8-15
    b[4 * h + 0] = _mm_unpacklo_epi16(a[h], a[2 + h]);       // rows 0-3, scales 8h+0..3
    b[4 * h + 1] = _mm_unpackhi_epi16(a[h], a[2 + h]);       // rows 0-3, scales 8h+4..7
    b[4 * h + 2] = _mm_unpacklo_epi16(a[4 + h], a[6 + h]);   // rows 4-7, scales 8h+0..3
    b[4 * h + 3] = _mm_unpackhi_epi16(a[4 + h], a[6 + h]);   // rows 4-7, scales 8h+4..7
  }
  for (int h = 0; h < 2; ++h)
    for (int q = 0; q < 2; ++q) {   // q: scales 8h+4q .. 8h+4q+3
      sj[4 * h + 2 * q] = _mm_unpacklo_epi32(b[4 * h + q], b[4 * h + 2 + q]);       // scales +0, +1
      sj[4 * h + 2 * q + 1] = _mm_unpackhi_epi32(b[4 * h + q], b[4 * h + 2 + q]);   // scales +2, +3
    }
}

// Scale j of rows 0-3 (hi: 4-7) as int16 (AVX2: 4 per row, vpmaddwd after vpmaddubsw) or int32
// lanes (VNNI: 2 per row, vpmulld after vpdpbusd), in the order the chunk loads hold the rows.
inline __m256i q6_scale_lanes(const __m128i sj[8], int j, bool hi) {
  const int base = (j & 1) * 8 + (hi ? 4 : 0);
#if PQ_VNNI
  const __m128i idx = _mm_add_epi8(_mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0), _mm_set1_epi8((char)base));
  return _mm256_cvtepi8_epi32(_mm_shuffle_epi8(sj[j / 2], idx));
#else
  const __m128i idx = _mm_add_epi8(_mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), _mm_set1_epi8((char)base));
  return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sj[j / 2], idx));
#endif
}

// Chunk c (0, 1) of ql chunk pair pp of half h, row quad `quad` (0: rows 0-3, 1: rows 4-7) of a
// group-block (quants at qb) as q6: lo the low nibbles' weights (8c..), hi the high ones' (64 + 8c..),
// the 2 high bits from qh chunk (2pp % 4) + c at shift 2 (pp / 2).
inline void q6_decode(const uint8_t* qb, int h, int pp, int c, int quad, __m256i& lo, __m256i& hi) {
  const __m256i m0f = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
  const bool s = pp >= 2;
  const __m256i v = _mm256_loadu_si256((const __m256i*)(qb + 64 * (8 * h + 2 * pp + c) + 32 * quad));
  const __m256i hb = _mm256_loadu_si256((const __m256i*)(qb + 64 * (16 + 4 * h + (2 * pp) % 4 + c) + 32 * quad));
  lo = _mm256_or_si256(_mm256_and_si256(v, m0f),
                       _mm256_and_si256(s ? _mm256_slli_epi16(hb, 2) : _mm256_slli_epi16(hb, 4), m30));
  hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m0f), _mm256_and_si256(s ? _mm256_srli_epi16(hb, 2) : hb, m30));
}

// Both row quads of half h, scale pair pp of a group-block: ql chunks 2pp, 2pp+1 decoded to q6
// and dotted with the NX activation rows x[i] (elements from e0), scaled per 16, into a03 / a47.
template <int NX>
inline void q6_quads(const uint8_t* qb, const __m128i sj[8], const XQRow* x, int64_t e0, int h, int pp,
                     __m256i* a03, __m256i* a47) {
  const int jl = 8 * h + pp, jh = jl + 4;
  __m256i lo[2][2], hi6[2][2], sl[2], sh[2];
  for (int q = 0; q < 2; ++q) {
    for (int c = 0; c < 2; ++c) q6_decode(qb, h, pp, c, q, lo[c][q], hi6[c][q]);
    sl[q] = q6_scale_lanes(sj, jl, q);
    sh[q] = q6_scale_lanes(sj, jh, q);
  }
  for (int i = 0; i < NX; ++i) {
    const int8_t* xq = x[i].q + e0 + 128 * h + 16 * pp;
    const __m256i xl0 = bcast8(xq), xl1 = bcast8(xq + 8), xh0 = bcast8(xq + 64), xh1 = bcast8(xq + 72);
    for (int q = 0; q < 2; ++q) {
#if PQ_VNNI
      const __m256i z = _mm256_setzero_si256();
      const __m256i l = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, lo[0][q], xl0), lo[1][q], xl1);
      const __m256i hs = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, hi6[0][q], xh0), hi6[1][q], xh1);
      const __m256i t = _mm256_add_epi32(_mm256_mullo_epi32(l, sl[q]), _mm256_mullo_epi32(hs, sh[q]));
#else
      const __m256i l = _mm256_add_epi16(_mm256_maddubs_epi16(lo[0][q], xl0), _mm256_maddubs_epi16(lo[1][q], xl1));
      const __m256i hs = _mm256_add_epi16(_mm256_maddubs_epi16(hi6[0][q], xh0), _mm256_maddubs_epi16(hi6[1][q], xh1));
      const __m256i t = _mm256_add_epi32(_mm256_madd_epi16(l, sl[q]), _mm256_madd_epi16(hs, sh[q]));
#endif
      if (q == 0) a03[i] = _mm256_add_epi32(a03[i], t);
      else a47[i] = _mm256_add_epi32(a47[i], t);
    }
  }
}

#if !PQ_VNNI
// One row quad of q6_quads for NX <= 2 activation rows, chunk by chunk: each chunk's two q6
// registers meet every row's broadcasts before the next chunk loads, the int16 sums are kept
// (keep.h), and the scale lanes come from memory (made once per super-block: sl / sh), so nothing
// is live across the loop but the int32 sums. q6_quads kept sj[8] and the decode in registers
// and spilled (llvm-mca, znver3: 20-28 stack accesses, 33 cycles per pair of quads). Same int16
// sums (<= 4 * 63 * 127) and int32 sums as q6_quads, so the same result.
template <int NX>
inline void q6_quad_by_chunk(const uint8_t* qb, const XQRow* x, int64_t e0, int h, int pp, int quad,
                             const __m256i& sl, const __m256i& sh, __m256i* acc) {
  __m256i l[NX], hs[NX];
  for (int c = 0; c < 2; ++c) {
    __m256i lo, hi;
    q6_decode(qb, h, pp, c, quad, lo, hi);
    for (int i = 0; i < NX; ++i) {
      const int8_t* xq = x[i].q + e0 + 128 * h + 16 * pp + 8 * c;
      const __m256i pl = _mm256_maddubs_epi16(lo, bcast8(xq)), ph = _mm256_maddubs_epi16(hi, bcast8(xq + 64));
      l[i] = keep(c ? _mm256_add_epi16(l[i], pl) : pl);
      hs[i] = keep(c ? _mm256_add_epi16(hs[i], ph) : ph);
    }
  }
  for (int i = 0; i < NX; ++i)
    acc[i] = _mm256_add_epi32(acc[i], _mm256_add_epi32(_mm256_madd_epi16(l[i], sl), _mm256_madd_epi16(hs[i], sh)));
}
#endif

template <bool kPair, int MR>
void group8_q6_k_t(const WeightRef& w, int64_t r0, const XQRow* x, float* out) {
  constexpr int kTs = 8 * 210, kXs = kPair ? 2 : 1;
  const int64_t nsb = w.k / 256;
  const uint8_t* g = w.data + r0 * w.row_bytes;
  // AVX2's 16 registers hold one quad's decode next to one or two activation rows; both quads at
  // once spilled there (M = 1 pair, 4096 x 14336, 2 threads: 2.10 vs 1.94 ms) but amortise the
  // decode over more rows (M = 8: 7.44 vs 8.62 ms) and suit the VNNI build's 32 registers.
  constexpr bool kByQuad = !PQ_VNNI && MR * kXs <= 2;
  const __m256i perm = to_hadd_order();
  __m256 acc[MR];
  for (int u = 0; u < MR; ++u) acc[u] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* p = g + kTs * sb;
    if (pf)
      for (int o = 0; o < kTs; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + pf + o, _MM_HINT_T0);
    __m128i sj[8];
    q6_scales(p, sj);
    alignas(16) uint16_t dh[8];
    for (int i = 0; i < 8; ++i) std::memcpy(&dh[i], p + 18 * i + 16, 2);
    const __m256 d = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_load_si128((const __m128i*)dh)), perm);
    const uint8_t* qb = p + 144;
    __m256i a03[MR * kXs], a47[MR * kXs];
    for (int i = 0; i < MR * kXs; ++i) a03[i] = a47[i] = _mm256_setzero_si256();
    if constexpr (kByQuad) {
#if !PQ_VNNI
      alignas(32) __m256i lanes[2][16];   // [quad][scale j]: q6_scale_lanes, once per super-block
      for (int q = 0; q < 2; ++q)
        for (int j = 0; j < 16; ++j) lanes[q][j] = q6_scale_lanes(sj, j, q);
      for (int h = 0; h < 2; ++h)
        for (int pp = 0; pp < 4; ++pp) {
          const int jl = 8 * h + pp;
          q6_quad_by_chunk<MR * kXs>(qb, x, 256 * sb, h, pp, 0, lanes[0][jl], lanes[0][jl + 4], a03);
          q6_quad_by_chunk<MR * kXs>(qb, x, 256 * sb, h, pp, 1, lanes[1][jl], lanes[1][jl + 4], a47);
        }
#endif
    } else {
      for (int h = 0; h < 2; ++h)
        for (int pp = 0; pp < 4; ++pp) q6_quads<MR * kXs>(qb, sj, x, 256 * sb, h, pp, a03, a47);
    }
    // sum_j sc[j] * bsum[j] per row (rows 0..7 in lanes), then into the dot sums' lane order; the
    // scales 2jj, 2jj+1 of every row as int16 pairs, made once for every activation row
    __m256i sc_pairs[8];
    for (int jj = 0; jj < 8; ++jj)
      sc_pairs[jj] = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sj[jj], _mm_unpackhi_epi64(sj[jj], sj[jj])));
    auto offsets = [&](const int16_t* bs) {
      __m256i o = _mm256_setzero_si256();
      for (int jj = 0; jj < 8; ++jj) {
        int32_t b2;
        std::memcpy(&b2, bs + 2 * jj, 4);
        o = _mm256_add_epi32(o, _mm256_madd_epi16(sc_pairs[jj], _mm256_set1_epi32(b2)));
      }
      return _mm256_permutevar8x32_epi32(o, perm);
    };
    for (int u = 0; u < MR; ++u) {
      const XQRow* xu = x + kXs * u;
      __m256 s = _mm256_cvtepi32_ps(_mm256_hadd_epi32(a03[kXs * u], a47[kXs * u]));
      __m256 off = _mm256_cvtepi32_ps(offsets(xu[0].bsum + 16 * sb));
      float dx = xu[0].d[sb];
      if (kPair) {   // d2 = d1 / 256 exactly: 256 * S1 + S2 and 256 * O1 + O2 in float (256 * S1 overflows int32)
        s = _mm256_fmadd_ps(s, _mm256_set1_ps(256.f),
                            _mm256_cvtepi32_ps(_mm256_hadd_epi32(a03[kXs * u + 1], a47[kXs * u + 1])));
        off = _mm256_fmadd_ps(off, _mm256_set1_ps(256.f), _mm256_cvtepi32_ps(offsets(xu[1].bsum + 16 * sb)));
        dx = xu[1].d[sb];
      }
      acc[u] = _mm256_fmadd_ps(_mm256_fmadd_ps(off, _mm256_set1_ps(-32.f), s), _mm256_mul_ps(d, _mm256_set1_ps(dx)),
                               acc[u]);
    }
  }
  for (int u = 0; u < MR; ++u) store_rows(acc[u], out + 8 * u);
}

template <bool kPair, int MR>
struct Q6KK {
  static void run(const WeightRef& w, int64_t r0, const XQRow* x, float* out) { group8_q6_k_t<kPair, MR>(w, r0, x, out); }
};
void group8_q6_k(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out) {
  by_units<Q6KK>(w, r0, x, mr, pair, out);
}

// ---------------------------------------------------------------- EXL2 mixed widths
// Group-block (8 rows x one 32-block of width B, cpu/exl2_blocks.h): the 8 fp16 d, then the block's
// payload unit by unit, rows 0..7 side by side: 8-byte units of the nibble and crumb parts, 4-byte
// units of the bit part. Each part decodes into the Split arrangement (register [c][h]: weights
// 8c..8c+7 of rows 4h..4h+3, one row per 64-bit lane) with one load per 4 rows; a row's runs of one
// width take one template instance each, every run accumulating into the same 8 rows' sums.
// w = d * (q - 2^(B-1)): the offset through the activation sums (Q4_0's way).
// The parts decode with exl2::Rows8 (avx2/exl2_decode.h, shared with the int8 GEMM's panels). (Split
// holds the same registers by name, and its constructor and dot / dot32 are the nibble decode and
// exl2_dot; built on it this kernel measured 4% slower with AVX2 on the 4.0 mix, 2% with VNNI on the
// 2.5 one: more spills, so the kernel keeps its indexable copy.)
using exl2::Rows8;
// int32 sums of a part (q <= 31: int16 sums of 4 vpmaddubsw fit, 4 * 2*31*127 < 2^15) with 32
// activations: two per row, rows 0-3 in lo, 4-7 in hi.
inline void exl2_dot(const Rows8& q, const int8_t* x, __m256i& lo, __m256i& hi) {
  __m256i xs[4];
  for (int c = 0; c < 4; ++c) xs[c] = bcast8(x + 8 * c);
#if PQ_VNNI
  lo = hi = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    lo = _mm256_dpbusd_epi32(lo, q.r[c][0], xs[c]);
    hi = _mm256_dpbusd_epi32(hi, q.r[c][1], xs[c]);
  }
#else
  const __m256i ones = _mm256_set1_epi16(1);
  lo = _mm256_madd_epi16(_mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q.r[0][0], xs[0]),
                                                           _mm256_maddubs_epi16(q.r[1][0], xs[1])),
                                          _mm256_add_epi16(_mm256_maddubs_epi16(q.r[2][0], xs[2]),
                                                           _mm256_maddubs_epi16(q.r[3][0], xs[3]))), ones);
  hi = _mm256_madd_epi16(_mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q.r[0][1], xs[0]),
                                                           _mm256_maddubs_epi16(q.r[1][1], xs[1])),
                                          _mm256_add_epi16(_mm256_maddubs_epi16(q.r[2][1], xs[2]),
                                                           _mm256_maddubs_epi16(q.r[3][1], xs[3]))), ones);
#endif
}

#if !PQ_VNNI
// The int32 sums of an int8x2 pair (x0: the row, x1: its residual) with a group-block of B bits,
// combined as 256 * S1 + S2: rows 0-3 in lo, 4-7 in hi (two per row). Register by register
// (rows8_each): each decoded register meets both rows' broadcasts and dies, and the int16 sums are
// kept (keep.h). Decoding the whole Rows8 first and dotting one row at a time (exl2_dot) kept 8
// (B >= 6: 16) registers live across both rows and spilled (llvm-mca, znver3: 18-45 stack accesses
// a block). Same integer sums as two exl2_dot calls.
template <int B>
inline void exl2_dot2(const uint8_t* u, const int8_t* x0, const int8_t* x1, __m256i& lo, __m256i& hi) {
  constexpr bool kTwo = B >= 6;
  __m256i s0[2], s1[2], t0[2], t1[2];   // int16 sums of the low part (s) and the high part (t)
  for (int h = 0; h < 2; ++h) s0[h] = s1[h] = t0[h] = t1[h] = _mm256_setzero_si256();
  exl2::rows8_each<B>(u, [&](int c, int h, __m256i l, __m256i hh) {
    const __m256i a = bcast8(x0 + 8 * c), b = bcast8(x1 + 8 * c);
    s0[h] = keep(_mm256_add_epi16(s0[h], _mm256_maddubs_epi16(l, a)));
    s1[h] = keep(_mm256_add_epi16(s1[h], _mm256_maddubs_epi16(l, b)));
    if constexpr (kTwo) {
      t0[h] = keep(_mm256_add_epi16(t0[h], _mm256_maddubs_epi16(hh, a)));
      t1[h] = keep(_mm256_add_epi16(t1[h], _mm256_maddubs_epi16(hh, b)));
    }
  });
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i r[2];
  for (int h = 0; h < 2; ++h) {
    __m256i v0 = _mm256_madd_epi16(s0[h], ones), v1 = _mm256_madd_epi16(s1[h], ones);
    if constexpr (kTwo) {   // q = low part + 16 * high part
      v0 = _mm256_add_epi32(v0, _mm256_slli_epi32(_mm256_madd_epi16(t0[h], ones), 4));
      v1 = _mm256_add_epi32(v1, _mm256_slli_epi32(_mm256_madd_epi16(t1[h], ones), 4));
    }
    r[h] = _mm256_add_epi32(_mm256_slli_epi32(v0, 8), v1);
  }
  lo = r[0];
  hi = r[1];
}
#endif

template <int B, bool kPair, int MR>
inline void exl2_run8(const uint8_t* g, int64_t j0, int64_t nb, const XQRow* x, __m256 (&acc)[MR][2],
                      __m256 (&accb)[MR][2]) {
  constexpr int kTs = 8 * (2 + 4 * B);
  constexpr bool kTwo = B >= 6;   // a second part of 4 (8-bit) or 2 (6-bit) high bits, dotted apart
  constexpr int kXs = kPair ? 2 : 1;
  // M = 1 with int8x2: exl2_dot2 decodes register by register (more rows of x share one Rows8)
  constexpr bool kByReg = !PQ_VNNI && kPair && MR == 1;
  const __m256i perm = to_hadd_order();
  const __m256 off = _mm256_set1_ps(-(float)(1 << (B - 1)));
  const int64_t pf = prefetch_bytes();
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* p = g + kTs * j;
    if (pf)
      for (int o = 0; o < kTs; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + pf + o, _MM_HINT_T0);
    const __m256 d = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)), perm);
    const __m256 m = _mm256_mul_ps(d, off);
    Rows8 lo, hi;   // hi: the second part (kTwo)
    if constexpr (!kByReg) exl2::rows8_parts<B>(p + 16, lo, hi);
    const int64_t b = j0 + j;
    for (int un = 0; un < MR; ++un) {
      const XQRow* xu = x + kXs * un;
      __m256i a = _mm256_setzero_si256(), c = a;
#if !PQ_VNNI
      if constexpr (kByReg) exl2_dot2<B>(p + 16, xu[0].q + 32 * b, xu[1].q + 32 * b, a, c);
      else
#endif
      for (int i = 0; i < kXs; ++i) {   // pair: 256 * S1 + S2
        __m256i l0, h0;
        exl2_dot(lo, xu[i].q + 32 * b, l0, h0);
        if (kTwo) {   // q = low part + 16 * high part
          __m256i l1, h1;
          exl2_dot(hi, xu[i].q + 32 * b, l1, h1);
          l0 = _mm256_add_epi32(l0, _mm256_slli_epi32(l1, 4));
          h0 = _mm256_add_epi32(h0, _mm256_slli_epi32(h1, 4));
        }
        a = i ? _mm256_add_epi32(_mm256_slli_epi32(a, 8), l0) : l0;
        c = i ? _mm256_add_epi32(_mm256_slli_epi32(c, 8), h0) : h0;
      }
      const __m256 sv = _mm256_cvtepi32_ps(_mm256_hadd_epi32(a, c));
      const float dx = kPair ? xu[1].d[b] : xu[0].d[b];
      acc[un][j & 1] = _mm256_fmadd_ps(sv, _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc[un][j & 1]);
      const float sx = kPair ? xu[0].s[b] + xu[1].s[b] : xu[0].s[b];
      accb[un][j & 1] = _mm256_fmadd_ps(m, _mm256_set1_ps(sx), accb[un][j & 1]);
    }
  }
}

template <bool kPair, int MR>
void group8_exl2_t(const WeightRef& w, int64_t r0, const XQRow* x, float* out) {
  const uint8_t* g = w.data + r0 * w.row_bytes;
  __m256 acc[MR][2], accb[MR][2];
  for (int u = 0; u < MR; ++u) acc[u][0] = acc[u][1] = accb[u][0] = accb[u][1] = _mm256_setzero_ps();
  for (int i = 0; i < w.n_runs; ++i) {
    const Exl2Run& run = w.runs[i];
    with_exl2_width(run.bits, [&](auto width) {
      exl2_run8<decltype(width)::value, kPair, MR>(g + 8 * run.byte0, run.block0, run.nblocks, x, acc, accb);
    });
  }
  for (int u = 0; u < MR; ++u)
    store_rows(_mm256_add_ps(_mm256_add_ps(acc[u][0], acc[u][1]), _mm256_add_ps(accb[u][0], accb[u][1])), out + 8 * u);
}

template <bool kPair, int MR>
struct Exl2K {
  static void run(const WeightRef& w, int64_t r0, const XQRow* x, float* out) { group8_exl2_t<kPair, MR>(w, r0, x, out); }
};
void group8_exl2(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out) {
  by_units<Exl2K>(w, r0, x, mr, pair, out);
}

}  // namespace

#if PQ_VNNI
GemvGroup8Fn vnni_group8(int qtype) {
#else
GemvGroup8Fn avx2_group8(int qtype) {
#endif
  switch (qtype) {
    case (int)QType::Q4_0: return group8<kQ4_0>;
    case (int)QType::Q4_1: return group8<kQ4_1>;
    case (int)QType::Q5_0: return group8<kQ5_0>;
    case (int)QType::Q5_1: return group8<kQ5_1>;
    case kInt4: return group8<kInt4Src>;
    case (int)QType::Q4_K: return group8_q4_k;
    case (int)QType::Q6_K: return group8_q6_k;
    case (int)QType::Q8_0: return group8_q8_0;
    case kExl2: case kExl2Wide: return group8_exl2;
    default: return nullptr;
  }
}

}  // namespace mm
}  // namespace pq
