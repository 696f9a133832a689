// The DRAM read sweep behind _C.bandwidth_probe (matmul.cpp allocates, threads and times it).
// 4 independent 256-bit integer adds per 128 B keep the loop load-bound, not latency-bound.
// No templates or library inlines here: nothing built with -mavx2 may be shared with baseline code.
#include <immintrin.h>

#include <cstdint>

namespace pq {

int64_t read_sweep_avx2(const uint8_t* buf, int64_t nlines128) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < nlines128; ++i) {
    const __m256i* p = reinterpret_cast<const __m256i*>(buf + i * 128);
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(p));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(p + 1));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(p + 2));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(p + 3));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  return _mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 1) + _mm256_extract_epi64(s, 2) +
         _mm256_extract_epi64(s, 3);
}

}  // namespace pq
