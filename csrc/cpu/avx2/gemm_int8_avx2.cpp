// Prompt-sized m with int8 activations: the 32-block types (Q4_0 Q4_1 Q5_0 Q5_1 int4) as an int8
// GEMM, lanes = 8 weight rows.
//
// Why: the float GEMM (gemm_avx2.cpp) converts every weight to float and needs one FMA (8 MACs)
// per 8 weights and activation row; it ran at ~68 GFLOP/s per core here. vpmaddubsw does 32 MACs
// per instruction at the same 2 per cycle, and the XQ8 GEMV kernels (activation rows in the lanes)
// spend most of their uops on per-row broadcasts and folds (~22 FLOP/cycle measured at m = 64).
//
// Layout: each thread takes 8 weight rows at a time and unpacks them once (the type's own
// unpacker, matmul_unpack_*.cpp; rows interleaved by 8 of EXL2, the 4/5-bit types, Q8_0 and Q4_K:
// straight from the group, panel_x8 / k256_panel_x8) into a panel that stays in L2 while every activation row passes:
//   q:    [k/32 blocks][8 dwords t][8 rows][4 bytes]  (dword t = elements 4t..4t+3 of the block)
//   a, b: [k/32 blocks][8 rows]                        (w = a * q + b per 32, q unsigned <= 5 bits)
// Per 32-block and activation row: 8 vpbroadcastd of the row's 4-byte groups (loads), 8 vpmaddubsw
// with the panel's dwords (one weight-row per lane: no horizontal fold), 7 vpaddw in int16
// (4-bit: 8 * 2*15*127 < 2^15; 5-bit: flushed to int32 after 4), 1 vpmaddwd, 1 cvt, 1 mul + 1 FMA
// for a * d_x, 1 FMA for the offset b * s_x: ~21 vector uops for 256 MACs, vs 32 FMAs in float.
// int8x2 activations (a row and its residual on the grid d/256, act_quant.h) join in int32 as
// in the pair GEMV: vpmaddwd by 256 and by 1, one cvt and one FMA for both. A pass takes several
// activation rows (panel_units), so each panel vector is loaded once for all of them.
//
// The K-quants (Q2_K..Q6_K: w = d * sc[g] * q - dmin * mn[g] per 16, integer sc / mn, activations
// quantized per 256 with per-16 sums) use the same q panel plus per-16 scales as int16 pairs:
// the int16 sums of a 16-group (4 vpmaddubsw; 2 for 6-bit q) meet their scale in one vpmaddwd,
// the whole 256-chunk accumulates in int32, and the mins come from the activation's per-16 sums
// (8 vpmaddwd per chunk): one cvt and two FMAs per 256 weights and activation row. An int8x2
// pair is two rows here (their int32 chunk sums times 256 could overflow), summed at the end.
//
// Compiled twice, like the 8-row GEMV: vnni/gemm_int8_vnni.cpp builds it with PQ_VNNI = 1 for CPUs
// with AVX-512 VNNI + VL, where the sums are vpdpbusd chains (one uop for vpmaddubsw + vpaddw, no
// int16 limit; the K-quants' 16-groups then meet their scale in a vpmulld) with the same integer
// results, and Q8_0 (and EXL2's signed 6 / 8-bit variant) gets a panel of its own (q8_rows); the
// AVX2 build takes those with one int8 pass only (q8_rows_avx2: |q| against sign(x, q)).
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/fp16.h"
#include "common/kquant_scales.h"
#include "common/qtypes.h"
#include "cpu/avx2/exl2_decode.h"
#include "cpu/avx2/keep.h"
#include "cpu/avx2/scratch.h"
#include "cpu/avx2/transpose.h"
#include "cpu/matmul_internal.h"

#ifndef PQ_VNNI
#define PQ_VNNI 0
#endif

