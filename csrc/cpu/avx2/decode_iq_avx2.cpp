// AVX2 decoders for the non-linear 4-bit i-quants IQ4_NL and IQ4_XS, bit-identical to
// decode_block_iq4_nl / decode_block_iq4_xs: the codebook lookup is one pshufb per 16 nibbles
// (kvalues_iq4nl fits a 16-byte register), and every output is still the single IEEE product
// scale * (float)kvalue, so no rounding differs from the scalar path. The per-block scales are
// computed with the scalar code (exact f16 conversion, same scalar products).
#include <immintrin.h>

#include "common/decode_iquants.h"
#include "cpu/decode_iq_avx2.h"

namespace pq {
namespace {

// 16 bytes of packed nibbles -> 32 outputs: y[j] = scale * kv[lo nibble j], y[16 + j] = scale * kv[hi nibble j].
inline void decode_nl32(const uint8_t* qs, __m256 scale, __m128i table, float* y) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low_mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(q, low_mask));
  const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), low_mask));
  _mm256_storeu_ps(y + 0, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
}

inline __m128i iq4nl_table() { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl)); }

}  // namespace

void decode_iq4_nl_avx2(const uint8_t* src, float* dst, int64_t nblocks) {
  const __m128i table = iq4nl_table();
  for (int64_t i = 0; i < nblocks; ++i) {
    const uint8_t* blk = src + i * 18;
    decode_nl32(blk + 2, _mm256_set1_ps(load_f16(blk)), table, dst + i * 32);
  }
}

void decode_iq4_xs_avx2(const uint8_t* src, float* dst, int64_t nblocks) {
  const __m128i table = iq4nl_table();
  for (int64_t i = 0; i < nblocks; ++i) {
    const uint8_t* blk = src + i * 136;
    float* y = dst + i * 256;
    const float d = load_f16(blk);
    const uint32_t scales_h = load_u16le(blk + 2);
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = (int)(((blk[4 + ib / 2] >> (4 * (ib % 2))) & 15u) | (((scales_h >> (2 * ib)) & 3u) << 4));
      const float dl = d * (float)(ls - 32);  // same scalar product as decode_block_iq4_xs
      decode_nl32(blk + 8 + 16 * ib, _mm256_set1_ps(dl), table, y + 32 * ib);
    }
  }
}

}  // namespace pq
