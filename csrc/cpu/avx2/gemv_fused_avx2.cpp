// Fused small-M GEMV: weight blocks are decoded straight into registers and dotted with up to 4
// int8 activation rows, without the UChunk round trip through L1 (gemv_unpack + gemv_dot).
//
// Why: at M = 1 the unpack/dot split costs ~22 uops per 32 weights for Q4_0 (store + reload of q,
// scalar a/b stores, per-chunk scale staging); fused it is ~14 (4 to split nibbles, 3 for the
// fp16 scale, maddubs + madd + cvt + fma, 1-2 for the offset). The bandwidth bar (>= 80% of DRAM
// at 2 threads) needs roughly 5 cycles per Q4_0 block per core, so the split version could not
// reach it. Measured on the shared dev box (1 thread, thread CPU time, 1024x14336, M = 1):
// Q4_0 1.30 ms (unpack + dot) -> 0.46 ms (fused, 8-block scale vectors); Q4_K 0.77 -> 0.51 ms.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "common/iq_tables.h"
#include "common/kquant_scales.h"
#include "common/qtypes.h"
#include "cpu/avx2/exl2_decode.h"
#include "cpu/avx2/x8_load.h"
#include "cpu/interleave.h"
#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

namespace {

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One prefetch per 64-byte line of the kSpan bytes at p, issued once per loop step for the bytes
// that step consumes, prefetch_bytes() ahead (matmul_internal.h says why). A prefetch of an address
// past the buffer's end does not fault, so the row's last steps need no bound.
template <int kSpan>
inline void prefetch_span(const uint8_t* p) {
  for (int o = 0; o < kSpan; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + o, _MM_HINT_T0);
}

// 16 bytes -> 32 nibbles (low nibbles in the low half). vbroadcasti128 is a plain load, then one
// variable shift (0 | 4 bits per 128-bit half) and one AND: 2 vector uops instead of 3 (shift,
// vinserti128 on the shuffle port, AND).
inline __m256i nibbles32(__m128i q) {
  const __m256i v = _mm256_broadcastsi128_si256(q);
  return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}
inline __m256i nibbles32(const uint8_t* p) { return nibbles32(_mm_loadu_si128((const __m128i*)p)); }

// 32 bits -> 32 bytes, 0x10 where the bit is set (the 5th bit of Q5_0 / Q5_1).
inline __m256i bit5_32(const uint8_t* p) {
  uint32_t x;
  std::memcpy(&x, p, 4);
  const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
  return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
}

// Bit `bit` of every byte of h, moved to bit 4 (value 16): the 5th bit of Q5_K.
inline __m256i bit_to_16(__m256i h, int bit) {
  const __m256i b = _mm256_and_si256(h, _mm256_set1_epi8((char)(1 << bit)));
  return bit <= 4 ? _mm256_slli_epi16(b, 4 - bit) : _mm256_srli_epi16(b, bit - 4);
}

// ---------------------------------------------------------------- X32 block loaders
// q(b): 32 weights as bytes (w = a*q + off); a8(b) / off8(b, a8): the scales and offsets of
// blocks b..b+7 as one vector, so the per-block float work is a broadcast from the stack.
// fp16 scales of 8 consecutive blocks: 8 word inserts + one vcvtph2ps (vs 8 scalar conversions).
// (word inserts, not 8 narrow stores + a wide load: that load cannot be store-forwarded)
inline __m256 fp16x8(const uint8_t* p, int stride) {
  auto ld = [&](int j) {
    uint16_t h;
    std::memcpy(&h, p + j * stride, 2);
    return (int)h;
  };
  __m128i v = _mm_cvtsi32_si128(ld(0));
  v = _mm_insert_epi16(v, ld(1), 1);
  v = _mm_insert_epi16(v, ld(2), 2);
  v = _mm_insert_epi16(v, ld(3), 3);
  v = _mm_insert_epi16(v, ld(4), 4);
  v = _mm_insert_epi16(v, ld(5), 5);
  v = _mm_insert_epi16(v, ld(6), 6);
  v = _mm_insert_epi16(v, ld(7), 7);
  return _mm256_cvtph_ps(v);
}

// The per-block float fields of the legacy types (fp16 scale at kDOff of the block's header, fp16
// min at kMOff or off = kBias * a), for any layout: Self gives hdr(b), where block b's header
// starts, and kHdrStride, the bytes between consecutive blocks' headers.
template <typename Self, int kDOff, int kMOff, int kBias>
struct LegacyFields {
  const uint8_t* h(int64_t b) const { return static_cast<const Self*>(this)->hdr(b); }
  __m256 a8(int64_t b) const { return fp16x8(h(b) + kDOff, Self::kHdrStride); }
  float a1(int64_t b) const { return h2f(h(b) + kDOff); }
  float off1(int64_t b, float a) const { return kMOff >= 0 ? h2f(h(b) + kMOff) : kBias * a; }
  __m256 off8(int64_t b, __m256 a) const {
    if (kMOff >= 0) return fp16x8(h(b) + kMOff, Self::kHdrStride);
    return _mm256_mul_ps(a, _mm256_set1_ps((float)kBias));
  }
};

template <int kBytes, int kQOff, int kDOff, int kMOff, int kBias, bool kS>
struct LLegacy : LegacyFields<LLegacy<kBytes, kQOff, kDOff, kMOff, kBias, kS>, kDOff, kMOff, kBias> {
  // kMOff >= 0: fp16 min at that offset; else off = kBias * a
  static constexpr bool kSigned = kS, kOff = kMOff >= 0 || kBias != 0;
  // maddubs products that still fit one int16 lane sum: 8 for 4-bit q (8 * 2*15*127 = 30480),
  // 4 for 5-bit (4 * 2*31*127 = 31496), 1 for signed 8-bit (2*127*127 = 32258).
  static constexpr int kSum16 = kS ? 1 : (kBytes == 22 || kBytes == 24) ? 4 : 8;
  static constexpr int kStep = kBytes;  // weight bytes per 32-block (at(b): where block b starts)
  static constexpr int kHdrStride = kBytes;
  static constexpr int kBlockBytes = kBytes, kQs = kQOff, kD = kDOff, kM = kMOff, kB = kBias;
  static constexpr bool kX8 = false;
  static constexpr int kPfSpan = 8 * kStep;   // bytes prefetched per 8 blocks, at pf_at
  const uint8_t* row;
  const uint8_t* at(int64_t b) const { return row + kBytes * b; }
  const uint8_t* hdr(int64_t b) const { return at(b); }
  const uint8_t* pf_at(int64_t b0, int64_t pf) const { return at(b0) + pf; }
  __m256i q(int64_t b) const {
    const uint8_t* blk = row + kBytes * b;
    if (kBytes == 34) return _mm256_loadu_si256((const __m256i*)(blk + kQOff));  // Q8_0
    __m256i v = nibbles32(blk + kQOff);
    if (kBytes == 22 || kBytes == 24) v = _mm256_or_si256(v, bit5_32(blk + kQOff - 4));  // Q5_0 / Q5_1
    return v;
  }
};
using LQ4_0 = LLegacy<18, 2, 0, -1, -8, false>;
using LQ4_1 = LLegacy<20, 4, 0, 2, 0, false>;
using LQ5_0 = LLegacy<22, 6, 0, -1, -16, false>;
using LQ5_1 = LLegacy<24, 8, 0, 2, 0, false>;
using LQ8_0 = LLegacy<34, 2, 0, -1, 0, true>;

struct LIQ4_NL : LLegacy<18, 2, 0, -1, 0, true> {
  __m256i q(int64_t b) const {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kvalues_iq4nl));
    return _mm256_shuffle_epi8(table, nibbles32(row + 18 * b + 2));
  }
};