namespace pq {
namespace mm {

namespace {

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Chunk c of rows r0 .. r0+nr-1 unpacked into u[0..8) (the rows past nr stay all zero: the
// caller clears them once) and its q transposed into the panel: 8 blocks of [8 dwords t][8 rows][4].
void unpack_chunk8(const WeightRef& w, UnpackRowFn unpack, int64_t r0, int nr, int64_t c, UChunk* u, uint8_t* pq) {
  for (int rr = 0; rr < nr; ++rr) unpack(w, r0 + rr, c, c + 1, &u[rr]);
  for (int j = 0; j < 8; ++j) {
    __m256i v[8];
    for (int rr = 0; rr < 8; ++rr) v[rr] = _mm256_load_si256((const __m256i*)(u[rr].q + 32 * j));
    transpose8x8_epi32(v);
    for (int t = 0; t < 8; ++t) _mm256_store_si256((__m256i*)(pq + 256 * (8 * c + j) + 32 * t), v[t]);
  }
}

inline UnpackRowFn unpacker(const TypeInfo& ti) { return ti.unpack_avx2 ? ti.unpack_avx2 : ti.unpack_scalar; }

// ---- panels straight from row-interleaved groups (cpu/interleave.h): a block's 8 rows decoded at
// once (exl2::Rows8: weights 8c..8c+7 of a row in each 64-bit lane) and their dwords put in panel
// order by one shuffle and one permute per dword pair, with no UChunk or transpose between (through
// them, each row unpacked alone, the widths' unpack was 13% of a SmolLM2 EXL2 prefill's int8 GEMM
// samples). Block bi's q at pq + 256 bi, its 8 rows' a and b at pa / pb + 8 bi.
inline void store_rows8(const exl2::Rows8& q, __m256i off, uint8_t* dst) {
  for (int c = 0; c < 4; ++c) {   // [rows 0-3 | rows 4-7] qwords -> dwords t = 2c, 2c+1 of rows 0..7
    const __m256 a = _mm256_castsi256_ps(q.r[c][0]), b = _mm256_castsi256_ps(q.r[c][1]);
    const __m256i ev = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)), 0xd8);
    const __m256i od = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8);
    _mm256_store_si256((__m256i*)(dst + 64 * c), _mm256_sub_epi8(ev, off));
    _mm256_store_si256((__m256i*)(dst + 64 * c + 32), _mm256_sub_epi8(od, off));
  }
}

// EXL2 (kSigned, the 6 / 8-bit variant: q - 2^(b-1) and b = 0, as its unpacker).
void exl2_panel_x8(const WeightRef& w, int64_t r0, bool kSigned, uint8_t* pq, float* pa, float* pb) {
  const uint8_t* g = w.data + r0 * w.row_bytes;
  for (int64_t bi = 0; bi < w.k / 32; ++bi) {
    const uint8_t* gb = g + 8 * w.block_off[bi];
    const int bits = w.block_bits[bi];
    exl2::Rows8 q;
    with_exl2_width(bits, [&](auto b) { exl2::rows8_values<decltype(b)::value>(gb + 16, q); });
    store_rows8(q, _mm256_set1_epi8(kSigned ? (char)(1 << (bits - 1)) : 0), pq + 256 * bi);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)gb));   // the 8 rows' d
    _mm256_store_ps(pa + 8 * bi, d);
    const __m256 b = _mm256_mul_ps(d, _mm256_set1_ps(-(float)(1 << (bits - 1))));
    _mm256_store_ps(pb + 8 * bi, kSigned ? _mm256_setzero_ps() : b);
  }
}

// The 4- and 5-bit legacy types and int4, whose 16 quant bytes a block are EXL2's nibble part,
// after a header per row: Q4_0 d (w = d (q - 8)), Q4_1 d, m (d q + m), Q5_0 d, qh (d (q - 16)),
// Q5_1 d, m, qh (d q + m); int4 none (s q + m from the side arrays, interleaved by 8 too). Q5's
// 5th bits: row l's qh in its 64-bit lane, byte c of it spread over the lane's 8 bytes (vpshufb),
// byte i's bit i tested (Q5's unpacker's way), 16 where set.
void nib_panel_x8(const WeightRef& w, int64_t r0, uint8_t* pq, float* pa, float* pb) {
  const int t = w.qtype;
  const int kH = t == (int)QType::Q4_0 ? 2 : t == (int)QType::Q4_1 ? 4 : t == (int)QType::Q5_0 ? 6
               : t == (int)QType::Q5_1 ? 8 : 0;   // header bytes a row
  const int kQh = t == (int)QType::Q5_0 ? 2 : t == (int)QType::Q5_1 ? 4 : -1;   // qh in the header
  const bool has_min = t == (int)QType::Q4_1 || t == (int)QType::Q5_1;
  const float off = t == (int)QType::Q4_0 ? -8.f : t == (int)QType::Q5_0 ? -16.f : 0.f;   // b = off * d
  const uint8_t* g = w.data + r0 * w.row_bytes;
  const int64_t ng = t == kInt4 ? w.k / w.group_size : 0;
  const int shift = t == kInt4 ? int4_group_shift(w) : 0;
  const __m256i not_bit = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe), ones = _mm256_set1_epi64x(-1);
  for (int64_t bi = 0; bi < w.k / 32; ++bi) {
    const uint8_t* gb = g + 8 * (kH + 16) * bi;
    exl2::Rows8 q;
    exl2::rows8_values<4>(gb + 8 * kH, q);   // the nibble part: EXL2's 4-bit blocks
    if (kQh >= 0) {
      for (int h = 0; h < 2; ++h) {
        uint32_t qh[4];
        for (int l = 0; l < 4; ++l) std::memcpy(&qh[l], gb + kH * (4 * h + l) + kQh, 4);
        const __m256i v = _mm256_setr_epi32((int)qh[0], 0, (int)qh[1], 0, (int)qh[2], 0, (int)qh[3], 0);
        for (int c = 0; c < 4; ++c) {   // byte c of each lane's qh into all its 8 bytes
          const __m256i idx = _mm256_setr_epi64x(0x0101010101010101LL * c, 0x0101010101010101LL * (8 + c),
                                                 0x0101010101010101LL * c, 0x0101010101010101LL * (8 + c));
          const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(_mm256_shuffle_epi8(v, idx), not_bit), ones);
          q.r[c][h] = _mm256_or_si256(q.r[c][h], _mm256_and_si256(set, _mm256_set1_epi8(16)));
        }
      }
    }
    store_rows8(q, _mm256_setzero_si256(), pq + 256 * bi);
    if (t == kInt4) {
      _mm256_store_ps(pa + 8 * bi, _mm256_loadu_ps(w.scales + r0 * ng + 8 * (bi >> shift)));
      _mm256_store_ps(pb + 8 * bi, _mm256_loadu_ps(w.mins + r0 * ng + 8 * (bi >> shift)));
      continue;
    }
    for (int rr = 0; rr < 8; ++rr) {   // d (and m): fp16 at the row's header
      uint16_t h[2];
      std::memcpy(h, gb + kH * rr, 4);
      pa[8 * bi + rr] = fp16_to_fp32(h[0]);
      pb[8 * bi + rr] = has_min ? fp16_to_fp32(h[1]) : off * pa[8 * bi + rr];
    }
  }
}

