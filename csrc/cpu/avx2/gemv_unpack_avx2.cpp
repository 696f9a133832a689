// AVX2 unpackers (same output as matmul_unpack_scalar.cpp, checked by the ISA-vs-ISA tests).
// Nibbles are split with one AND and one 16-bit shift per 16/32 bytes; fp16 scales use F16C.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "common/iq_tables.h"
#include "common/kquant_scales.h"
#include "common/qtypes.h"
#include "cpu/avx2/x8_load.h"
#include "cpu/avx2/exl2_decode.h"
#include "cpu/exl2_blocks.h"
#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

namespace {

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 16 bytes of nibbles -> 32 bytes: low nibbles first (elements 0..15), then high (16..31).
inline __m256i split_nibbles16(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128((const __m128i*)p);
  const __m128i m4 = _mm_set1_epi8(15);
  const __m128i lo = _mm_and_si128(v, m4);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
  return _mm256_set_m128i(hi, lo);
}

inline __m256i split_nibbles16(__m128i v) {
  const __m128i m4 = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

inline void store32(int8_t* q, __m256i v) { _mm256_store_si256((__m256i*)q, v); }

// scx[j] = [sc[2j] x 8 | sc[2j+1] x 8]: byte shuffles of the duplicated halves of sc (2 permutes +
// 8 pshufb per super-block instead of 16 scalar broadcasts and 8 inserts).
// sc16 is passed in a register: reloading u.sc right after narrow scalar stores would stall on a
// failed store-to-load forward (measured: Q3_K 1.16 -> 1.32 ms per 1024x14336 row block).
void fill_scx_avx2(UChunk& u, __m256i sc16) {
  const __m256i lo = _mm256_permute2x128_si256(sc16, sc16, 0x00), hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
  for (int j = 0; j < 8; ++j) {
    const int t = j & 3;
    const __m256i mask = _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * t + 1))),
                                          _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * t))));
    _mm256_store_si256((__m256i*)u.scx[j], _mm256_shuffle_epi8(j < 4 ? lo : hi, mask));
  }
}