struct LInt4 {
  static constexpr bool kSigned = false, kOff = true;
  static constexpr int kSum16 = 8;
  const uint8_t* row;
  const float* sc;
  const float* mn;
  int shift;  // log2(blocks per group): 0, 1, 2
  static constexpr int kStep = 16;  // the scales and mins (1/8 to 1/2 of the bytes) are left to the hardware
  static constexpr bool kX8 = false;
  static constexpr int kPfSpan = 8 * kStep;
  const uint8_t* at(int64_t b) const { return row + 16 * b; }
  const uint8_t* pf_at(int64_t b0, int64_t pf) const { return at(b0) + pf; }
  __m256i q(int64_t b) const { return nibbles32(row + 16 * b); }
  // 8 blocks = 8, 4 or 2 groups: load exactly those, then repeat each 1, 2 or 4 times.
  __m256 group8(const float* v, int64_t b) const {
    if (shift == 0) return _mm256_loadu_ps(v + b);
    if (shift == 1)
      return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(v + (b >> 1))),
                                      _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
    // two floats: _mm_loadl_epi64 takes an unaligned address (a double* load of float data is UB:
    // UBSan's misaligned-load report in tools/sanitize.sh)
    return _mm256_permutevar8x32_ps(
        _mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)(v + (b >> 2))))),
        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  }
  __m256 a8(int64_t b) const { return group8(sc, b); }
  float a1(int64_t b) const { return sc[b >> shift]; }
  float off1(int64_t b, float) const { return mn[b >> shift]; }
  __m256 off8(int64_t b, __m256) const { return group8(mn, b); }
};
// ---------------------------------------------------------------- row-interleaved loaders
// Row r of a row-interleaved weight (cpu/interleave.h) through the same interface, so every small-m
// kernel reads the layout in place (through a gathered copy of the row, M = 3..5 ran 1.3-1.4x
// slower than on plain rows). Block b of the row: header at grp + 8*kBytes*b + kH*l, its quants
// in 8-byte chunks at + 8*kH + 64*c + 8*l; at(b) is the group-block (the prefetch covers the 8
// rows, which the m > 1 paths walk one after another). Prefetch: row l of a group fetches slice l
// of the next group's bytes (pf_at), so the group after this one arrives while these 8 rows run
// (prefetching 2 KiB ahead of the row made the first row of each group wait on DRAM for all 8:
// M = 2 took 1.5-2x as long as on plain rows).
template <typename Plain>   // an LLegacy: the same type stored row-interleaved
struct LLegacyX8 : LegacyFields<LLegacyX8<Plain>, Plain::kD, Plain::kM, Plain::kB> {
  static constexpr int kBytes = Plain::kBlockBytes;
  static constexpr bool kSigned = Plain::kSigned, kOff = Plain::kOff;
  static constexpr int kSum16 = Plain::kSum16, kH = Plain::kQs;   // every X8 type's header precedes its quants
  static constexpr int kStep = 8 * kBytes, kHdrStride = 8 * kBytes;
  static constexpr bool kX8 = true;
  static constexpr int kPfSpan = 8 * kBytes;
  const uint8_t* grp;
  int64_t l;
  const uint8_t* next;   // the next group of 8 rows
  const uint8_t* at(int64_t b) const { return grp + 8 * kBytes * b; }
  const uint8_t* hdr(int64_t b) const { return at(b) + kH * l; }
  const uint8_t* pf_at(int64_t b0, int64_t) const { return next + 8 * kBytes * (b0 + l); }
  __m256i q(int64_t b) const {
    const uint8_t* qs = at(b) + 8 * kH + 8 * l;
    if (kBytes == 34) return load_chunks4(qs);   // Q8_0
    __m256i n = nibbles32(load_chunks2(qs));
    if (kBytes == 22 || kBytes == 24) n = _mm256_or_si256(n, bit5_32(hdr(b) + kH - 4));   // Q5_0 / Q5_1
    return n;
  }
};
using LQ4_0x8 = LLegacyX8<LQ4_0>;
using LQ4_1x8 = LLegacyX8<LQ4_1>;
using LQ5_0x8 = LLegacyX8<LQ5_0>;
using LQ5_1x8 = LLegacyX8<LQ5_1>;
using LQ8_0x8 = LLegacyX8<LQ8_0>;

// int4: nibbles at grp + 128*b + 8*l (+ 64); scales and mins [n/8][ng][8]: row l's at stride 8.
struct LInt4X8 {
  static constexpr bool kSigned = false, kOff = true;
  static constexpr int kSum16 = 8, kStep = 128, kPfSpan = 128;
  static constexpr bool kX8 = true;
  const uint8_t* grp;
  int64_t l;
  const uint8_t* next;
  const uint8_t* pf_at(int64_t b0, int64_t) const { return next + 128 * (b0 + l); }
  const float* sc;   // the group's side arrays + l
  const float* mn;
  int shift;
  const uint8_t* at(int64_t b) const { return grp + 128 * b; }
  __m256i q(int64_t b) const { return nibbles32(load_chunks2(at(b) + 8 * l)); }
  __m256 group8(const float* v, int64_t b) const {   // blocks b..b+7 -> their groups' values
    alignas(32) float t[8];
    for (int j = 0; j < 8; ++j) t[j] = v[8 * ((b + j) >> shift)];
    return _mm256_load_ps(t);
  }
  __m256 a8(int64_t b) const { return group8(sc, b); }
  float a1(int64_t b) const { return sc[8 * (b >> shift)]; }
  float off1(int64_t b, float) const { return mn[8 * (b >> shift)]; }
  __m256 off8(int64_t b, __m256) const { return group8(mn, b); }
};

struct LInt8 {
  static constexpr bool kSigned = true, kOff = false;
  static constexpr int kSum16 = 1;
  const uint8_t* row;
  float s;
  static constexpr int kStep = 32;
  static constexpr bool kX8 = false;
  static constexpr int kPfSpan = 8 * kStep;
  const uint8_t* at(int64_t b) const { return row + 32 * b; }
  const uint8_t* pf_at(int64_t b0, int64_t pf) const { return at(b0) + pf; }
  __m256i q(int64_t b) const { return _mm256_loadu_si256((const __m256i*)(row + 32 * b)); }
  __m256 a8(int64_t) const { return _mm256_set1_ps(s); }
  float a1(int64_t) const { return s; }
  float off1(int64_t, float) const { return 0.f; }
  __m256 off8(int64_t, __m256) const { return _mm256_setzero_ps(); }
};

// Scales and offsets of weight blocks b0..b0+nj-1 (nj <= 8) as vectors; at a row's tail (nj < 8)
// nothing is read past the row.
template <typename L>
inline void scales8(const L& ld, int64_t b0, int nj, __m256& av, __m256& ov) {
  if (nj == 8) {
    av = ld.a8(b0);
    ov = L::kOff ? ld.off8(b0, av) : _mm256_setzero_ps();
    return;
  }
  alignas(32) float at[8] = {0}, ot[8] = {0};
  for (int j = 0; j < nj; ++j) {
    at[j] = ld.a1(b0 + j);
    ot[j] = L::kOff ? ld.off1(b0 + j, at[j]) : 0.f;
  }
  av = _mm256_load_ps(at);
  ov = _mm256_load_ps(ot);
}

// Blocks b..b+7: per row one vector of a*d_x (8 blocks) staged on the stack and broadcast per
// block; offsets as one FMA per 8 blocks and row. Two accumulator sets (even / odd blocks): at
// M = 1 one FMA chain (4 cycles latency) would otherwise bound the loop.
template <typename L, int MR>
void gemv_x32(const L& ld, int64_t nb, const XQRow* x, float* out) {
  __m256 acc0[MR], acc1[MR], accb[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = accb[i] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) float scale[MR][8];
  const int64_t pf = prefetch_bytes();
  for (int64_t b0 = 0; b0 < nb; b0 += 8) {
    if (pf) prefetch_span<L::kPfSpan>(ld.pf_at(b0, pf));
    const int nj = (int)std::min<int64_t>(8, nb - b0);
    __m256 av, ov;
    scales8(ld, b0, nj, av, ov);
    for (int i = 0; i < MR; ++i) {
      // x rows are padded to whole 256-chunks, so reading 8 scales is always in bounds.
      _mm256_store_ps(scale[i], _mm256_mul_ps(av, _mm256_loadu_ps(x[i].d + b0)));
      if (L::kOff) accb[i] = _mm256_fmadd_ps(ov, _mm256_loadu_ps(x[i].s + b0), accb[i]);
    }
    for (int j = 0; j < nj; ++j) {
      const __m256i qw = ld.q(b0 + j);
      const __m256i qa = L::kSigned ? _mm256_abs_epi8(qw) : qw;
      for (int i = 0; i < MR; ++i) {
        const __m256i xq = _mm256_loadu_si256((const __m256i*)(x[i].q + 32 * (b0 + j)));
        const __m256i p16 = L::kSigned ? _mm256_maddubs_epi16(qa, _mm256_sign_epi8(xq, qw))
                                       : _mm256_maddubs_epi16(qw, xq);
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        __m256& acc = (j & 1) ? acc1[i] : acc0[i];
        acc = _mm256_fmadd_ps(p, _mm256_broadcast_ss(&scale[i][j]), acc);
      }
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = hsum(_mm256_add_ps(_mm256_add_ps(acc0[i], acc1[i]), accb[i]));
}

// ---------------------------------------------------------------- 4 activation rows at once
// At M >= 4 the per-(row, block) work dominates. Doing cvt + FMA per row and block costs 4 uops
// on the two vector-multiply ports (maddubs, madd, cvt, fma). Here the four rows' products are
// first folded together with horizontal adds (shuffle port): one cvt + one FMA serve 4 rows.
// Unsigned weights of <= 5 bits fold in int16 (|pair| <= 2*31*127, x4 = 31496 < 2^15); signed
// 8-bit weights (|pair| <= 32512) widen to int32 first. Lanes end as [r0 r1 r2 r3 | r0 r1 r2 r3].
inline __m256i fold4_16(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
  return _mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3));
}
inline __m256i fold4_32(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
  return _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
}
// [r0 r1 r2 r3 | r0 r1 r2 r3] -> out[0..3]
inline void store4(__m256 v, float* out) {
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

template <typename L>
void gemv_x32_r4(const L& ld, int64_t nb, const XQRow* x, float* out) {
  constexpr bool kNarrow = !L::kSigned;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, accb[4] = {acc0, acc0, acc0, acc0};
  alignas(32) float st[4][8];  // st[j & 3][4 * (j >> 2) + i] = a_j * d_x[i][j]
  const int64_t pf = prefetch_bytes();
  for (int64_t b0 = 0; b0 < nb; b0 += 8) {
    if (pf) prefetch_span<L::kPfSpan>(ld.pf_at(b0, pf));
    const int nj = (int)std::min<int64_t>(8, nb - b0);
    __m256 av, ov;
    scales8(ld, b0, nj, av, ov);
    __m256 sc[4];
    for (int i = 0; i < 4; ++i) {
      sc[i] = _mm256_mul_ps(av, _mm256_loadu_ps(x[i].d + b0));
      if (L::kOff) accb[i] = _mm256_fmadd_ps(ov, _mm256_loadu_ps(x[i].s + b0), accb[i]);
    }
    // 4 x 8 transpose: st[t] holds blocks t and t+4 for rows 0..3.
    const __m256 t0 = _mm256_unpacklo_ps(sc[0], sc[1]), t1 = _mm256_unpackhi_ps(sc[0], sc[1]);
    const __m256 t2 = _mm256_unpacklo_ps(sc[2], sc[3]), t3 = _mm256_unpackhi_ps(sc[2], sc[3]);
    _mm256_store_ps(st[0], _mm256_shuffle_ps(t0, t2, 0x44));
    _mm256_store_ps(st[1], _mm256_shuffle_ps(t0, t2, 0xEE));
    _mm256_store_ps(st[2], _mm256_shuffle_ps(t1, t3, 0x44));
    _mm256_store_ps(st[3], _mm256_shuffle_ps(t1, t3, 0xEE));
    for (int j = 0; j < nj; ++j) {
      const int64_t b = b0 + j;
      const __m256i qw = ld.q(b);
      const __m256i qa = L::kSigned ? _mm256_abs_epi8(qw) : qw;
      __m256i p[4];
      for (int i = 0; i < 4; ++i) {
        const __m256i xq = _mm256_loadu_si256((const __m256i*)(x[i].q + 32 * b));
        p[i] = L::kSigned ? _mm256_maddubs_epi16(qa, _mm256_sign_epi8(xq, qw)) : _mm256_maddubs_epi16(qw, xq);
      }
      __m256i v;
      if (kNarrow) {
        v = _mm256_madd_epi16(fold4_16(p[0], p[1], p[2], p[3]), ones);
      } else {
        v = fold4_32(_mm256_madd_epi16(p[0], ones), _mm256_madd_epi16(p[1], ones), _mm256_madd_epi16(p[2], ones),
                     _mm256_madd_epi16(p[3], ones));
      }
      const __m256 sv = _mm256_broadcast_ps((const __m128*)&st[j & 3][4 * (j >> 2)]);
      __m256& acc = (j & 1) ? acc1 : acc0;
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), sv, acc);
    }
  }
  store4(_mm256_add_ps(acc0, acc1), out);
  for (int i = 0; i < 4; ++i) out[i] += hsum(accb[i]);
}

