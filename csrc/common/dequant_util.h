// Little-endian field loads used by the block dequantizers. Byte-wise so that they work on any
// alignment (GGUF blocks are 17..292 bytes, so fields are unaligned) on host and device alike.
#pragma once
#include <cstdint>
#include "common/fp16.h"
#include "common/macros.h"

PQ_COMMON_BEGIN

PQ_HD uint32_t load_u16le(const uint8_t* p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

PQ_HD uint32_t load_u32le(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// An fp16 scale field widened exactly to float (NaN payloads kept, as numpy's astype does).
PQ_HD float load_f16(const uint8_t* p) { return fp16_to_fp32((uint16_t)load_u16le(p)); }

PQ_HD float load_f32(const uint8_t* p) { return bits_to_float(load_u32le(p)); }

PQ_COMMON_END  // namespace pq
