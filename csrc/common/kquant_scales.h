// The Q4_K / Q5_K packing of eight 6-bit scales and eight 6-bit mins into 12 bytes (ggml's
// get_scale_min_k4), written once for every path that reads it: the scalar and AVX2 dequantizers and
// GEMV unpackers, the fused AVX2 kernels, the CUDA chunk dequantizers and the quantizers' round trip.
//   bytes 0..3: scale j (j < 4) in bits 0..5, bits 4..5 of scale j+4 in bits 6..7
//   bytes 4..7: min j (j < 4) in bits 0..5, bits 4..5 of min j+4 in bits 6..7
//   bytes 8..11: scale j+4 bits 0..3 (low nibble), min j+4 bits 0..3 (high nibble)
#pragma once
#include <cstdint>
#include <cstring>

#include "common/macros.h"

PQ_COMMON_BEGIN

// Scale and min of sub-block j (0..7).
PQ_HD void k4_scale_min(const uint8_t* s12, int j, int* scale, int* min) {
  if (j < 4) {
    *scale = s12[j] & 63;
    *min = s12[j + 4] & 63;
  } else {
    *scale = (s12[j + 4] & 15) | ((s12[j - 4] >> 6) << 4);
    *min = (s12[j + 4] >> 4) | ((s12[j] >> 6) << 4);
  }
}

// All eight at once, on 32-bit words: out[0..7] the scales, out[8..15] the mins.
PQ_HD void k4_scales_mins(const uint8_t* s12, uint8_t out[16]) {
  uint32_t w[4];
  memcpy(w, s12, 12);
  w[3] = ((w[2] >> 4) & 0x0f0f0f0fu) | (((w[1] >> 6) & 0x03030303u) << 4);
  const uint32_t m03 = w[1] & 0x3f3f3f3fu;
  w[1] = (w[2] & 0x0f0f0f0fu) | (((w[0] >> 6) & 0x03030303u) << 4);
  w[2] = m03;
  w[0] &= 0x3f3f3f3fu;
  memcpy(out, w, 16);
}

PQ_COMMON_END