// int8x2 at M = 1 (one activation row x[0] and its residual x[1], d2 = d1/256 exactly: act_quant.h).
// Two rows through gemv_x32<L, 2> cost 2 x (maddubs, madd, cvt, fma) per block; here the residual's
// products join the row's in int32 (vpmaddwd by 256 and by 1: |256 * S1| < 2^25) and one cvt + one
// FMA with a * d2 serve both, and the per-8-block scale work is done once.
template <typename L>
void gemv_x32_pair(const L& ld, int64_t nb, const XQRow* x, float* out) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, accb = acc0;
  const __m256i ones = _mm256_set1_epi16(1), k256 = _mm256_set1_epi16(256);
  alignas(32) float scale[8];
  const int64_t pf = prefetch_bytes();
  for (int64_t b0 = 0; b0 < nb; b0 += 8) {
    if (pf) prefetch_span<L::kPfSpan>(ld.pf_at(b0, pf));
    const int nj = (int)std::min<int64_t>(8, nb - b0);
    __m256 av, ov;
    scales8(ld, b0, nj, av, ov);
    _mm256_store_ps(scale, _mm256_mul_ps(av, _mm256_loadu_ps(x[1].d + b0)));   // a * d1 / 256
    if (L::kOff)
      accb = _mm256_fmadd_ps(ov, _mm256_add_ps(_mm256_loadu_ps(x[0].s + b0), _mm256_loadu_ps(x[1].s + b0)), accb);
    for (int j = 0; j < nj; ++j) {
      const int64_t b = b0 + j;
      const __m256i qw = ld.q(b);
      const __m256i qa = L::kSigned ? _mm256_abs_epi8(qw) : qw;
      const __m256i x1 = _mm256_loadu_si256((const __m256i*)(x[0].q + 32 * b));
      const __m256i x2 = _mm256_loadu_si256((const __m256i*)(x[1].q + 32 * b));
      const __m256i p1 = L::kSigned ? _mm256_maddubs_epi16(qa, _mm256_sign_epi8(x1, qw)) : _mm256_maddubs_epi16(qw, x1);
      const __m256i p2 = L::kSigned ? _mm256_maddubs_epi16(qa, _mm256_sign_epi8(x2, qw)) : _mm256_maddubs_epi16(qw, x2);
      const __m256i v = _mm256_add_epi32(_mm256_madd_epi16(p1, k256), _mm256_madd_epi16(p2, ones));
      __m256& acc = (j & 1) ? acc1 : acc0;
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_broadcast_ss(&scale[j]), acc);
    }
  }
  out[0] = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), accb));
}

template <typename L>
void gemv_x32_any(const L& ld, int64_t nb, const XQRow* x, int mr, float* out) {
  switch (mr) {
    case 1: gemv_x32<L, 1>(ld, nb, x, out); break;
    case 2: gemv_x32<L, 2>(ld, nb, x, out); break;
    case 3: gemv_x32<L, 3>(ld, nb, x, out); break;
    default: gemv_x32_r4<L>(ld, nb, x, out); break;
  }
}

// ---------------------------------------------------------------- 8 activation rows per lane
// m >= 6, 8 rows at a time (XQ8 layout, matmul_internal.h). The r4 kernel above folds 4 rows
// with 3 vphaddw per block: 6 shuffle uops on the one shuffle port of Intel cores (2 on Zen 3) for 4 row-blocks,
// which bounds it at ~1.75 cycles per (row, block). Here the lanes are activation rows: each
// 4-byte group of the decoded weight block is broadcast (a plain load, no shuffle) and meets the
// same 4 bytes of 8 activation rows in one vpmaddubsw. Per 32 weights and 8 rows (Q4_0):
//   decode 4 + 1 store, 8 vpbroadcastd (load port), 8 vpmaddubsw, 7 vpaddw (int16 sums:
//   8 * 2*15*127 < 2^15), 1 vpmaddwd, 1 cvt, 1 mul + 1 fma (scale), 1 bcast + 1 fma (offset)
//   = ~24 vector uops for 8 (row, block) pairs: ~3 per pair, no hadd, vs ~5 (1.75 cycles) in r4.
// Prediction: ~1 cycle per (row, block) -> M=8 about 2x faster than through r4.
// Measured (shared dev VM, 1 thread, 4096x14336, thread CPU time, A/B): Q4_0 M=8 10.8 -> 8.1-8.8 ms,
// int4-g128 10.0 -> 7.3-8.0, Q8_0 12.8 -> 10.3; Q4_K 8.6 -> 7.0, Q6_K 10.7 -> 9.0 (kernels below).
// Less than predicted: on that VM an independent vpaddw or load+vpmaddubsw+vpaddw costs ~1.6-1.8
// "cycles" of thread time (microbenchmark), and Q4_K runs at ~1.95 per vpmaddubsw, i.e. ~90% of
// that floor: what remains is the one vpmaddubsw + one vpaddw per 32 weights and row.
template <typename L>
void gemv_x32_t8(const L& ld, int64_t nb, const XQ8& x, float* out) {
  constexpr int kS = L::kSum16;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps(), accb = _mm256_setzero_ps();
  alignas(32) float scale[8], offs[8];
  alignas(32) uint8_t qb[32], qab[32];
  const int64_t pf = L::kX8 ? prefetch_bytes() : 0;   // plain rows: compute-bound here, no prefetch
  for (int64_t b0 = 0; b0 < nb; b0 += 8) {
    if (pf) prefetch_span<L::kPfSpan>(ld.pf_at(b0, pf));
    const int nj = (int)std::min<int64_t>(8, nb - b0);
    if (nj == 8) {
      const __m256 av = ld.a8(b0);
      _mm256_store_ps(scale, av);
      _mm256_store_ps(offs, L::kOff ? ld.off8(b0, av) : _mm256_setzero_ps());
    } else {
      for (int j = 0; j < nj; ++j) {
        scale[j] = ld.a1(b0 + j);
        offs[j] = L::kOff ? ld.off1(b0 + j, scale[j]) : 0.f;
      }
    }
    for (int j = 0; j < nj; ++j) {
      const int64_t b = b0 + j;
      const __m256i q = ld.q(b);
      _mm256_store_si256((__m256i*)qb, q);
      if (L::kSigned) _mm256_store_si256((__m256i*)qab, _mm256_abs_epi8(q));
      // Make the compiler reload the bytes: it would otherwise extract them with 15 shuffles
      // (psrldq + register vpbroadcastd, all on Intel's single shuffle port); a vpbroadcastd
      // from memory is a plain load (store-forwarded from the 32-byte store).
      asm volatile("" : : "r"(qb), "r"(qab) : "memory");
      const int8_t* xt = x.q + 256 * b;
      __m256i i32 = _mm256_setzero_si256(), s16 = _mm256_setzero_si256();
      for (int t = 0; t < 8; ++t) {
        int32_t wq;
        std::memcpy(&wq, qb + 4 * t, 4);
        const __m256i bw = _mm256_set1_epi32(wq);
        const __m256i xv = _mm256_loadu_si256((const __m256i*)(xt + 32 * t));
        __m256i p;
        if (L::kSigned) {
          int32_t wa;
          std::memcpy(&wa, qab + 4 * t, 4);
          p = _mm256_maddubs_epi16(_mm256_set1_epi32(wa), _mm256_sign_epi8(xv, bw));
        } else {
          p = _mm256_maddubs_epi16(bw, xv);
        }
        s16 = _mm256_add_epi16(s16, p);
        if ((t + 1) % kS == 0) {
          i32 = _mm256_add_epi32(i32, _mm256_madd_epi16(s16, ones));
          s16 = _mm256_setzero_si256();
        }
      }
      const __m256 sv = _mm256_mul_ps(_mm256_broadcast_ss(&scale[j]), _mm256_loadu_ps(x.d + 8 * b));
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), sv, acc);
      if (L::kOff) accb = _mm256_fmadd_ps(_mm256_broadcast_ss(&offs[j]), _mm256_loadu_ps(x.s + 8 * b), accb);
    }
  }
  _mm256_storeu_ps(out, _mm256_add_ps(acc, accb));
}

