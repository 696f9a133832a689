// Fused dequant GEMV kernel template (instantiated by gemv_*.cu, dispatched by gemv.cu).
//
// Fused dequant GEMV for small M: y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]), W quantized
// (GGUF block types, pyquant int4 / int8), x float32 / float16 / bfloat16, y in x's dtype.
//
// Work split: one warp per output row n and per slice of MT activation rows (grid.y covers
// M / MT slices; MT <= 16 so the weights are streamed once for M <= 16).
// Weight stream: a row is consumed in segments of 64 chunks (2048 weights); the warp loads a
// segment with coalesced 16-byte loads (__ldg into registers, then shared memory) and issues the
// next segment's loads before decoding the current one, so a load is always in flight while the
// ALUs work. Each lane then decodes two 32-weight chunks out of shared memory (chunk_decode.cuh:
// integers held exactly in floats + one scale / min per 16 weights) and multiplies them with x
// (read straight from global memory: it is small and stays in L1/L2), accumulating in fp32 with
// explicit FMAs (the module builds with --fmad=false). A butterfly shuffle reduces the 32 lanes.
// Rows whose bytes are not 16-byte aligned (e.g. K = 576 in Q4_0) take a byte-wise staging path.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common/qtypes.h"
#include "cuda/chunk_decode.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/weights.cuh"

namespace pq {
namespace cuda {
namespace gemv_detail {

constexpr int kWarpsPerCta = 4;
constexpr int kChunksPerSeg = 64;  // 2 chunks per lane

// ---- activations: 8 consecutive elements -> float (the pointer is 16-byte aligned)
template <typename XT>
__device__ __forceinline__ void load8(const XT* p, float* v);
template <>
__device__ __forceinline__ void load8<float>(const float* p, float* v) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
template <>
__device__ __forceinline__ void load8<__half>(const __half* p, float* v) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}
template <>
__device__ __forceinline__ void load8<__nv_bfloat16>(const __nv_bfloat16* p, float* v) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {  // bf16 -> f32 is a shift: exact and one op per element
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ void store_y(float* y, float v) { *y = v; }
__device__ __forceinline__ void store_y(__half* y, float v) { *y = __float2half_rn(v); }
__device__ __forceinline__ void store_y(__nv_bfloat16* y, float v) { *y = __float2bfloat16_rn(v); }

template <class W, int MT, typename XT>
__global__ void __launch_bounds__(kWarpsPerCta * 32, MT <= 2 ? 8 : 4)
gemv_kernel(const GemvArgs a) {
  constexpr int kSegBytes = W::kSegBytes;
  constexpr int kVecs = kSegBytes / 16;
  constexpr int kVecsPerLane = (kVecs + 31) / 32;
  static_assert(kSegBytes % 16 == 0, "segments must be whole 16-byte vectors");
  __shared__ __align__(16) uint8_t s_seg[kWarpsPerCta][kSegBytes];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = (int64_t)blockIdx.x * kWarpsPerCta + warp;
  if (row >= a.n) return;  // whole warp leaves; no CTA-wide barrier below
  const int64_t m0 = (int64_t)blockIdx.y * MT;
  const int mcount = a.m - m0 < MT ? (int)(a.m - m0) : MT;
  const uint8_t* wrow = a.w + row * a.row_bytes;
  const XT* x = static_cast<const XT*>(a.x) + m0 * a.k;
  uint8_t* seg = s_seg[warp];
  const int64_t nseg = (a.k + kChunksPerSeg * 32 - 1) / (kChunksPerSeg * 32);

  uint4 reg[kVecsPerLane];
  auto fetch = [&](int64_t s) {  // aligned path: this lane's share of segment s into registers
    const int64_t off = s * kSegBytes;
    const int64_t left = a.row_bytes - off;  // a multiple of 16 on this path
    const uint4* src = reinterpret_cast<const uint4*>(wrow + off);
#pragma unroll
    for (int i = 0; i < kVecsPerLane; ++i) {
      const int v = lane + 32 * i;
      if (v < kVecs && (int64_t)v * 16 < left) reg[i] = __ldg(src + v);
    }
  };

  float acc[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m) acc[m] = 0.0f;

  if (a.aligned16) fetch(0);
  for (int64_t s = 0; s < nseg; ++s) {
    __syncwarp();  // every lane is done reading the previous segment
    if (a.aligned16) {
#pragma unroll
      for (int i = 0; i < kVecsPerLane; ++i) {
        const int v = lane + 32 * i;
        if (v < kVecs) reinterpret_cast<uint4*>(seg)[v] = reg[i];
      }
      __syncwarp();
      if (s + 1 < nseg) fetch(s + 1);  // in flight while this segment is decoded
    } else {
      const int64_t off = s * kSegBytes;
      const int64_t left = a.row_bytes - off;
      const int nbytes = left < kSegBytes ? (int)left : kSegBytes;
      for (int i = lane; i < nbytes; i += 32) seg[i] = __ldg(wrow + off + i);
      __syncwarp();
    }

#pragma unroll
    for (int i = 0; i < kChunksPerSeg / 32; ++i) {
      const int c = lane + 32 * i;
      const int64_t k0 = (s * kChunksPerSeg + c) * 32;
      if (k0 >= a.k) continue;
      float q[32];
      chunk::ScaleMin sm[2];
      W::decode(seg, c, k0, row, a, q, sm);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m >= mcount) break;
        float xv[32];
#pragma unroll
        for (int j = 0; j < 32; j += 8) load8<XT>(x + m * a.k + k0 + j, xv + j);
        float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          d0 = __fmaf_rn(q[j], xv[j], d0);
          d1 = __fmaf_rn(q[j + 16], xv[j + 16], d1);
        }
        float r = __fmaf_rn(sm[0].s, d0, acc[m]);
        r = __fmaf_rn(sm[1].s, d1, r);
        if constexpr (W::kHasMin) {
          float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
          for (int j = 0; j < 16; ++j) {
            s0 += xv[j];
            s1 += xv[j + 16];
          }
          r = __fmaf_rn(sm[0].m, s0, r);
          r = __fmaf_rn(sm[1].m, s1, r);
        }
        acc[m] = r;
      }
    }
  }

#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
  }
  if (lane == 0) {
    const float b = a.bias ? a.bias[row] : 0.0f;
    XT* y = static_cast<XT*>(a.y) + m0 * a.n + row;
#pragma unroll
    for (int m = 0; m < MT; ++m)
      if (m < mcount) store_y(y + m * a.n, acc[m] + b);
  }
}