// Q8_0 (the VNNI build's int8 GEMM: signed q, flipped to q + 128 by the caller): a block's 32 quant
// bytes are 4 chunks of 8 rows x 8 bytes, already the Rows8 arrangement.
void q8_panel_x8(const WeightRef& w, int64_t r0, uint8_t* pq, float* pa, float* pb) {
  const uint8_t* g = w.data + r0 * w.row_bytes;
  for (int64_t bi = 0; bi < w.k / 32; ++bi) {
    const uint8_t* gb = g + 272 * bi;
    exl2::Rows8 q;
    for (int c = 0; c < 4; ++c)
      for (int h = 0; h < 2; ++h) q.r[c][h] = _mm256_loadu_si256((const __m256i*)(gb + 16 + 64 * c + 32 * h));
    store_rows8(q, _mm256_setzero_si256(), pq + 256 * bi);
    _mm256_store_ps(pa + 8 * bi, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)gb)));
    _mm256_store_ps(pb + 8 * bi, _mm256_setzero_ps());
  }
}

// The panel of a whole interleaved group where one of the builders above reads its type.
bool panel_x8(const WeightRef& w, int64_t r0, uint8_t* pq, float* pa, float* pb) {
  if (w.interleave != 8 || r0 % 8) return false;
  if (w.qtype == kExl2 || w.qtype == kExl2Wide) exl2_panel_x8(w, r0, w.qtype == kExl2Wide, pq, pa, pb);
  else if (w.qtype == (int)QType::Q4_0 || w.qtype == (int)QType::Q4_1 || w.qtype == (int)QType::Q5_0 ||
           w.qtype == (int)QType::Q5_1 || w.qtype == kInt4)
    nib_panel_x8(w, r0, pq, pa, pb);
  else if (w.qtype == (int)QType::Q8_0) q8_panel_x8(w, r0, pq, pa, pb);
  else return false;
  return true;   // (the panel's blocks past k/32 are never read)
}

// Rows r0 .. r0+nr-1 (nr <= 8; missing rows are zero) unpacked into the panel, a 256-chunk of
// the 8 rows at a time (8 UChunks, ~5 KB), each block's 8 x 32 bytes transposed in registers.
void unpack_panel(const WeightRef& w, const TypeInfo& ti, int64_t r0, int nr, int64_t nch, UChunk* u,
                  uint8_t* pq, float* pa, float* pb) {
  if (nr == 8 && panel_x8(w, r0, pq, pa, pb)) return;
  for (int rr = nr; rr < 8; ++rr) std::memset(&u[rr], 0, sizeof(UChunk));
  for (int64_t c = 0; c < nch; ++c) {
    unpack_chunk8(w, unpacker(ti), r0, nr, c, u, pq);
    for (int j = 0; j < 8; ++j)
      for (int rr = 0; rr < 8; ++rr) {
        pa[8 * (8 * c + j) + rr] = u[rr].a[j];
        pb[8 * (8 * c + j) + rr] = u[rr].b[j];
      }
  }
}

// int16 sums of the 8 weight rows x activation row over dwords t0..t0+n-1 of block b.
template <int N>
inline __m256i dot16(const uint8_t* pqb, const int8_t* xb, int t0) {
  __m256i s = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i*)(pqb + 32 * t0)), bcast4(xb + 4 * t0));
  for (int t = t0 + 1; t < t0 + N; ++t)
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_load_si256((const __m256i*)(pqb + 32 * t)), bcast4(xb + 4 * t)));
  return s;
}

