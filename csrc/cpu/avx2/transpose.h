// 8 x 8 transpose of 32-bit lanes in registers (float panels of the GEMM, int8 dword panels of the
// int8 GEMM: the shuffles move bits, so integers go through the casts unchanged).
#pragma once

#include <immintrin.h>

namespace pq {
namespace mm {
namespace {

// v[j] <- column j of the 8 x 8 matrix whose rows are v[0..7].
inline void transpose8x8_ps(__m256 v[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i)
    for (int h = 0; h < 2; ++h) {
      u[4 * i + 2 * h] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + 2 + h], 0x44);
      u[4 * i + 2 * h + 1] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + 2 + h], 0xEE);
    }
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    v[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

inline void transpose8x8_epi32(__m256i v[8]) {
  __m256 f[8];
  for (int i = 0; i < 8; ++i) f[i] = _mm256_castsi256_ps(v[i]);
  transpose8x8_ps(f);
  for (int i = 0; i < 8; ++i) v[i] = _mm256_castps_si256(f[i]);
}

}  // namespace
}  // namespace mm
}  // namespace pq
