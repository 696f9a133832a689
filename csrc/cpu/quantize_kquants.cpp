// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K quantizers: the quantize_row_q*_K_ref of ggml-quants.c (what
// ggml_quantize_chunk runs without an imatrix), one 256-element super-block at a time.
// Pattern shared by all five: search a float scale (and min) per sub-block, quantize those
// scales to 4/6/8 bits against one fp16 super-scale, then re-quantize every element against the
// *rounded* scales (that second pass is why the fp16 rounding of d/dmin must be exact).
#include <cstring>

#include "cpu/quantize_common.h"

namespace pq {
using namespace quant;

namespace {
constexpr int QK_K = 256;

// Q4_K/Q5_K 12-byte scale packing: 8 six-bit scales + 8 six-bit mins (spec: get_scale_min_k4).
inline void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* s) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
    s[j - 4] |= (uint8_t)((ls >> 4) << 6);
    s[j - 0] |= (uint8_t)((lm >> 4) << 6);
  }
}


}  // namespace

namespace quant {
// x/d upstream for Q3_K/Q6_K is (x + 0)/d here: only -0 changes (to +0), and nearest_int(+-0) is 0.
void requant_scalar(const float* x, int n, float d, float add, int lo, int hi, int offset, int32_t* out) {
  for (int i = 0; i < n; ++i) out[i] = max_(lo, min_(hi, nearest_int((x[i] + add) / d))) + offset;
}

void search_scale_min_k4(const float* x, uint8_t* L, float* scales, float* mins, int nmax, float rmin, int nstep) {
  uint8_t Laux[32];
  float weights[32];
  for (int j = 0; j < QK_K / 32; ++j) {
    const float* xb = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xb[l] * xb[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xb[l]);
    scales[j] = make_qkx2_quants(32, nmax, xb, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
  }
}

void finish_scale_min_k4(const float* x, uint8_t* y, uint8_t* L, const float* scales, const float* mins, int nmax) {
  quantize_scales_k4(y, scales, mins);
  const uint8_t* sc = y + 4;
  const float d_all = f16_to_f32(load_u16(y)), dmin_all = f16_to_f32(load_u16(y + 2));
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t s, m;
    get_scale_min_k4(j, sc, &s, &m);
    const float d = d_all * (float)s;
    if (d == 0.0f) continue;  // keep the search's quants (upstream does the same)
    const float dm = dmin_all * (float)m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = (uint8_t)max_(0, min_(nmax, l));
    }
  }
}

void quantize_scales_k4(uint8_t* y, const float* scales, const float* mins) {
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < QK_K / 32; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t* sc = y + 4;
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);  // wraps mod 256 like the C code
    uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
    ls = min_<uint8_t>(63, ls);
    lm = min_<uint8_t>(63, lm);
    pack_scale_min_k4(j, ls, lm, sc);
  }
  store_f16(y, max_scale / 63.f);
  store_f16(y + 2, max_min / 63.f);
}

void pack_q4_k(const uint8_t* L, uint8_t* y) {
  uint8_t* q = y + 16;
  for (int j = 0; j < QK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

void pack_q5_k(const uint8_t* L, uint8_t* y) {
  uint8_t* qh = y + 16;
  uint8_t* ql = y + 48;
  std::memset(qh, 0, QK_K / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64, ql += 32) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
      if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
      ql[j] = (uint8_t)(l1 | (l2 << 4));
    }
    m1 = (uint8_t)(m1 << 2);
    m2 = (uint8_t)(m2 << 2);
  }
}
}  // namespace quant

namespace {
}  // namespace

namespace quant {
void search_q2_k(const float* x, uint8_t* L, float* scales, float* mins) {
  uint8_t Laux[16];
  float weights[16];
  for (int j = 0; j < QK_K / 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
  }
}

void finish_q2_k(const float* x, uint8_t* y, uint8_t* L, const float* scales, const float* mins, RequantFn requant) {
  // block_q2_K: scales[16] (lo4 scale, hi4 min), qs[64], d, dmin
  constexpr float q4scale = 15.f;
  uint8_t* sc = y;
  uint8_t* qs = y + 16;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < QK_K / 16; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < QK_K / 16; ++j) sc[j] = (uint8_t)nearest_int(iscale * scales[j]);
    store_f16(y + 80, max_scale / q4scale);
  } else {
    for (int j = 0; j < QK_K / 16; ++j) sc[j] = 0;
    store_f16(y + 80, 0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < QK_K / 16; ++j) sc[j] |= (uint8_t)((uint32_t)nearest_int(iscale * mins[j]) << 4);
    store_f16(y + 82, max_min / q4scale);
  } else {
    store_f16(y + 82, 0.f);
  }
  const float d_all = f16_to_f32(load_u16(y + 80)), dmin_all = f16_to_f32(load_u16(y + 82));
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = d_all * (float)(sc[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = dmin_all * (float)(sc[j] >> 4);
    int32_t l[16];
    requant(x + 16 * j, 16, d, dm, 0, 3, 0, l);
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (uint8_t)l[ii];
  }
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}
}  // namespace quant

