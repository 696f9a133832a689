// Dense dequantization of pyquant int4 / int8 weights (for the large-M path: dequantize to x's
// dtype, then cuBLAS through torch). One thread per 32-weight chunk: it reads its 16 / 32 bytes
// with one or two 16-byte loads and writes 32 outputs as 16-byte stores, so every sector a warp
// touches is fully used.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/fp16.h"
#include "cuda/cuda_common.cuh"
#include "cuda/weights.cuh"

namespace pq {
namespace cuda {
namespace {

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
  OutT* out = dst + row * a.k + c * 32;
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

template <class W>
void launch(const GemvArgs& a, void* dst, DType dt, cudaStream_t stream) {
  const int64_t total = a.n * (a.k / 32);
  const int64_t grid = ceil_div(total, 256);
  PQ_CHECK(grid <= 0x7fffffff, "dequantize: too many weights for one launch");
  if (dt == DType::F32)
    int_dequant_kernel<W, float><<<(unsigned)grid, 256, 0, stream>>>(a, static_cast<float*>(dst), dt);
  else
    int_dequant_kernel<W, uint16_t><<<(unsigned)grid, 256, 0, stream>>>(a, static_cast<uint16_t*>(dst), dt);
  check_launch("int dequantize kernel");
}

}  // namespace

void int_dequant_launch(WeightKind kind, const GemvArgs& a, void* dst, DType dt, cudaStream_t stream) {
  if (kind == WeightKind::Int4) return launch<WInt4>(a, dst, dt, stream);
  return launch<WInt8>(a, dst, dt, stream);
}

}  // namespace cuda
}  // namespace pq
