// EXL2 blocks into byte lanes, in registers (block layout: cpu/exl2_blocks.h). One block of one row,
// from a plain row or a row-interleaved group (X8): the AVX2 unpackers (gemv_unpack_avx2.cpp) and
// the fused GEMV (gemv_fused_avx2.cpp); every part a broadcast, one variable shift and a mask (~3
// uops a part, 3-7 a block). A group's 8 rows at once (Rows8, below): the 8-row GEMV
// (gemv_rows8_avx2.cpp) and the int8 GEMM's panels (gemm_int8_avx2.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/exl2_blocks.h"

namespace pq {
namespace mm {
namespace exl2 {

// Where a block's payload bytes are: a plain block's payload from p on (Plain), or row l's units
// inside a row-interleaved group-block whose payload starts at p (X8: each 8-byte unit of the
// nibble and crumb parts is 8 rows x 8 bytes, then the bit part's 8 rows x 4 bytes; so the unit
// at payload offset o sits at 64 (o / 8), row l's piece of it at + 8 l, or + 4 l for the bit part).
struct Plain {
  const uint8_t* p;
  __m128i load16(int o) const { return _mm_loadu_si128((const __m128i*)(p + o)); }
  uint64_t load8(int o) const { uint64_t v; std::memcpy(&v, p + o, 8); return v; }
  uint32_t load4(int o) const { uint32_t v; std::memcpy(&v, p + o, 4); return v; }
};
struct X8 {
  const uint8_t* p;
  int l;
  __m128i load16(int o) const { return _mm_set_epi64x((long long)load8(o + 8), (long long)load8(o)); }
  uint64_t load8(int o) const { uint64_t v; std::memcpy(&v, p + 64 * (o / 8) + 8 * l, 8); return v; }
  uint32_t load4(int o) const { uint32_t v; std::memcpy(&v, p + 64 * (o / 8) + 4 * l, 4); return v; }
};

// 16 nibble bytes at payload offset o -> lanes 0..15 the low nibbles, 16..31 the high ones.
template <typename A>
static inline __m256i nibbles(const A& a, int o) {
  const __m256i v = _mm256_broadcastsi128_si256(a.load16(o));
  return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}

// 8 crumb bytes -> lane i = (p[i & 7] >> 2 (i >> 3)) & 3: the 8 bytes in each 64-bit lane, lane L
// shifted right by 2L (the bits a byte takes in from its neighbour are masked off).
template <typename A>
static inline __m256i crumbs(const A& a, int o) {
  const __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)a.load8(o)), _mm256_setr_epi64x(0, 2, 4, 6));
  return _mm256_and_si256(v, _mm256_set1_epi8(3));
}

// The 4 bit-part bytes (byte m: bits of q[m], q[m + 4], .. at 0..7) -> lane i = `one` where
// q[i]'s bit is set, else 0: the word in every dword, dword d shifted right by d (lane i sits in
// dword i / 4 at byte i % 4), then bit 0 of each byte moved to `one`'s place.
template <int kOne, typename A>
static inline __m256i bits(const A& a, int o) {
  const __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)a.load4(o)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i b = _mm256_and_si256(v, _mm256_set1_epi8(1));
  return kOne == 4 ? _mm256_slli_epi16(b, 2) : _mm256_slli_epi16(b, 4);
}

// The 32 unsigned q of a block of B bits whose payload a reads. (A 16-bit shift of lanes of <= 4
// bits by 2 or 4 stays inside each byte.)
template <int B, typename A>
static inline __m256i values(const A& a) {
  if (B == 2) return crumbs(a, 0);
  if (B == 3) return _mm256_or_si256(crumbs(a, 0), bits<4>(a, 8));
  if (B == 4) return nibbles(a, 0);
  if (B == 5) return _mm256_or_si256(nibbles(a, 0), bits<16>(a, 16));
  if (B == 6) return _mm256_or_si256(nibbles(a, 0), _mm256_slli_epi16(crumbs(a, 16), 4));
  return _mm256_or_si256(nibbles(a, 0), _mm256_slli_epi16(nibbles(a, 16), 4));
}
template <int B>
static inline __m256i values(const uint8_t* p) {
  return values<B>(Plain{p});
}

template <typename A>
static inline __m256i values(const A& a, int b) {
  __m256i v;
  with_exl2_width(b, [&](auto w) { v = values<decltype(w)::value>(a); });
  return v;
}

