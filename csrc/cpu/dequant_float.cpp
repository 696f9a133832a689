// Dequantizers for the plain element types: F32, F16, BF16 (scalar; exact).
#include <cstring>

#include "common/fp16.h"
#include "common/qtypes.h"
#include "cpu/dequant.h"
#include "cpu/dequant_kernels.h"

namespace pq {
namespace {

void dequant_f32(const uint8_t* src, float* dst, int64_t n) { std::memcpy(dst, src, (size_t)n * 4); }

void dequant_f16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = fp16_to_fp32(h);
  }
}

void dequant_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_fp32(h);
  }
}

const bool registered = register_dequant_kernel((int)QType::F32, dequant_f32, nullptr) &&
                        register_dequant_kernel((int)QType::F16, dequant_f16, avx2_dequantizer(QType::F16)) &&
                        register_dequant_kernel((int)QType::BF16, dequant_bf16, avx2_dequantizer(QType::BF16));

}  // namespace
}  // namespace pq