template <class W, int MT, typename XT>
void launch_mt(const GemvArgs& a, cudaStream_t stream) {
  const dim3 grid((unsigned)ceil_div(a.n, kWarpsPerCta), (unsigned)ceil_div(a.m, MT));
  gemv_kernel<W, MT, XT><<<grid, kWarpsPerCta * 32, 0, stream>>>(a);
  check_launch("gemv kernel");
}

template <class W, typename XT>
void launch_x(const GemvArgs& a, cudaStream_t stream) {
  // The smallest MT that covers M in one slice (weights read once); above 16, slices of 16.
  if (a.m <= 1) return launch_mt<W, 1, XT>(a, stream);
  if (a.m <= 2) return launch_mt<W, 2, XT>(a, stream);
  if (a.m <= 4) return launch_mt<W, 4, XT>(a, stream);
  if (a.m <= 8) return launch_mt<W, 8, XT>(a, stream);
  return launch_mt<W, 16, XT>(a, stream);
}

template <class W>
void launch_w(const GemvArgs& a, DType dt, cudaStream_t stream) {
  switch (dt) {
    case DType::F32: return launch_x<W, float>(a, stream);
    case DType::F16: return launch_x<W, __half>(a, stream);
    case DType::BF16: return launch_x<W, __nv_bfloat16>(a, stream);
  }
}

}  // namespace gemv_detail
}  // namespace cuda
}  // namespace pq
