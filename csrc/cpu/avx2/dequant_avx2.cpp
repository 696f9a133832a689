// AVX2 block dequantizers. Bit-identical to the scalar ones (csrc/common/dequant_*.h): the same float32
// operations in the same order (scale products first, then one multiply and one add/sub per
// element, never fused), only eight lanes at a time. tests/test_dequantize.py compares both paths
// with gguf-py bit for bit, NaN payloads included.
//
// Stores: decoding is bound by writing the output (4 bytes per element against 0.5-1 byte read).
// When a call's output is larger than the L2 cache (a whole tensor split over threads) the
// kernels use non-temporal stores, which skip the read-for-ownership of every destination line:
// Q4_0 4096x14336 on one thread took 11.3 ms of CPU time with them and 27.3 ms without. Small calls (the driver's 64 KiB
// staging buffer for half outputs, GEMM panels through dequant_rows) keep ordinary stores so the
// data stays in cache for its consumer.
//
// Everything here lives in an anonymous namespace and uses only local helpers, so no inline
// function compiled with -mavx2 can be picked by the linker for the baseline build.
#include "cpu/dequant_kernels.h"
#include "common/kquant_scales.h"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>

namespace pq {
namespace {

constexpr int64_t kStreamMinBytes = 1 << 20;

inline uint16_t rd_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t rd_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
// fp16 scale -> float with F16C. A signalling NaN comes back quiet, unlike the exact scalar
// widening, but every scale is multiplied before use and the multiply quiets it the same way.
inline float f16_scale(const uint8_t* p) { return _cvtsh_ss(rd_u16(p)); }

template <bool NT>
inline void store8(float* p, __m256 v) {
  if (NT) _mm256_stream_ps(p, v);
  else _mm256_storeu_ps(p, v);
}

// 8 bytes (unsigned / signed) -> 8 floats.
inline __m256 u8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
inline __m256 i8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// 16 signed bytes -> y[0..15] = d * q.
template <bool NT>
inline void scale16_i8(float* y, __m256 d, __m128i q) {
  store8<NT>(y, _mm256_mul_ps(d, i8x8_to_ps(q)));
  store8<NT>(y + 8, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(q, 8))));
}
// 16 unsigned bytes -> y = d * q - m.
template <bool NT>
inline void scale16_u8_sub(float* y, __m256 d, __m256 m, __m128i q) {
  store8<NT>(y, _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_ps(q)), m));
  store8<NT>(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(q, 8))), m));
}
// 16 unsigned bytes -> y = d * q + m.
template <bool NT>
inline void scale16_u8_add(float* y, __m256 d, __m256 m, __m128i q) {
  store8<NT>(y, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(q)), m));
  store8<NT>(y + 8, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(q, 8))), m));
}

inline __m128i low_nibbles(__m128i v) { return _mm_and_si128(v, _mm_set1_epi8(15)); }
inline __m128i high_nibbles(__m128i v) { return _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)); }

// Bits j..j+15 of a 32-bit mask as 16 bytes holding 0 or `value`.
inline __m128i bits_to_bytes(uint32_t bits, int value) {
  // byte k of the result tests bit k: spread the two mask bytes over 8 lanes each, then test.
  const __m128i spread = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)bits),
                                          _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  const __m128i sel = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const __m128i set = _mm_cmpeq_epi8(_mm_and_si128(spread, sel), sel);
  return _mm_and_si128(set, _mm_set1_epi8((char)value));
}

// ----------------------------------------------------------------------------- legacy types

template <bool NT>
void q4_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i, src += 18, dst += 32) {
    const __m256 d = _mm256_set1_ps(f16_scale(src));
    const __m128i qs = _mm_loadu_si128((const __m128i*)(src + 2));
    const __m128i eight = _mm_set1_epi8(8);
    scale16_i8<NT>(dst, d, _mm_sub_epi8(low_nibbles(qs), eight));
    scale16_i8<NT>(dst + 16, d, _mm_sub_epi8(high_nibbles(qs), eight));
  }
}