// Sums of kN consecutive broadcast-weight x activation products (dwords t0..t0+kN-1 of a decoded
// 32-weight group at qb) for the 8 interleaved activation rows, as int16 lanes.
// Q4_K/Q5_K: the 12 bytes of 6-bit scales and mins (block bytes 4..15) -> 16-bit lanes 0..7 the
// scales, 8..15 the mins: llama.cpp's get_scale_min_k4 done on 32-bit words for all 8 at once.
inline __m256i k4_scales_mins16(const uint8_t* blk) {
  alignas(16) uint8_t u[16];
  k4_scales_mins(blk + 4, u);
  return _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i*)u));
}

template <int kN>
inline __m256i dot_t8(const uint8_t* qb, const int8_t* xt, int t0) {
  __m256i s16 = _mm256_setzero_si256();
  for (int t = t0; t < t0 + kN; ++t) {
    int32_t wq;
    std::memcpy(&wq, qb + 4 * t, 4);
    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_set1_epi32(wq),
                                                     _mm256_loadu_si256((const __m256i*)(xt + 32 * t))));
  }
  return s16;
}
inline __m256i bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Q4_K / Q5_K with 8 activation rows per lane. Per super-block: the 8 sub-block scales as int32
// words (sc, sc) for one vpmaddwd per 32 weights (the int16 lane sums of 8 products fit for 4-bit
// q, of 4 for 5-bit), int32 accumulation over the super-block, mins through the per-16 bsums
// (8 vpmaddwd), then 2 float FMAs per 256 weights. Per 32 weights and 8 rows (Q4_K): 8 vpbroadcastd
// (loads), 8 vpmaddubsw, 7 vpaddw, 1 vpmaddwd, 1 vpaddd + ~3 to split nibbles: ~20 vector uops
// for 8 (row, 32-weight) pairs, vs ~5 per pair in the 4-row kernel (3 vphaddw per 4 rows).
template <bool Q5>
void gemv_q4_k_t8(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
  constexpr int kBytes = Q5 ? 176 : 144, kQs = Q5 ? 48 : 16, kS = Q5 ? 4 : 8;
  const uint8_t* blk = w.data + r * w.row_bytes;
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
  alignas(32) uint8_t qb[64];
  alignas(32) int16_t scw[16], mnw[16];  // scw: (sc_j, sc_j) pairs; mnw: (mn_j, mn_j) pairs
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += kBytes) {
    const __m256i sm16 = k4_scales_mins16(blk);
    const __m128i sc8 = _mm256_castsi256_si128(sm16), mn8 = _mm256_extracti128_si256(sm16, 1);
    _mm256_store_si256((__m256i*)scw, _mm256_set_m128i(_mm_unpackhi_epi16(sc8, sc8), _mm_unpacklo_epi16(sc8, sc8)));
    _mm256_store_si256((__m256i*)mnw, _mm256_set_m128i(_mm_unpackhi_epi16(mn8, mn8), _mm_unpacklo_epi16(mn8, mn8)));
    const __m256i H = Q5 ? _mm256_loadu_si256((const __m256i*)(blk + 16)) : _mm256_setzero_si256();
    const int8_t* xs = x.q + 8 * 256 * sb;  // 8 sub-blocks of 256 interleaved bytes
    __m256i iacc = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256((const __m256i*)(blk + kQs + 32 * c));
      __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      if (Q5) {
        lo = _mm256_or_si256(lo, bit_to_16(H, 2 * c));
        hi = _mm256_or_si256(hi, bit_to_16(H, 2 * c + 1));
      }
      _mm256_store_si256((__m256i*)qb, lo);
      _mm256_store_si256((__m256i*)(qb + 32), hi);
      asm volatile("" : : "r"(qb), "r"(scw), "r"(mnw) : "memory");  // broadcasts from memory (see gemv_x32_t8)
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        const uint8_t* q = qb + 32 * h;
        const int8_t* xt = xs + 256 * j;
        __m256i sum;
        if (kS == 8) {
          sum = _mm256_madd_epi16(dot_t8<8>(q, xt, 0), bcast32(scw + 2 * j));
        } else {
          sum = _mm256_add_epi32(_mm256_madd_epi16(dot_t8<4>(q, xt, 0), bcast32(scw + 2 * j)),
                                 _mm256_madd_epi16(dot_t8<4>(q, xt, 4), bcast32(scw + 2 * j)));
        }
        iacc = _mm256_add_epi32(iacc, sum);
      }
    }
    // mins: sum_j mn_j * (bsum16[2j] + bsum16[2j+1]), one vpmaddwd per sub-block.
    const int16_t* bs = x.bsum + 128 * sb;
    __m256i mm = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j)
      mm = _mm256_add_epi32(mm, _mm256_madd_epi16(bcast32(mnw + 2 * j), _mm256_loadu_si256((const __m256i*)(bs + 16 * j))));
    const __m256 dx = _mm256_loadu_ps(x.d + 8 * sb);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(blk))), acc);
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mm), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(blk + 2))), accm);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(acc, accm));
}

// Q6_K with 8 activation rows per lane: 6-bit products (2*63*127) allow 2 per int16 lane sum, so
// each 16-weight half gets its own vpmaddwd with (sc, sc); the -32 offset through the per-16
// bsums, 32 * sc as pairs (sc[2p], sc[2p+1]) to match the (bsum[2p], bsum[2p+1]) layout.
void gemv_q6_k_t8(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
  const uint8_t* blk = w.data + r * w.row_bytes;
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), m30 = _mm256_set1_epi8(0x30);
  __m256 acc = _mm256_setzero_ps();
  alignas(32) uint8_t qb[128];
  alignas(32) int16_t scw[32], sc2[16];  // scw: (sc_g, sc_g) per 16-group g; sc2: 32 * sc
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += 210) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(blk + 192)));
    _mm256_store_si256((__m256i*)scw, _mm256_unpacklo_epi16(sc16, sc16));        // g 0-3 | 8-11
    _mm256_store_si256((__m256i*)(scw + 16), _mm256_unpackhi_epi16(sc16, sc16));  // g 4-7 | 12-15
    _mm256_store_si256((__m256i*)sc2, _mm256_slli_epi16(sc16, 5));
    const int8_t* xs = x.q + 8 * 256 * sb;
    __m256i iacc = _mm256_setzero_si256();
    for (int n = 0; n < 2; ++n) {
      const __m256i A = _mm256_loadu_si256((const __m256i*)(blk + 64 * n));
      const __m256i B = _mm256_loadu_si256((const __m256i*)(blk + 64 * n + 32));
      const __m256i Hq = _mm256_loadu_si256((const __m256i*)(blk + 128 + 32 * n));
      _mm256_store_si256((__m256i*)qb, _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(Hq, m3), 4)));
      _mm256_store_si256((__m256i*)(qb + 32), _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(Hq, 2), m30)));
      _mm256_store_si256((__m256i*)(qb + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(Hq, m30)));
      _mm256_store_si256((__m256i*)(qb + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                                              _mm256_and_si256(_mm256_srli_epi16(Hq, 2), m30)));
      asm volatile("" : : "r"(qb), "r"(scw), "r"(sc2) : "memory");
      for (int t = 0; t < 4; ++t) {
        const int j = 4 * n + t;  // sub-block of 32: 16-groups 2j, 2j+1
        const uint8_t* q = qb + 32 * t;
        const int8_t* xt = xs + 256 * j;
        // scw index of group g: g in 0-3 -> 2g, 4-7 -> 16 + 2(g-4), 8-11 -> 8 + 2(g-8), 12-15 -> 24 + 2(g-12)
        auto widx = [](int g) { return (g & 3) * 2 + ((g >> 2) & 1) * 16 + ((g >> 3) & 1) * 8; };
        const __m256i s0 = bcast32(scw + widx(2 * j)), s1 = bcast32(scw + widx(2 * j + 1));
        iacc = _mm256_add_epi32(iacc, _mm256_add_epi32(_mm256_madd_epi16(dot_t8<2>(q, xt, 0), s0),
                                                       _mm256_madd_epi16(dot_t8<2>(q, xt, 2), s0)));
        iacc = _mm256_add_epi32(iacc, _mm256_add_epi32(_mm256_madd_epi16(dot_t8<2>(q, xt, 4), s1),
                                                       _mm256_madd_epi16(dot_t8<2>(q, xt, 6), s1)));
      }
    }
    const int16_t* bs = x.bsum + 128 * sb;
    __m256i mm = _mm256_setzero_si256();
    for (int p = 0; p < 8; ++p)
      mm = _mm256_add_epi32(mm, _mm256_madd_epi16(bcast32(sc2 + 2 * p), _mm256_loadu_si256((const __m256i*)(bs + 16 * p))));
    const __m256 dx = _mm256_loadu_ps(x.d + 8 * sb);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(iacc, mm)), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(blk + 208))), acc);
  }
  _mm256_storeu_ps(out, acc);
}
void fused8_q4_k(const WeightRef& w, int64_t r, const XQ8& x, float* out) { gemv_q4_k_t8<false>(w, r, x, out); }
void fused8_q5_k(const WeightRef& w, int64_t r, const XQ8& x, float* out) { gemv_q4_k_t8<true>(w, r, x, out); }

