// Block dequantizers of the ggml i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
// IQ4_NL, IQ4_XS), host + device. Layouts and formulas are those of llama.cpp's ggml-common.h /
// dequantize_row_iq* (see shared/specs/gguf.md); byte offsets are spelled out per type below.
//
// Bit-exactness with gguf-py (the oracle) needs its float32 operation order, which is not always
// ggml's: every product is evaluated left to right exactly as gguf/quants.py groups it, e.g.
// IQ2: ((d * (0.5 + s)) * 0.25) * grid * sign.  Signs are applied by *multiplying* with +-1.0f, as
// gguf-py does, not by negation: the two differ for NaN (x86 mulss keeps a NaN operand's sign,
// negation flips it), and a NaN/inf super-scale must give the oracle's NaN bit patterns. The +-1
// factor is built from bits so the compiler cannot turn x * -1.0f back into -x.
// Unaligned multi-byte fields are read with the byte-wise loads of dequant_util.h.
#pragma once
#include <cstdint>

#include "common/dequant_util.h"
#include "common/fp16.h"
#include "common/iq_tables.h"
#include "common/macros.h"

// In CUDA translation units the tables are __device__ data (PQ_TABLE) and these dequantizers only run
// on the device; the host half of each PQ_HD instantiation is never called there (host code uses
// the C++ build, where the tables are ordinary host data), so nvcc's "device variable read in a
// host function" warning is noise for this header.
#if defined(__CUDACC__)
#pragma nv_diagnostic push
#pragma nv_diag_suppress 20091
#endif