template <bool NT>
void q4_1(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i, src += 20, dst += 32) {
    const __m256 d = _mm256_set1_ps(f16_scale(src)), m = _mm256_set1_ps(f16_scale(src + 2));
    const __m128i qs = _mm_loadu_si128((const __m128i*)(src + 4));
    scale16_u8_add<NT>(dst, d, m, low_nibbles(qs));
    scale16_u8_add<NT>(dst + 16, d, m, high_nibbles(qs));
  }
}

template <bool NT>
void q5_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i, src += 22, dst += 32) {
    const __m256 d = _mm256_set1_ps(f16_scale(src));
    const uint32_t qh = rd_u32(src + 2);
    const __m128i qs = _mm_loadu_si128((const __m128i*)(src + 6));
    const __m128i sixteen = _mm_set1_epi8(16);
    const __m128i lo = _mm_or_si128(low_nibbles(qs), bits_to_bytes(qh, 16));
    const __m128i hi = _mm_or_si128(high_nibbles(qs), bits_to_bytes(qh >> 16, 16));
    scale16_i8<NT>(dst, d, _mm_sub_epi8(lo, sixteen));
    scale16_i8<NT>(dst + 16, d, _mm_sub_epi8(hi, sixteen));
  }
}

template <bool NT>
void q5_1(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i, src += 24, dst += 32) {
    const __m256 d = _mm256_set1_ps(f16_scale(src)), m = _mm256_set1_ps(f16_scale(src + 2));
    const uint32_t qh = rd_u32(src + 4);
    const __m128i qs = _mm_loadu_si128((const __m128i*)(src + 8));
    scale16_u8_add<NT>(dst, d, m, _mm_or_si128(low_nibbles(qs), bits_to_bytes(qh, 16)));
    scale16_u8_add<NT>(dst + 16, d, m, _mm_or_si128(high_nibbles(qs), bits_to_bytes(qh >> 16, 16)));
  }
}

template <bool NT>
void q8_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i, src += 34, dst += 32) {
    const __m256 d = _mm256_set1_ps(f16_scale(src));
    scale16_i8<NT>(dst, d, _mm_loadu_si128((const __m128i*)(src + 2)));
    scale16_i8<NT>(dst + 16, d, _mm_loadu_si128((const __m128i*)(src + 18)));
  }
}

// ----------------------------------------------------------------------------- k-quants

template <bool NT>
void q2_k(const uint8_t* src, float* dst, int64_t n) {
  alignas(32) float dl[16], ml[16];
  for (int64_t i = 0; i < n; ++i, src += 84, dst += 256) {
    // Sub-block scales d * (sc & 15) and mins dmin * (sc >> 4), 16 of each, as the scalar code.
    const __m256 d = _mm256_set1_ps(f16_scale(src + 80)), dmin = _mm256_set1_ps(f16_scale(src + 82));
    const __m128i sc = _mm_loadu_si128((const __m128i*)src);
    const __m128i lo = low_nibbles(sc), hi = high_nibbles(sc);
    _mm256_store_ps(dl, _mm256_mul_ps(d, u8x8_to_ps(lo)));
    _mm256_store_ps(dl + 8, _mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(lo, 8))));
    _mm256_store_ps(ml, _mm256_mul_ps(dmin, u8x8_to_ps(hi)));
    _mm256_store_ps(ml + 8, _mm256_mul_ps(dmin, u8x8_to_ps(_mm_srli_si128(hi, 8))));
    const uint8_t* qs = src + 16;
    const __m128i three = _mm_set1_epi8(3);
    for (int h = 0; h < 2; ++h) {
      const __m128i q0 = _mm_loadu_si128((const __m128i*)(qs + 32 * h));
      const __m128i q1 = _mm_loadu_si128((const __m128i*)(qs + 32 * h + 16));
      for (int s = 0; s < 4; ++s) {
        const int k = 8 * h + 2 * s;
        const __m128i shift = _mm_cvtsi32_si128(2 * s);
        float* y = dst + 128 * h + 32 * s;
        scale16_u8_sub<NT>(y, _mm256_set1_ps(dl[k]), _mm256_set1_ps(ml[k]),
                           _mm_and_si128(_mm_srl_epi16(q0, shift), three));
        scale16_u8_sub<NT>(y + 16, _mm256_set1_ps(dl[k + 1]), _mm256_set1_ps(ml[k + 1]),
                           _mm_and_si128(_mm_srl_epi16(q1, shift), three));
      }
    }
  }
}