#if PQ_VNNI
// int32 lane sums (lanes = weight rows) of one activation row over block b (two vpdpbusd chains).
inline __m256i dot32_vnni(const uint8_t* pqb, const int8_t* xb) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0;
  for (int t = 0; t < 8; t += 2) {
    s0 = _mm256_dpbusd_epi32(s0, _mm256_load_si256((const __m256i*)(pqb + 32 * t)), bcast4(xb + 4 * t));
    s1 = _mm256_dpbusd_epi32(s1, _mm256_load_si256((const __m256i*)(pqb + 32 * t + 32)), bcast4(xb + 4 * t + 4));
  }
  return _mm256_add_epi32(s0, s1);
}
#endif

// np panels side by side (rows r0 + 8p ..): panel p's q at q + p * qs, its a and b at a / b + p * fs.
struct PanelSet {
  uint8_t* q;
  float *a, *b;
  int64_t qs, fs;
  int np;
};

// U output units (PAIR: int8x2 pairs x[2u], x[2u+1], d2 = d1 / 256; else single rows) against the
// panel, out[8u + lane]. Per dword t of a block the panel vector is loaded once and meets every
// activation row's broadcast (loads per multiply: 1/R + 1, R = activation rows), and each row sums
// its block in a register of its own; the earlier one-row-at-a-time loop reloaded the panel for
// every row (2 loads per vpmaddubsw): AVX2 int8x2 14336x4096 m = 64, 2 threads, 42.6 -> 36.6 ms.
// The offset term (b * s per block) is a second, separate sum: the same float operations in the
// same order as before (acc and accb were separate accumulators there too).
template <int U, bool PAIR, bool kWide>
void panel_units(const uint8_t* pq, const float* pa, const float* pb, int64_t nb, const XQRow* x, float* out) {
  constexpr int R = PAIR ? 2 * U : U;
  [[maybe_unused]] const __m256i ones = _mm256_set1_epi16(1), k256 = _mm256_set1_epi16(256);
  __m256 acc[U], accb[U];
  for (int u = 0; u < U; ++u) acc[u] = accb[u] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pqb = pq + 256 * b;
    __m256i v[U];
#if PQ_VNNI
    __m256i s[R];
    for (int r = 0; r < R; ++r) s[r] = _mm256_setzero_si256();
    for (int t = 0; t < 8; ++t) {
      const __m256i p = _mm256_load_si256((const __m256i*)(pqb + 32 * t));
      for (int r = 0; r < R; ++r) s[r] = keep(_mm256_dpbusd_epi32(s[r], p, bcast4(x[r].q + 32 * b + 4 * t)));
    }
    for (int u = 0; u < U; ++u) v[u] = PAIR ? _mm256_add_epi32(_mm256_slli_epi32(s[2 * u], 8), s[2 * u + 1]) : s[u];
#else
    // int16 sums: 4-bit q, 8 products of 2 * 15 * 127 fit; 5-bit, 4 of 2 * 31 * 127 (then int32)
    constexpr int kRun = kWide ? 4 : 8;
    for (int u = 0; u < U; ++u) v[u] = _mm256_setzero_si256();
    for (int t0 = 0; t0 < 8; t0 += kRun) {
      __m256i s[R];
      for (int r = 0; r < R; ++r) s[r] = _mm256_setzero_si256();
      for (int t = t0; t < t0 + kRun; ++t) {
        const __m256i p = _mm256_load_si256((const __m256i*)(pqb + 32 * t));
        for (int r = 0; r < R; ++r)
          s[r] = keep(_mm256_add_epi16(s[r], _mm256_maddubs_epi16(p, bcast4(x[r].q + 32 * b + 4 * t))));
      }
      for (int u = 0; u < U; ++u)
        v[u] = _mm256_add_epi32(v[u], PAIR ? _mm256_add_epi32(_mm256_madd_epi16(s[2 * u], k256),
                                                              _mm256_madd_epi16(s[2 * u + 1], ones))
                                           : _mm256_madd_epi16(s[u], ones));
    }
#endif
    const __m256 a8 = _mm256_load_ps(pa + 8 * b), b8 = _mm256_load_ps(pb + 8 * b);
    for (int u = 0; u < U; ++u) {
      const float dx = PAIR ? x[2 * u + 1].d[b] : x[u].d[b];
      const float sx = PAIR ? x[2 * u].s[b] + x[2 * u + 1].s[b] : x[u].s[b];
      acc[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v[u]), _mm256_mul_ps(a8, _mm256_set1_ps(dx)), acc[u]);
      accb[u] = _mm256_fmadd_ps(b8, _mm256_set1_ps(sx), accb[u]);
    }
  }
  for (int u = 0; u < U; ++u) _mm256_storeu_ps(out + 8 * u, _mm256_add_ps(acc[u], accb[u]));
}

