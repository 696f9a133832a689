// Block dequantizers of the ternary (TQ1_0, TQ2_0) and micro-scaled fp4 (MXFP4, NVFP4) types,
// host + device. Same contract as dequant_legacy.h: bit-exact with gguf-py.
#pragma once
#include <cstdint>
#include "common/dequant_util.h"
#include "common/macros.h"

PQ_COMMON_BEGIN

// One base-3 digit of a TQ1_0 byte: the byte is a fixed-point fraction of 3^5 (stored as
// ceil(v * 256 / 243)); multiplying by 3^n (mod 256) rotates digit n to the top, and *3 >> 8
// reads it. Returns the ternary value -1, 0, 1.
PQ_HD int tq1_digit(uint8_t byte, uint8_t pow3) {
  const uint8_t rotated = (uint8_t)(byte * pow3);
  return (int)(((uint32_t)rotated * 3u) >> 8) - 1;
}

// TQ1_0 (54 B): qs[48] (5 digits per byte), qh[4] (4 digits per byte), d:f16.
PQ_HD void dequant_block_tq1_0(const uint8_t* blk, float* y) {
  const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  const uint8_t* qs = blk;
  const uint8_t* qh = blk + 48;
  const float d = load_f16(blk + 52);
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 32; ++m) y[32 * n + m] = d * (float)tq1_digit(qs[m], pow3[n]);
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 16; ++m) y[160 + 16 * n + m] = d * (float)tq1_digit(qs[32 + m], pow3[n]);
  for (int n = 0; n < 4; ++n)
    for (int m = 0; m < 4; ++m) y[240 + 4 * n + m] = d * (float)tq1_digit(qh[m], pow3[n]);
}

// TQ2_0 (66 B): qs[64] (four 2-bit values per byte, value - 1), d:f16. Layout as Q2_K's planes.
PQ_HD void dequant_block_tq2_0(const uint8_t* blk, float* y) {
  const uint8_t* qs = blk;
  const float d = load_f16(blk + 64);
  for (int c = 0; c < 2; ++c)
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 32; ++l) y[128 * c + 32 * s + l] = d * (float)((int)((qs[32 * c + l] >> (2 * s)) & 3) - 1);
}

// E2M1 code (sign bit 3) -> twice its value: 0 1 2 3 4 6 8 12 and negatives (ggml's
// kvalues_mxfp4); the block scales carry the matching factor 1/2.
PQ_HD int e2m1_doubled(int code) {
  const int mag_code = code & 7;
  const int mag = mag_code < 4 ? mag_code : (4 + 2 * (mag_code & 1)) << ((mag_code >> 1) - 2);
  return (code & 8) ? -mag : mag;
}

// E8M0 scale byte -> 2^(e-127) / 2 as float (ggml_e8m0_to_fp32_half): e < 2 gives subnormals.
PQ_HD float e8m0_to_fp32_half(uint8_t e) {
  return bits_to_float(e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23));
}

// MXFP4 (17 B): e:e8m0, qs[16] (low nibbles elements 0..15, high nibbles 16..31).
PQ_HD void dequant_block_mxfp4(const uint8_t* blk, float* y) {
  const float d = e8m0_to_fp32_half(blk[0]);
  const uint8_t* qs = blk + 1;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (float)e2m1_doubled(qs[j] & 15);
    y[j + 16] = d * (float)e2m1_doubled(qs[j] >> 4);
  }
}

// Unsigned E4M3 (bias 7, bit 7 ignored) -> value / 2, as gguf-py's NVFP4.ue4m3_to_fp32; 0x7F
// (the NaN code) dequantizes to 0. Every result is exact in float32.
PQ_HD float ue4m3_to_fp32_half(uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  const int e = (x >> 3) & 15, m = x & 7;
  if (e == 0) return (float)m * bits_to_float((127u - 10u) << 23);           // m * 2^-9 / 2
  return (float)(8 + m) * bits_to_float((uint32_t)(127 + e - 7 - 3 - 1) << 23);  // (1+m/8) 2^(e-7) / 2
}

// NVFP4 (36 B, 64 elements): d[4]:ue4m3 (one per 16), qs[32]; sub-block s uses qs[8s..8s+7]:
// low nibbles elements 16s..16s+7, high nibbles 16s+8..16s+15.
PQ_HD void dequant_block_nvfp4(const uint8_t* blk, float* y) {
  const uint8_t* qs = blk + 4;
  for (int s = 0; s < 4; ++s) {
    const float d = ue4m3_to_fp32_half(blk[s]);
    for (int j = 0; j < 8; ++j) {
      y[16 * s + j] = d * (float)e2m1_doubled(qs[8 * s + j] & 15);
      y[16 * s + 8 + j] = d * (float)e2m1_doubled(qs[8 * s + j] >> 4);
    }
  }
}

PQ_COMMON_END  // namespace pq
