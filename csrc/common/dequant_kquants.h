// Block dequantizers of the 256-element k-quants (Q2_K .. Q8_K), host + device.
//
// Rounding order matches gguf-py exactly: the per-sub-block float scale is formed first
// (dl = d * sc, ml = dmin * m, each rounded to float32), then y = dl * q - ml (two more roundings,
// never fused). Element order within a super-block follows the ggml struct layouts:
// Q2_K/Q3_K: two halves of 128; within a half, 2-bit planes (shift 0,2,4,6) of 32 bytes, each plane
// covering 32 consecutive outputs (two sub-blocks of 16). Q4_K/Q5_K: four chunks of 32 bytes, low
// nibbles -> sub-block 2c, high nibbles -> sub-block 2c+1. Q6_K: see dequant_block_q6_k.
#pragma once
#include <cstdint>
#include "common/dequant_util.h"
#include "common/kquant_scales.h"
#include "common/macros.h"

PQ_COMMON_BEGIN

// Q2_K (84 B): scales[16] (lo4 = scale, hi4 = min), qs[64], d:f16, dmin:f16.
PQ_HD void dequant_block_q2_k(const uint8_t* blk, float* y) {
  const uint8_t* scales = blk;
  const uint8_t* qs = blk + 16;
  const float d = load_f16(blk + 80), dmin = load_f16(blk + 82);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      for (int half16 = 0; half16 < 2; ++half16) {
        const uint8_t sc = scales[8 * h + 2 * s + half16];
        const float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
        float* out = y + 128 * h + 32 * s + 16 * half16;
        const uint8_t* q = qs + 32 * h + 16 * half16;
        for (int l = 0; l < 16; ++l) out[l] = dl * (float)((q[l] >> (2 * s)) & 3) - ml;
      }
    }
  }
}

// The 16 six-bit Q3_K scales: low 4 bits are nibbles of bytes 0..7 (k < 8: low nibble of byte k,
// else high nibble of byte k-8), high 2 bits are the 2-bit fields of bytes 8..11
// (bits 2*(k/4).. of byte 8 + k%4). Returned signed (stored value - 32).
PQ_HD int q3_k_scale(const uint8_t* sc, int k) {
  const int lo = k < 8 ? (sc[k] & 15) : (sc[k - 8] >> 4);
  const int hi = (sc[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
  return (lo | (hi << 4)) - 32;
}

// Q3_K (110 B): hmask[32], qs[64], scales[12], d:f16. q = low 2 bits - (hmask bit clear ? 4 : 0).
PQ_HD void dequant_block_q3_k(const uint8_t* blk, float* y) {
  const uint8_t* hmask = blk;
  const uint8_t* qs = blk + 32;
  const uint8_t* scales = blk + 96;
  const float d = load_f16(blk + 108);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      const int bit = 4 * h + s;  // output run of 32 (h*128 + s*32) takes hmask bit `bit`
      for (int half16 = 0; half16 < 2; ++half16) {
        const float dl = d * (float)q3_k_scale(scales, 8 * h + 2 * s + half16);
        float* out = y + 128 * h + 32 * s + 16 * half16;
        const uint8_t* q = qs + 32 * h + 16 * half16;
        const uint8_t* hm = hmask + 16 * half16;
        for (int l = 0; l < 16; ++l) {
          const int lo = (q[l] >> (2 * s)) & 3;
          const int high_clear = ((hm[l] >> bit) & 1) ^ 1;
          out[l] = dl * (float)(lo - (high_clear << 2));
        }
      }
    }
  }
}

// Q4_K (144 B): d:f16, dmin:f16, scales[12], qs[128].
PQ_HD void dequant_block_q4_k(const uint8_t* blk, float* y) {
  const float d = load_f16(blk), dmin = load_f16(blk + 2);
  const uint8_t* scales = blk + 4;
  const uint8_t* qs = blk + 16;
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    k4_scale_min(scales, j, &sc, &mn);
    const float dl = d * (float)sc, ml = dmin * (float)mn;
    const uint8_t* q = qs + 32 * (j >> 1);
    const int shift = 4 * (j & 1);
    for (int l = 0; l < 32; ++l) y[32 * j + l] = dl * (float)((q[l] >> shift) & 15) - ml;
  }
}

// Q5_K (176 B): d:f16, dmin:f16, scales[12], qh[32] (bit j of qh[l] = 5th bit of sub-block j), qs[128].
PQ_HD void dequant_block_q5_k(const uint8_t* blk, float* y) {
  const float d = load_f16(blk), dmin = load_f16(blk + 2);
  const uint8_t* scales = blk + 4;
  const uint8_t* qh = blk + 16;
  const uint8_t* qs = blk + 48;
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    k4_scale_min(scales, j, &sc, &mn);
    const float dl = d * (float)sc, ml = dmin * (float)mn;
    const uint8_t* q = qs + 32 * (j >> 1);
    const int shift = 4 * (j & 1);
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 15) | (((qh[l] >> j) & 1) << 4);
      y[32 * j + l] = dl * (float)v - ml;
    }
  }
}

// Q6_K (210 B): ql[128], qh[64], scales[16]:i8, d:f16. Two halves of 128 outputs; in half h,
// output run t (0..3, 32 each) takes the nibble (t < 2 ? low : high) of ql[64h + 32*(t&1) + l]
// and bits 2t..2t+1 of qh[32h + l]; q = that 6-bit value - 32, scale = scales[output / 16].
PQ_HD void dequant_block_q6_k(const uint8_t* blk, float* y) {
  const uint8_t* ql = blk;
  const uint8_t* qh = blk + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(blk + 192);
  const float d = load_f16(blk + 208);
  for (int h = 0; h < 2; ++h) {
    for (int t = 0; t < 4; ++t) {
      const uint8_t* lq = ql + 64 * h + 32 * (t & 1);
      const int lshift = 4 * (t >> 1);
      for (int half16 = 0; half16 < 2; ++half16) {
        const int is = 8 * h + 2 * t + half16;
        const float dl = d * (float)scales[is];
        for (int l = 16 * half16; l < 16 * half16 + 16; ++l) {
          const int v = ((lq[l] >> lshift) & 15) | (((qh[32 * h + l] >> (2 * t)) & 3) << 4);
          y[128 * h + 32 * t + l] = dl * (float)(v - 32);
        }
      }
    }
  }
}

// Q8_K (292 B): d:f32, qs[256]:i8, bsums[16]:i16 (not needed to decode). Activation-only type.
PQ_HD void dequant_block_q8_k(const uint8_t* blk, float* y) {
  const float d = load_f32(blk);
  const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 4);
  for (int j = 0; j < 256; ++j) y[j] = d * (float)qs[j];
}

PQ_COMMON_END  // namespace pq