template <bool NT>
void q3_k(const uint8_t* src, float* dst, int64_t n) {
  alignas(32) float dl[16];
  for (int64_t i = 0; i < n; ++i, src += 110, dst += 256) {
    const float d = f16_scale(src + 108);
    const uint8_t* sc = src + 96;
    for (int k = 0; k < 16; ++k) {
      const int lo = k < 8 ? (sc[k] & 15) : (sc[k - 8] >> 4);
      const int hi = (sc[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
      dl[k] = d * (float)((lo | (hi << 4)) - 32);
    }
    const __m128i hm0 = _mm_loadu_si128((const __m128i*)src);
    const __m128i hm1 = _mm_loadu_si128((const __m128i*)(src + 16));
    const uint8_t* qs = src + 32;
    const __m128i three = _mm_set1_epi8(3), four = _mm_set1_epi8(4), zero = _mm_setzero_si128();
    for (int h = 0; h < 2; ++h) {
      const __m128i q0 = _mm_loadu_si128((const __m128i*)(qs + 32 * h));
      const __m128i q1 = _mm_loadu_si128((const __m128i*)(qs + 32 * h + 16));
      for (int s = 0; s < 4; ++s) {
        const int k = 8 * h + 2 * s;
        const __m128i shift = _mm_cvtsi32_si128(2 * s);
        const __m128i bit = _mm_set1_epi8((char)(1 << (4 * h + s)));
        // q = low 2 bits - 4 where the hmask bit is clear
        const __m128i off0 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(hm0, bit), zero), four);
        const __m128i off1 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(hm1, bit), zero), four);
        float* y = dst + 128 * h + 32 * s;
        scale16_i8<NT>(y, _mm256_set1_ps(dl[k]), _mm_sub_epi8(_mm_and_si128(_mm_srl_epi16(q0, shift), three), off0));
        scale16_i8<NT>(y + 16, _mm256_set1_ps(dl[k + 1]),
                       _mm_sub_epi8(_mm_and_si128(_mm_srl_epi16(q1, shift), three), off1));
      }
    }
  }
}

// Q4_K/Q5_K sub-block scales and mins (ggml get_scale_min_k4), already multiplied by d / dmin.
inline void k4_scales(const uint8_t* blk, float* dl, float* ml) {
  const float d = f16_scale(blk), dmin = f16_scale(blk + 2);
  const uint8_t* sc = blk + 4;
  for (int j = 0; j < 8; ++j) {
    int s, m;
    k4_scale_min(sc, j, &s, &m);
    dl[j] = d * (float)s;
    ml[j] = dmin * (float)m;
  }
}

