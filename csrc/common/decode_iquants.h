// Block decoders of the ggml i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
// IQ4_NL, IQ4_XS), host + device. Layouts and formulas are those of llama.cpp's ggml-common.h /
// dequantize_row_iq* (see shared/specs/gguf.md); byte offsets are spelled out per type below.
//
// Bit-exactness with gguf-py (the oracle) needs its float32 operation order, which is not always
// ggml's: every product is evaluated left to right exactly as gguf/quants.py groups it, e.g.
// IQ2: ((d * (0.5 + s)) * 0.25) * grid * sign.  Signs are applied by *multiplying* with +-1.0f, as
// gguf-py does, not by negation: the two differ for NaN (x86 mulss keeps a NaN operand's sign,
// negation flips it), and a NaN/inf super-scale must give the oracle's NaN bit patterns. The +-1
// factor is built from bits so the compiler cannot turn x * -1.0f back into -x.
// Unaligned multi-byte fields are read with the byte-wise loads of decode_util.h.
#pragma once
#include <cstdint>

#include "common/decode_util.h"
#include "common/fp16.h"
#include "common/iq_tables.h"
#include "common/macros.h"

namespace pq {
namespace iq_detail {

// +1.0f for neg == 0, -1.0f for neg == 1.
PQ_HD float sign_factor(uint32_t neg) { return bits_to_float(0x3f800000u | (neg << 31)); }

// Byte j of a grid word as a float magnitude (unsigned grids) or as a signed int8 (IQ1 grid).
PQ_HD float grid_u8(uint64_t word, int j) { return (float)(uint32_t)((word >> (8 * j)) & 0xffu); }
PQ_HD float grid_i8(uint64_t word, int j) { return (float)(int8_t)(uint8_t)((word >> (8 * j)) & 0xffu); }

// 8 outputs y[j] = (db * grid[j]) * sign_j, sign bit j of `signs` set = negative.
PQ_HD void put8_signed(float* y, float db, uint64_t grid, uint32_t signs) {
  for (int j = 0; j < 8; ++j) y[j] = (db * grid_u8(grid, j)) * sign_factor((signs >> j) & 1u);
}

// 4 outputs from a 4-entry grid word, sign bits taken from `signs` starting at bit `shift`.
PQ_HD void put4_signed(float* y, float db, uint32_t grid, uint32_t signs, int shift) {
  for (int j = 0; j < 4; ++j) y[j] = (db * grid_u8(grid, j)) * sign_factor((signs >> (shift + j)) & 1u);
}

// IQ1: 8 outputs y[j] = dl * (grid[j] + delta).
PQ_HD void put8_iq1(float* y, float dl, float delta, uint64_t grid) {
  for (int j = 0; j < 8; ++j) y[j] = dl * (grid_i8(grid, j) + delta);
}

}  // namespace iq_detail

// IQ2_XXS, 66 bytes: d:f16 | 8 x (4 grid bytes, u32 {4 x 7-bit sign index, 4-bit scale in bits 28..31}).
PQ_HD void decode_block_iq2_xxs(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  for (int ib = 0; ib < 8; ++ib) {
    const uint8_t* g = blk + 2 + 8 * ib;
    const uint32_t aux = load_u32le(g + 4);
    const float db = (d * (0.5f + (float)(aux >> 28))) * 0.25f;
    for (int l = 0; l < 4; ++l)
      put8_signed(y + 32 * ib + 8 * l, db, iq2xxs_grid[g[l]], ksigns_iq2xs[(aux >> (7 * l)) & 127u]);
  }
}

// IQ2_XS, 74 bytes: d:f16 | qs u16[32] (9-bit grid index | 7-bit sign index << 9) | scales[8]
// (two 4-bit scales per 32 elements: low nibble for the first 16).
PQ_HD void decode_block_iq2_xs(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  const uint8_t* scales = blk + 66;
  for (int k = 0; k < 32; ++k) {
    const uint32_t q = load_u16le(blk + 2 + 2 * k);
    const uint32_t s = (scales[k / 4] >> (4 * ((k / 2) & 1))) & 15u;
    const float db = (d * (0.5f + (float)s)) * 0.25f;
    put8_signed(y + 8 * k, db, iq2xs_grid[q & 511u], ksigns_iq2xs[q >> 9]);
  }
}

// IQ2_S, 82 bytes: d:f16 | qs[32] (low 8 index bits) | signs[32] (one byte per 8 elements)
// | qh[8] (2 high index bits per group) | scales[8] (as IQ2_XS).
PQ_HD void decode_block_iq2_s(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  const uint8_t* qs = blk + 2;
  const uint8_t* signs = blk + 34;
  const uint8_t* qh = blk + 66;
  const uint8_t* scales = blk + 74;
  for (int k = 0; k < 32; ++k) {
    const uint32_t idx = qs[k] | (((uint32_t)(qh[k / 4] >> (2 * (k % 4))) & 3u) << 8);
    const uint32_t s = (scales[k / 4] >> (4 * ((k / 2) & 1))) & 15u;
    const float db = (d * (0.5f + (float)s)) * 0.25f;
    put8_signed(y + 8 * k, db, iq2s_grid[idx], signs[k]);
  }
}

// IQ3_XXS, 98 bytes: d:f16 | qs[64] (grid indices, 4 elements each) | 8 x u32 {4 x 7-bit sign
// index, 4-bit scale in bits 28..31}.
PQ_HD void decode_block_iq3_xxs(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  const uint8_t* qs = blk + 2;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t aux = load_u32le(blk + 66 + 4 * ib);
    const float db = (d * (0.5f + (float)(aux >> 28))) * 0.5f;
    for (int l = 0; l < 4; ++l) {
      const uint32_t signs = ksigns_iq2xs[(aux >> (7 * l)) & 127u];
      float* out = y + 32 * ib + 8 * l;
      put4_signed(out, db, iq3xxs_grid[qs[8 * ib + 2 * l]], signs, 0);
      put4_signed(out + 4, db, iq3xxs_grid[qs[8 * ib + 2 * l + 1]], signs, 4);
    }
  }
}

