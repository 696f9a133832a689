// Block dequantizers of the legacy 32-element ggml types (Q4_0 .. Q8_1), host + device.
//
// Bit-exact with gguf-py (gguf.quants): every value is one or two float32 roundings in the same
// order as there: y = d * q, or y = (d * q) + m for the types with a min. The quants are small
// integers, exact in float32. Build with -ffp-contract=off (CPU) / --fmad=false (CUDA): a fused
// d*q+m rounds once and would differ.
#pragma once
#include <cstdint>
#include "common/dequant_util.h"
#include "common/macros.h"

PQ_COMMON_BEGIN

// Q4_0 (18 B): d:f16, qs[16]. Low nibbles are elements 0..15, high nibbles 16..31.
PQ_HD void dequant_block_q4_0(const uint8_t* blk, float* y) {
  const float d = load_f16(blk);
  const uint8_t* qs = blk + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (float)((int)(qs[j] & 15) - 8);
    y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
  }
}

// Q4_1 (20 B): d:f16, m:f16, qs[16].
PQ_HD void dequant_block_q4_1(const uint8_t* blk, float* y) {
  const float d = load_f16(blk), m = load_f16(blk + 2);
  const uint8_t* qs = blk + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (float)(qs[j] & 15) + m;
    y[j + 16] = d * (float)(qs[j] >> 4) + m;
  }
}

// Q5_0 (22 B): d:f16, qh:u32 (bit j = 5th bit of element j), qs[16] as Q4_0.
PQ_HD void dequant_block_q5_0(const uint8_t* blk, float* y) {
  const float d = load_f16(blk);
  const uint32_t qh = load_u32le(blk + 2);
  const uint8_t* qs = blk + 6;
  for (int j = 0; j < 16; ++j) {
    const int lo = (int)(qs[j] & 15) | (int)(((qh >> j) & 1u) << 4);
    const int hi = (int)(qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * (float)(lo - 16);
    y[j + 16] = d * (float)(hi - 16);
  }
}

// Q5_1 (24 B): d:f16, m:f16, qh:u32, qs[16].
PQ_HD void dequant_block_q5_1(const uint8_t* blk, float* y) {
  const float d = load_f16(blk), m = load_f16(blk + 2);
  const uint32_t qh = load_u32le(blk + 4);
  const uint8_t* qs = blk + 8;
  for (int j = 0; j < 16; ++j) {
    const int lo = (int)(qs[j] & 15) | (int)(((qh >> j) & 1u) << 4);
    const int hi = (int)(qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * (float)lo + m;
    y[j + 16] = d * (float)hi + m;
  }
}

// Q8_0 (34 B): d:f16, qs[32]:i8.
PQ_HD void dequant_block_q8_0(const uint8_t* blk, float* y) {
  const float d = load_f16(blk);
  const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 2);
  for (int j = 0; j < 32; ++j) y[j] = d * (float)qs[j];
}

// Q8_1 (40 B, the geometry gguf-py and pyquant's registry give it): d:f32, s:f32 (= d*sum(qs),
// unused here), qs[32]:i8. Activation-only in llama.cpp, whose in-memory block is now 36 B
// (d and s as f16); GGUF files never hold it. gguf-py has no dequantizer for it.
PQ_HD void dequant_block_q8_1(const uint8_t* blk, float* y) {
  const float d = load_f32(blk);
  const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 8);
  for (int j = 0; j < 32; ++j) y[j] = d * (float)qs[j];
}

PQ_COMMON_END  // namespace pq