template <bool NT>
void q4_k(const uint8_t* src, float* dst, int64_t n) {
  float dl[8], ml[8];
  for (int64_t i = 0; i < n; ++i, src += 144, dst += 256) {
    k4_scales(src, dl, ml);
    for (int c = 0; c < 4; ++c) {
      const __m128i q0 = _mm_loadu_si128((const __m128i*)(src + 16 + 32 * c));
      const __m128i q1 = _mm_loadu_si128((const __m128i*)(src + 32 + 32 * c));
      float* y = dst + 64 * c;
      const __m256 d0 = _mm256_set1_ps(dl[2 * c]), m0 = _mm256_set1_ps(ml[2 * c]);
      const __m256 d1 = _mm256_set1_ps(dl[2 * c + 1]), m1 = _mm256_set1_ps(ml[2 * c + 1]);
      scale16_u8_sub<NT>(y, d0, m0, low_nibbles(q0));
      scale16_u8_sub<NT>(y + 16, d0, m0, low_nibbles(q1));
      scale16_u8_sub<NT>(y + 32, d1, m1, high_nibbles(q0));
      scale16_u8_sub<NT>(y + 48, d1, m1, high_nibbles(q1));
    }
  }
}

template <bool NT>
void q5_k(const uint8_t* src, float* dst, int64_t n) {
  float dl[8], ml[8];
  const __m128i zero = _mm_setzero_si128(), sixteen = _mm_set1_epi8(16);
  for (int64_t i = 0; i < n; ++i, src += 176, dst += 256) {
    k4_scales(src, dl, ml);
    const __m128i qh0 = _mm_loadu_si128((const __m128i*)(src + 16));
    const __m128i qh1 = _mm_loadu_si128((const __m128i*)(src + 32));
    for (int j = 0; j < 8; ++j) {
      const __m128i bit = _mm_set1_epi8((char)(1 << j));
      const __m128i h0 = _mm_andnot_si128(_mm_cmpeq_epi8(_mm_and_si128(qh0, bit), zero), sixteen);
      const __m128i h1 = _mm_andnot_si128(_mm_cmpeq_epi8(_mm_and_si128(qh1, bit), zero), sixteen);
      const uint8_t* qs = src + 48 + 32 * (j >> 1);
      __m128i l0 = _mm_loadu_si128((const __m128i*)qs), l1 = _mm_loadu_si128((const __m128i*)(qs + 16));
      l0 = (j & 1) ? high_nibbles(l0) : low_nibbles(l0);
      l1 = (j & 1) ? high_nibbles(l1) : low_nibbles(l1);
      const __m256 d = _mm256_set1_ps(dl[j]), m = _mm256_set1_ps(ml[j]);
      scale16_u8_sub<NT>(dst + 32 * j, d, m, _mm_or_si128(l0, h0));
      scale16_u8_sub<NT>(dst + 32 * j + 16, d, m, _mm_or_si128(l1, h1));
    }
  }
}

template <bool NT>
void q6_k(const uint8_t* src, float* dst, int64_t n) {
  alignas(32) float dl[16];
  const __m128i three = _mm_set1_epi8(3), thirty_two = _mm_set1_epi8(32);
  for (int64_t i = 0; i < n; ++i, src += 210, dst += 256) {
    const __m256 d = _mm256_set1_ps(f16_scale(src + 208));
    const __m128i sc = _mm_loadu_si128((const __m128i*)(src + 192));
    _mm256_store_ps(dl, _mm256_mul_ps(d, i8x8_to_ps(sc)));
    _mm256_store_ps(dl + 8, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(sc, 8))));
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = src + 64 * h;
      const __m128i qh0 = _mm_loadu_si128((const __m128i*)(src + 128 + 32 * h));
      const __m128i qh1 = _mm_loadu_si128((const __m128i*)(src + 144 + 32 * h));
      for (int t = 0; t < 4; ++t) {
        __m128i l0 = _mm_loadu_si128((const __m128i*)(ql + 32 * (t & 1)));
        __m128i l1 = _mm_loadu_si128((const __m128i*)(ql + 32 * (t & 1) + 16));
        l0 = (t >> 1) ? high_nibbles(l0) : low_nibbles(l0);
        l1 = (t >> 1) ? high_nibbles(l1) : low_nibbles(l1);
        const __m128i shift = _mm_cvtsi32_si128(2 * t);
        // high 2 bits moved to bits 4..5: ((qh >> 2t) & 3) << 4
        const __m128i h0 = _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh0, shift), three), 4);
        const __m128i h1 = _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh1, shift), three), 4);
        const int is = 8 * h + 2 * t;
        float* y = dst + 128 * h + 32 * t;
        scale16_i8<NT>(y, _mm256_set1_ps(dl[is]), _mm_sub_epi8(_mm_or_si128(l0, h0), thirty_two));
        scale16_i8<NT>(y + 16, _mm256_set1_ps(dl[is + 1]), _mm_sub_epi8(_mm_or_si128(l1, h1), thirty_two));
      }
    }
  }
}