PQ_COMMON_BEGIN
namespace iq_detail {

// +1.0f for neg == 0, -1.0f for neg == 1.
PQ_HD float sign_factor(uint32_t neg) { return bits_to_float(0x3f800000u | (neg << 31)); }

// Byte j of a grid word as a float magnitude (unsigned grids) or as a signed int8 (IQ1 grid).
PQ_HD float grid_u8(uint64_t word, int j) { return (float)(uint32_t)((word >> (8 * j)) & 0xffu); }
PQ_HD float grid_i8(uint64_t word, int j) { return (float)(int8_t)(uint8_t)((word >> (8 * j)) & 0xffu); }

// The dequantizers below are written once, as templates over an "emitter" E that produces 8 outputs
// at a time; the scalar emitter here is the portable/CUDA path, csrc/cpu/avx2/dequant_iq_avx2.cpp
// supplies an AVX2 one. Both compute every output with the same IEEE operations in the same order.
//   E::half(bits)                    f16 bits -> float, exact
//   E::signed8(y, db, grid, signs)   y[j] = (db * grid byte j) * (sign bit j ? -1 : +1)
//   E::iq1_8(y, dl, delta, grid)     y[j] = dl * (grid int8 j + delta)
//   E::nl32(y, scale, qs)            IQ4 codebook: y[j] = scale * kv[qs[j] & 15], y[16+j] = ... >> 4
struct ScalarEmit {
  static PQ_HD float half(uint32_t bits) { return fp16_to_fp32((uint16_t)bits); }
  static PQ_HD void signed8(float* y, float db, uint64_t grid, uint32_t signs) {
    for (int j = 0; j < 8; ++j) y[j] = (db * grid_u8(grid, j)) * sign_factor((signs >> j) & 1u);
  }
  static PQ_HD void iq1_8(float* y, float dl, float delta, uint64_t grid) {
    for (int j = 0; j < 8; ++j) y[j] = dl * (grid_i8(grid, j) + delta);
  }
  static PQ_HD void nl32(float* y, float scale, const uint8_t* qs) {
    for (int j = 0; j < 16; ++j) {
      y[j] = scale * (float)kvalues_iq4nl[qs[j] & 15];
      y[j + 16] = scale * (float)kvalues_iq4nl[qs[j] >> 4];
    }
  }
};

// IQ1 delta: +IQ1S_DELTA, or -IQ1S_DELTA when `neg` (0 or 1). Built from bits, not with ?:, because
// the delta sign is data (random per 8 elements in IQ1_M) and a branch on it mispredicts ~50%.
PQ_HD float iq1_delta(uint32_t neg) { return bits_to_float(float_to_bits(IQ1S_DELTA) | (neg << 31)); }

// Two 4-element IQ3 grid entries as one 8-element word.
PQ_HD uint64_t pair(uint32_t lo, uint32_t hi) { return (uint64_t)lo | ((uint64_t)hi << 32); }

// IQ2_XXS, 66 bytes: d:f16 | 8 x (4 grid bytes, u32 {4 x 7-bit sign index, 4-bit scale in bits 28..31}).
template <class E>
PQ_HD void iq2_xxs(const uint8_t* blk, float* y) {
  const float d = E::half(load_u16le(blk));
  for (int ib = 0; ib < 8; ++ib) {
    const uint8_t* g = blk + 2 + 8 * ib;
    const uint32_t aux = load_u32le(g + 4);
    const float db = (d * (0.5f + (float)(aux >> 28))) * 0.25f;
    for (int l = 0; l < 4; ++l)
      E::signed8(y + 32 * ib + 8 * l, db, iq2xxs_grid[g[l]], ksigns_iq2xs[(aux >> (7 * l)) & 127u]);
  }
}

// IQ2_XS, 74 bytes: d:f16 | qs u16[32] (9-bit grid index | 7-bit sign index << 9) | scales[8]
// (two 4-bit scales per 32 elements: low nibble for the first 16).
template <class E>
PQ_HD void iq2_xs(const uint8_t* blk, float* y) {
  const float d = E::half(load_u16le(blk));
  const uint8_t* scales = blk + 66;
  for (int k = 0; k < 32; ++k) {
    const uint32_t q = load_u16le(blk + 2 + 2 * k);
    const uint32_t s = (scales[k / 4] >> (4 * ((k / 2) & 1))) & 15u;
    const float db = (d * (0.5f + (float)s)) * 0.25f;
    E::signed8(y + 8 * k, db, iq2xs_grid[q & 511u], ksigns_iq2xs[q >> 9]);
  }
}

// IQ2_S, 82 bytes: d:f16 | qs[32] (low 8 index bits) | signs[32] (one byte per 8 elements)
// | qh[8] (2 high index bits per group) | scales[8] (as IQ2_XS).
template <class E>
PQ_HD void iq2_s(const uint8_t* blk, float* y) {
  const float d = E::half(load_u16le(blk));
  const uint8_t* qs = blk + 2;
  const uint8_t* signs = blk + 34;
  const uint8_t* qh = blk + 66;
  const uint8_t* scales = blk + 74;
  for (int k = 0; k < 32; ++k) {
    const uint32_t idx = qs[k] | (((uint32_t)(qh[k / 4] >> (2 * (k % 4))) & 3u) << 8);
    const uint32_t s = (scales[k / 4] >> (4 * ((k / 2) & 1))) & 15u;
    const float db = (d * (0.5f + (float)s)) * 0.25f;
    E::signed8(y + 8 * k, db, iq2s_grid[idx], signs[k]);
  }
}

// IQ3_XXS, 98 bytes: d:f16 | qs[64] (grid indices, 4 elements each) | 8 x u32 {4 x 7-bit sign
// index, 4-bit scale in bits 28..31}.
template <class E>
PQ_HD void iq3_xxs(const uint8_t* blk, float* y) {
  const float d = E::half(load_u16le(blk));
  const uint8_t* qs = blk + 2;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t aux = load_u32le(blk + 66 + 4 * ib);
    const float db = (d * (0.5f + (float)(aux >> 28))) * 0.5f;
    for (int l = 0; l < 4; ++l) {
      const uint8_t* q = qs + 8 * ib + 2 * l;
      E::signed8(y + 32 * ib + 8 * l, db, pair(iq3xxs_grid[q[0]], iq3xxs_grid[q[1]]),
                 ksigns_iq2xs[(aux >> (7 * l)) & 127u]);
    }
  }
}

// IQ3_S, 110 bytes: d:f16 | qs[64] (low 8 index bits) | qh[8] (9th index bit, one per grid entry)
// | signs[32] | scales[4] (4-bit, one per 32 elements, low nibble first). db = d * (1 + 2 s).
template <class E>
PQ_HD void iq3_s(const uint8_t* blk, float* y) {
  const float d = E::half(load_u16le(blk));
  const uint8_t* qs = blk + 2;
  const uint8_t* qh = blk + 66;
  const uint8_t* signs = blk + 74;
  const uint8_t* scales = blk + 106;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t s = (scales[ib / 2] >> (4 * (ib % 2))) & 15u;
    const float db = d * (float)(1u + 2u * s);
    for (int m = 4 * ib; m < 4 * ib + 4; ++m) {  // m: 8 elements = grid entries 2m, 2m+1
      const uint32_t h = qh[m / 4] >> (2 * (m % 4));
      const uint32_t i0 = qs[2 * m] | ((h & 1u) << 8), i1 = qs[2 * m + 1] | (((h >> 1) & 1u) << 8);
      E::signed8(y + 8 * m, db, pair(iq3s_grid[i0], iq3s_grid[i1]), signs[m]);
    }
  }
}