// IQ3_S, 110 bytes: d:f16 | qs[64] (low 8 index bits) | qh[8] (9th index bit, one per grid entry)
// | signs[32] | scales[4] (4-bit, one per 32 elements, low nibble first). db = d * (1 + 2 s).
PQ_HD void decode_block_iq3_s(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  const uint8_t* qs = blk + 2;
  const uint8_t* qh = blk + 66;
  const uint8_t* signs = blk + 74;
  const uint8_t* scales = blk + 106;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t s = (scales[ib / 2] >> (4 * (ib % 2))) & 15u;
    const float db = d * (float)(1u + 2u * s);
    for (int k = 8 * ib; k < 8 * ib + 8; ++k) {  // k: 4-element grid entry
      const uint32_t idx = qs[k] | ((uint32_t)((qh[k / 8] >> (k % 8)) & 1u) << 8);
      put4_signed(y + 4 * k, db, iq3s_grid[idx], signs[k / 2], 4 * (k % 2));
    }
  }
}

// IQ1_S, 50 bytes: d:f16 | qs[32] (low 8 index bits) | qh u16[8]: per 32 elements, 4 x 3 high index
// bits, a 3-bit scale in bits 12..14 and the delta sign in bit 15.
PQ_HD void decode_block_iq1_s(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  const uint8_t* qs = blk + 2;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t qh = load_u16le(blk + 34 + 2 * ib);
    const float dl = d * (float)(2u * ((qh >> 12) & 7u) + 1u);
    const float delta = (qh & 0x8000u) ? -IQ1S_DELTA : IQ1S_DELTA;
    for (int l = 0; l < 4; ++l) {
      const uint32_t idx = qs[4 * ib + l] | (((qh >> (3 * l)) & 7u) << 8);
      put8_iq1(y + 32 * ib + 8 * l, dl, delta, iq1s_grid[idx]);
    }
  }
}

// IQ1_M, 56 bytes: qs[32] | qh[16] (per 8 elements a nibble: 3 high index bits + delta sign)
// | scales u16[4]: 16 x 3-bit scales (one per 16 elements) in bits 0..11, and the f16 super-scale
// split over the four top nibbles (word w's bits 12..15 are the scale's bits 4w..4w+3).
PQ_HD void decode_block_iq1_m(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const uint8_t* qs = blk;
  const uint8_t* qh = blk + 32;
  uint32_t sc[4];
  for (int w = 0; w < 4; ++w) sc[w] = load_u16le(blk + 48 + 2 * w);
  const uint32_t dbits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0u) | ((sc[2] >> 4) & 0x0f00u) | (sc[3] & 0xf000u);
  const float d = fp16_to_fp32((uint16_t)dbits);
  for (int k = 0; k < 32; ++k) {  // k: 8-element group
    const int s_idx = k / 2;
    const uint32_t s = (sc[s_idx / 4] >> (3 * (s_idx % 4))) & 7u;
    const float dl = d * (float)(2u * s + 1u);
    const uint32_t h = (qh[k / 2] >> (4 * (k % 2))) & 15u;
    const float delta = (h & 8u) ? -IQ1S_DELTA : IQ1S_DELTA;
    put8_iq1(y + 8 * k, dl, delta, iq1s_grid[qs[k] | ((h & 7u) << 8)]);
  }
}

// IQ4_NL, 18 bytes: d:f16 | qs[16]: low nibbles are elements 0..15, high nibbles 16..31.
PQ_HD void decode_block_iq4_nl(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  const uint8_t* qs = blk + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (float)kvalues_iq4nl[qs[j] & 15];
    y[j + 16] = d * (float)kvalues_iq4nl[qs[j] >> 4];
  }
}

// IQ4_XS, 136 bytes: d:f16 | scales_h u16 (2 high bits per 32 elements) | scales_l[4] (low 4 bits,
// low nibble first) | qs[128] (per 32 elements, 16 bytes laid out as IQ4_NL). dl = d * (ls - 32).
PQ_HD void decode_block_iq4_xs(const uint8_t* blk, float* y) {
  using namespace iq_detail;
  const float d = load_f16(blk);
  const uint32_t scales_h = load_u16le(blk + 2);
  const uint8_t* scales_l = blk + 4;
  const uint8_t* qs = blk + 8;
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = (int)(((scales_l[ib / 2] >> (4 * (ib % 2))) & 15u) | (((scales_h >> (2 * ib)) & 3u) << 4));
    const float dl = d * (float)(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[32 * ib + j] = dl * (float)kvalues_iq4nl[qs[16 * ib + j] & 15];
      y[32 * ib + j + 16] = dl * (float)kvalues_iq4nl[qs[16 * ib + j] >> 4];
    }
  }
}

}  // namespace pq
