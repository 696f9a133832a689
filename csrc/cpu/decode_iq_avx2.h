// AVX2 i-quant decoders (avx2/decode_iq_avx2.cpp), DecodeBlocksFn signature (src, dst, nblocks).
// Call only when active_isa() == Isa::Avx2.
#pragma once
#include <cstdint>

namespace pq {

void decode_iq2_xxs_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq2_xs_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq2_s_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq3_xxs_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq3_s_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq1_s_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq1_m_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq4_nl_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq4_xs_avx2(const uint8_t* src, float* dst, int64_t nblocks);

}  // namespace pq
