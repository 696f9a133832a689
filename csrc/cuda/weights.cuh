// Weight formats seen by the fused matmul kernels: how a 64-chunk segment of one weight row is
// laid out and how one 32-weight chunk of it dequantizes (see chunk_dequant.cuh for the (q, scale,
// min) split). GGUF types: a segment is whole blocks; pyquant int4 / int8: a segment is 1024 /
// 2048 bytes of the packed row, with scales (and mins) in separate float32 arrays.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/chunk_dequant.cuh"

// The GGUF types with a GEMV (a chunk dequantizer in chunk_dequant.cuh).
#define PQ_GEMV_GGUF_TYPES(X) \
  X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(Q8_0) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K) X(IQ4_NL) X(IQ4_XS)

namespace pq {
namespace cuda {

enum class WeightKind : int { Gguf = 0, Int4 = 1, Int8 = 2 };

// Everything a matmul kernel needs, validated on the host (matmul.cpp) before a launch.
struct GemvArgs {
  const uint8_t* w;      // n rows of row_bytes
  int64_t row_bytes;
  int64_t n, k, m;
  const void* x;         // [m, k], 16-byte aligned
  void* y;               // [m, n]
  const float* bias;     // [n] or nullptr
  const float* scales;   // int4: [n, k / group_size]; int8: [n]
  const float* mins;     // int4: [n, k / group_size]
  int group_size;        // int4
  bool aligned16;        // w and row_bytes are multiples of 16: vector staging
};

#if defined(__CUDACC__)  // the device-side policies
template <class C>
struct WGguf {
  static constexpr int kChunksPerBlock = C::kBlock / 32;
  static constexpr int kSegBytes = 64 / kChunksPerBlock * C::kBytes;
  static constexpr int kHasMin = C::kHasMin;
  __device__ __forceinline__ static void dequant(const uint8_t* seg, int c, int64_t, int64_t, const GemvArgs&,
                                                float* q, chunk::ScaleMin* sm) {
    C::run(seg + (c / kChunksPerBlock) * C::kBytes, c % kChunksPerBlock, q, sm);
  }
};

// int4: inside each run of 32 weights, byte j = element j (low nibble) | element j+16 (high).
struct WInt4 {
  static constexpr int kSegBytes = 64 * 16;
  static constexpr int kHasMin = 1;
  __device__ __forceinline__ static void dequant(const uint8_t* seg, int c, int64_t k0, int64_t row,
                                                const GemvArgs& a, float* q, chunk::ScaleMin* sm) {
    const uint8_t* b = seg + c * 16;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      q[j] = chunk::u2f(b[j] & 15u);
      q[j + 16] = chunk::u2f(b[j] >> 4);
    }
    const int64_t gi = row * (a.k / a.group_size) + k0 / a.group_size;
    sm[0] = sm[1] = {__ldg(a.scales + gi), __ldg(a.mins + gi)};
  }
};

struct WInt8 {
  static constexpr int kSegBytes = 64 * 32;
  static constexpr int kHasMin = 0;
  __device__ __forceinline__ static void dequant(const uint8_t* seg, int c, int64_t, int64_t row,
                                                const GemvArgs& a, float* q, chunk::ScaleMin* sm) {
    const uint8_t* b = seg + c * 32;
#pragma unroll
    for (int j = 0; j < 32; ++j) q[j] = chunk::u2f_minus((uint32_t)(b[j] ^ 0x80u), 128.0f);
    const float s = __ldg(a.scales + row);
    sm[0] = sm[1] = {s, 0.0f};
  }
};

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace pq