// Q5_x's 5th bits: bit i of qh (element i) -> 16 in byte i. Byte i takes qh's byte i/8 (pshufb),
// ORed with every bit but i%8 set: all ones exactly where bit i%8 was set (llama.cpp's trick).
inline __m256i fifth_bits(const uint8_t* p) {
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const __m256i byte = _mm256_shuffle_epi8(
      _mm256_set1_epi32((int)qh), _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(byte, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                                        _mm256_set1_epi64x(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

// The legacy 4/5-bit blocks: kBytes per block, nibbles at kQs, fp16 scale at 0, the 5th bits' qh at
// kQh (-1: 4-bit); ab(blk, a, b) the rest.
template <int kBytes, int kQs, int kQh, typename AB>
void unpack_nib_x32(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out, AB ab) {
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  const uint8_t* blk = w.data + r * w.row_bytes + 8 * c0 * kBytes;
  for (int64_t b = 8 * c0; b < b1; ++b, blk += kBytes) {
    UChunk& u = out[b / 8 - c0];
    const int j = (int)(b % 8);
    __m256i q = split_nibbles16(blk + kQs);
    if (kQh >= 0) q = _mm256_or_si256(q, fifth_bits(blk + kQh));
    store32(u.q + 32 * j, q);
    ab(blk, u.a[j], u.b[j]);
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// ---------------------------------------------------------------- row-interleaved (cpu/interleave.h)
// Block b of row r: header at grp + 8*ts*b + kH*l, quant chunk c (8 bytes) at grp + 8*ts*b + 8*kH +
// 64*c + 8*l (l = r % 8; avx2/x8_load.h). Read in place: the int8 GEMM's panels unpack chunk by
// chunk, and a gather into plain blocks first made M = 8 1.25-1.4x slower than on plain rows.
// kH: header bytes per row (scale, min, qh), kQh: qh's offset in the header (-1: 4-bit).
template <int kH, int kQh, typename AB>
void unpack_nib_x32_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out, AB ab) {
  constexpr int64_t kTs = 8 * (kH + 16);
  const X8Row x8(w, r);
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  for (int64_t b = 8 * c0; b < b1; ++b) {
    const uint8_t* base = x8.grp + kTs * b;
    const uint8_t* q = base + 8 * kH + 8 * x8.l;
    const uint8_t* hdr = base + kH * x8.l;
    UChunk& u = out[b / 8 - c0];
    const int j = (int)(b % 8);
    __m256i v = split_nibbles16(load_chunks2(q));
    if (kQh >= 0) v = _mm256_or_si256(v, fifth_bits(hdr + kQh));
    store32(u.q + 32 * j, v);
    ab(hdr, u.a[j], u.b[j]);
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// Q4_0: w = d * (nib - 8).
void unpack_q4_0(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32<18, 2, -1>(w, r, c0, c1, out, [](const uint8_t* blk, float& a, float& b) {
    a = h2f(blk);
    b = -8.f * a;
  });
}

// Q4_1: w = d * nib + m (the int8 GEMM's panels unpack it: 3-4x faster than the scalar loop).
void unpack_q4_1(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32<20, 4, -1>(w, r, c0, c1, out, [](const uint8_t* blk, float& a, float& b) {
    a = h2f(blk);
    b = h2f(blk + 2);
  });
}

void unpack_q4_0_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32_x8<2, -1>(w, r, c0, c1, out, [](const uint8_t* hdr, float& a, float& b) {
    a = h2f(hdr);
    b = -8.f * a;
  });
}

void unpack_q4_1_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32_x8<4, -1>(w, r, c0, c1, out, [](const uint8_t* hdr, float& a, float& b) {
    a = h2f(hdr);
    b = h2f(hdr + 2);
  });
}

// Q5_0: w = d * (q - 16), q = nibble | 16 * bit of qh (the int8 GEMM's and the float GEMM's panels
// unpack it: the scalar loop was 38% of a SmolLM2 Q5_0 gate/up prefill at m = 64).
void unpack_q5_0(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32<22, 6, 2>(w, r, c0, c1, out, [](const uint8_t* blk, float& a, float& b) {
    a = h2f(blk);
    b = -16.f * a;
  });
}

// Q5_1: w = d * q + m.
void unpack_q5_1(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32<24, 8, 4>(w, r, c0, c1, out, [](const uint8_t* blk, float& a, float& b) {
    a = h2f(blk);
    b = h2f(blk + 2);
  });
}

void unpack_q5_0_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32_x8<6, 2>(w, r, c0, c1, out, [](const uint8_t* hdr, float& a, float& b) {
    a = h2f(hdr);
    b = -16.f * a;
  });
}

void unpack_q5_1_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_nib_x32_x8<8, 4>(w, r, c0, c1, out, [](const uint8_t* hdr, float& a, float& b) {
    a = h2f(hdr);
    b = h2f(hdr + 2);
  });
}

// Q8_0: w = d * q.
void unpack_q8_0(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  const uint8_t* blk = w.data + r * w.row_bytes + 8 * c0 * 34;
  for (int64_t b = 8 * c0; b < b1; ++b, blk += 34) {
    UChunk& u = out[b / 8 - c0];
    const int j = (int)(b % 8);
    store32(u.q + 32 * j, _mm256_loadu_si256((const __m256i*)(blk + 2)));
    u.a[j] = h2f(blk);
    u.b[j] = 0.f;
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// Row-interleaved Q8_0: the block's 32 bytes are the row's 4 chunks, 64 bytes apart.
void unpack_q8_0_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const X8Row x8(w, r);
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  for (int64_t b = 8 * c0; b < b1; ++b) {
    const uint8_t* base = x8.grp + 272 * b;
    const uint8_t* q = base + 16 + 8 * x8.l;
    UChunk& u = out[b / 8 - c0];
    const int j = (int)(b % 8);
    store32(u.q + 32 * j, load_chunks4(q));
    u.a[j] = h2f(base + 2 * x8.l);
    u.b[j] = 0.f;
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// int4: Q4_0's nibble layout without block headers; scale/min per group from side arrays.
void unpack_int4(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const uint8_t* p = w.data + r * w.row_bytes;
  const int64_t ng = w.k / w.group_size;
  const float* sc = w.scales + r * ng;
  const float* mn = w.mins + r * ng;
  const int shift = int4_group_shift(w);
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  p += 8 * c0 * 16;
  for (int64_t b = 8 * c0; b < b1; ++b, p += 16) {
    UChunk& u = out[b / 8 - c0];
    const int j = (int)(b % 8);
    store32(u.q + 32 * j, split_nibbles16(p));
    u.a[j] = sc[b >> shift];
    u.b[j] = mn[b >> shift];
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// Row-interleaved int4: block b of row r at grp + 128*b (+ 8*l, chunk 1 at + 64), its group's scale
// and min at (r - l) * ng + 8 * g + l.
void unpack_int4_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const X8Row x8(w, r);
  const int64_t ng = w.k / w.group_size;
  const float* sc = w.scales + (r - x8.l) * ng + x8.l;
  const float* mn = w.mins + (r - x8.l) * ng + x8.l;
  const int shift = int4_group_shift(w);
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  for (int64_t b = 8 * c0; b < b1; ++b) {
    const uint8_t* q = x8.grp + 128 * b + 8 * x8.l;
    UChunk& u = out[b / 8 - c0];
    const int j = (int)(b % 8);
    store32(u.q + 32 * j, split_nibbles16(load_chunks2(q)));
    u.a[j] = sc[8 * (b >> shift)];
    u.b[j] = mn[8 * (b >> shift)];
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// int8: the weight row is already the q array.
void unpack_int8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const int8_t* p = reinterpret_cast<const int8_t*>(w.data + r * w.row_bytes) + c0 * kChunk;
  const float s = w.scales[r];
  for (int64_t c = c0; c < c1; ++c, p += kChunk) {
    UChunk& u = out[c - c0];
    if ((c + 1) * kChunk <= w.k) {
      for (int j = 0; j < 8; ++j) store32(u.q + 32 * j, _mm256_loadu_si256((const __m256i*)(p + 32 * j)));
    } else {
      std::memcpy(u.q, p, (size_t)(w.k - c * kChunk));
      clear_tail(u, w.k, Kind::X32);
    }
    for (int j = 0; j < 8; ++j) { u.a[j] = s; u.b[j] = 0.f; }
  }
}


// Q4_K / Q5_K 6-bit scales and mins (get_scale_min_k4) on 32-bit words: bytes 0..7 scales, 8..15 mins.
inline void scales_k4(const uint8_t* s12, UChunk& u) {
  alignas(16) uint8_t w[16];
  k4_scales_mins(s12, w);
  const __m256i sm = _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i*)w));
  const __m128i sc = _mm256_castsi256_si128(sm), mn = _mm256_extracti128_si256(sm, 1);
  _mm256_store_si256((__m256i*)u.sc, _mm256_set_m128i(_mm_unpackhi_epi16(sc, sc), _mm_unpacklo_epi16(sc, sc)));
  _mm256_store_si256((__m256i*)u.mn, _mm256_set_m128i(_mm_unpackhi_epi16(mn, mn), _mm_unpacklo_epi16(mn, mn)));
}

// Q4_K: 32 bytes of qs -> 64 elements (low nibbles, then high nibbles). hdr: d, dmin, scales[12];
// qs32(c): the 32 bytes of qs group c.
template <typename Qs>
inline void unpack_q4_k_block(const uint8_t* hdr, Qs qs32, UChunk& u) {
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int c = 0; c < 4; ++c) {
    const __m256i v = qs32(c);
    store32(u.q + 64 * c, _mm256_and_si256(v, m4));
    store32(u.q + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
  }
  scales_k4(hdr + 4, u);
  u.d = h2f(hdr);
  u.dmin = h2f(hdr + 2);
  fill_scx_avx2(u, _mm256_load_si256((const __m256i*)u.sc));
}

void unpack_q4_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const uint8_t* blk = w.data + r * w.row_bytes + c0 * 144;
  for (int64_t b = c0; b < c1; ++b, blk += 144)
    unpack_q4_k_block(blk, [&](int c) { return _mm256_loadu_si256((const __m256i*)(blk + 16 + 32 * c)); },
                      out[b - c0]);
}

// Row-interleaved: qs group c is chunks 4c..4c+3 of the row, 64 bytes apart.
void unpack_q4_k_x8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const X8Row x8(w, r);
  for (int64_t b = c0; b < c1; ++b) {
    const uint8_t* base = x8.grp + 1152 * b;
    const uint8_t* q = base + 128 + 8 * x8.l;
    unpack_q4_k_block(base + 16 * x8.l, [&](int c) { return load_chunks4(q + 256 * c); }, out[b - c0]);
  }
}

// Q6_K: per 128-element half, ql A (32 B) and B (32 B) give the low 4 bits, qh H the top 2:
// e = l: A&15 | (H&3)<<4;  l+32: B&15 | (H<<2)&0x30;  l+64: A>>4 | H&0x30;  l+96: B>>4 | (H>>2)&0x30.
void unpack_q6_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const uint8_t* blk = w.data + r * w.row_bytes + c0 * 210;
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), m30 = _mm256_set1_epi8(0x30);
  for (int64_t b = c0; b < c1; ++b, blk += 210) {
    UChunk& u = out[b - c0];
    for (int n = 0; n < 2; ++n) {
      const __m256i A = _mm256_loadu_si256((const __m256i*)(blk + 64 * n));
      const __m256i B = _mm256_loadu_si256((const __m256i*)(blk + 64 * n + 32));
      const __m256i H = _mm256_loadu_si256((const __m256i*)(blk + 128 + 32 * n));
      int8_t* q = u.q + 128 * n;
      store32(q, _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(H, m3), 4)));
      store32(q + 32, _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30)));
      store32(q + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30)));
      store32(q + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                      _mm256_and_si256(_mm256_srli_epi16(H, 2), m30)));
    }
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(blk + 192)));
    _mm256_store_si256((__m256i*)u.sc, sc);
    _mm256_store_si256((__m256i*)u.mn, _mm256_slli_epi16(sc, 5));
    u.d = h2f(blk + 208);
    u.dmin = u.d;
    fill_scx_avx2(u, _mm256_load_si256((const __m256i*)u.sc));
  }
}

