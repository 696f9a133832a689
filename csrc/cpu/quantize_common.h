// Shared pieces of the ggml quantizers (csrc/cpu/quantize_*.cpp).
//
// Goal: bytes identical to llama.cpp's ggml_quantize_chunk() with no importance matrix, i.e. to
// ggml-base's C code (ggml/src/ggml-quants.c) as llama.cpp builds it on x86-64: baseline ISA
// (no FMA available, so no contraction), IEEE float32 arithmetic in source order, -DNDEBUG.
// Every expression below keeps the C code's operand order and int->float conversion points;
// reordering a sum or fusing a multiply-add changes bytes. This file is built with
// -ffp-contract=off, so `a*b + c` stays two roundings, exactly like the upstream build.
//
// Non-finite input: we do what ggml does (there is no error path upstream): the same comparisons
// and casts run on NaN/inf, so NaN never wins a max (`amax < fabsf(v)` is false), an inf block
// makes d = inf and id = 0 or NaN, and float->small-int casts follow x86 cvttss2si semantics
// (NaN / out of range -> INT32_MIN, then the low byte), see trunc_i8 below.
//
// Linkage: every helper here is `static` (internal linkage) and self-contained. This header is also
// compiled into the AVX2 translation units (-mavx2 -mfma); a plain `inline` function would leave a
// weak AVX2-encoded copy that the linker may pick for the scalar code too (SIGILL on a CPU without
// AVX2). Hence no calls into common/fp16.h's inline functions from here either.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/kquant_scales.h"

namespace pq::quant {

// ggml's nearest_int: round-half-even through the 1.5*2^23 magic constant. Exact for
// |x| <= 2^22; beyond that ggml's (disabled) assert would fire and the bit pattern wraps; we keep
// the same bit arithmetic so even those cases match.
static inline int nearest_int(float fval) {
  const float val = fval + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// C's float -> int32 conversion as x86 performs it (cvttss2si): truncation, and INT32_MIN for
// NaN or out-of-range values (C leaves those undefined; gcc on x86 emits this instruction).
static inline int32_t trunc_i32(float v) {
  if (!(v > -2147483904.0f && v < 2147483648.0f)) return INT32_MIN;
  return (int32_t)v;
}

// C's (int8_t)float / (uint8_t)float on x86: cvttss2si then keep the low byte.
static inline int8_t trunc_i8(float v) { return (int8_t)(uint8_t)((uint32_t)trunc_i32(v) & 0xffu); }
static inline uint8_t trunc_u8(float v) { return (uint8_t)((uint32_t)trunc_i32(v) & 0xffu); }

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// GGML_FP32_TO_FP16 (ggml_compute_fp32_to_fp16): round-to-nearest-even, overflow -> inf,
// every NaN -> the canonical quiet NaN 0x7e00 with the input's sign.
static inline uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // >= 65520 rounds to inf (inf included)
  if (ax < 0x38800000u) {                                      // half subnormal or zero
    if (ax < 0x33000000u) return (uint16_t)sign;               // < 2^-25: rounds to zero
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u, shift = 126u - (ax >> 23);
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
  }
  uint32_t r = (ax >> 13) - (112u << 10);  // rebias the exponent, keep 10 mantissa bits
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return (uint16_t)(sign | r);
}

// Exact half -> float (only finite values reach it here: stored scales after f32_to_f16).
static inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) return (sign ? -1.0f : 1.0f) * (float)mant * 5.9604644775390625e-08f;  // mant * 2^-24, exact
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline void store_f16(uint8_t* p, float f) {
  const uint16_t h = f32_to_f16(f);
  p[0] = (uint8_t)(h & 0xff);
  p[1] = (uint8_t)(h >> 8);
}
static inline uint16_t load_u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below this a group counts as all-zero

template <typename T>
static inline T min_(T a, T b) { return a < b ? a : b; }
template <typename T>
static inline T max_(T a, T b) { return a > b ? a : b; }

// make_qx_quants(n, nmax, x, L, rmse_type, qw=NULL): symmetric scale search used by Q6_K.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type);
// make_q3_quants(n, nmax, x, L, do_rmse): Q3_K's symmetric search with coordinate descent.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);
// make_qkx2_quants: asymmetric (scale, min) search used by Q2_K/Q4_K/Q5_K.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// k-quant super-block steps shared by the scalar and AVX2 paths: the AVX2 code replaces only the
// per-sub-block searches (8 sub-blocks in 8 lanes) and reuses these finishing steps.
void search_scale_min_k4(const float* x, uint8_t* L, float* scales, float* mins, int nmax, float rmin, int nstep);
void finish_scale_min_k4(const float* x, uint8_t* y, uint8_t* L, const float* scales, const float* mins, int nmax);
// The first half of finish_scale_min_k4: 6-bit scales/mins and the fp16 d/dmin into y[0..15].
void quantize_scales_k4(uint8_t* y, const float* scales, const float* mins);

// Q4_K/Q5_K scale and min of sub-block j from the 12 packed bytes (common/kquant_scales.h).
static inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  int s, mn;
  k4_scale_min(q, j, &s, &mn);
  *d = (uint8_t)s;
  *m = (uint8_t)mn;
}
void pack_q4_k(const uint8_t* L, uint8_t* y);
void pack_q5_k(const uint8_t* L, uint8_t* y);
// out[i] = clamp(nearest_int((x[i] + add) / d), lo, hi) + offset for i < n: the element loop of the
// k-quant finishing steps (no reduction, so the AVX2 path runs it over elements).
using RequantFn = void (*)(const float* x, int n, float d, float add, int lo, int hi, int offset, int32_t* out);
void requant_scalar(const float* x, int n, float d, float add, int lo, int hi, int offset, int32_t* out);

void search_q2_k(const float* x, uint8_t* L, float* scales, float* mins);
void finish_q2_k(const float* x, uint8_t* y, uint8_t* L, const float* scales, const float* mins,
                 RequantFn requant = requant_scalar);
void finish_q6_k(const float* x, uint8_t* y, int8_t* L, const float* scales);
// finish_q6_k's parts: int8 scales + fp16 d (false: all-zero super-block, fully written) / packing.
bool quantize_scales_q6_k(uint8_t* y, const float* scales);
void pack_q6_k(const int8_t* L, uint8_t* y);
void finish_q3_k(const float* x, uint8_t* y, int8_t* L, const float* scales, RequantFn requant = requant_scalar);

}  // namespace pq::quant

namespace pq {

// Quantizes nblocks consecutive blocks of one ggml type: x has nblocks*block_size floats, y gets
// nblocks*type_size bytes. Blocks are independent, so any split over threads gives the same bytes.
using QuantizeBlocksFn = void (*)(const float* x, uint8_t* y, int64_t nblocks);

void quantize_blocks_q4_0(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q4_1(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q5_0(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q5_1(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q8_0(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q2_k(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q3_k(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q4_k(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q5_k(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q6_k(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_iq4_nl(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_iq4_xs(const float* x, uint8_t* y, int64_t nb);

// AVX2 versions (csrc/cpu/avx2/quantize_*_avx2.cpp): same bytes, independent sub-blocks searched
// in parallel SIMD lanes. Only call when active_isa() == Isa::Avx2.
void quantize_blocks_q4_0_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q4_1_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q5_0_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q5_1_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q8_0_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q3_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q2_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q4_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q5_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q6_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_iq4_nl_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_iq4_xs_avx2(const float* x, uint8_t* y, int64_t nb);

}  // namespace pq