void quantize_blocks_q2_k(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 84) {
    uint8_t L[QK_K];
    float scales[QK_K / 16], mins[QK_K / 16];
    search_q2_k(x, L, scales, mins);
    finish_q2_k(x, y, L, scales, mins);
  }
}

namespace quant {
void finish_q3_k(const float* x, uint8_t* y, int8_t* L, const float* scales, RequantFn requant) {
  // block_q3_K: hmask[32], qs[64], scales[12], d
  uint8_t* hmask = y;
  uint8_t* qs = y + 32;
  uint8_t* sc = y + 96;
  float max_scale = 0, amax = 0;
  for (int j = 0; j < QK_K / 16; ++j) {
    const float scale = std::fabs(scales[j]);
    if (scale > amax) { amax = scale; max_scale = scales[j]; }
  }
  std::memset(sc, 0, 12);
  if (max_scale != 0.0f) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < QK_K / 16; ++j) {
      int8_t l = (int8_t)nearest_int(iscale * scales[j]);
      l = (int8_t)(max_<int>(-32, min_<int>(31, l)) + 32);
      if (j < 8) sc[j] = (uint8_t)(l & 0xF);
      else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
      l = (int8_t)(l >> 4);
      sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
    store_f16(y + 108, 1 / iscale);
  } else {
    store_f16(y + 108, 0.f);
  }
  const float d_all = f16_to_f32(load_u16(y + 108));
  for (int j = 0; j < QK_K / 16; ++j) {
    int s = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
    s = (s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    const float d = d_all * (float)s;
    if (d == 0.0f) continue;
    int32_t l[16];
    requant(x + 16 * j, 16, d, 0.0f, -4, 3, 4, l);
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int8_t)l[ii];
  }
  // High bit of quant j goes to hmask[j % 32], bit j / 32.
  std::memset(hmask, 0, QK_K / 8);
  int m = 0;
  uint8_t hm = 1;
  for (int j = 0; j < QK_K; ++j) {
    if (L[j] > 3) {
      hmask[m] |= hm;
      L[j] = (int8_t)(L[j] - 4);
    }
    if (++m == QK_K / 8) { m = 0; hm = (uint8_t)(hm << 1); }
  }
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}
}  // namespace quant

void quantize_blocks_q3_k(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 110) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int j = 0; j < QK_K / 16; ++j) scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
    finish_q3_k(x, y, L, scales);
  }
}

void quantize_blocks_q4_k(const float* x, uint8_t* y, int64_t nb) {
  // block_q4_K: d, dmin, scales[12], qs[128]
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 144) {
    uint8_t L[QK_K];
    float scales[8], mins[8];
    search_scale_min_k4(x, L, scales, mins, 15, -1.f, 20);
    finish_scale_min_k4(x, y, L, scales, mins, 15);
    pack_q4_k(L, y);
  }
}

void quantize_blocks_q5_k(const float* x, uint8_t* y, int64_t nb) {
  // block_q5_K: d, dmin, scales[12], qh[32], qs[128]
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 176) {
    uint8_t L[QK_K];
    float scales[8], mins[8];
    search_scale_min_k4(x, L, scales, mins, 31, -0.5f, 15);
    finish_scale_min_k4(x, y, L, scales, mins, 31);
    pack_q5_k(L, y);
  }
}

namespace quant {
bool quantize_scales_q6_k(uint8_t* y, const float* scales) {
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    const float abs_scale = std::fabs(scales[ib]);
    if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scales[ib]; }
  }
  if (max_abs_scale < kGroupMaxEps) {  // all-zero super-block: zero bytes, d = +0
    std::memset(y, 0, 210);
    return false;
  }
  int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
  const float iscale = -128.f / max_scale;
  store_f16(y + 208, 1 / iscale);
  for (int ib = 0; ib < QK_K / 16; ++ib) sc[ib] = (int8_t)min_(127, nearest_int(iscale * scales[ib]));
  return true;
}

void pack_q6_k(const int8_t* L, uint8_t* y) {
  uint8_t* ql = y;
  uint8_t* qh = y + 128;
  for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
      const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
      ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
      qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                        ((L[j + l + 96] >> 4) << 6));
    }
  }
}

void finish_q6_k(const float* x, uint8_t* y, int8_t* L, const float* scales) {
  // block_q6_K: ql[128], qh[64], scales[16] (int8), d
  if (!quantize_scales_q6_k(y, scales)) return;
  const int8_t* sc = reinterpret_cast<const int8_t*>(y + 192);
  const float d_all = f16_to_f32(load_u16(y + 208));
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = d_all * (float)sc[j];
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = (int8_t)(max_(-32, min_(31, l)) + 32);
    }
  }
  pack_q6_k(L, y);
}
}  // namespace quant

void quantize_blocks_q6_k(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K, y += 210) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int ib = 0; ib < QK_K / 16; ++ib) scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
    finish_q6_k(x, y, L, scales);
  }
}

}  // namespace pq