// Bit `bit` of every byte of h, moved to bit 4 (value 16).
inline __m256i bit_to_16(__m256i h, int bit) {
  const __m256i b = _mm256_and_si256(h, _mm256_set1_epi8((char)(1 << bit)));
  return bit <= 4 ? _mm256_slli_epi16(b, 4 - bit) : _mm256_srli_epi16(b, bit - 4);
}

// Q5_K: Q4_K plus the 5th bit: qh[l] bit 2c for the low nibbles of run c, bit 2c+1 for the high.
void unpack_q5_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const uint8_t* blk = w.data + r * w.row_bytes + c0 * 176;
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = c0; b < c1; ++b, blk += 176) {
    UChunk& u = out[b - c0];
    const __m256i H = _mm256_loadu_si256((const __m256i*)(blk + 16));
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256((const __m256i*)(blk + 48 + 32 * c));
      store32(u.q + 64 * c, _mm256_or_si256(_mm256_and_si256(v, m4), bit_to_16(H, 2 * c)));
      store32(u.q + 64 * c + 32,
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), bit_to_16(H, 2 * c + 1)));
    }
    scales_k4(blk + 4, u);
    u.d = h2f(blk);
    u.dmin = h2f(blk + 2);
    fill_scx_avx2(u, _mm256_load_si256((const __m256i*)u.sc));
  }
}