// ----------------------------------------------------------------------------- ternary and fp4

template <bool NT>
void tq2_0(const uint8_t* src, float* dst, int64_t n) {
  const __m128i three = _mm_set1_epi8(3), one = _mm_set1_epi8(1);
  for (int64_t i = 0; i < n; ++i, src += 66, dst += 256) {
    const __m256 d = _mm256_set1_ps(f16_scale(src + 64));
    for (int c = 0; c < 2; ++c) {
      const __m128i q0 = _mm_loadu_si128((const __m128i*)(src + 32 * c));
      const __m128i q1 = _mm_loadu_si128((const __m128i*)(src + 32 * c + 16));
      for (int s = 0; s < 4; ++s) {
        const __m128i shift = _mm_cvtsi32_si128(2 * s);
        float* y = dst + 128 * c + 32 * s;
        scale16_i8<NT>(y, d, _mm_sub_epi8(_mm_and_si128(_mm_srl_epi16(q0, shift), three), one));
        scale16_i8<NT>(y + 16, d, _mm_sub_epi8(_mm_and_si128(_mm_srl_epi16(q1, shift), three), one));
      }
    }
  }
}

// 16 TQ1_0 bytes, each times its power of 3 (16-bit lanes of pow3), -> 16 ternary digits as int8:
// ((byte * 3^n mod 256) * 3) >> 8, minus 1 (see tq1_digit in dequant_misc.h).
inline __m128i tq1_digits16(__m128i bytes, __m256i pow3) {
  const __m256i rotated = _mm256_and_si256(_mm256_mullo_epi16(_mm256_cvtepu8_epi16(bytes), pow3), _mm256_set1_epi16(255));
  const __m256i digit = _mm256_sub_epi16(_mm256_srli_epi16(_mm256_mullo_epi16(rotated, _mm256_set1_epi16(3)), 8),
                                         _mm256_set1_epi16(1));
  return _mm_packs_epi16(_mm256_castsi256_si128(digit), _mm256_extracti128_si256(digit, 1));
}

template <bool NT>
void tq1_0(const uint8_t* src, float* dst, int64_t n) {
  static const int16_t kPow3[5] = {1, 3, 9, 27, 81};
  // qh: 4 bytes x 4 digits -> outputs 240 + 4n + m; lane 4n+m takes byte m times 3^n
  const __m128i qh_spread = _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const __m256i qh_pow3 = _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
  for (int64_t i = 0; i < n; ++i, src += 54, dst += 256) {
    const __m256 d = _mm256_set1_ps(f16_scale(src + 52));
    const __m128i a0 = _mm_loadu_si128((const __m128i*)src);
    const __m128i a1 = _mm_loadu_si128((const __m128i*)(src + 16));
    const __m128i b = _mm_loadu_si128((const __m128i*)(src + 32));
    for (int k = 0; k < 5; ++k) {
      const __m256i p = _mm256_set1_epi16(kPow3[k]);
      scale16_i8<NT>(dst + 32 * k, d, tq1_digits16(a0, p));
      scale16_i8<NT>(dst + 32 * k + 16, d, tq1_digits16(a1, p));
      scale16_i8<NT>(dst + 160 + 16 * k, d, tq1_digits16(b, p));
    }
    const __m128i qh = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)rd_u32(src + 48)), qh_spread);
    scale16_i8<NT>(dst + 240, d, tq1_digits16(qh, qh_pow3));
  }
}

