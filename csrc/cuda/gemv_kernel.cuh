// Fused dequant GEMV kernel template (instantiated by gemv_*.cu, dispatched by gemv.cu).
//
// Fused dequant GEMV for small M: y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]), W quantized
// (GGUF block types, pyquant int4 / int8), x float32 / float16 / bfloat16, y in x's dtype.
//
// Work split: persistent CTAs of 8 warps; each warp takes output rows n = warp_id, + total warps,
// ... and one slice of MT activation rows (grid.y covers M / MT slices; MT <= 16, so the weights
// are streamed once for M <= 16).
// Activations: the CTA first copies its MT rows of x into shared memory (coalesced), laid out
// chunk by chunk with 16 bytes of padding per 32-element chunk, so that the lanes of a warp --
// each reading its own chunk -- hit distinct banks (a lane-strided read straight from global
// memory would touch 16 L1 lines per request, 4x the ideal, and at M=1 that alone would cost
// about as much time as the weight stream). When MT rows of x do not fit (~100 KB), x is read
// from global memory instead (uniform branch, same instantiation).
// Weight stream: a row is consumed in segments of 64 chunks (2048 weights); the warp loads a
// segment with coalesced 16-byte loads (__ldg into registers, then shared memory) and issues the
// next segment's loads before decoding the current one, so a load is always in flight while the
// ALUs work. Each lane then dequantizes two 32-weight chunks out of shared memory (chunk_dequant.cuh:
// integers held exactly in floats + one scale / min per 16 weights) and multiplies them with x,
// accumulating in fp32 with explicit FMAs (the module builds with --fmad=false). A butterfly
// shuffle reduces the 32 lanes.
// Rows whose bytes are not 16-byte aligned (e.g. K = 576 in Q4_0) take a byte-wise staging path.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common/qtypes.h"
#include "cuda/chunk_dequant.cuh"
#include "cuda/cuda_common.cuh"
#include "cuda/weights.cuh"

namespace pq {
namespace cuda {
namespace gemv_detail {

constexpr int kWarpsPerCta = 8;
constexpr int kChunksPerSeg = 64;  // 2 chunks per lane
constexpr int kXPad = 16;  // bytes after each 32-element chunk of x in shared memory: bank
                           // spreading, and room for the chunk's two x sums (min types)
constexpr int kMaxXSmem = 100 * 1024;

template <typename XT>
constexpr int x_chunk_stride() {  // bytes per padded chunk of x in shared memory
  return 32 * (int)sizeof(XT) + kXPad;
}

// ---- activations: 8 consecutive elements -> float (p is 16-byte aligned; global memory through
// the read-only path, shared memory with a plain load)
template <bool kGlobal>
__device__ __forceinline__ uint4 ld16(const void* p) {
  if constexpr (kGlobal) return __ldg(reinterpret_cast<const uint4*>(p));
  else return *reinterpret_cast<const uint4*>(p);
}

template <bool kGlobal>
__device__ __forceinline__ void load8(const float* p, float* v) {
  const uint4 a = ld16<kGlobal>(p), b = ld16<kGlobal>(p + 4);
  const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = __uint_as_float(w[i]);
}
template <bool kGlobal>
__device__ __forceinline__ void load8(const __half* p, float* v) {
  const uint4 u = ld16<kGlobal>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}
template <bool kGlobal>
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float* v) {
  const uint4 u = ld16<kGlobal>(p);
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
__global__ void __launch_bounds__(kWarpsPerCta * 32, 2)
gemv_kernel(const GemvArgs a, const bool x_in_smem) {
  constexpr int kSegBytes = W::kSegBytes;
  constexpr int kVecs = kSegBytes / 16;
  constexpr int kVecsPerLane = (kVecs + 31) / 32;
  constexpr int kXStride = x_chunk_stride<XT>();
  constexpr int kXVecsPerChunk = 32 * (int)sizeof(XT) / 16;
  static_assert(kSegBytes % 16 == 0, "segments must be whole 16-byte vectors");
  extern __shared__ __align__(16) uint8_t smem[];
  uint8_t* s_seg = smem;                                   // [kWarpsPerCta][kSegBytes]
  uint8_t* s_x = smem + kWarpsPerCta * kSegBytes;          // [MT][K/32][kXStride] when x_in_smem

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t m0 = (int64_t)blockIdx.y * MT;
  const int mcount = a.m - m0 < MT ? (int)(a.m - m0) : MT;
  const int64_t nchunks = a.k / 32;
  const XT* xg = static_cast<const XT*>(a.x) + m0 * a.k;

  if (x_in_smem) {  // whole CTA: x[m0 .. m0+mcount) -> padded shared layout, 16-byte pieces
    const int64_t nvec = (int64_t)mcount * nchunks * kXVecsPerChunk;
    for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      const int64_t c = v / kXVecsPerChunk;  // chunk over all rows (row-major: m * nchunks + chunk)
      const int part = (int)(v % kXVecsPerChunk);
      *reinterpret_cast<uint4*>(s_x + c * kXStride + part * 16) = __ldg(reinterpret_cast<const uint4*>(xg) + v);
    }
    __syncthreads();
    if constexpr (W::kHasMin) {
      // The min term needs sum(x) over each 16 weights: the same for every row, so computed once
      // here and kept in the chunk's padding (saves one FADD per weight in the row loop).
      for (int64_t c = threadIdx.x; c < (int64_t)mcount * nchunks; c += blockDim.x) {
        float xv[32];
#pragma unroll
        for (int j = 0; j < 32; j += 8) load8<false>(reinterpret_cast<const XT*>(s_x + c * kXStride) + j, xv + j);
        float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          s0 += xv[j];
          s1 += xv[j + 16];
        }
        *reinterpret_cast<float2*>(s_x + c * kXStride + 32 * sizeof(XT)) = make_float2(s0, s1);
      }
      __syncthreads();
    }
  }