// Q3_K: element 128n + 32j + l = ((qs[32n+l] >> 2j) & 3) + 4 * (hmask[l] bit 4n+j), scale - 32.
void unpack_q3_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const uint8_t* blk = w.data + r * w.row_bytes + c0 * 110;
  const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4), zero = _mm256_setzero_si256();
  for (int64_t b = c0; b < c1; ++b, blk += 110) {
    UChunk& u = out[b - c0];
    const __m256i HM = _mm256_loadu_si256((const __m256i*)blk);
    for (int n = 0; n < 2; ++n) {
      const __m256i Q = _mm256_loadu_si256((const __m256i*)(blk + 32 + 32 * n));
      for (int j = 0; j < 4; ++j) {
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * j), m3);
        const __m256i hb = _mm256_and_si256(HM, _mm256_set1_epi8((char)(1 << (4 * n + j))));
        const __m256i hi = _mm256_andnot_si256(_mm256_cmpeq_epi8(hb, zero), four);
        store32(u.q + 128 * n + 32 * j, _mm256_or_si256(low, hi));
      }
    }
    const uint8_t* s = blk + 96;
    int16_t sc[16];
    for (int g = 0; g < 16; ++g)
      sc[g] = (int16_t)((((s[g % 8] >> (4 * (g / 8))) & 15) | (((s[8 + g % 4] >> (2 * (g / 4))) & 3) << 4)) - 32);
    const __m256i v = _mm256_setr_epi16(sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], sc[8], sc[9], sc[10],
                                        sc[11], sc[12], sc[13], sc[14], sc[15]);
    _mm256_store_si256((__m256i*)u.sc, v);
    _mm256_store_si256((__m256i*)u.mn, _mm256_slli_epi16(v, 2));  // 4 * sc
    u.d = h2f(blk + 108);
    u.dmin = u.d;
    fill_scx_avx2(u, v);
  }
}