#if PQ_VNNI
// Q8_0 and EXL2's signed widths (this build only): the panel holds q' = q + 128, so per unit (a row,
// or an int8x2 pair) and block the dot is off by corr = 128 * sum(x's q) (a pair: 128 * (256 *
// sum(q1) + sum(q2)), < 2^31), subtracted in int32: the signed dot exactly, scaled once (no large
// offset term cancelling in float).
template <int MR, bool PAIR>
void q8_rows(const uint8_t* pq, const float* pa, int64_t nb, const XQRow* x, const int32_t* corr, float* out) {
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pqb = pq + 256 * b;
    const __m256 a8 = _mm256_load_ps(pa + 8 * b);
    for (int i = 0; i < MR; ++i) {
      const XQRow* xu = x + (PAIR ? 2 * i : i);
      __m256i v = dot32_vnni(pqb, xu[0].q + 32 * b);
      if (PAIR) v = _mm256_add_epi32(_mm256_slli_epi32(v, 8), dot32_vnni(pqb, xu[1].q + 32 * b));
      v = _mm256_sub_epi32(v, _mm256_set1_epi32(corr[i * nb + b]));
      const float dx = PAIR ? xu[1].d[b] : xu[0].d[b];
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(a8, _mm256_set1_ps(dx)), acc[i]);
    }
  }
  for (int i = 0; i < MR; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

// out[p][unit][8] for the set's panels, each group of units passing all of them (see panel_all).
template <bool PAIR>
void q8_all(const PanelSet& g, int64_t nb, const XQRow* x, const int32_t* corr, int64_t m, float* out) {
  const int xs = PAIR ? 2 : 1;
  int64_t i = 0;
  for (; i + 2 <= m; i += 2)
    for (int p = 0; p < g.np; ++p)
      q8_rows<2, PAIR>(g.q + p * g.qs, g.a + p * g.fs, nb, x + xs * i, corr + i * nb, out + 8 * (p * m + i));
  for (; i < m; ++i)
    for (int p = 0; p < g.np; ++p)
      q8_rows<1, PAIR>(g.q + p * g.qs, g.a + p * g.fs, nb, x + xs * i, corr + i * nb, out + 8 * (p * m + i));
}

// corr[u * nb + b] of q8_rows for the m units of x.
void q8_corrections(const XQRow* x, int64_t m, bool pair, int64_t nb, int32_t* corr) {
  for (int64_t u = 0; u < m; ++u)
    for (int64_t b = 0; b < nb; ++b) {
      int32_t s1 = 0, s2 = 0;
      for (int t = 0; t < 32; ++t) {
        s1 += x[pair ? 2 * u : u].q[32 * b + t];
        if (pair) s2 += x[2 * u + 1].q[32 * b + t];
      }
      corr[u * nb + b] = 128 * (pair ? 256 * s1 + s2 : s1);
    }
}
#endif

#if !PQ_VNNI
// Q8_0 and EXL2's signed widths with one int8 pass (matmul.cpp: gemm_int8_bits): the panel holds
// the signed q, each dword vector meets a row's broadcast as |q| against sign(x, q) (x within
// +-127, so the sign flip fits int8; a lane's two products <= 2 * 128 * 127 fit int16, so each
// vpmaddubsw goes to int32 at once). The same integer dot as q8_rows' q + 128 and correction and
// the same float steps: the VNNI build's bits. MR rows share each panel load and its |q|.
template <int MR>
void q8_rows_avx2(const uint8_t* pq, const float* pa, int64_t nb, const XQRow* x, float* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pqb = pq + 256 * b;
    __m256i v[MR];
    for (int i = 0; i < MR; ++i) v[i] = _mm256_setzero_si256();
    for (int t = 0; t < 8; ++t) {
      const __m256i p = _mm256_load_si256((const __m256i*)(pqb + 32 * t)), pabs = _mm256_abs_epi8(p);
      for (int i = 0; i < MR; ++i) {
        const __m256i xs = _mm256_sign_epi8(bcast4(x[i].q + 32 * b + 4 * t), p);
        v[i] = keep(_mm256_add_epi32(v[i], _mm256_madd_epi16(_mm256_maddubs_epi16(pabs, xs), ones)));
      }
    }
    const __m256 a8 = _mm256_load_ps(pa + 8 * b);
    for (int i = 0; i < MR; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v[i]), _mm256_mul_ps(a8, _mm256_set1_ps(x[i].d[b])), acc[i]);
  }
  for (int i = 0; i < MR; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

// out[p][row][8] for the set's panels, as q8_all (one int8 pass only: int8x2 keeps the float GEMM).
void q8_all_avx2(const PanelSet& g, int64_t nb, const XQRow* x, int64_t m, float* out) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4)
    for (int p = 0; p < g.np; ++p) q8_rows_avx2<4>(g.q + p * g.qs, g.a + p * g.fs, nb, x + i, out + 8 * (p * m + i));
  for (; i < m; ++i)
    for (int p = 0; p < g.np; ++p) q8_rows_avx2<1>(g.q + p * g.qs, g.a + p * g.fs, nb, x + i, out + 8 * (p * m + i));
}
#endif