// E2M1 codes -> doubled values as int8, looked up 16 at a time with pshufb.
inline __m128i e2m1_table() { return _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12); }

template <bool NT>
void mxfp4(const uint8_t* src, float* dst, int64_t n) {
  const __m128i table = e2m1_table();
  for (int64_t i = 0; i < n; ++i, src += 17, dst += 32) {
    const uint8_t e = src[0];
    uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);  // 2^(e-127) / 2
    float d1;
    std::memcpy(&d1, &bits, 4);
    const __m256 d = _mm256_set1_ps(d1);
    const __m128i qs = _mm_loadu_si128((const __m128i*)(src + 1));
    scale16_i8<NT>(dst, d, _mm_shuffle_epi8(table, low_nibbles(qs)));
    scale16_i8<NT>(dst + 16, d, _mm_shuffle_epi8(table, high_nibbles(qs)));
  }
}

// Unsigned E4M3 scale / 2, exactly as ue4m3_to_fp32_half in dequant_misc.h.
inline float ue4m3_half(uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  const int e = (x >> 3) & 15, m = x & 7;
  uint32_t bits = e == 0 ? (127u - 10u) << 23 : (uint32_t)(127 + e - 11) << 23;
  float p;
  std::memcpy(&p, &bits, 4);
  return (float)(e == 0 ? m : 8 + m) * p;
}

template <bool NT>
void nvfp4(const uint8_t* src, float* dst, int64_t n) {
  const __m128i table = e2m1_table();
  for (int64_t i = 0; i < n; ++i, src += 36, dst += 64) {
    for (int s = 0; s < 4; ++s) {
      const __m128i q = _mm_loadl_epi64((const __m128i*)(src + 4 + 8 * s));
      const __m128i codes = _mm_unpacklo_epi64(low_nibbles(q), high_nibbles(q));  // 8 low then 8 high
      scale16_i8<NT>(dst + 16 * s, _mm256_set1_ps(ue4m3_half(src[s])), _mm_shuffle_epi8(table, codes));
    }
  }
}

// ----------------------------------------------------------------------------- plain halves

// F16: F16C widening, then signalling NaNs get their quiet bit cleared again: gguf-py (numpy)
// widens them exactly and so does the scalar path.
inline __m256 f16x8_exact(__m128i h) {
  const __m256 f = _mm256_cvtph_ps(h);
  const __m256i h32 = _mm256_cvtepu16_epi32(h);
  const __m256i is_nan_exp = _mm256_cmpeq_epi32(_mm256_and_si256(h32, _mm256_set1_epi32(0x7e00)),
                                                _mm256_set1_epi32(0x7c00));  // exp all ones, quiet bit 0
  const __m256i payload_zero = _mm256_cmpeq_epi32(_mm256_and_si256(h32, _mm256_set1_epi32(0x1ff)),
                                                  _mm256_setzero_si256());
  const __m256i snan = _mm256_andnot_si256(payload_zero, is_nan_exp);
  return _mm256_castsi256_ps(
      _mm256_xor_si256(_mm256_castps_si256(f), _mm256_and_si256(snan, _mm256_set1_epi32(0x00400000))));
}

inline __m256 bf16x8(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }

template <bool NT, __m256 (*Widen)(__m128i), float (*Scalar)(uint16_t)>
void halves(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8<NT>(dst + i, Widen(_mm_loadu_si128((const __m128i*)(src + 2 * i))));
  for (; i < n; ++i) dst[i] = Scalar(rd_u16(src + 2 * i));
}

float f16_scalar(uint16_t h) { return _mm256_cvtss_f32(f16x8_exact(_mm_cvtsi32_si128(h))); }
float bf16_scalar(uint16_t h) { return _mm256_cvtss_f32(bf16x8(_mm_cvtsi32_si128(h))); }