// IQ1_S, 50 bytes: d:f16 | qs[32] (low 8 index bits) | qh u16[8]: per 32 elements, 4 x 3 high index
// bits, a 3-bit scale in bits 12..14 and the delta sign in bit 15.
template <class E>
PQ_HD void iq1_s(const uint8_t* blk, float* y) {
  const float d = E::half(load_u16le(blk));
  const uint8_t* qs = blk + 2;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t qh = load_u16le(blk + 34 + 2 * ib);
    const float dl = d * (float)(2u * ((qh >> 12) & 7u) + 1u);
    const float delta = iq1_delta(qh >> 15);
    for (int l = 0; l < 4; ++l) {
      const uint32_t idx = qs[4 * ib + l] | (((qh >> (3 * l)) & 7u) << 8);
      E::iq1_8(y + 32 * ib + 8 * l, dl, delta, iq1s_grid[idx]);
    }
  }
}

// IQ1_M, 56 bytes: qs[32] | qh[16] (per 8 elements a nibble: 3 high index bits + delta sign)
// | scales u16[4]: 16 x 3-bit scales (one per 16 elements) in bits 0..11, and the f16 super-scale
// split over the four top nibbles (word w's bits 12..15 are the scale's bits 4w..4w+3).
template <class E>
PQ_HD void iq1_m(const uint8_t* blk, float* y) {
  const uint8_t* qs = blk;
  const uint8_t* qh = blk + 32;
  uint32_t sc[4];
  for (int w = 0; w < 4; ++w) sc[w] = load_u16le(blk + 48 + 2 * w);
  const float d = E::half((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0u) | ((sc[2] >> 4) & 0x0f00u) | (sc[3] & 0xf000u));
  for (int k = 0; k < 32; ++k) {  // k: 8-element group
    const int s_idx = k / 2;
    const uint32_t s = (sc[s_idx / 4] >> (3 * (s_idx % 4))) & 7u;
    const float dl = d * (float)(2u * s + 1u);
    const uint32_t h = (qh[k / 2] >> (4 * (k % 2))) & 15u;
    const float delta = iq1_delta(h >> 3);
    E::iq1_8(y + 8 * k, dl, delta, iq1s_grid[qs[k] | ((h & 7u) << 8)]);
  }
}

// IQ4_NL, 18 bytes: d:f16 | qs[16]: low nibbles are elements 0..15, high nibbles 16..31.
template <class E>
PQ_HD void iq4_nl(const uint8_t* blk, float* y) {
  E::nl32(y, E::half(load_u16le(blk)), blk + 2);
}

// IQ4_XS, 136 bytes: d:f16 | scales_h u16 (2 high bits per 32 elements) | scales_l[4] (low 4 bits,
// low nibble first) | qs[128] (per 32 elements, 16 bytes laid out as IQ4_NL). dl = d * (ls - 32).
template <class E>
PQ_HD void iq4_xs(const uint8_t* blk, float* y) {
  const float d = E::half(load_u16le(blk));
  const uint32_t scales_h = load_u16le(blk + 2);
  const uint8_t* scales_l = blk + 4;
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = (int)(((scales_l[ib / 2] >> (4 * (ib % 2))) & 15u) | (((scales_h >> (2 * ib)) & 3u) << 4));
    E::nl32(y + 32 * ib, d * (float)(ls - 32), blk + 8 + 16 * ib);
  }
}

}  // namespace iq_detail

PQ_HD void dequant_block_iq2_xxs(const uint8_t* blk, float* y) { iq_detail::iq2_xxs<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq2_xs(const uint8_t* blk, float* y) { iq_detail::iq2_xs<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq2_s(const uint8_t* blk, float* y) { iq_detail::iq2_s<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq3_xxs(const uint8_t* blk, float* y) { iq_detail::iq3_xxs<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq3_s(const uint8_t* blk, float* y) { iq_detail::iq3_s<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq1_s(const uint8_t* blk, float* y) { iq_detail::iq1_s<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq1_m(const uint8_t* blk, float* y) { iq_detail::iq1_m<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq4_nl(const uint8_t* blk, float* y) { iq_detail::iq4_nl<iq_detail::ScalarEmit>(blk, y); }
PQ_HD void dequant_block_iq4_xs(const uint8_t* blk, float* y) { iq_detail::iq4_xs<iq_detail::ScalarEmit>(blk, y); }

PQ_COMMON_END  // namespace pq

#if defined(__CUDACC__)
#pragma nv_diagnostic pop
#endif
