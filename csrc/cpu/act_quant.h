// Activation quantization for the int8 mat-mul path (the role of ggml's Q8_0 / Q8_K).
//
// Symmetric round-to-nearest-even with the block's absolute maximum mapped to 127:
//   X32:  per 32 values  d = amax/127, q = rint(x * 127/amax), s = d * sum(q)
//   X256: per 256 values d = amax/127, q likewise, bsum = sum(q) per 16
// Error: |x - d*q| <= d/2, i.e. an rms error of amax/(127*sqrt(12)) per element: for Gaussian
// rows that is ~0.6% (X32, amax ~2.5 sigma) to ~0.8% (X256, amax ~3.2 sigma) of the rms, and
// the relative error of y = W x is of the same order (tests bound it by 1.5e-2 / 2e-2).
// Both ISAs produce bit-identical q/d/s/bsum (same IEEE float ops, rint ties-to-even), which
// the tests check by emulating the quantizer in numpy.
#pragma once
#include <cstdint>

namespace pq {
namespace mm {

// Second row of the "int8x2" activation mode: the rounding residual r = x - d1*q1 of the first
// pass (|r| <= d1/2), quantized on the fixed grid d2 = d1/256 of each block (q2 = rint(r * 256/d1),
// clamped to +-127, which only a tie at exactly d1/2 reaches). Activations are then good to d1/512,
// 1/256 of one pass's error (about 15 bits), for one more row through the same weight stream; and
// because d1 = 256 * d2 exactly, a kernel can form 256*S1 + S2 in int32 and scale once (the pair
// kernels). Non-finite d1: q2 = 0. x256 selects the layout (bsum per 16, no s). The AVX2 version
// makes the same IEEE ops (no FMA), so both ISAs produce the same q2 (tested).
void quant_residual(const float* x, int64_t k, int64_t kp, bool x256, const int8_t* q1, const float* d1,
                    int8_t* q2, float* d2, float* s2, int16_t* bsum2);
void quant_residual_avx2(const float* x, int64_t k, int64_t kp, bool x256, const int8_t* q1, const float* d1,
                         int8_t* q2, float* d2, float* s2, int16_t* bsum2);

// x has k floats; outputs cover kp >= k values (a multiple of 256), zeros past k.
void quant_x32_scalar(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);
void quant_x256_scalar(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);
void quant_x32_avx2(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);
void quant_x256_avx2(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);

}  // namespace mm
}  // namespace pq
