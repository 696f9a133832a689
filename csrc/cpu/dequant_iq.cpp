// Registers the i-quant block dequantizers (csrc/common/dequant_iquants.h) with the dequantize driver:
// the scalar path for every i-quant, plus the AVX2 versions from avx2/dequant_iq_avx2.cpp (same
// layout code with an 8-lane emitter, bit-identical to the scalar path).
#include "common/dequant_iquants.h"
#include "common/qtypes.h"
#include "cpu/dequant.h"
#include "cpu/dequant_iq_avx2.h"

namespace pq {
namespace {

template <void (*DequantBlock)(const uint8_t*, float*), int kBlockSize, int kTypeSize>
void dequant_blocks(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i) DequantBlock(src + i * kTypeSize, dst + i * kBlockSize);
}

#if defined(PYQUANT_HAVE_AVX2_BUILD)
#define PQ_IQ_AVX2(fn) fn
#else
#define PQ_IQ_AVX2(fn) nullptr
#endif

const bool registered =
    register_dequant_kernel((int)QType::IQ2_XXS, dequant_blocks<dequant_block_iq2_xxs, 256, 66>,
                           PQ_IQ_AVX2(dequant_iq2_xxs_avx2)) &&
    register_dequant_kernel((int)QType::IQ2_XS, dequant_blocks<dequant_block_iq2_xs, 256, 74>,
                           PQ_IQ_AVX2(dequant_iq2_xs_avx2)) &&
    register_dequant_kernel((int)QType::IQ2_S, dequant_blocks<dequant_block_iq2_s, 256, 82>,
                           PQ_IQ_AVX2(dequant_iq2_s_avx2)) &&
    register_dequant_kernel((int)QType::IQ3_XXS, dequant_blocks<dequant_block_iq3_xxs, 256, 98>,
                           PQ_IQ_AVX2(dequant_iq3_xxs_avx2)) &&
    register_dequant_kernel((int)QType::IQ3_S, dequant_blocks<dequant_block_iq3_s, 256, 110>,
                           PQ_IQ_AVX2(dequant_iq3_s_avx2)) &&
    register_dequant_kernel((int)QType::IQ1_S, dequant_blocks<dequant_block_iq1_s, 256, 50>,
                           PQ_IQ_AVX2(dequant_iq1_s_avx2)) &&
    register_dequant_kernel((int)QType::IQ1_M, dequant_blocks<dequant_block_iq1_m, 256, 56>,
                           PQ_IQ_AVX2(dequant_iq1_m_avx2)) &&
    register_dequant_kernel((int)QType::IQ4_NL, dequant_blocks<dequant_block_iq4_nl, 32, 18>,
                           PQ_IQ_AVX2(dequant_iq4_nl_avx2)) &&
    register_dequant_kernel((int)QType::IQ4_XS, dequant_blocks<dequant_block_iq4_xs, 256, 136>,
                           PQ_IQ_AVX2(dequant_iq4_xs_avx2));

#undef PQ_IQ_AVX2

}  // namespace
}  // namespace pq