template <typename L>
void fused8_gguf_x32(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
  L ld{};
  ld.row = w.data + r * w.row_bytes;
  gemv_x32_t8(ld, w.k / 32, x, out);
}

void fused8_int4(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
  const int64_t ng = w.k / w.group_size;
  const LInt4 ld{w.data + r * w.row_bytes, w.scales + r * ng, w.mins + r * ng,
                 int4_group_shift(w)};
  gemv_x32_t8(ld, w.k / 32, x, out);
}

void fused8_int8(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
  const LInt8 ld{w.data + r * w.row_bytes, w.scales[r]};
  const int64_t nb = w.k / 32;
  gemv_x32_t8(ld, nb, x, out);
  if (nb * 32 < w.k) {  // tail inside a block: scalar over the interleaved layout
    const int8_t* q = reinterpret_cast<const int8_t*>(ld.row) + nb * 32;
    for (int i = 0; i < 8; ++i) {
      int32_t s = 0;
      for (int64_t e = 0; e < w.k - nb * 32; ++e) s += (int32_t)q[e] * x.q[256 * nb + 32 * (e / 4) + 4 * i + e % 4];
      out[i] += ld.s * x.d[8 * nb + i] * (float)s;
    }
  }
}

template <typename L>
void fused_gguf_x32(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out) {
  L ld{};
  ld.row = w.data + r * w.row_bytes;
  gemv_x32_any(ld, w.k / 32, x, mr, out);
}

void fused_int4(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out) {
  const int64_t ng = w.k / w.group_size;
  const LInt4 ld{w.data + r * w.row_bytes, w.scales + r * ng, w.mins + r * ng,
                 int4_group_shift(w)};
  gemv_x32_any(ld, w.k / 32, x, mr, out);
}

// int8 rows may end inside a 32-block: the full blocks run fused, the tail in scalar (the
// activation row is zero-padded, the weight row is not).
template <typename L>
void pair_gguf_x32(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  L ld{};
  ld.row = w.data + r * w.row_bytes;
  gemv_x32_pair(ld, w.k / 32, x, out);
}

void pair_int4(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  const int64_t ng = w.k / w.group_size;
  const LInt4 ld{w.data + r * w.row_bytes, w.scales + r * ng, w.mins + r * ng,
                 int4_group_shift(w)};
  gemv_x32_pair(ld, w.k / 32, x, out);
}

void pair_int8(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  const LInt8 ld{w.data + r * w.row_bytes, w.scales[r]};
  const int64_t nb = w.k / 32;
  gemv_x32_pair(ld, nb, x, out);
  if (nb * 32 < w.k) {   // the row's tail inside a 32-block, as fused_int8
    const int8_t* q = reinterpret_cast<const int8_t*>(ld.row) + nb * 32;
    for (int i = 0; i < 2; ++i) {
      int32_t s = 0;
      for (int64_t e = 0; e < w.k - nb * 32; ++e) s += (int32_t)q[e] * x[i].q[nb * 32 + e];
      out[0] += ld.s * x[i].d[nb] * (float)s;
    }
  }
}

void fused_int8(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out) {
  const LInt8 ld{w.data + r * w.row_bytes, w.scales[r]};
  const int64_t nb = w.k / 32;
  gemv_x32_any(ld, nb, x, mr, out);
  if (nb * 32 < w.k) {
    const int8_t* q = reinterpret_cast<const int8_t*>(ld.row) + nb * 32;
    for (int i = 0; i < mr; ++i) {
      int32_t s = 0;
      for (int64_t e = 0; e < w.k - nb * 32; ++e) s += (int32_t)q[e] * x[i].q[nb * 32 + e];
      out[i] += ld.s * x[i].d[nb] * (float)s;
    }
  }
}

// Row-interleaved entry points (the loaders above).
template <typename L>
L x8_loader(const WeightRef& w, int64_t r) {
  const X8Row x8(w, r);
  L ld{};
  ld.l = x8.l;
  ld.grp = x8.grp;
  ld.next = x8.grp + 8 * w.row_bytes;   // past the last group: a prefetch does not fault
  return ld;
}
template <>
LInt4X8 x8_loader<LInt4X8>(const WeightRef& w, int64_t r) {
  LInt4X8 ld{};
  const X8Row x8(w, r);
  ld.l = x8.l;
  ld.grp = x8.grp;
  ld.next = x8.grp + 8 * w.row_bytes;
  const int64_t ng = w.k / w.group_size;
  ld.sc = w.scales + (r - ld.l) * ng + ld.l;
  ld.mn = w.mins + (r - ld.l) * ng + ld.l;
  ld.shift = int4_group_shift(w);
  return ld;
}
template <typename L>
void fused_x8(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out) {
  gemv_x32_any(x8_loader<L>(w, r), w.k / 32, x, mr, out);
}
template <typename L>
void fused8_x8(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
  gemv_x32_t8(x8_loader<L>(w, r), w.k / 32, x, out);
}
template <typename L>
void pair_x8(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  gemv_x32_pair(x8_loader<L>(w, r), w.k / 32, x, out);
}

// ---------------------------------------------------------------- K-quants

// Q4_K: per super-block one int32 accumulator per row; 8 sub-block scales as 16-bit broadcasts;
// mins through bsums (madd of 16 x int16), all applied with 2 FMAs per 256 weights.
// Q5 = true: Q5_K (same scales; qh[32] at 16 adds bit 2c / 2c+1 as value 16; qs at 48).
template <int MR, bool Q5>
void gemv_q4_k(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  constexpr int kBytes = Q5 ? 176 : 144, kQs = Q5 ? 48 : 16;
  const uint8_t* blk = w.data + r * w.row_bytes;
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256 acc[MR], accm[MR];
  for (int i = 0; i < MR; ++i) acc[i] = accm[i] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += kBytes) {
    if (pf) prefetch_span<kBytes>(blk + pf);
    const __m256i sm16 = k4_scales_mins16(blk);
    const __m128i sc8 = _mm256_castsi256_si128(sm16), mn8 = _mm256_extracti128_si256(sm16, 1);
    const __m256i scb = _mm256_set_m128i(sc8, sc8);
    const __m256i mv = _mm256_set_m128i(_mm_unpackhi_epi16(mn8, mn8), _mm_unpacklo_epi16(mn8, mn8));
    const float d = h2f(blk), dmin = h2f(blk + 2);
    __m256i iacc[MR];
    for (int i = 0; i < MR; ++i) iacc[i] = _mm256_setzero_si256();
    const __m256i H = Q5 ? _mm256_loadu_si256((const __m256i*)(blk + 16)) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256((const __m256i*)(blk + kQs + 32 * c));
      __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      if (Q5) {
        lo = _mm256_or_si256(lo, bit_to_16(H, 2 * c));
        hi = _mm256_or_si256(hi, bit_to_16(H, 2 * c + 1));
      }
      // Broadcast 16-bit scale 2c / 2c+1 with one byte shuffle each.
      const __m256i slo = _mm256_shuffle_epi8(scb, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * c))));
      const __m256i shi = _mm256_shuffle_epi8(scb, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1))));
      for (int i = 0; i < MR; ++i) {
        const int8_t* xq = x[i].q + 256 * sb + 64 * c;
        const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i*)xq)), slo);
        const __m256i phi =
            _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i*)(xq + 32))), shi);
        iacc[i] = _mm256_add_epi32(iacc[i], _mm256_add_epi32(plo, phi));
      }
    }
    for (int i = 0; i < MR; ++i) {
      const float dx = x[i].d[sb];
      const __m256i bs = _mm256_loadu_si256((const __m256i*)(x[i].bsum + 16 * sb));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i]), _mm256_set1_ps(dx * d), acc[i]);
      accm[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(mv, bs)), _mm256_set1_ps(dx * dmin), accm[i]);
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = hsum(_mm256_sub_ps(acc[i], accm[i]));
}

