// Portable unpackers: one weight row -> UChunks (see matmul_internal.h for the representation).
// Byte layouts follow ggml (ggml-common.h); each function states the formula it reproduces.
#include <algorithm>
#include <cstring>

#include "common/fp16.h"
#include "common/iq_tables.h"
#include "common/kquant_scales.h"
#include "common/qtypes.h"
#include "cpu/exl2_blocks.h"
#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

UnpackRowFn avx2_unpacker(int qtype);     // avx2/gemv_unpack_avx2.cpp (nullptr if none)
GemvFusedFn avx2_fused_gemv(int qtype);  // avx2/gemv_fused_avx2.cpp (nullptr if none)
GemvFused8Fn avx2_fused_gemv8(int qtype);  // same file, 8 activation rows per lane
GemvPairFn avx2_fused_pair(int qtype);     // same file, int8x2 at m = 1

namespace {

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

const int8_t* const kIq4nl = kvalues_iq4nl;  // common/iq_tables.h (generated)

// X32 block dequantizers: fill 32 q at `q`, return a and b through refs.
template <typename BlockFn>
void unpack_x32_row(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out, int type_size,
                    BlockFn fn) {
  const uint8_t* row = w.data + r * w.row_bytes;
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  for (int64_t b = 8 * c0; b < b1; ++b) {
    UChunk& u = out[b / 8 - c0];
    const int j = (int)(b % 8);
    fn(row + b * type_size, u.q + 32 * j, u.a[j], u.b[j], b);
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// Q4_0: w = d * (nib - 8); byte i holds elements i (low nibble) and i + 16 (high).
void unpack_q4_0(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x32_row(w, r, c0, c1, out, 18, [](const uint8_t* blk, int8_t* q, float& a, float& b, int64_t) {
    const float d = h2f(blk);
    for (int i = 0; i < 16; ++i) { q[i] = blk[2 + i] & 15; q[i + 16] = blk[2 + i] >> 4; }
    a = d; b = -8.f * d;
  });
}

// Q4_1: w = d * nib + m.
void unpack_q4_1(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x32_row(w, r, c0, c1, out, 20, [](const uint8_t* blk, int8_t* q, float& a, float& b, int64_t) {
    for (int i = 0; i < 16; ++i) { q[i] = blk[4 + i] & 15; q[i + 16] = blk[4 + i] >> 4; }
    a = h2f(blk); b = h2f(blk + 2);
  });
}

// Q5_0: 5th bit of element i is bit i of the 32-bit qh; w = d * (q - 16).
void unpack_q5_0(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x32_row(w, r, c0, c1, out, 22, [](const uint8_t* blk, int8_t* q, float& a, float& b, int64_t) {
    uint32_t qh;
    std::memcpy(&qh, blk + 2, 4);
    for (int i = 0; i < 16; ++i) {
      q[i] = (int8_t)((blk[6 + i] & 15) | (((qh >> i) & 1) << 4));
      q[i + 16] = (int8_t)((blk[6 + i] >> 4) | (((qh >> (i + 16)) & 1) << 4));
    }
    const float d = h2f(blk);
    a = d; b = -16.f * d;
  });
}

// Q5_1: w = d * q + m.
void unpack_q5_1(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x32_row(w, r, c0, c1, out, 24, [](const uint8_t* blk, int8_t* q, float& a, float& b, int64_t) {
    uint32_t qh;
    std::memcpy(&qh, blk + 4, 4);
    for (int i = 0; i < 16; ++i) {
      q[i] = (int8_t)((blk[8 + i] & 15) | (((qh >> i) & 1) << 4));
      q[i + 16] = (int8_t)((blk[8 + i] >> 4) | (((qh >> (i + 16)) & 1) << 4));
    }
    a = h2f(blk); b = h2f(blk + 2);
  });
}

// Q8_0: w = d * q (signed).
void unpack_q8_0(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x32_row(w, r, c0, c1, out, 34, [](const uint8_t* blk, int8_t* q, float& a, float& b, int64_t) {
    std::memcpy(q, blk + 2, 32);
    a = h2f(blk); b = 0.f;
  });
}

// IQ4_NL: w = d * kvalues[nib] (signed table values).
void unpack_iq4_nl(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x32_row(w, r, c0, c1, out, 18, [](const uint8_t* blk, int8_t* q, float& a, float& b, int64_t) {
    for (int i = 0; i < 16; ++i) { q[i] = kIq4nl[blk[2 + i] & 15]; q[i + 16] = kIq4nl[blk[2 + i] >> 4]; }
    a = h2f(blk); b = 0.f;
  });
}

// int4 (contracts.md): 16 bytes per 32 elements, nibble layout of Q4_0; w = q * scale + min per group.
void unpack_int4(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const int64_t ng = w.k / w.group_size;
  const float* sc = w.scales + r * ng;
  const float* mn = w.mins + r * ng;
  const int per_group = w.group_size / 32;
  unpack_x32_row(w, r, c0, c1, out, 16, [&](const uint8_t* blk, int8_t* q, float& a, float& b, int64_t bi) {
    for (int i = 0; i < 16; ++i) { q[i] = blk[i] & 15; q[i + 16] = blk[i] >> 4; }
    a = sc[bi / per_group]; b = mn[bi / per_group];
  });
}

// int8 per channel: w = q * scale[r].
void unpack_int8(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  const float s = w.scales[r];
  const int8_t* row = reinterpret_cast<const int8_t*>(w.data + r * w.row_bytes);
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t n = std::min<int64_t>(kChunk, w.k - c * kChunk);
    std::memcpy(out[c - c0].q, row + c * kChunk, (size_t)n);
    for (int j = 0; j < 8; ++j) { out[c - c0].a[j] = s; out[c - c0].b[j] = 0.f; }
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

// EXL2 mixed-width blocks (cpu/exl2_blocks.h): w = d * (q - 2^(b-1)), b per block. kExl2 (every
// block <= 5 bits) keeps q unsigned with the offset in b; kExl2Wide stores q - 2^(b-1) signed.
template <bool kSigned>
void unpack_exl2(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  exl2_unpack_row<kSigned>(w, r, c0, c1, out, [](int bits, const uint8_t* blk, int, int8_t* q) {
    uint8_t v[32];
    exl2_block_values(blk + 2, bits, v);
    const int off = kSigned ? 1 << (bits - 1) : 0;
    for (int i = 0; i < 32; ++i) q[i] = (int8_t)(v[i] - off);
    return h2f(blk);
  });
}

// ---------------------------------------------------------------- K-quants (256 per block)
template <typename BlockFn>
void unpack_x256_row(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out, int type_size,
                     BlockFn fn) {
  const uint8_t* row = w.data + r * w.row_bytes;
  for (int64_t b = c0; b < c1; ++b) {
    fn(row + b * type_size, out[b - c0]);
    fill_scx(out[b - c0]);
  }
}

// Q2_K: scales[16] (low 4 bits scale, high 4 bits min), qs[64], d, dmin.
// Element e = 128n + 32j + l: (qs[32n + l] >> 2j) & 3, group e / 16.  w = d*sc*q - dmin*m.
void unpack_q2_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x256_row(w, r, c0, c1, out, 84, [](const uint8_t* blk, UChunk& u) {
    const uint8_t* qs = blk + 16;
    for (int e = 0; e < 256; ++e) {
      const int n = e / 128, j = (e % 128) / 32, l = e % 32;
      u.q[e] = (int8_t)((qs[32 * n + l] >> (2 * j)) & 3);
    }
    for (int g = 0; g < 16; ++g) { u.sc[g] = blk[g] & 15; u.mn[g] = blk[g] >> 4; }
    u.d = h2f(blk + 80); u.dmin = h2f(blk + 82);
  });
}

// Q3_K: hmask[32], qs[64], scales[12] (16 6-bit scales, biased by 32), d.
// q3 = ((qs[32n + l] >> 2j) & 3) - (hmask[l] bit (4n + j) ? 0 : 4); stored unsigned as q3 + 4,
// so w = d*(s-32)*(u - 4) = d*sc*u - d*(4*sc).
void unpack_q3_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x256_row(w, r, c0, c1, out, 110, [](const uint8_t* blk, UChunk& u) {
    const uint8_t* hm = blk;
    const uint8_t* qs = blk + 32;
    const uint8_t* s = blk + 96;
    for (int e = 0; e < 256; ++e) {
      const int n = e / 128, j = (e % 128) / 32, l = e % 32;
      const int lo = (qs[32 * n + l] >> (2 * j)) & 3;
      const int hi = (hm[l] >> (4 * n + j)) & 1;
      u.q[e] = (int8_t)(lo + 4 * hi);
    }
    for (int g = 0; g < 16; ++g) {
      // 6-bit scale g: low 4 bits from s[g % 8] (nibble g / 8), high 2 bits from s[8 + g % 4] (pair g / 4).
      const int low = (s[g % 8] >> (4 * (g / 8))) & 15;
      const int high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
      const int sc = (low | (high << 4)) - 32;
      u.sc[g] = (int16_t)sc;
      u.mn[g] = (int16_t)(4 * sc);
    }
    u.d = h2f(blk + 108); u.dmin = u.d;
  });
}


// Q4_K / Q5_K shared header: d, dmin and the 8 six-bit (scale, min) pairs, each pair covering
// two 16-element sub-chunks of the UChunk.
void k4_scales_mins(const uint8_t* blk, UChunk& u) {
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    k4_scale_min(blk + 4, j, &sc, &m);
    u.sc[2 * j] = u.sc[2 * j + 1] = (int16_t)sc;
    u.mn[2 * j] = u.mn[2 * j + 1] = (int16_t)m;
  }
  u.d = h2f(blk);
  u.dmin = h2f(blk + 2);
}

// Q4_K: d, dmin, scales[12], qs[128]; 64-element run c: low nibbles of qs[32c..] are elements
// 64c..64c+31 (sub-block 2c), high nibbles 64c+32.. (sub-block 2c+1).  w = d*sc*q - dmin*m.
void unpack_q4_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x256_row(w, r, c0, c1, out, 144, [](const uint8_t* blk, UChunk& u) {
    const uint8_t* qs = blk + 16;
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        u.q[64 * c + l] = (int8_t)(qs[32 * c + l] & 15);
        u.q[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
      }
    k4_scales_mins(blk, u);
  });
}

