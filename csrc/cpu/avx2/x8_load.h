// Loads from the row-interleaved layout (cpu/interleave.h), shared by the in-place unpackers
// (gemv_unpack_avx2.cpp) and the small-m loaders (gemv_fused_avx2.cpp): a row's quants are 8-byte
// chunks, 64 bytes apart (one chunk per row of the group in between).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {
namespace {

// Row r's group (8 rows from r - r % 8) and its place l in it.
struct X8Row {
  const uint8_t* grp;
  int64_t l;
  X8Row(const WeightRef& w, int64_t r) : grp(w.data + (r - r % 8) * w.row_bytes), l(r % 8) {}
};

// 8 bytes at a, 8 at b: movq + movhps (building it from two scalar loads went through the stack,
// a failed store-to-load forward per vector: Q4_K M = 8 1.5x slower than on plain rows).
inline __m128i load_8_8(const uint8_t* a, const uint8_t* b) {
  return _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(_mm_loadl_epi64((const __m128i*)a)), (const double*)b));
}
// A row's 2 consecutive chunks starting at q (16 quant bytes: the 4-bit types' 32-block).
inline __m128i load_chunks2(const uint8_t* q) { return load_8_8(q, q + 64); }
// A row's 4 consecutive chunks starting at q (32 quant bytes: Q8_0's block, a Q4_K qs group).
inline __m256i load_chunks4(const uint8_t* q) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(load_8_8(q, q + 64)), load_8_8(q + 128, q + 192), 1);
}

}  // namespace
}  // namespace mm
}  // namespace pq