// Q6_K: 6-bit q built from ql/qh with shifts and masks (see unpack_q6_k), offset 32 via bsums.
template <int MR>
void gemv_q6_k(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  const uint8_t* blk = w.data + r * w.row_bytes;
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), m30 = _mm256_set1_epi8(0x30);
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += 210) {
    if (pf) prefetch_span<210>(blk + pf);
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)sc));
    // Scale vectors [sc[2j] x 8 | sc[2j+1] x 8] by byte shuffles of the duplicated halves.
    const __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
    const __m256i sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
    const float d = h2f(blk + 208);
    __m256i iacc[MR];
    for (int i = 0; i < MR; ++i) iacc[i] = _mm256_setzero_si256();
    for (int n = 0; n < 2; ++n) {
      const __m256i A = _mm256_loadu_si256((const __m256i*)(blk + 64 * n));
      const __m256i B = _mm256_loadu_si256((const __m256i*)(blk + 64 * n + 32));
      const __m256i H = _mm256_loadu_si256((const __m256i*)(blk + 128 + 32 * n));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(H, m3), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
      for (int t = 0; t < 4; ++t) {
        const int j = 4 * n + t;  // 32-chunk index: scales 2j (first 16) and 2j+1
        const int tt = j & 3;  // scale lanes 2tt, 2tt+1 of the half holding 2j, 2j+1
        const __m256i mask = _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * tt + 1))),
                                              _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * tt))));
        const __m256i s = _mm256_shuffle_epi8(j < 4 ? sc_lo : sc_hi, mask);
        for (int i = 0; i < MR; ++i) {
          const __m256i xq = _mm256_loadu_si256((const __m256i*)(x[i].q + 256 * sb + 32 * j));
          iacc[i] = _mm256_add_epi32(iacc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(q[t], xq), s));
        }
      }
    }
    const __m256i mv = _mm256_slli_epi16(sc16, 5);  // 32 * sc
    for (int i = 0; i < MR; ++i) {
      const __m256i bs = _mm256_loadu_si256((const __m256i*)(x[i].bsum + 16 * sb));
      const __m256i tot = _mm256_sub_epi32(iacc[i], _mm256_madd_epi16(mv, bs));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), _mm256_set1_ps(x[i].d[sb] * d), acc[i]);
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = hsum(acc[i]);
}

// Q4_K, 4 rows: maddubs per row, then the 4 rows fold in int16 (4-bit: x4 pairs fits) and one
// madd applies the sub-block scale to all of them.
template <bool Q5>
void gemv_q4_k_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  constexpr int kBytes = Q5 ? 176 : 144, kQs = Q5 ? 48 : 16;
  const uint8_t* blk = w.data + r * w.row_bytes;
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += kBytes) {
    if (pf) prefetch_span<kBytes>(blk + pf);
    const __m256i sm16 = k4_scales_mins16(blk);
    const __m128i sc8 = _mm256_castsi256_si128(sm16), mn8 = _mm256_extracti128_si256(sm16, 1);
    const __m256i scb = _mm256_set_m128i(sc8, sc8);
    const __m256i mv = _mm256_set_m128i(_mm_unpackhi_epi16(mn8, mn8), _mm_unpacklo_epi16(mn8, mn8));
    const float d = h2f(blk), dmin = h2f(blk + 2);
    __m256i iacc = _mm256_setzero_si256();
    const __m256i H = Q5 ? _mm256_loadu_si256((const __m256i*)(blk + 16)) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256((const __m256i*)(blk + kQs + 32 * c));
      __m256i half[2] = {_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)};
      if (Q5) {  // 5-bit q: 4 rows x |pair| <= 2*31*127 still fold in int16
        half[0] = _mm256_or_si256(half[0], bit_to_16(H, 2 * c));
        half[1] = _mm256_or_si256(half[1], bit_to_16(H, 2 * c + 1));
      }
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        const __m256i s = _mm256_shuffle_epi8(scb, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
        __m256i p[4];
        for (int i = 0; i < 4; ++i)
          p[i] = _mm256_maddubs_epi16(half[h], _mm256_loadu_si256((const __m256i*)(x[i].q + 256 * sb + 32 * j)));
        iacc = _mm256_add_epi32(iacc, _mm256_madd_epi16(fold4_16(p[0], p[1], p[2], p[3]), s));
      }
    }
    __m256i mm[4];
    for (int i = 0; i < 4; ++i)
      mm[i] = _mm256_madd_epi16(mv, _mm256_loadu_si256((const __m256i*)(x[i].bsum + 16 * sb)));
    const __m128 dx4 = _mm_setr_ps(x[0].d[sb], x[1].d[sb], x[2].d[sb], x[3].d[sb]);
    const __m256 dx = _mm256_set_m128(dx4, dx4);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc), _mm256_mul_ps(dx, _mm256_set1_ps(d)), acc);
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4_32(mm[0], mm[1], mm[2], mm[3])),
                           _mm256_mul_ps(dx, _mm256_set1_ps(dmin)), accm);
  }
  store4(_mm256_sub_ps(acc, accm), out);
}

// Q6_K, 4 rows: 6-bit pairs reach 16002, so rows fold pairwise in int16 (x2 = 32004) before the
// scale madd, and the two halves fold in int32 at the end of the super-block.
void gemv_q6_k_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  const uint8_t* blk = w.data + r * w.row_bytes;
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), m30 = _mm256_set1_epi8(0x30);
  __m256 acc = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += 210) {
    if (pf) prefetch_span<210>(blk + pf);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(blk + 192)));
    const __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
    const __m256i sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
    const float d = h2f(blk + 208);
    __m256i i01 = _mm256_setzero_si256(), i23 = i01;
    for (int n = 0; n < 2; ++n) {
      const __m256i A = _mm256_loadu_si256((const __m256i*)(blk + 64 * n));
      const __m256i B = _mm256_loadu_si256((const __m256i*)(blk + 64 * n + 32));
      const __m256i H = _mm256_loadu_si256((const __m256i*)(blk + 128 + 32 * n));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_slli_epi16(_mm256_and_si256(H, m3), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
      for (int t = 0; t < 4; ++t) {
        const int j = 4 * n + t;
        const int tt = j & 3;
        const __m256i mask = _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * tt + 1))),
                                              _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * tt))));
        const __m256i s = _mm256_shuffle_epi8(j < 4 ? sc_lo : sc_hi, mask);
        __m256i p[4];
        for (int i = 0; i < 4; ++i)
          p[i] = _mm256_maddubs_epi16(q[t], _mm256_loadu_si256((const __m256i*)(x[i].q + 256 * sb + 32 * j)));
        i01 = _mm256_add_epi32(i01, _mm256_madd_epi16(_mm256_hadd_epi16(p[0], p[1]), s));
        i23 = _mm256_add_epi32(i23, _mm256_madd_epi16(_mm256_hadd_epi16(p[2], p[3]), s));
      }
    }
    // i01 lanes per half: [r0 r0 r1 r1], i23: [r2 r2 r3 r3] -> hadd -> [r0 r1 r2 r3].
    const __m256i mv = _mm256_slli_epi16(sc16, 5);
    __m256i mm[4];
    for (int i = 0; i < 4; ++i)
      mm[i] = _mm256_madd_epi16(mv, _mm256_loadu_si256((const __m256i*)(x[i].bsum + 16 * sb)));
    const __m256i tot = _mm256_sub_epi32(_mm256_hadd_epi32(i01, i23), fold4_32(mm[0], mm[1], mm[2], mm[3]));
    const __m128 dx4 = _mm_setr_ps(x[0].d[sb], x[1].d[sb], x[2].d[sb], x[3].d[sb]);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot), _mm256_mul_ps(_mm256_set_m128(dx4, dx4), _mm256_set1_ps(d)), acc);
  }
  store4(acc, out);
}

// Q3_K: 110 B = hmask[32] | qs[64] | scales[12] | d. Element 128n + 32j + l: u = ((qs[32n+l] >> 2j) & 3)
// + 4 * (hmask[l] bit 4n+j), w = d*(sc-32)*(u-4); the -4 goes through bsums (mn = 4*(sc-32)).
struct Q3Block {
  __m256i hm, qs[2], sc16, mn16;  // sc16: the 16 signed sub-block scales (sc - 32)
  float d, dmin;
  explicit Q3Block(const uint8_t* blk) {
    hm = _mm256_loadu_si256((const __m256i*)blk);
    qs[0] = _mm256_loadu_si256((const __m256i*)(blk + 32));
    qs[1] = _mm256_loadu_si256((const __m256i*)(blk + 64));
    // 12 scale bytes (no over-read: the block ends 2 bytes after them): low nibbles of bytes 0..7
    // are scales 0..7, high nibbles scales 8..15; 2-bit highs from bytes 8..11 (shift 2*(g/4)).
    uint32_t tail;
    std::memcpy(&tail, blk + 104, 4);
    const __m128i v = _mm_insert_epi32(_mm_loadl_epi64((const __m128i*)(blk + 96)), (int)tail, 2);
    const __m128i m4 = _mm_set1_epi8(15), m3 = _mm_set1_epi8(3);
    const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    const __m128i h = _mm_srli_si128(v, 8);  // bytes 8..11
    const __m128i h01 = _mm_unpacklo_epi32(_mm_and_si128(h, m3), _mm_and_si128(_mm_srli_epi16(h, 2), m3));
    const __m128i h23 = _mm_unpacklo_epi32(_mm_and_si128(_mm_srli_epi16(h, 4), m3), _mm_and_si128(_mm_srli_epi16(h, 6), m3));
    const __m128i hi = _mm_unpacklo_epi64(h01, h23);
    sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_or_si128(lo, _mm_slli_epi16(hi, 4))), _mm256_set1_epi16(32));
    mn16 = _mm256_slli_epi16(sc16, 2);  // 4 * (sc - 32)
    d = dmin = h2f(blk + 108);
  }
  static constexpr int kBytes = 110;
  __m256i q(int jj) const {  // 32-chunk jj = 4n + j
    const int n = jj >> 2, j = jj & 3;
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(qs[n], 2 * j), _mm256_set1_epi8(3));
    const __m256i hb = _mm256_and_si256(hm, _mm256_set1_epi8((char)(1 << jj)));
    return _mm256_or_si256(low, _mm256_andnot_si256(_mm256_cmpeq_epi8(hb, _mm256_setzero_si256()), _mm256_set1_epi8(4)));
  }
};