// out[p][unit][8] for the set's panels. Each group of units passes every panel of the set while its
// rows of x are in L1 / L2: x streams from L3 (or DRAM: a 512-token int8x2 prompt at K = 14336 is
// 14.7 MB of int8 x and 3.7 MB of its scales) once per set instead of once per 8 weight rows.
template <void (*Units)(const uint8_t*, const float*, const float*, int64_t, const XQRow*, float*)>
inline void over_panels(const PanelSet& g, int64_t nb, const XQRow* x, int64_t m, int64_t i, float* out) {
  for (int p = 0; p < g.np; ++p) Units(g.q + p * g.qs, g.a + p * g.fs, g.b + p * g.fs, nb, x, out + 8 * (p * m + i));
}

template <bool PAIR, bool kWide>
void panel_all(const PanelSet& g, int64_t nb, const XQRow* x, int64_t m, float* out) {
  // units per pass: as many as keep the running sums, the panel vector and the accumulators in 16
  // registers (14336 x 4096, M = 64, AVX2: pairs by 3 ran 40 ms against 35.5 by 2)
  constexpr int kU = PAIR ? 2 : 6;
  const int xs = PAIR ? 2 : 1;
  int64_t i = 0;
  for (; i + kU <= m; i += kU) over_panels<panel_units<kU, PAIR, kWide>>(g, nb, x + xs * i, m, i, out);
  for (; i + 2 <= m; i += 2) over_panels<panel_units<2, PAIR, kWide>>(g, nb, x + xs * i, m, i, out);
  for (; i < m; ++i) over_panels<panel_units<1, PAIR, kWide>>(g, nb, x + xs * i, m, i, out);
}

// ---------------------------------------------------------------- K-quants
// Panel beside q (same layout as above), per 256-chunk c:
//   sc:  [c][8 blocks j][2 groups][8 rows][2] int16  (the group's scale, twice: a vpmaddwd operand)
//   mn:  [c][8 pairs p][8 rows][2] int16             (mn of groups 2p, 2p+1)
//   d, dmin: [c][8 rows] float
struct K256Panel {
  uint8_t* q;
  int16_t* sc;
  int16_t* mn;
  float* d;
  float* dmin;
};

