// One EXL2 block's 32 unsigned q into byte lanes, in registers (block layout: cpu/exl2_blocks.h).
// Shared by the AVX2 unpacker (gemv_unpack_avx2.cpp) and the fused GEMV (gemv_fused_avx2.cpp).
// Every part is a broadcast, one variable shift and a mask: ~3 uops a part, 3-7 a block.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/exl2_blocks.h"

namespace pq {
namespace mm {
namespace exl2 {

// 16 nibble bytes -> lanes 0..15 the low nibbles, 16..31 the high ones.
static inline __m256i nibbles(const uint8_t* p) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)p));
  return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}

// 8 crumb bytes -> lane i = (p[i & 7] >> 2 (i >> 3)) & 3: the 8 bytes in each 64-bit lane, lane L
// shifted right by 2L (the bits a byte takes in from its neighbour are masked off).
static inline __m256i crumbs(const uint8_t* p) {
  uint64_t c;
  std::memcpy(&c, p, 8);
  const __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)c), _mm256_setr_epi64x(0, 2, 4, 6));
  return _mm256_and_si256(v, _mm256_set1_epi8(3));
}

// The 4 bit-part bytes at p (byte m: bits of q[m], q[m + 4], .. at 0..7) -> lane i = `one` where
// q[i]'s bit is set, else 0: the word in every dword, dword d shifted right by d (lane i sits in
// dword i / 4 at byte i % 4), then bit 0 of each byte moved to `one`'s place.
template <int kOne>
static inline __m256i bits(const uint8_t* p) {
  uint32_t h;
  std::memcpy(&h, p, 4);
  const __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)h), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i b = _mm256_and_si256(v, _mm256_set1_epi8(1));
  return kOne == 4 ? _mm256_slli_epi16(b, 2) : _mm256_slli_epi16(b, 4);
}

// The 32 unsigned q of a block of B bits whose payload (past d) starts at p. (A 16-bit shift of
// lanes of <= 4 bits by 2 or 4 stays inside each byte.)
template <int B>
static inline __m256i values(const uint8_t* p) {
  if (B == 2) return crumbs(p);
  if (B == 3) return _mm256_or_si256(crumbs(p), bits<4>(p + 8));
  if (B == 4) return nibbles(p);
  if (B == 5) return _mm256_or_si256(nibbles(p), bits<16>(p + 16));
  if (B == 6) return _mm256_or_si256(nibbles(p), _mm256_slli_epi16(crumbs(p + 16), 4));
  return _mm256_or_si256(nibbles(p), _mm256_slli_epi16(nibbles(p + 16), 4));
}

static inline __m256i values(const uint8_t* p, int b) {
  __m256i v;
  with_exl2_width(b, [&](auto w) { v = values<decltype(w)::value>(p); });
  return v;
}

}  // namespace exl2
}  // namespace mm
}  // namespace pq
