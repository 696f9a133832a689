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
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/fp16.h"

namespace pq::quant {

// ggml's nearest_int: round-half-even through the 1.5*2^23 magic constant. Exact for
// |x| <= 2^22; beyond that ggml's (disabled) assert would fire and the bit pattern wraps; we keep
// the same bit arithmetic so even those cases match.
inline int nearest_int(float fval) {
  const float val = fval + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// C's float -> int32 conversion as x86 performs it (cvttss2si): truncation, and INT32_MIN for
// NaN or out-of-range values (C leaves those undefined; gcc on x86 emits this instruction).
inline int32_t trunc_i32(float v) {
  if (!(v > -2147483904.0f && v < 2147483648.0f)) return INT32_MIN;
  return (int32_t)v;
}

// C's (int8_t)float / (uint8_t)float on x86: cvttss2si then keep the low byte.
inline int8_t trunc_i8(float v) { return (int8_t)(uint8_t)((uint32_t)trunc_i32(v) & 0xffu); }
inline uint8_t trunc_u8(float v) { return (uint8_t)((uint32_t)trunc_i32(v) & 0xffu); }

// GGML_FP32_TO_FP16 (ggml_compute_fp32_to_fp16): round-to-nearest-even, overflow -> inf,
// every NaN -> the canonical quiet NaN 0x7e00 with the input's sign.
inline uint16_t f32_to_f16(float f) {
  const uint32_t w = float_to_bits(f);
  if ((w & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((w >> 16) & 0x8000u) | 0x7e00u);
  return fp32_to_fp16(f);
}
inline float f16_to_f32(uint16_t h) { return fp16_to_fp32(h); }

inline void store_f16(uint8_t* p, float f) {
  const uint16_t h = f32_to_f16(f);
  p[0] = (uint8_t)(h & 0xff);
  p[1] = (uint8_t)(h >> 8);
}
inline uint16_t load_u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below this a group counts as all-zero

template <typename T>
inline T min_(T a, T b) { return a < b ? a : b; }
template <typename T>
inline T max_(T a, T b) { return a > b ? a : b; }

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
void pack_q4_k(const uint8_t* L, uint8_t* y);
void pack_q5_k(const uint8_t* L, uint8_t* y);
void search_q2_k(const float* x, uint8_t* L, float* scales, float* mins);
void finish_q2_k(const float* x, uint8_t* y, uint8_t* L, const float* scales, const float* mins);
void finish_q6_k(const float* x, uint8_t* y, int8_t* L, const float* scales);

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
void quantize_blocks_q2_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q4_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q5_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_q6_k_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_iq4_nl_avx2(const float* x, uint8_t* y, int64_t nb);
void quantize_blocks_iq4_xs_avx2(const float* x, uint8_t* y, int64_t nb);

}  // namespace pq
