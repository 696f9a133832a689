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

// Second pass of the "int8x2" activation mode: r = x - d*q, the part of x the first int8 pass
// dropped (|r| <= d/2 per element). Quantizing r the same way and summing both rows' dot products
// gives activations good to ~1/254 of the int8 error (about 15 bits), at the cost of one more
// activation row through the same weight stream. Scalar on both ISAs, so both give the same r.
void act_residual(const float* x, int64_t k, const int8_t* q, const float* d, int block, float* r);

// x has k floats; outputs cover kp >= k values (a multiple of 256), zeros past k.
void quant_x32_scalar(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);
void quant_x256_scalar(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);
void quant_x32_avx2(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);
void quant_x256_avx2(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);

}  // namespace mm
}  // namespace pq
