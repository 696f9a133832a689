// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 quantizers: the quantize_row_*_ref of ggml-quants.c (which
// ggml_quantize_chunk uses when there is no imatrix), one 32-element block at a time.
// Block layouts: spec gguf.md. Operation order and casts follow the C code; see quantize_common.h.
#include <cfloat>

#include "cpu/quantize_common.h"

namespace pq {
using namespace quant;

namespace {
constexpr int QK = 32;

// Symmetric types pick the signed value of largest magnitude (first one on ties) so that it maps
// exactly to the most negative quant level.
inline float signed_absmax(const float* x, float* amax_out) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < QK; ++j) {
    const float v = x[j];
    if (amax < std::fabs(v)) { amax = std::fabs(v); max = v; }
  }
  *amax_out = amax;
  return max;
}

inline void min_max(const float* x, float* mn, float* mx) {
  float lo = FLT_MAX, hi = -FLT_MAX;
  for (int j = 0; j < QK; ++j) {
    const float v = x[j];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  *mn = lo; *mx = hi;
}
}  // namespace

void quantize_blocks_q4_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += 18) {
    float amax;
    const float max = signed_absmax(x, &amax);
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    for (int j = 0; j < QK / 2; ++j) {
      const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
      const uint8_t q0 = (uint8_t)min_<int>(15, trunc_i8(x0 + 8.5f));
      const uint8_t q1 = (uint8_t)min_<int>(15, trunc_i8(x1 + 8.5f));
      y[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

void quantize_blocks_q4_1(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += 20) {
    float mn, mx;
    min_max(x, &mn, &mx);
    const float d = (mx - mn) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    store_f16(y + 2, mn);
    for (int j = 0; j < QK / 2; ++j) {
      const float x0 = (x[j] - mn) * id, x1 = (x[QK / 2 + j] - mn) * id;
      const uint8_t q0 = (uint8_t)min_<int>(15, trunc_i8(x0 + 0.5f));
      const uint8_t q1 = (uint8_t)min_<int>(15, trunc_i8(x1 + 0.5f));
      y[4 + j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

void quantize_blocks_q5_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += 22) {
    float amax;
    const float max = signed_absmax(x, &amax);
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
      const uint8_t q0 = (uint8_t)min_<int>(31, trunc_i8(x0 + 16.5f));
      const uint8_t q1 = (uint8_t)min_<int>(31, trunc_i8(x1 + 16.5f));
      y[6 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;            // 5th bit of element j
      qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + QK / 2);  // and of element j+16
    }
    for (int b = 0; b < 4; ++b) y[2 + b] = (uint8_t)(qh >> (8 * b));
  }
}

void quantize_blocks_q5_1(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += 24) {
    float mn, mx;
    min_max(x, &mn, &mx);
    const float d = (mx - mn) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    store_f16(y + 2, mn);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const float x0 = (x[j] - mn) * id, x1 = (x[QK / 2 + j] - mn) * id;
      const uint8_t q0 = trunc_u8(x0 + 0.5f);  // no clamp upstream: (x-min)/d <= 31 + rounding
      const uint8_t q1 = trunc_u8(x1 + 0.5f);
      y[8 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;
      qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + QK / 2);
    }
    for (int b = 0; b < 4; ++b) y[4 + b] = (uint8_t)(qh >> (8 * b));
  }
}

void quantize_blocks_q8_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK, y += 34) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = max_(amax, std::fabs(x[j]));  // MAX(a,b): NaN b loses
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    for (int j = 0; j < QK; ++j) y[2 + j] = (uint8_t)trunc_i8(std::round(x[j] * id));  // roundf: half away
  }
}

}  // namespace pq