// Q2_K: 84 B = scales[16] (low nibble scale, high nibble min) | qs[64] | d | dmin; element
// 128n + 32j + l = (qs[32n+l] >> 2j) & 3; w = d*sc*q - dmin*m.
struct Q2Block {
  static constexpr int kBytes = 84;
  __m256i qs[2], sc16, mn16;
  float d, dmin;
  explicit Q2Block(const uint8_t* blk) {
    const __m128i v = _mm_loadu_si128((const __m128i*)blk);
    sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(15)));
    mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)));
    qs[0] = _mm256_loadu_si256((const __m256i*)(blk + 16));
    qs[1] = _mm256_loadu_si256((const __m256i*)(blk + 48));
    d = h2f(blk + 80);
    dmin = h2f(blk + 82);
  }
  __m256i q(int jj) const {
    return _mm256_and_si256(_mm256_srli_epi16(qs[jj >> 2], 2 * (jj & 3)), _mm256_set1_epi8(3));
  }
};

// [sc[2jj] x 8 | sc[2jj+1] x 8] from the duplicated halves of a 16 x int16 scale vector.
inline __m256i scale_pair(__m256i lo, __m256i hi, int jj) {
  const int t = jj & 3;
  const __m256i mask = _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * t + 1))),
                                        _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * t))));
  return _mm256_shuffle_epi8(jj < 4 ? lo : hi, mask);
}

// K-quants with 16 sub-blocks of 16 and small unsigned q (Q2_K, Q3_K): Block dequantizes one super-block.
template <typename Block, int MR>
void gemv_k16(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  const uint8_t* blk = w.data + r * w.row_bytes;
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += Block::kBytes) {
    if (pf) prefetch_span<Block::kBytes>(blk + pf);
    const Block b(blk);
    const __m256i lo = _mm256_permute2x128_si256(b.sc16, b.sc16, 0x00);
    const __m256i hi = _mm256_permute2x128_si256(b.sc16, b.sc16, 0x11);
    __m256i iacc[MR];
    for (int i = 0; i < MR; ++i) iacc[i] = _mm256_setzero_si256();
    for (int jj = 0; jj < 8; ++jj) {
      const __m256i q = b.q(jj), s = scale_pair(lo, hi, jj);
      for (int i = 0; i < MR; ++i) {
        const __m256i xq = _mm256_loadu_si256((const __m256i*)(x[i].q + 256 * sb + 32 * jj));
        iacc[i] = _mm256_add_epi32(iacc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xq), s));
      }
    }
    for (int i = 0; i < MR; ++i) {
      const __m256i bs = _mm256_loadu_si256((const __m256i*)(x[i].bsum + 16 * sb));
      const __m256 mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(b.mn16, bs));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i]), _mm256_set1_ps(x[i].d[sb] * b.d), acc[i]);
      acc[i] = _mm256_fnmadd_ps(mins, _mm256_set1_ps(x[i].d[sb] * b.dmin), acc[i]);
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = hsum(acc[i]);
}

// 4 rows: <= 3-bit q (|pair| <= 2*7*127) folds 4 rows in int16 before the scale madd.
template <typename Block>
void gemv_k16_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  const uint8_t* blk = w.data + r * w.row_bytes;
  __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += Block::kBytes) {
    if (pf) prefetch_span<Block::kBytes>(blk + pf);
    const Block b(blk);
    const __m256i lo = _mm256_permute2x128_si256(b.sc16, b.sc16, 0x00);
    const __m256i hi = _mm256_permute2x128_si256(b.sc16, b.sc16, 0x11);
    __m256i iacc = _mm256_setzero_si256();
    for (int jj = 0; jj < 8; ++jj) {
      const __m256i q = b.q(jj);
      __m256i p[4];
      for (int i = 0; i < 4; ++i)
        p[i] = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i*)(x[i].q + 256 * sb + 32 * jj)));
      iacc = _mm256_add_epi32(iacc, _mm256_madd_epi16(fold4_16(p[0], p[1], p[2], p[3]), scale_pair(lo, hi, jj)));
    }
    __m256i mm[4];
    for (int i = 0; i < 4; ++i)
      mm[i] = _mm256_madd_epi16(b.mn16, _mm256_loadu_si256((const __m256i*)(x[i].bsum + 16 * sb)));
    const __m128 dx4 = _mm_setr_ps(x[0].d[sb], x[1].d[sb], x[2].d[sb], x[3].d[sb]);
    const __m256 dx = _mm256_set_m128(dx4, dx4);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc), _mm256_mul_ps(dx, _mm256_set1_ps(b.d)), acc);
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4_32(mm[0], mm[1], mm[2], mm[3])),
                           _mm256_mul_ps(dx, _mm256_set1_ps(b.dmin)), accm);
  }
  store4(_mm256_sub_ps(acc, accm), out);
}

template <int MR>
void gemv_q3_k(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_k16<Q3Block, MR>(w, r, x, out); }
template <int MR>
void gemv_q2_k(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_k16<Q2Block, MR>(w, r, x, out); }
void gemv_q3_k_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_k16_r4<Q3Block>(w, r, x, out); }
void gemv_q2_k_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_k16_r4<Q2Block>(w, r, x, out); }

// IQ4_XS: 136 B = d | scales_h (u16) | scales_l[4] | qs[128]; sub-block j of 32: kvalues[nibble] *
// (ls_j - 32). Signed q (|q| <= 127): sign trick, and pairs up to 32258 cannot fold rows in int16,
// so every row keeps its own madd with the broadcast scale.
template <int MR>
void gemv_iq4_xs(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  const uint8_t* blk = w.data + r * w.row_bytes;
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kvalues_iq4nl));
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  const int64_t pf = prefetch_bytes();
  for (int64_t sb = 0; sb < w.k / 256; ++sb, blk += 136) {
    if (pf) prefetch_span<136>(blk + pf);
    uint16_t sh;
    std::memcpy(&sh, blk + 2, 2);
    int16_t ls[8];
    for (int j = 0; j < 8; ++j)
      ls[j] = (int16_t)((((blk[4 + j / 2] >> (4 * (j % 2))) & 15) | (((sh >> (2 * j)) & 3) << 4)) - 32);
    const __m128i v8 = _mm_setr_epi16(ls[0], ls[1], ls[2], ls[3], ls[4], ls[5], ls[6], ls[7]);
    const __m256i scb = _mm256_set_m128i(v8, v8);
    __m256i iacc[MR];
    for (int i = 0; i < MR; ++i) iacc[i] = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i q = _mm256_shuffle_epi8(table, nibbles32(blk + 8 + 16 * j));
      const __m256i qa = _mm256_abs_epi8(q);
      const __m256i s = _mm256_shuffle_epi8(scb, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
      for (int i = 0; i < MR; ++i) {
        const __m256i xq = _mm256_loadu_si256((const __m256i*)(x[i].q + 256 * sb + 32 * j));
        iacc[i] = _mm256_add_epi32(iacc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(xq, q)), s));
      }
    }
    const float d = h2f(blk);
    for (int i = 0; i < MR; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i]), _mm256_set1_ps(x[i].d[sb] * d), acc[i]);
  }
  for (int i = 0; i < MR; ++i) out[i] = hsum(acc[i]);
}
void gemv_iq4_xs_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_iq4_xs<4>(w, r, x, out); }

#define PQ_MR_DISPATCH(NAME, FN)                                                       \
  void NAME(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out) {       \
    switch (mr) {                                                                      \
      case 1: FN<1>(w, r, x, out); break;                                              \
      case 2: FN<2>(w, r, x, out); break;                                              \
      case 3: FN<3>(w, r, x, out); break;                                              \
      default: FN##_r4(w, r, x, out); break;                                           \
    }                                                                                  \
  }
template <int MR>
void gemv_q4_k_only(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_q4_k<MR, false>(w, r, x, out); }
template <int MR>
void gemv_q5_k(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_q4_k<MR, true>(w, r, x, out); }
void gemv_q4_k_only_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_q4_k_r4<false>(w, r, x, out); }
void gemv_q5_k_r4(const WeightRef& w, int64_t r, const XQRow* x, float* out) { gemv_q4_k_r4<true>(w, r, x, out); }
PQ_MR_DISPATCH(fused_q4_k, gemv_q4_k_only)
PQ_MR_DISPATCH(fused_q5_k, gemv_q5_k)
PQ_MR_DISPATCH(fused_q6_k, gemv_q6_k)
PQ_MR_DISPATCH(fused_q3_k, gemv_q3_k)
PQ_MR_DISPATCH(fused_q2_k, gemv_q2_k)
PQ_MR_DISPATCH(fused_iq4_xs, gemv_iq4_xs)
#undef PQ_MR_DISPATCH

