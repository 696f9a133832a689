// GGUF block dequantization on the GPU: every type of dequant_types.cuh, to float32 / float16 / bfloat16.
//
// One CTA owns a run of 8192 elements (256 blocks of 32, or 32 super-blocks of 256):
//   1. its input bytes (contiguous) are staged into shared memory with coalesced 16-byte loads;
//   2. each thread dequantizes one block from shared memory into a shared float buffer with the shared
//      host+device dequantizer (pq::dequant_block_*), padded by one float per block so that the threads
//      of a warp, writing element i of their own blocks, hit 32 different banks;
//   3. the CTA writes the run out element-contiguously (coalesced), converting to the output dtype
//      with the same exact integer conversions as the CPU path.
// Shared memory stays under 48 KB (at most 32*292 + 32*257*4 bytes), so no opt-in is needed.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/fp16.h"
#include "cpu/dequant_args.h"
#include "cuda/cuda_common.cuh"
#include "cuda/dequant_types.cuh"
#include "cuda/kernels.h"

namespace pq {
namespace cuda {
namespace {

constexpr int kElemsPerCta = 8192;

template <class D>
struct DequantGeom {
  static constexpr int kThreads = kElemsPerCta / D::kBlock;  // one block per thread
  static constexpr int kStride = D::kBlock + 1;              // padded float stride per block
  static constexpr int kInBytes = kThreads * D::kBytes;      // a multiple of 16 for every type
  static_assert(kInBytes % 16 == 0, "staging assumes a CTA's input is whole 16-byte vectors");
};

__device__ __forceinline__ void store_out(float* dst, int64_t i, float v) { dst[i] = v; }
__device__ __forceinline__ void store_out(uint16_t* dst, int64_t i, float v, DType t) {
  dst[i] = t == DType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
}

template <class D, typename OutT>
__global__ void __launch_bounds__(DequantGeom<D>::kThreads)
dequant_kernel(const uint8_t* __restrict__ src, OutT* __restrict__ dst, int64_t nblocks, bool src_aligned16,
              DType out_type) {
  using G = DequantGeom<D>;
  __shared__ __align__(16) uint8_t s_in[G::kInBytes];
  __shared__ float s_out[G::kThreads * G::kStride];

  const int tid = threadIdx.x;
  const int64_t b0 = (int64_t)blockIdx.x * G::kThreads;
  const int nb = nblocks - b0 < G::kThreads ? (int)(nblocks - b0) : G::kThreads;
  const int nbytes = nb * D::kBytes;
  const uint8_t* in = src + b0 * D::kBytes;

  // 1. stage: whole 16-byte vectors while they fit, then the odd tail bytes of a partial last CTA.
  int done = 0;
  if (src_aligned16) {
    const int nvec = nbytes / 16;
    const uint4* in16 = reinterpret_cast<const uint4*>(in);
    uint4* s16 = reinterpret_cast<uint4*>(s_in);
    for (int v = tid; v < nvec; v += G::kThreads) s16[v] = __ldg(in16 + v);
    done = nvec * 16;
  }
  for (int i = done + tid; i < nbytes; i += G::kThreads) s_in[i] = __ldg(in + i);
  __syncthreads();

  // 2. dequantize one block per thread.
  if (tid < nb) D::run(s_in + tid * D::kBytes, s_out + tid * G::kStride);
  __syncthreads();

  // 3. coalesced write-out.
  const int nelem = nb * D::kBlock;
  const int64_t e0 = b0 * D::kBlock;
  for (int e = tid; e < nelem; e += G::kThreads) {
    const float v = s_out[(e / D::kBlock) * G::kStride + e % D::kBlock];
    if constexpr (sizeof(OutT) == 4) {
      store_out(dst, e0 + e, v);
    } else {
      store_out(dst, e0 + e, v, out_type);
    }
  }
}

template <class D>
void launch_dequant(const uint8_t* src, void* dst, int64_t nblocks, DType dt, cudaStream_t stream) {
  using G = DequantGeom<D>;
  const int64_t grid = ceil_div(nblocks, G::kThreads);
  PQ_CHECK(grid <= 0x7fffffff, "dequantize: ", nblocks, " blocks is too many for one launch");
  const bool aligned = (reinterpret_cast<uintptr_t>(src) & 15) == 0;
  if (dt == DType::F32) {
    dequant_kernel<D, float><<<(unsigned)grid, G::kThreads, 0, stream>>>(src, static_cast<float*>(dst), nblocks,
                                                                          aligned, dt);
  } else {
    dequant_kernel<D, uint16_t><<<(unsigned)grid, G::kThreads, 0, stream>>>(src, static_cast<uint16_t*>(dst),
                                                                             nblocks, aligned, dt);
  }
  check_launch("dequantize kernel");
}

DType parse_dtype(const std::string& s, const char* who) {
  if (s == "float32") return DType::F32;
  if (s == "float16") return DType::F16;
  if (s == "bfloat16") return DType::BF16;
  fail(who, ": unsupported output dtype '", s, "' (float32, float16 or bfloat16)");
}

}  // namespace

bool has_dequantizer(int qtype) {
  switch (qtype) {
#define PQ_CASE(T, fn, QK, TS) case (int)QType::T: return true;
    PQ_CUDA_DEQUANT_TYPES(PQ_CASE)
#undef PQ_CASE
    default: return false;
  }
}

std::vector<int> dequant_types() {
  std::vector<int> out;
#define PQ_ADD(T, fn, QK, TS) out.push_back((int)QType::T);
  PQ_CUDA_DEQUANT_TYPES(PQ_ADD)
#undef PQ_ADD
  return out;
}

std::vector<std::tuple<int, int, int>> dequant_geometry() {
  std::vector<std::tuple<int, int, int>> out;
#define PQ_ADD(T, fn, QK, TS) out.emplace_back((int)QType::T, QK, TS);
  PQ_CUDA_DEQUANT_TYPES(PQ_ADD)
#undef PQ_ADD
  return out;
}

void dequant_blocks_async(int qtype, const uint8_t* src, void* dst, int64_t nblocks, DType dt, cudaStream_t stream) {
  switch (qtype) {
#define PQ_CASE(T, fn, QK, TS) \
  case (int)QType::T: return launch_dequant<Dequant_##T>(src, dst, nblocks, dt, stream);
    PQ_CUDA_DEQUANT_TYPES(PQ_CASE)
#undef PQ_CASE
    default: fail("dequantize: no CUDA dequantizer for ggml type id ", qtype);
  }
}

void dequantize(int qtype, uintptr_t src_ptr, int64_t src_nbytes, uintptr_t dst_ptr, int64_t dst_nbytes,
            const std::string& dtype, int64_t rows, int64_t cols, uintptr_t stream) {
  const QTypeGeometry g = qtype_geometry(qtype);
  PQ_CHECK(g.block_size > 0, "dequantize: unknown ggml type id ", qtype);
  PQ_CHECK(has_dequantizer(qtype), "dequantize: no CUDA dequantizer for ggml type id ", qtype);
  const DType dt = parse_dtype(dtype, "dequantize");
  const int64_t esize = dt == DType::F32 ? 4 : 2;
  const DequantArgs a = check_dequant_args(g, rows, cols, src_nbytes, dst_nbytes, esize);
  const int64_t nb = a.blocks_per_row, need_src = a.src_bytes;
  if (rows == 0 || cols == 0) return;
  check_device_ptr(src_ptr, need_src, "dequantize: source");
  check_device_ptr(dst_ptr, rows * cols * esize, "dequantize: destination");
  PQ_CHECK(dst_ptr % esize == 0, "dequantize: destination is not aligned to its element size");
  dequant_blocks_async(qtype, reinterpret_cast<const uint8_t*>(src_ptr), reinterpret_cast<void*>(dst_ptr), rows * nb,
                      dt, as_stream(stream));
}

}  // namespace cuda
}  // namespace pq
