// Link between the scalar dequantizer registrations (csrc/cpu/dequant_*.cpp) and the AVX2 versions
// (csrc/cpu/avx2/dequant_avx2.cpp). A plain lookup function rather than a second registration
// from the AVX2 file so that static-initialiser order between translation units cannot matter.
#pragma once
#include "common/qtypes.h"
#include "cpu/dequant.h"

namespace pq {

// The AVX2 block dequantizer of `t`, or nullptr when there is none (or the build has no AVX2 code).
// Returning the pointer executes no AVX2 instruction; the driver calls it only when
// active_isa() == Isa::Avx2.
DequantBlocksFn avx2_dequantizer(QType t);

// float32 -> float16 / bfloat16 with round-to-nearest-even: the same bits as fp32_to_fp16 /
// fp32_to_bf16 (common/fp16.h) including NaN payloads, 8 lanes at a time. For the dequantize
// driver's half outputs (the scalar conversion costs ~20x the dequantization itself). Only call when
// active_isa() == Isa::Avx2.
void f32_to_f16_avx2(const float* x, uint16_t* y, int64_t n);
void f32_to_bf16_avx2(const float* x, uint16_t* y, int64_t n);

}  // namespace pq