// Q5_K: d, dmin, scales[12], qh[32], qs[128]; as Q4_K plus 5th bit qh[l] bit 2c (low) / 2c+1 (high).
void unpack_q5_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x256_row(w, r, c0, c1, out, 176, [](const uint8_t* blk, UChunk& u) {
    const uint8_t* qh = blk + 16;
    const uint8_t* qs = blk + 48;
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        u.q[64 * c + l] = (int8_t)((qs[32 * c + l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4));
        u.q[64 * c + 32 + l] = (int8_t)((qs[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4));
      }
    k4_scales_mins(blk, u);
  });
}

// Q6_K: ql[128], qh[64], scales[16] (int8), d. Half n (128 elements), l < 32:
//  e=l: ql[64n+l]&15 | (qh[32n+l]>>0&3)<<4   e=l+32: ql[64n+l+32]&15 | (qh>>2&3)<<4
//  e=l+64: ql[64n+l]>>4 | (qh>>4&3)<<4        e=l+96: ql[64n+l+32]>>4 | (qh>>6&3)<<4
// w = d*sc*(q - 32) = d*sc*q - d*(32*sc).
void unpack_q6_k(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x256_row(w, r, c0, c1, out, 210, [](const uint8_t* blk, UChunk& u) {
    const uint8_t* ql = blk;
    const uint8_t* qh = blk + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
    for (int n = 0; n < 2; ++n)
      for (int l = 0; l < 32; ++l) {
        const uint8_t a = ql[64 * n + l], b = ql[64 * n + l + 32], h = qh[32 * n + l];
        int8_t* q = u.q + 128 * n;
        q[l] = (int8_t)((a & 15) | ((h & 3) << 4));
        q[l + 32] = (int8_t)((b & 15) | (((h >> 2) & 3) << 4));
        q[l + 64] = (int8_t)((a >> 4) | (((h >> 4) & 3) << 4));
        q[l + 96] = (int8_t)((b >> 4) | (((h >> 6) & 3) << 4));
      }
    for (int g = 0; g < 16; ++g) { u.sc[g] = sc[g]; u.mn[g] = (int16_t)(32 * sc[g]); }
    u.d = h2f(blk + 208); u.dmin = u.d;
  });
}

