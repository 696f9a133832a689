// IQ4_NL and IQ4_XS quantizers: ggml-quants.c's quantize_row_iq4_nl_impl as ggml_quantize_chunk
// calls it (quantize_iq4_nl / quantize_iq4_xs, no imatrix, ntry = 7). Note: that is *not*
// quantize_row_iq4_nl_ref (ntry = -1, no scale search); files written by llama-quantize use ntry = 7.
//
// Each 32-element block gets a float scale from a 15-point search over the codebook's reach
// (weights x^2); IQ4_NL stores it as fp16, IQ4_XS quantizes the 8 block scales to 6 bits under
// one fp16 super-scale and re-picks every code against the rounded scale.
#include <cstring>

#include "common/iq_tables.h"
#include "cpu/quantize_common.h"

namespace pq {
using namespace quant;

namespace {
constexpr int kNtry = 7;
const int8_t* const kValues = kvalues_iq4nl;  // common/iq_tables.h (generated)

// Index of the codebook value nearest to x (ties to the upper one; NaN -> 15), as best_index_int8.
inline int best_index(float x) {
  if (x <= kValues[0]) return 0;
  if (x >= kValues[15]) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < kValues[mav]) mu = mav;
    else ml = mav;
  }
  return x - kValues[mu - 1] < kValues[mu] - x ? mu - 1 : mu;
}

// Scale search for one 32-element block; fills Lb (unless the block is all ~zero) and returns d.
float search_block_scale(const float* xb, uint8_t* Lb) {
  float weight[32];
  for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) { amax = ax; max = xb[j]; }
  }
  if (amax < kGroupMaxEps) return 0.0f;
  float d = -max / (float)kValues[0];
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < 32; ++j) {
    const int l = best_index(id * xb[j]);
    Lb[j] = (uint8_t)l;
    const float q = kValues[l];
    const float w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -kNtry; itry <= kNtry; ++itry) {
    id = (float)(itry + kValues[0]) / max;
    sumqx = sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float q = kValues[best_index(id * xb[j])];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

inline void pack_nibbles(const uint8_t* L, uint8_t* q4, int n) {
  for (int i = 0; i < n / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}
}  // namespace

void quantize_blocks_iq4_nl(const float* x, uint8_t* y, int64_t nb) {
  // block_iq4_nl: d (fp16), qs[16]
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 18) {
    uint8_t L[32];
    const float d = search_block_scale(x, L);
    store_f16(y, d);
    const float id = d != 0.0f ? 1 / d : 0;
    for (int j = 0; j < 32; ++j) L[j] = (uint8_t)best_index(id * x[j]);
    pack_nibbles(L, y + 2, 32);
  }
}

void quantize_blocks_iq4_xs(const float* x, uint8_t* y, int64_t nb) {
  // block_iq4_xs: d (fp16), scales_h (u16: 2 high bits per block), scales_l[4] (4 low bits), qs[128]
  for (int64_t i = 0; i < nb; ++i, x += 256, y += 136) {
    uint8_t L[256];
    float scales[8];
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < 8; ++ib) {
      scales[ib] = search_block_scale(x + 32 * ib, L + 32 * ib);
      const float abs_d = std::fabs(scales[ib]);
      if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = scales[ib]; }
    }
    const float d = -max_scale / 32;  // -0.0 for an all-zero super-block: stored as 0x8000, like upstream
    store_f16(y, d);
    const float id = d != 0.0f ? 1 / d : 0.f;
    uint16_t scales_h = 0;
    uint8_t* scales_l = y + 4;
    for (int ib = 0; ib < 8; ++ib) {
      int l = nearest_int(id * scales[ib]);
      l = max_(-32, min_(31, l));
      const float dl = d * (float)l;
      const float idl = dl != 0.0f ? 1 / dl : 0.f;
      for (int j = 0; j < 32; ++j) L[32 * ib + j] = (uint8_t)best_index(idl * x[32 * ib + j]);
      l += 32;
      const uint8_t l_l = (uint8_t)(l & 0xf), l_h = (uint8_t)(l >> 4);
      if (ib % 2 == 0) scales_l[ib / 2] = l_l;
      else scales_l[ib / 2] |= (uint8_t)(l_l << 4);
      scales_h |= (uint16_t)(l_h << 2 * (ib % 8));
    }
    y[2] = (uint8_t)(scales_h & 0xff);
    y[3] = (uint8_t)(scales_h >> 8);
    pack_nibbles(L, y + 8, 256);
  }
}

}  // namespace pq
