// DRAM read bandwidth: the roofline the GEMV benchmarks are measured against. Each thread sums
// its slice of a buffer much larger than L3 with 4 independent 256-bit integer adds per 128 B
// (so the loop is load-bound, not latency-bound); the best of `repeats` sweeps is reported.
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "cpu/error.h"
#include "cpu/threadpool.h"

namespace pq {

double bandwidth_probe_avx2(int64_t nbytes, int nthreads, int repeats) {
  nbytes &= ~int64_t(4095);
  void* raw = std::aligned_alloc(4096, (size_t)nbytes);
  PQ_CHECK(raw != nullptr, "bandwidth_probe: cannot allocate ", nbytes, " bytes");
  std::unique_ptr<void, void (*)(void*)> hold(raw, std::free);
  uint8_t* buf = static_cast<uint8_t*>(raw);
  // Touch every page (and give the data non-zero values) before timing.
  parallel_for(nbytes, 1 << 20, nthreads, [&](int64_t b, int64_t e) { std::memset(buf + b, 1, (size_t)(e - b)); });
  double best = 0;
  volatile int64_t sink = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(nbytes / 128, 1024, nthreads, [&](int64_t b, int64_t e) {
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t i = b; i < e; ++i) {
        const __m256i* p = reinterpret_cast<const __m256i*>(buf + i * 128);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(p));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(p + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(p + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(p + 3));
      }
      const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
      sink = sink + _mm256_extract_epi64(s, 0);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0 && nbytes / dt / 1e9 > best) best = nbytes / dt / 1e9;
  }
  return best;
}

}  // namespace pq