// ---------------------------------------------------------------- EXL2 mixed widths
// An EXL2 row (cpu/exl2_blocks.h) is a few runs of blocks of one width (widths descend along
// act-order k: at most 6 runs), each a fixed-stride row of legacy-style blocks, w = d * (q - 2^(b-1)).
// So the X32 kernels above take it run by run, with a loader per width: <= 5 bits unsigned q with
// the offset through the activation sums (Q4_0's way), 6 and 8 bits signed q - 2^(b-1) (Q8_0's
// way: 6-bit unsigned products would overflow the 4-row kernel's int16 folds).
template <int B>
struct LExl2 : LegacyFields<LExl2<B>, 0, -1, (B <= 5 ? -(1 << (B - 1)) : 0)> {
  static constexpr bool kSigned = B > 5, kOff = B <= 5;
  // int16 lane sums that fit: 8 for <= 4-bit unsigned q, 4 for 5-bit and for |q| <= 32 (6-bit
  // signed: 4 * 2*32*127 < 2^15), 1 for 8-bit signed
  static constexpr int kSum16 = B <= 4 ? 8 : B <= 6 ? 4 : 1;
  static constexpr int kBytes = 2 + 4 * B, kStep = kBytes, kHdrStride = kBytes, kPfSpan = 8 * kStep;
  static constexpr bool kX8 = false;
  const uint8_t* row;
  const uint8_t* at(int64_t b) const { return row + kBytes * b; }
  const uint8_t* hdr(int64_t b) const { return at(b); }
  const uint8_t* pf_at(int64_t b0, int64_t pf) const { return at(b0) + pf; }
  __m256i q(int64_t b) const {
    const __m256i v = exl2::values<B>(at(b) + 2);
    return kSigned ? _mm256_sub_epi8(v, _mm256_set1_epi8((char)(1 << (B - 1)))) : v;
  }
};

// fn(LExl2<b> over the run's blocks, the run) for each run of row r.
template <typename Fn>
inline void exl2_each_run(const WeightRef& w, int64_t r, Fn&& fn) {
  const uint8_t* row = w.data + r * w.row_bytes;
  for (int i = 0; i < w.n_runs; ++i) {
    const Exl2Run& run = w.runs[i];
    with_exl2_width(run.bits, [&](auto width) {
      LExl2<decltype(width)::value> ld{};
      ld.row = row + run.byte0;
      fn(ld, run);
    });
  }
}

// Activation rows x[0..nx) seen from block j0 on. The kernels read x's per-block scales 8 at a time
// (whole rows are padded to 256-chunks for that); a run that ends mid-row may end 1..7 blocks short
// of a multiple of 8 from where it starts, so its last blocks get those scales copied to `tail`,
// zero-padded.
struct Exl2X {
  XQRow rows[4];
  alignas(32) float d[4][8], s[4][8];
};
inline void exl2_x(const XQRow* x, int nx, int64_t j0, int nt, Exl2X& t) {
  for (int i = 0; i < nx; ++i) {
    t.rows[i] = {x[i].q + 32 * j0, x[i].d + j0, x[i].s + j0, nullptr};
    if (nt) {
      for (int j = 0; j < 8; ++j) {
        t.d[i][j] = j < nt ? x[i].d[j0 + j] : 0.f;
        t.s[i][j] = j < nt ? x[i].s[j0 + j] : 0.f;
      }
      t.rows[i].d = t.d[i];
      t.rows[i].s = t.s[i];
    }
  }
}

// kern(loader, blocks, rows, out) over each run: its whole 8-block steps, then its last < 8 blocks.
template <typename Kern>
inline void exl2_gemv(const WeightRef& w, int64_t r, const XQRow* x, int nx, int nout, float* out, Kern&& kern) {
  for (int i = 0; i < nout; ++i) out[i] = 0.f;
  exl2_each_run(w, r, [&](auto ld, const Exl2Run& run) {
    const int64_t nm = run.nblocks & ~int64_t(7);
    const int nt = (int)(run.nblocks - nm);
    float v[4];
    Exl2X t;
    if (nm) {
      exl2_x(x, nx, run.block0, 0, t);
      kern(ld, nm, t.rows, v);
      for (int i = 0; i < nout; ++i) out[i] += v[i];
    }
    if (nt) {
      exl2_x(x, nx, run.block0 + nm, nt, t);
      ld.row += decltype(ld)::kBytes * nm;
      kern(ld, nt, t.rows, v);
      for (int i = 0; i < nout; ++i) out[i] += v[i];
    }
  });
}

void fused_exl2(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out) {
  exl2_gemv(w, r, x, mr, mr, out, [mr](const auto& ld, int64_t nb, const XQRow* xs, float* v) {
    gemv_x32_any(ld, nb, xs, mr, v);
  });
}

void pair_exl2(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
  exl2_gemv(w, r, x, 2, 1, out, [](const auto& ld, int64_t nb, const XQRow* xs, float* v) {
    gemv_x32_pair(ld, nb, xs, v);
  });
}

// 8 activation rows per lane: the XQ8 kernel reads x block by block, so a run needs no tail copy.
void fused8_exl2(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
  for (int i = 0; i < 8; ++i) out[i] = 0.f;
  exl2_each_run(w, r, [&](const auto& ld, const Exl2Run& run) {
    const int64_t j0 = run.block0;
    const XQ8 xs{x.q + 256 * j0, x.d + 8 * j0, x.s + 8 * j0, nullptr};
    alignas(32) float v[8];
    gemv_x32_t8(ld, run.nblocks, xs, v);
    for (int i = 0; i < 8; ++i) out[i] += v[i];
  });
}

}  // namespace

GemvFused8Fn avx2_fused_gemv8(int qtype) {
  switch (qtype) {
    case (int)QType::Q4_0: return fused8_gguf_x32<LQ4_0>;
    case (int)QType::Q4_1: return fused8_gguf_x32<LQ4_1>;
    case (int)QType::Q5_0: return fused8_gguf_x32<LQ5_0>;
    case (int)QType::Q5_1: return fused8_gguf_x32<LQ5_1>;
    case (int)QType::Q8_0: return fused8_gguf_x32<LQ8_0>;
    case (int)QType::IQ4_NL: return fused8_gguf_x32<LIQ4_NL>;
    case (int)QType::Q4_K: return fused8_q4_k;
    case (int)QType::Q5_K: return fused8_q5_k;
    case (int)QType::Q6_K: return gemv_q6_k_t8;
    case kInt4: return fused8_int4;
    case kInt8: return fused8_int8;
    case kExl2: case kExl2Wide: return fused8_exl2;
    default: return nullptr;
  }
}

// The kernels above over row-interleaved weights (nullptr: none; the caller gathers rows).
X8Kernels avx2_fused_x8(int qtype) {
  switch (qtype) {
    case (int)QType::Q4_0: return {fused_x8<LQ4_0x8>, fused8_x8<LQ4_0x8>, pair_x8<LQ4_0x8>};
    case (int)QType::Q4_1: return {fused_x8<LQ4_1x8>, fused8_x8<LQ4_1x8>, pair_x8<LQ4_1x8>};
    case (int)QType::Q5_0: return {fused_x8<LQ5_0x8>, fused8_x8<LQ5_0x8>, pair_x8<LQ5_0x8>};
    case (int)QType::Q5_1: return {fused_x8<LQ5_1x8>, fused8_x8<LQ5_1x8>, pair_x8<LQ5_1x8>};
    case (int)QType::Q8_0: return {fused_x8<LQ8_0x8>, fused8_x8<LQ8_0x8>, pair_x8<LQ8_0x8>};
    case kInt4: return {fused_x8<LInt4X8>, fused8_x8<LInt4X8>, pair_x8<LInt4X8>};
    default: return {};
  }
}

GemvPairFn avx2_fused_pair(int qtype) {
  switch (qtype) {
    case (int)QType::Q4_0: return pair_gguf_x32<LQ4_0>;
    case (int)QType::Q4_1: return pair_gguf_x32<LQ4_1>;
    case (int)QType::Q5_0: return pair_gguf_x32<LQ5_0>;
    case (int)QType::Q5_1: return pair_gguf_x32<LQ5_1>;
    case (int)QType::Q8_0: return pair_gguf_x32<LQ8_0>;
    case (int)QType::IQ4_NL: return pair_gguf_x32<LIQ4_NL>;
    case kInt4: return pair_int4;
    case kInt8: return pair_int8;
    case kExl2: case kExl2Wide: return pair_exl2;
    default: return nullptr;
  }
}

GemvFusedFn avx2_fused_gemv(int qtype) {
  switch (qtype) {
    case (int)QType::Q4_0: return fused_gguf_x32<LQ4_0>;
    case (int)QType::Q4_1: return fused_gguf_x32<LQ4_1>;
    case (int)QType::Q5_0: return fused_gguf_x32<LQ5_0>;
    case (int)QType::Q5_1: return fused_gguf_x32<LQ5_1>;
    case (int)QType::Q8_0: return fused_gguf_x32<LQ8_0>;
    case (int)QType::IQ4_NL: return fused_gguf_x32<LIQ4_NL>;
    case (int)QType::Q2_K: return fused_q2_k;
    case (int)QType::IQ4_XS: return fused_iq4_xs;
    case (int)QType::Q3_K: return fused_q3_k;
    case (int)QType::Q4_K: return fused_q4_k;
    case (int)QType::Q5_K: return fused_q5_k;
    case (int)QType::Q6_K: return fused_q6_k;
    case kInt4: return fused_int4;
    case kInt8: return fused_int8;
    case kExl2: case kExl2Wide: return fused_exl2;
    default: return nullptr;
  }
}

}  // namespace mm
}  // namespace pq