// ---- 8 rows at once, from a row-interleaved group-block (cpu/exl2_blocks.h, interleave.h): each
// part (an 8-byte unit of 8 rows side by side, or the bit part's 4-byte units) decodes into the
// Rows8 arrangement, register [c][h] = weights 8c..8c+7 of rows 4h..4h+3, one row per 64-bit lane,
// with one load per 4 rows. Used by the 8-row GEMV (gemv_rows8_avx2.cpp) and the int8 GEMM's panels.
struct Rows8 {
  __m256i r[4][2];
};
// 8 crumb bytes a row (byte m holds weights m, m+8, m+16, m+24 at bits 0-1 .. 6-7): register [c][h].
static inline __m256i rows8_crumb(const uint8_t* p, int c, int h) {
  const __m256i v = _mm256_loadu_si256((const __m256i*)(p + 32 * h));
  return _mm256_and_si256(_mm256_srli_epi16(v, 2 * c), _mm256_set1_epi8(3));
}
// 16 bytes of 8-byte nibble units (chunk c' = 0, 1: its 8 rows at p + 64 c', rows 0-3 then 4-7):
// register [c][h], low nibbles of chunk c for c < 2, high ones of chunk c - 2.
static inline __m256i rows8_nibble(const uint8_t* p, int c, int h) {
  const __m256i v = _mm256_loadu_si256((const __m256i*)(p + 64 * (c & 1) + 32 * h));
  return _mm256_and_si256(c < 2 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(15));
}
// 4 bit-part bytes a row (byte m: weights m, m + 4, .. at bits 0..7): weight 8c + i of a row's
// 64-bit lane (its 4 bytes in both dwords, rows8_bit_words) is bit 2c + i / 4 of byte i % 4, so one
// per-dword variable shift puts every lane's bit at kOne's place (left for the low chunks, right for
// the high ones; what comes in from a neighbour byte is masked off): register [c][h]'s bits.
static inline __m256i rows8_bit_words(const uint8_t* p, int h) {
  return _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)(p + 16 * h))),
                                     _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
}
template <int kOne>
static inline __m256i rows8_bit(__m256i v, int c) {
  constexpr int t = kOne == 4 ? 2 : 4;
  const __m256i s = t > 2 * c ? _mm256_sllv_epi32(v, _mm256_setr_epi32(t - 2 * c, t - 2 * c - 1, t - 2 * c, t - 2 * c - 1,
                                                                    t - 2 * c, t - 2 * c - 1, t - 2 * c, t - 2 * c - 1))
                              : _mm256_srlv_epi32(v, _mm256_setr_epi32(2 * c - t, 2 * c + 1 - t, 2 * c - t, 2 * c + 1 - t,
                                                                    2 * c - t, 2 * c + 1 - t, 2 * c - t, 2 * c + 1 - t));
  return _mm256_and_si256(s, _mm256_set1_epi8(kOne));
}
// The 8 rows of a group-block of B bits whose payload starts at u, register by register:
// f(c, h, lo, hi) for c = 0..3 (weights 8c..8c+7), h = 0, 1 (rows 4h..4h+3); lo holds q (B <= 5) or
// its low part (the low nibble), hi for B >= 6 the high bits (q = lo + 16 hi; zero below 6 bits).
// A caller that uses each register as it comes keeps 2-4 registers live instead of a Rows8's 8-16.
template <int B, typename F>
static inline void rows8_each(const uint8_t* u, F&& f) {
  constexpr int kBits = B == 3 ? 64 : B == 5 ? 128 : -1;   // the bit part's offset
  __m256i bw[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
  if constexpr (kBits >= 0)
    for (int h = 0; h < 2; ++h) bw[h] = rows8_bit_words(u + kBits, h);
  for (int c = 0; c < 4; ++c)
    for (int h = 0; h < 2; ++h) {
      __m256i lo = B <= 3 ? rows8_crumb(u, c, h) : rows8_nibble(u, c, h);
      if constexpr (B == 3) lo = _mm256_or_si256(lo, rows8_bit<4>(bw[h], c));
      if constexpr (B == 5) lo = _mm256_or_si256(lo, rows8_bit<16>(bw[h], c));
      const __m256i hi = B == 6 ? rows8_crumb(u + 128, c, h) : B == 8 ? rows8_nibble(u + 128, c, h)
                                                                       : _mm256_setzero_si256();
      f(c, h, lo, hi);
    }
}
template <int B>
static inline void rows8_parts(const uint8_t* u, Rows8& lo, Rows8& hi) {
  rows8_each<B>(u, [&](int c, int h, __m256i l, __m256i hh) {
    lo.r[c][h] = l;
    hi.r[c][h] = hh;
  });
}
// Whole q bytes (lo | hi << 4: a 16-bit shift of values <= 15 stays inside each byte).
template <int B>
static inline void rows8_values(const uint8_t* u, Rows8& q) {
  Rows8 hi;
  rows8_parts<B>(u, q, hi);
  if (B >= 6)
    for (int c = 0; c < 4; ++c)
      for (int h = 0; h < 2; ++h) q.r[c][h] = _mm256_or_si256(q.r[c][h], _mm256_slli_epi16(hi.r[c][h], 4));
}

}  // namespace exl2
}  // namespace mm
}  // namespace pq
