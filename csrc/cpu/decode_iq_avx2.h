// AVX2 i-quant decoders (avx2/decode_iq_avx2.cpp). Call only when active_isa() == Isa::Avx2.
#pragma once
#include <cstdint>

namespace pq {

void decode_iq4_nl_avx2(const uint8_t* src, float* dst, int64_t nblocks);
void decode_iq4_xs_avx2(const uint8_t* src, float* dst, int64_t nblocks);

}  // namespace pq