template <bool NT>
void f16(const uint8_t* src, float* dst, int64_t n) { halves<NT, f16x8_exact, f16_scalar>(src, dst, n); }
template <bool NT>
void bf16(const uint8_t* src, float* dst, int64_t n) { halves<NT, bf16x8, bf16_scalar>(src, dst, n); }

// ----------------------------------------------------------------------------- store-mode choice

template <void (*Cached)(const uint8_t*, float*, int64_t), void (*Streamed)(const uint8_t*, float*, int64_t),
          int BlockSize>
void pick_stores(const uint8_t* src, float* dst, int64_t n) {
  const bool aligned = ((uintptr_t)dst & 31) == 0;
  if (aligned && n * BlockSize * (int64_t)sizeof(float) >= kStreamMinBytes) {
    Streamed(src, dst, n);
    _mm_sfence();  // make the non-temporal stores visible before the caller's barrier
  } else {
    Cached(src, dst, n);
  }
}

#define PQ_AVX2(fn, QK) pick_stores<fn<false>, fn<true>, QK>

}  // namespace

// VCVTPS2PH with round-to-nearest-even gives exactly fp32_to_fp16's bits: RNE with correct
// subnormals, overflow to inf, NaN -> quiet NaN keeping the top payload bits.
void f32_to_f16_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x[i]), _MM_FROUND_TO_NEAREST_INT), 0);
}

// bfloat16: round the upper half to nearest even with the 0x7fff + lsb trick; NaNs keep their top
// payload bits and get the quiet bit (0x40), as fp32_to_bf16.
inline __m128i bf16x8_from_f32(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i quiet_nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)),
                                            _mm256_set1_epi32(0x7f800000));
  const __m256i r = _mm256_blendv_epi8(rounded, quiet_nan, is_nan);
  // 8 x u32 (each <= 0xffff) -> 8 x u16: packus works per 128-bit lane, then gather the halves.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  return _mm256_castsi256_si128(packed);
}

void f32_to_bf16_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i*)(y + i), bf16x8_from_f32(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) {
    alignas(32) float one[8] = {x[i]};
    y[i] = (uint16_t)_mm_extract_epi16(bf16x8_from_f32(_mm256_load_ps(one)), 0);
  }
}

DequantBlocksFn avx2_dequantizer(QType t) {
  switch (t) {
    case QType::Q4_0: return PQ_AVX2(q4_0, 32);
    case QType::Q4_1: return PQ_AVX2(q4_1, 32);
    case QType::Q5_0: return PQ_AVX2(q5_0, 32);
    case QType::Q5_1: return PQ_AVX2(q5_1, 32);
    case QType::Q8_0: return PQ_AVX2(q8_0, 32);
    case QType::Q2_K: return PQ_AVX2(q2_k, 256);
    case QType::Q3_K: return PQ_AVX2(q3_k, 256);
    case QType::Q4_K: return PQ_AVX2(q4_k, 256);
    case QType::Q5_K: return PQ_AVX2(q5_k, 256);
    case QType::Q6_K: return PQ_AVX2(q6_k, 256);
    case QType::TQ1_0: return PQ_AVX2(tq1_0, 256);
    case QType::TQ2_0: return PQ_AVX2(tq2_0, 256);
    case QType::MXFP4: return PQ_AVX2(mxfp4, 32);
    case QType::NVFP4: return PQ_AVX2(nvfp4, 64);
    case QType::F16: return PQ_AVX2(f16, 1);
    case QType::BF16: return PQ_AVX2(bf16, 1);
    default: return nullptr;
  }
}

}  // namespace pq

#else  // no AVX2 in this build (non-x86 targets): the scalar dequantizers run everywhere

#include "common/fp16.h"

namespace pq {
DequantBlocksFn avx2_dequantizer(QType) { return nullptr; }
void f32_to_f16_avx2(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}
void f32_to_bf16_avx2(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
}
}  // namespace pq

#endif
