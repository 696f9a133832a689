// AVX2 i-quant dequantizers: the block layouts of csrc/common/dequant_iquants.h (its templates) with an
// AVX2 emitter that produces 8 floats per instruction sequence, bit-identical to the scalar path:
// every output is still the same IEEE single-precision operations in the same order
// ((db * grid) * sign, dl * (grid + delta), scale * kvalue), only evaluated 8 lanes at a time.
//  - grids: the 8 grid bytes of an entry widen with one vpmovzxbd / vpmovsxbd, then convert;
//  - signs: the sign byte is broadcast, tested against the lane bits, and turned into +-1.0f by
//    OR-ing the sign bit into 1.0f; multiplying by it (not flipping the sign) keeps NaN bits as
//    the scalar path and gguf-py do;
//  - IQ4 codebook: kvalues_iq4nl fits one 16-byte register, so 16 lookups are one pshufb;
//  - f16 scales: F16C vcvtph2ps, exact for every input (NaN payloads are then quieted by the first
//    multiply exactly as for the scalar conversion).
// Only template instantiations with Avx2Emit and trivially inlined loads come from the shared
// headers, so no AVX2-compiled copy of a shared inline function can end up in the scalar path.
#if defined(PYQUANT_HAVE_AVX2_BUILD)  // x86-64 builds only (CMake adds -mavx2 -mfma -mf16c here)
#include <immintrin.h>

#include "common/dequant_iquants.h"
#include "cpu/dequant_iq_avx2.h"

namespace pq {
namespace {

inline __m256 sign_factors(uint32_t signs) {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)signs), lane_bit), lane_bit);
  const __m256i bits = _mm256_or_si256(_mm256_set1_epi32(0x3f800000), _mm256_and_si256(neg, _mm256_set1_epi32(INT32_MIN)));
  return _mm256_castsi256_ps(bits);
}

inline __m256 kv8(__m128i codes8) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes8)); }

struct Avx2Emit {
  static float half(uint32_t bits) { return _cvtsh_ss((unsigned short)bits); }

  static void signed8(float* y, float db, uint64_t grid, uint32_t signs) {
    const __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)grid)));
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(db), g), sign_factors(signs)));
  }

  static void iq1_8(float* y, float dl, float delta, uint64_t grid) {
    const __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128((long long)grid)));
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_set1_ps(dl), _mm256_add_ps(g, _mm256_set1_ps(delta))));
  }

  static void nl32(float* y, float scale_f, const uint8_t* qs) {
    const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i low_mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(q, low_mask));
    const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), low_mask));
    const __m256 scale = _mm256_set1_ps(scale_f);
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(scale, kv8(lo)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(scale, kv8(_mm_srli_si128(lo, 8))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(scale, kv8(hi)));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(scale, kv8(_mm_srli_si128(hi, 8))));
  }
};

template <void (*Block)(const uint8_t*, float*), int kBlockSize, int kTypeSize>
void run(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i) Block(src + i * kTypeSize, dst + i * kBlockSize);
}

}  // namespace

using namespace iq_detail;
void dequant_iq2_xxs_avx2(const uint8_t* s, float* d, int64_t n) { run<iq2_xxs<Avx2Emit>, 256, 66>(s, d, n); }
void dequant_iq2_xs_avx2(const uint8_t* s, float* d, int64_t n) { run<iq2_xs<Avx2Emit>, 256, 74>(s, d, n); }
void dequant_iq2_s_avx2(const uint8_t* s, float* d, int64_t n) { run<iq2_s<Avx2Emit>, 256, 82>(s, d, n); }
void dequant_iq3_xxs_avx2(const uint8_t* s, float* d, int64_t n) { run<iq3_xxs<Avx2Emit>, 256, 98>(s, d, n); }
void dequant_iq3_s_avx2(const uint8_t* s, float* d, int64_t n) { run<iq3_s<Avx2Emit>, 256, 110>(s, d, n); }
void dequant_iq1_s_avx2(const uint8_t* s, float* d, int64_t n) { run<iq1_s<Avx2Emit>, 256, 50>(s, d, n); }
void dequant_iq1_m_avx2(const uint8_t* s, float* d, int64_t n) { run<iq1_m<Avx2Emit>, 256, 56>(s, d, n); }
void dequant_iq4_nl_avx2(const uint8_t* s, float* d, int64_t n) { run<iq4_nl<Avx2Emit>, 32, 18>(s, d, n); }
void dequant_iq4_xs_avx2(const uint8_t* s, float* d, int64_t n) { run<iq4_xs<Avx2Emit>, 256, 136>(s, d, n); }

}  // namespace pq

#endif  // PYQUANT_HAVE_AVX2_BUILD