// Q4_K rows interleaved by 8, a whole group (as panel_x8 for the 32-block types): q straight from the
// group's chunks (chunks 4j'..4j'+3 of the 8 rows hold sub-block 2j' in their low nibbles, 2j'+1 in
// the high ones), scales and mins from the 8 row headers. False for anything else.
bool k256_panel_x8(const WeightRef& w, int64_t r0, int64_t nch, const K256Panel& p) {
  if (w.qtype != (int)QType::Q4_K || w.interleave != 8 || r0 % 8) return false;
  const uint8_t* g = w.data + r0 * w.row_bytes;
  const __m256i m4 = _mm256_set1_epi8(15), zero = _mm256_setzero_si256();
  for (int64_t c = 0; c < nch; ++c) {
    const uint8_t* gb = g + 1152 * c;   // 8 headers (d, dmin, 12 scale bytes), then 16 chunks x 8 rows
    for (int jp = 0; jp < 4; ++jp) {
      exl2::Rows8 lo, hi;
      for (int c4 = 0; c4 < 4; ++c4)
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256((const __m256i*)(gb + 128 + 64 * (4 * jp + c4) + 32 * h));
          lo.r[c4][h] = _mm256_and_si256(v, m4);
          hi.r[c4][h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
      store_rows8(lo, zero, p.q + 256 * (8 * c + 2 * jp));
      store_rows8(hi, zero, p.q + 256 * (8 * c + 2 * jp + 1));
    }
    for (int rr = 0; rr < 8; ++rr) {
      const uint8_t* hdr = gb + 16 * rr;
      for (int j = 0; j < 8; ++j) {   // sub-block j: groups 2j, 2j+1 (sc), min pair j (mn)
        int sc, m;
        k4_scale_min(hdr + 4, j, &sc, &m);
        for (int half = 0; half < 2; ++half) {
          int16_t* s = p.sc + 256 * c + 32 * j + 16 * half + 2 * rr;
          s[0] = s[1] = (int16_t)sc;
        }
        p.mn[128 * c + 16 * j + 2 * rr] = p.mn[128 * c + 16 * j + 2 * rr + 1] = (int16_t)m;
      }
      uint16_t h[2];
      std::memcpy(h, hdr, 4);
      p.d[8 * c + rr] = fp16_to_fp32(h[0]);
      p.dmin[8 * c + rr] = fp16_to_fp32(h[1]);
    }
  }
  return true;
}

void unpack_panel_k256(const WeightRef& w, const TypeInfo& ti, int64_t r0, int nr, int64_t nch, UChunk* u,
                       const K256Panel& p) {
  if (nr == 8 && k256_panel_x8(w, r0, nch, p)) return;
  for (int rr = nr; rr < 8; ++rr) std::memset(&u[rr], 0, sizeof(UChunk));
  for (int64_t c = 0; c < nch; ++c) {
    unpack_chunk8(w, unpacker(ti), r0, nr, c, u, p.q);
    for (int rr = 0; rr < 8; ++rr) {
      for (int g = 0; g < 16; ++g) {
        int16_t* s = p.sc + 256 * c + 16 * g + 2 * rr;   // [j][half] = group g = 2j + half
        s[0] = s[1] = u[rr].sc[g];
      }
      for (int pp = 0; pp < 8; ++pp) {
        p.mn[128 * c + 16 * pp + 2 * rr] = u[rr].mn[2 * pp];
        p.mn[128 * c + 16 * pp + 2 * rr + 1] = u[rr].mn[2 * pp + 1];
      }
      p.d[8 * c + rr] = u[rr].d;
      p.dmin[8 * c + rr] = u[rr].dmin;
    }
  }
}

// MR activation rows (X256 quantization) against the panel; out[i * 8 + lane].
template <int MR, int kSum>
void k256_rows(const K256Panel& p, int64_t nch, const XQRow* x, float* out) {
  __m256 acc[MR], accm[MR];
  for (int i = 0; i < MR; ++i) acc[i] = accm[i] = _mm256_setzero_ps();
  for (int64_t c = 0; c < nch; ++c) {
    __m256i iacc[MR];
    for (int i = 0; i < MR; ++i) iacc[i] = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const uint8_t* pqb = p.q + 256 * (8 * c + j);
      for (int h = 0; h < 2; ++h) {
        const __m256i scv = _mm256_load_si256((const __m256i*)(p.sc + 256 * c + 32 * j + 16 * h));
#if PQ_VNNI   // the group's 16 products per row in one dword (vpdpbusd), times its scale (the pair's high
              // int16, sign-extended: Q6_K's are signed): vpmaddwd's int32, exactly
        const __m256i sc32 = _mm256_srai_epi32(scv, 16);
        for (int i = 0; i < MR; ++i) {
          const int8_t* xb = x[i].q + 256 * c + 32 * j + 16 * h;
          __m256i d = _mm256_setzero_si256();
          for (int t = 0; t < 4; ++t)
            d = _mm256_dpbusd_epi32(d, _mm256_load_si256((const __m256i*)(pqb + 32 * (4 * h + t))), bcast4(xb + 4 * t));
          iacc[i] = _mm256_add_epi32(iacc[i], _mm256_mullo_epi32(d, sc32));
        }
        continue;
#endif
        for (int i = 0; i < MR; ++i) {
          const int8_t* xb = x[i].q + 256 * c + 32 * j;
          if (kSum == 4) {
            iacc[i] = _mm256_add_epi32(iacc[i], _mm256_madd_epi16(dot16<4>(pqb, xb, 4 * h), scv));
          } else {
            iacc[i] = _mm256_add_epi32(iacc[i], _mm256_add_epi32(_mm256_madd_epi16(dot16<2>(pqb, xb, 4 * h), scv),
                                                                 _mm256_madd_epi16(dot16<2>(pqb, xb, 4 * h + 2), scv)));
          }
        }
      }
    }
    const __m256 d8 = _mm256_load_ps(p.d + 8 * c), dm8 = _mm256_load_ps(p.dmin + 8 * c);
    for (int i = 0; i < MR; ++i) {
      __m256i m32 = _mm256_setzero_si256();
      for (int pp = 0; pp < 8; ++pp) {
        int32_t bs;
        std::memcpy(&bs, x[i].bsum + 16 * c + 2 * pp, 4);
        m32 = _mm256_add_epi32(m32, _mm256_madd_epi16(_mm256_load_si256((const __m256i*)(p.mn + 128 * c + 16 * pp)),
                                                      _mm256_set1_epi32(bs)));
      }
      const __m256 dx = _mm256_set1_ps(x[i].d[c]);
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i]), _mm256_mul_ps(d8, dx), acc[i]);
      accm[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m32), _mm256_mul_ps(dm8, dx), accm[i]);
    }
  }
  for (int i = 0; i < MR; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_sub_ps(acc[i], accm[i]));
}

template <int kSum>
void k256_all(const K256Panel& p, int64_t nch, const XQRow* x, int64_t mq, float* out) {
  int64_t i = 0;
  for (; i + 4 <= mq; i += 4) k256_rows<4, kSum>(p, nch, x + i, out + 8 * i);
  for (; i < mq; ++i) k256_rows<1, kSum>(p, nch, x + i, out + 8 * i);
}

