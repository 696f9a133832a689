// AVX2 i-quant dequantizers (avx2/dequant_iq_avx2.cpp), DequantBlocksFn signature (src, dst, nblocks).
// Call only when active_isa() == Isa::Avx2.
#pragma once
#include <cstdint>

namespace pq {

void dequant_iq2_xxs_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq2_xs_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq2_s_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq3_xxs_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq3_s_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq1_s_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq1_m_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq4_nl_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void dequant_iq4_xs_avx2(const uint8_t* src, float* dst, int64_t nblocks);

}  // namespace pq