// IQ4_XS: d, scales_h (u16), scales_l[4], qs[128]. Sub-block j: ls = 4 bits of scales_l[j/2]
// (nibble j%2) | 2 bits of scales_h (bits 2j) << 4; w = d*(ls-32)*kvalues[nib] (signed q).
void unpack_iq4_xs(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
  unpack_x256_row(w, r, c0, c1, out, 136, [](const uint8_t* blk, UChunk& u) {
    uint16_t sh;
    std::memcpy(&sh, blk + 2, 2);
    const uint8_t* sl = blk + 4;
    const uint8_t* qs = blk + 8;
    for (int j = 0; j < 8; ++j) {
      for (int i = 0; i < 16; ++i) {
        u.q[32 * j + i] = kIq4nl[qs[16 * j + i] & 15];
        u.q[32 * j + i + 16] = kIq4nl[qs[16 * j + i] >> 4];
      }
      const int ls = ((sl[j / 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4);
      u.sc[2 * j] = u.sc[2 * j + 1] = (int16_t)(ls - 32);
      u.mn[2 * j] = u.mn[2 * j + 1] = 0;
    }
    u.d = h2f(blk); u.dmin = 0.f;
  });
}

}  // namespace

void fill_scx(UChunk& u) {
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < 16; ++i) u.scx[j][i] = u.sc[2 * j + i / 8];
}