void gemm_k256(const GemmI8Args& a, const TypeInfo& ti) {
  thread_local Scratch<uint8_t> pq_v;
  thread_local Scratch<int16_t> sc_v, mn_v;
  thread_local Scratch<float> d_v, dm_v, out_v;
  thread_local Scratch<UChunk> u_v;
  const int64_t nch = n_chunks(a.k), mq = a.pair ? 2 * a.m : a.m;
  const K256Panel p{pq_v.get((size_t)(2048 * nch)), sc_v.get((size_t)(256 * nch)), mn_v.get((size_t)(128 * nch)),
                    d_v.get((size_t)(8 * nch)), dm_v.get((size_t)(8 * nch))};
  float* out = out_v.get((size_t)(8 * mq));
  UChunk* u = u_v.get(8);
  for (int64_t r0 = a.n0; r0 < a.n1; r0 += 8) {
    const int nr = (int)std::min<int64_t>(8, a.n1 - r0);
    unpack_panel_k256(*a.w, ti, r0, nr, nch, u, p);
    if (a.bits > 5) k256_all<2>(p, nch, a.x, mq, out);
    else k256_all<4>(p, nch, a.x, mq, out);
    if (a.pair)   // each output row is its pair of activation rows' sum
      for (int64_t i = 0; i < a.m; ++i)
        _mm256_storeu_ps(out + 8 * i, _mm256_add_ps(_mm256_loadu_ps(out + 16 * i), _mm256_loadu_ps(out + 16 * i + 8)));
    a.store(r0, nr, out, 8);
  }
}

}  // namespace

#if PQ_VNNI
void gemm_int8_vnni(const GemmI8Args& a) {
#else
void gemm_int8_avx2(const GemmI8Args& a) {
#endif
  const TypeInfo& ti = *type_info(*a.w);
  if (ti.kind == Kind::X256) {
    gemm_k256(a, ti);
    return;
  }
  thread_local Scratch<uint8_t> pq_v;
  thread_local Scratch<float> pa_v, pb_v, out_v;
  thread_local Scratch<UChunk> u_v;
  // The panel is built in whole 256-chunks; the dot runs over the k/32 blocks that exist (K = 576,
  // SmolLM2's width, would otherwise spend a third of its maddubs on the zero padding to 768).
  const int64_t nch = n_chunks(a.k), nb = (a.k + 31) / 32;
  const int P = std::max(1, a.panels);
  PanelSet g{pq_v.get((size_t)(2048 * nch * P)), pa_v.get((size_t)(64 * nch * P)), pb_v.get((size_t)(64 * nch * P)),
             2048 * nch, 64 * nch, 0};
  float* out = out_v.get((size_t)(8 * a.m * P));
  UChunk* u = u_v.get(8);
  const bool wide = a.bits > 4;   // (the VNNI build's int32 dots take any width)
#if PQ_VNNI
  thread_local Scratch<int32_t> corr_v;
  int32_t* corr = nullptr;
  if (a.bits == 8) {
    corr = corr_v.get((size_t)(a.m * nb));
    q8_corrections(a.x, a.m, a.pair, nb, corr);
  }
#endif
  for (int64_t r0 = a.n0; r0 < a.n1; r0 += 8 * P) {
    g.np = (int)std::min<int64_t>(P, (a.n1 - r0 + 7) / 8);
    for (int p = 0; p < g.np; ++p) {
      const int nr = (int)std::min<int64_t>(8, a.n1 - r0 - 8 * p);
      unpack_panel(*a.w, ti, r0 + 8 * p, nr, nch, u, g.q + p * g.qs, g.a + p * g.fs, g.b + p * g.fs);
#if PQ_VNNI
      if (a.bits == 8) {   // signed q: q + 128 as the unsigned operand (q ^ 0x80); only vpdpbusd can
                           // take it (a vpmaddubsw pair of 255 * 127 saturates int16)
        const __m256i flip = _mm256_set1_epi8((char)0x80);
        for (int64_t i = 0; i < 8 * nb; ++i) {
          __m256i* v = (__m256i*)(g.q + p * g.qs + 32 * i);
          _mm256_store_si256(v, _mm256_xor_si256(_mm256_load_si256(v), flip));
        }
      }
#endif
    }
#if PQ_VNNI
    if (a.bits == 8) {
      if (a.pair) q8_all<true>(g, nb, a.x, corr, a.m, out);
      else q8_all<false>(g, nb, a.x, corr, a.m, out);
    } else
#else
    if (a.bits == 8) {   // never with a.pair: gemm_int8_bits gives int8x2 no 8-bit AVX2 GEMM
      q8_all_avx2(g, nb, a.x, a.m, out);
    } else
#endif
    if (a.pair) {
      if (wide) panel_all<true, true>(g, nb, a.x, a.m, out);
      else panel_all<true, false>(g, nb, a.x, a.m, out);
    } else {
      if (wide) panel_all<false, true>(g, nb, a.x, a.m, out);
      else panel_all<false, false>(g, nb, a.x, a.m, out);
    }
    for (int p = 0; p < g.np; ++p)
      a.store(r0 + 8 * p, (int)std::min<int64_t>(8, a.n1 - r0 - 8 * p), out + 8 * a.m * p, 8);
  }
}

}  // namespace mm
}  // namespace pq
