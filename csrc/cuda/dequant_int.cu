// Dense dequantization of pyquant int4 / int8 and EXL2 weights (for the large-M path: dequantize to
// x's dtype, then cuBLAS through torch). One thread per 32-weight chunk: it reads its 16 / 32 bytes
// with one or two 16-byte loads (EXL2: its block's 10..34 bytes at the block's offset) and writes 32
// outputs as 16-byte stores, so every sector a warp touches is fully used.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/fp16.h"
#include "cuda/cuda_common.cuh"
#include "cuda/weights.cuh"

namespace pq {
namespace cuda {
namespace {

// w = q * scale + min for the 32 weights of a chunk, to out (16-byte aligned) in OutT.
template <typename OutT>
__device__ __forceinline__ void store_chunk(const float* q, const chunk::ScaleMin* sm, OutT* out, DType dt) {
  __align__(16) OutT v[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const float w = q[j] * sm[j / 16].s + sm[j / 16].m;  // two roundings, as the CPU reference
    if constexpr (sizeof(OutT) == 4) {
      v[j] = w;
    } else {
      v[j] = dt == DType::F16 ? fp32_to_fp16(w) : fp32_to_bf16(w);
    }
  }
#pragma unroll
  for (int i = 0; i < 32 * (int)sizeof(OutT) / 16; ++i) reinterpret_cast<uint4*>(out)[i] = reinterpret_cast<uint4*>(v)[i];
}

template <class W, typename OutT>
__global__ void __launch_bounds__(256) int_dequant_kernel(const GemvArgs a, OutT* __restrict__ dst, DType dt) {
  constexpr int kChunkBytes = W::kSegBytes / 64;
  const int64_t chunks_per_row = a.k / 32;
  const int64_t gc = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (gc >= a.n * chunks_per_row) return;
  const int64_t row = gc / chunks_per_row, c = gc % chunks_per_row;
  __align__(16) uint8_t bytes[kChunkBytes];
  const uint8_t* src = a.w + row * a.row_bytes + c * kChunkBytes;
  if (a.aligned16) {
#pragma unroll
    for (int i = 0; i < kChunkBytes / 16; ++i)
      reinterpret_cast<uint4*>(bytes)[i] = __ldg(reinterpret_cast<const uint4*>(src) + i);
  } else {
#pragma unroll
    for (int i = 0; i < kChunkBytes; ++i) bytes[i] = __ldg(src + i);
  }
  float q[32];
  chunk::ScaleMin sm[2];
  W::dequant(bytes, 0, c * 32, row, a, q, sm);
  store_chunk(q, sm, dst + row * a.k + c * 32, dt);
}

// EXL2: the block at its offset, its width from the table (both checked: a forged table gives NaN).
template <typename OutT>
__global__ void __launch_bounds__(256) exl2_dequant_kernel(const GemvArgs a, OutT* __restrict__ dst, DType dt) {
  const int64_t chunks_per_row = a.k / 32;
  const int64_t gc = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (gc >= a.n * chunks_per_row) return;
  const int64_t row = gc / chunks_per_row, c = gc % chunks_per_row;
  const int bits = __ldg(a.block_bits + c);
  const int64_t off = __ldg(a.block_off + c);
  float q[32];
  chunk::ScaleMin sm[2] = {{1.0f, 0.0f}, {1.0f, 0.0f}};
  if (chunk::Exl2::valid(bits) && off >= 0 && off + chunk::Exl2::block_bytes(bits) <= a.row_bytes) {
    uint8_t bytes[34];
    const uint8_t* src = a.w + row * a.row_bytes + off;
    for (int i = 0; i < chunk::Exl2::block_bytes(bits); ++i) bytes[i] = __ldg(src + i);
    chunk::Exl2::run(bytes, bits, q, sm);
  } else {
#pragma unroll
    for (int j = 0; j < 32; ++j) q[j] = __int_as_float(0x7fc00000);
  }
  store_chunk(q, sm, dst + row * a.k + c * 32, dt);
}

// One thread per chunk, 256 a block; kf / kh: the kernel for float32 / 16-bit outputs.
template <typename KF, typename KH>
void launch_dense(const GemvArgs& a, void* dst, DType dt, cudaStream_t stream, KF kf, KH kh) {
  const int64_t total = a.n * (a.k / 32);
  const int64_t grid = ceil_div(total, 256);
  PQ_CHECK(grid <= 0x7fffffff, "dequantize: too many weights for one launch");
  if (dt == DType::F32) kf<<<(unsigned)grid, 256, 0, stream>>>(a, static_cast<float*>(dst), dt);
  else kh<<<(unsigned)grid, 256, 0, stream>>>(a, static_cast<uint16_t*>(dst), dt);
  check_launch("dequantize kernel");
}

template <class W>
void launch(const GemvArgs& a, void* dst, DType dt, cudaStream_t stream) {
  launch_dense(a, dst, dt, stream, int_dequant_kernel<W, float>, int_dequant_kernel<W, uint16_t>);
}

void launch_exl2(const GemvArgs& a, void* dst, DType dt, cudaStream_t stream) {
  launch_dense(a, dst, dt, stream, exl2_dequant_kernel<float>, exl2_dequant_kernel<uint16_t>);
}

}  // namespace

void int_dequant_launch(WeightKind kind, const GemvArgs& a, void* dst, DType dt, cudaStream_t stream) {
  if (kind == WeightKind::Int4) return launch<WInt4>(a, dst, dt, stream);
  if (kind == WeightKind::Exl2) return launch_exl2(a, dst, dt, stream);
  return launch<WInt8>(a, dst, dt, stream);
}

}  // namespace cuda
}  // namespace pq