// Q2_K: element 128n + 32j + l = (qs[32n+l] >> 2j) & 3; scales byte g: low 4 bits scale, high min.
void unpack_q2_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const uint8_t* blk = w.data + r * w.row_bytes + c0 * 84;
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int64_t b = c0; b < c1; ++b, blk += 84) {
    UChunk& u = out[b - c0];
    for (int n = 0; n < 2; ++n) {
      const __m256i Q = _mm256_loadu_si256((const __m256i*)(blk + 16 + 32 * n));
      for (int j = 0; j < 4; ++j) store32(u.q + 128 * n + 32 * j, _mm256_and_si256(_mm256_srli_epi16(Q, 2 * j), m3));
    }
    const __m256i s16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i*)blk));
    _mm256_store_si256((__m256i*)u.sc, _mm256_and_si256(s16, _mm256_set1_epi16(15)));
    _mm256_store_si256((__m256i*)u.mn, _mm256_srli_epi16(s16, 4));
    u.d = h2f(blk + 80);
    u.dmin = h2f(blk + 82);
    fill_scx_avx2(u, _mm256_load_si256((const __m256i*)u.sc));
  }
}

// IQ4_XS: kvalues[nibble] via one byte shuffle per 32; 6-bit sub-block scales biased by 32.
void unpack_iq4_xs(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const uint8_t* blk = w.data + r * w.row_bytes + c0 * 136;
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kvalues_iq4nl));
  for (int64_t b = c0; b < c1; ++b, blk += 136) {
    UChunk& u = out[b - c0];
    for (int j = 0; j < 8; ++j) store32(u.q + 32 * j, _mm256_shuffle_epi8(table, split_nibbles16(blk + 8 + 16 * j)));
    uint16_t sh;
    std::memcpy(&sh, blk + 2, 2);
    int16_t ls[8];
    for (int j = 0; j < 8; ++j)
      ls[j] = (int16_t)((((blk[4 + j / 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)) - 32);
    const __m256i v = _mm256_setr_epi16(ls[0], ls[0], ls[1], ls[1], ls[2], ls[2], ls[3], ls[3], ls[4], ls[4], ls[5],
                                        ls[5], ls[6], ls[6], ls[7], ls[7]);
    _mm256_store_si256((__m256i*)u.sc, v);
    _mm256_store_si256((__m256i*)u.mn, _mm256_setzero_si256());
    u.d = h2f(blk);
    u.dmin = 0.f;
    fill_scx_avx2(u, v);
  }
}

// ---------------------------------------------------------------- EXL2 (cpu/exl2_blocks.h)
// kX8: rows interleaved by 8, read in place (the int8 GEMM's panels: gathering each row back to
// plain blocks first was a third of the panel build's time).
template <bool kSigned, bool kX8 = false>
void unpack_exl2(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  exl2_unpack_row<kSigned, kX8>(w, r, c0, c1, out, [](int bits, const uint8_t* blk, int l, int8_t* q) {
    const __m256i v = kX8 ? exl2::values(exl2::X8{blk + 16, l}, bits) : exl2::values(exl2::Plain{blk + 2}, bits);
    store32(q, kSigned ? _mm256_sub_epi8(v, _mm256_set1_epi8((char)(1 << (bits - 1)))) : v);
    return h2f(blk + 2 * l);
  });
}

}  // namespace

UnpackRowFn avx2_unpacker_x8(int qtype) {
  switch (qtype) {
    case (int)QType::Q4_0: return unpack_q4_0_x8;
    case (int)QType::Q4_1: return unpack_q4_1_x8;
    case (int)QType::Q5_0: return unpack_q5_0_x8;
    case (int)QType::Q5_1: return unpack_q5_1_x8;
    case (int)QType::Q4_K: return unpack_q4_k_x8;
    case (int)QType::Q8_0: return unpack_q8_0_x8;
    case kInt4: return unpack_int4_x8;
    case kExl2: return unpack_exl2<false, true>;
    case kExl2Wide: return unpack_exl2<true, true>;
    default: return nullptr;
  }
}

UnpackRowFn avx2_unpacker(int qtype) {
  switch (qtype) {
    case (int)QType::Q2_K: return unpack_q2_k;
    case (int)QType::Q3_K: return unpack_q3_k;
    case (int)QType::Q5_K: return unpack_q5_k;
    case (int)QType::IQ4_XS: return unpack_iq4_xs;
    case (int)QType::Q4_0: return unpack_q4_0;
    case (int)QType::Q4_1: return unpack_q4_1;
    case (int)QType::Q5_0: return unpack_q5_0;
    case (int)QType::Q5_1: return unpack_q5_1;
    case (int)QType::Q8_0: return unpack_q8_0;
    case (int)QType::Q4_K: return unpack_q4_k;
    case (int)QType::Q6_K: return unpack_q6_k;
    case kInt4: return unpack_int4;
    case kInt8: return unpack_int8;
    case kExl2: return unpack_exl2<false>;
    case kExl2Wide: return unpack_exl2<true>;
    default: return nullptr;
  }
}

}  // namespace mm
}  // namespace pq