const TypeInfo* type_info(int qtype) {
  static const TypeInfo q4_0{Kind::X32, false, unpack_q4_0, avx2_unpacker(2), "Q4_0", avx2_fused_gemv(2), avx2_fused_gemv8(2), avx2_fused_pair(2)};
  static const TypeInfo q4_1{Kind::X32, false, unpack_q4_1, avx2_unpacker(3), "Q4_1", avx2_fused_gemv(3), avx2_fused_gemv8(3), avx2_fused_pair(3)};
  static const TypeInfo q5_0{Kind::X32, false, unpack_q5_0, avx2_unpacker(6), "Q5_0", avx2_fused_gemv(6), avx2_fused_gemv8(6), avx2_fused_pair(6)};
  static const TypeInfo q5_1{Kind::X32, false, unpack_q5_1, avx2_unpacker(7), "Q5_1", avx2_fused_gemv(7), avx2_fused_gemv8(7), avx2_fused_pair(7)};
  static const TypeInfo q8_0{Kind::X32, true, unpack_q8_0, avx2_unpacker(8), "Q8_0", avx2_fused_gemv(8), avx2_fused_gemv8(8), avx2_fused_pair(8)};
  static const TypeInfo q2_k{Kind::X256, false, unpack_q2_k, avx2_unpacker(10), "Q2_K", avx2_fused_gemv(10), avx2_fused_gemv8(10)};
  static const TypeInfo q3_k{Kind::X256, false, unpack_q3_k, avx2_unpacker(11), "Q3_K", avx2_fused_gemv(11), avx2_fused_gemv8(11)};
  static const TypeInfo q4_k{Kind::X256, false, unpack_q4_k, avx2_unpacker(12), "Q4_K", avx2_fused_gemv(12), avx2_fused_gemv8(12)};
  static const TypeInfo q5_k{Kind::X256, false, unpack_q5_k, avx2_unpacker(13), "Q5_K", avx2_fused_gemv(13), avx2_fused_gemv8(13)};
  static const TypeInfo q6_k{Kind::X256, false, unpack_q6_k, avx2_unpacker(14), "Q6_K", avx2_fused_gemv(14), avx2_fused_gemv8(14)};
  static const TypeInfo iq4_nl{Kind::X32, true, unpack_iq4_nl, avx2_unpacker(20), "IQ4_NL", avx2_fused_gemv(20), avx2_fused_gemv8(20), avx2_fused_pair(20)};
  static const TypeInfo iq4_xs{Kind::X256, true, unpack_iq4_xs, avx2_unpacker(23), "IQ4_XS", avx2_fused_gemv(23), avx2_fused_gemv8(23)};
  static const TypeInfo f32{Kind::Float, false, nullptr, nullptr, "F32", nullptr};
  static const TypeInfo f16{Kind::Float, false, nullptr, nullptr, "F16", nullptr};
  static const TypeInfo bf16{Kind::Float, false, nullptr, nullptr, "BF16", nullptr};
  static const TypeInfo i4{Kind::X32, false, unpack_int4, avx2_unpacker(kInt4), "int4", avx2_fused_gemv(kInt4), avx2_fused_gemv8(kInt4), avx2_fused_pair(kInt4)};
  static const TypeInfo i8{Kind::X32, true, unpack_int8, avx2_unpacker(kInt8), "int8", avx2_fused_gemv(kInt8), avx2_fused_gemv8(kInt8), avx2_fused_pair(kInt8)};
  static const TypeInfo exl2{Kind::X32, false, unpack_exl2<false>, avx2_unpacker(kExl2), "exl2", avx2_fused_gemv(kExl2), avx2_fused_gemv8(kExl2), avx2_fused_pair(kExl2)};
  static const TypeInfo exl2w{Kind::X32, true, unpack_exl2<true>, avx2_unpacker(kExl2Wide), "exl2", avx2_fused_gemv(kExl2Wide), avx2_fused_gemv8(kExl2Wide), avx2_fused_pair(kExl2Wide)};
  switch (qtype) {
    case 0: return &f32;    case 1: return &f16;    case 2: return &q4_0;   case 3: return &q4_1;
    case 6: return &q5_0;   case 7: return &q5_1;   case 8: return &q8_0;   case 10: return &q2_k;
    case 11: return &q3_k;  case 12: return &q4_k;  case 13: return &q5_k;  case 14: return &q6_k;
    case 20: return &iq4_nl; case 23: return &iq4_xs; case 30: return &bf16;
    case kInt4: return &i4; case kInt8: return &i8;
    case kExl2: return &exl2; case kExl2Wide: return &exl2w;
    default: return nullptr;
  }
}

}  // namespace mm
}  // namespace pq