  uint8_t* seg = s_seg + warp * kSegBytes;
  const int64_t nseg = (a.k + kChunksPerSeg * 32 - 1) / (kChunksPerSeg * 32);
  const int64_t warps_total = (int64_t)gridDim.x * kWarpsPerCta;

  for (int64_t row = (int64_t)blockIdx.x * kWarpsPerCta + warp; row < a.n; row += warps_total) {
    const uint8_t* wrow = a.w + row * a.row_bytes;
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

    const bool aligned = !OwnStaging<W>::value && a.aligned16;   // (compiled out for EXL2)
    if (aligned) fetch(0);
    for (int64_t s = 0; s < nseg; ++s) {
      __syncwarp();  // every lane is done reading the previous segment
      if (aligned) {
#pragma unroll
        for (int i = 0; i < kVecsPerLane; ++i) {
          const int v = lane + 32 * i;
          if (v < kVecs) reinterpret_cast<uint4*>(seg)[v] = reg[i];
        }
        __syncwarp();
        if (s + 1 < nseg) fetch(s + 1);  // in flight while this segment is decoded
      } else if constexpr (OwnStaging<W>::value) {   // segments of varying bytes (EXL2)
        W::stage(seg, wrow, s, a, lane);
        __syncwarp();
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
        const int64_t chunk = s * kChunksPerSeg + c;
        if (chunk >= nchunks) continue;
        const int64_t k0 = chunk * 32;
        float q[32];
        chunk::ScaleMin sm[2];
        W::dequant(seg, c, k0, row, a, q, sm);
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m >= mcount) break;
          float xv[32];
          if (x_in_smem) {
            const XT* xs = reinterpret_cast<const XT*>(s_x + (m * nchunks + chunk) * kXStride);
#pragma unroll
            for (int j = 0; j < 32; j += 8) load8<false>(xs + j, xv + j);
          } else {
#pragma unroll
            for (int j = 0; j < 32; j += 8) load8<true>(xg + m * a.k + k0 + j, xv + j);
          }
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
            if (x_in_smem) {
              const float2 ss = *reinterpret_cast<const float2*>(s_x + (m * nchunks + chunk) * kXStride + 32 * sizeof(XT));
              s0 = ss.x;
              s1 = ss.y;
            } else {
#pragma unroll
              for (int j = 0; j < 16; ++j) {
                s0 += xv[j];
                s1 += xv[j + 16];
              }
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
}

inline int multiprocessor_count(int dev) {
  static int cache[64] = {0};  // benign race: every writer stores the same value
  if (dev < 0 || dev >= 64) dev = 0;
  if (cache[dev] == 0) {
    int v = 0;
    check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev), "multiprocessor count");
    cache[dev] = v > 0 ? v : 1;
  }
  return cache[dev];
}

// Persistent grid: as many CTAs as fit on the device at once (occupancy query), at most one
// per 8 rows. Shared memory above 48 KB needs the per-kernel opt-in, done once per instantiation.
template <class W, int MT, typename XT>
void launch_mt(const GemvArgs& a, cudaStream_t stream) {
  auto kernel = gemv_kernel<W, MT, XT>;
  const int64_t x_bytes = (int64_t)(a.m < MT ? a.m : MT) * (a.k / 32) * x_chunk_stride<XT>();
  const bool x_in_smem = x_bytes <= kMaxXSmem;
  const int smem = kWarpsPerCta * W::kSegBytes + (x_in_smem ? (int)x_bytes : 0);
  if (smem > 48 * 1024)  // per device and function, so not cached; a cheap host call
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), "gemv: shared memory opt-in");
  int dev = 0, per_sm = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  const int sms = multiprocessor_count(dev);
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarpsPerCta * 32, smem),
        "gemv: occupancy query");
  const int64_t want = ceil_div(a.n, kWarpsPerCta);
  const int64_t fit = (int64_t)sms * (per_sm > 0 ? per_sm : 1);
  const dim3 grid((unsigned)(want < fit ? want : fit), (unsigned)ceil_div(a.m, MT));
  kernel<<<grid, kWarpsPerCta * 32, smem, stream>>>(a, x_in_smem);
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
