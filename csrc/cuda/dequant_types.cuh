// The ggml block types the CUDA dequantize kernel handles, as functors over the shared host+device
// block dequantizers of csrc/common/dequant_*.h (so the arithmetic the GPU runs is the one the CPU
// tests check bit for bit against gguf-py).
//
// X(TYPE, fn_suffix, block_size, type_size) for every ggml type with a block dequantizer
// (tests/test_cuda_build.py checks the geometry against the registry and the dequantizers against gguf-py).
#pragma once
#include <cstdint>

#include "common/macros.h"
#include "common/qtypes.h"

#include "common/dequant_legacy.h"
#define PQ_CUDA_LEGACY_TYPES(X) X(Q4_0, q4_0, 32, 18) X(Q4_1, q4_1, 32, 20) X(Q5_0, q5_0, 32, 22) X(Q5_1, q5_1, 32, 24) X(Q8_0, q8_0, 32, 34) X(Q8_1, q8_1, 32, 40)

#include "common/dequant_kquants.h"
#define PQ_CUDA_KQUANT_TYPES(X) X(Q2_K, q2_k, 256, 84) X(Q3_K, q3_k, 256, 110) X(Q4_K, q4_k, 256, 144) X(Q5_K, q5_k, 256, 176) X(Q6_K, q6_k, 256, 210) X(Q8_K, q8_k, 256, 292)

#include "common/dequant_misc.h"
#define PQ_CUDA_MISC_TYPES(X) X(TQ1_0, tq1_0, 256, 54) X(TQ2_0, tq2_0, 256, 66) X(MXFP4, mxfp4, 32, 17) X(NVFP4, nvfp4, 64, 36)

#include "common/dequant_iquants.h"
#define PQ_CUDA_IQUANT_TYPES(X)                                                                   \
  X(IQ2_XXS, iq2_xxs, 256, 66) X(IQ2_XS, iq2_xs, 256, 74) X(IQ2_S, iq2_s, 256, 82) X(IQ3_XXS, iq3_xxs, 256, 98) X(IQ3_S, iq3_s, 256, 110)      \
  X(IQ1_S, iq1_s, 256, 50) X(IQ1_M, iq1_m, 256, 56) X(IQ4_NL, iq4_nl, 32, 18) X(IQ4_XS, iq4_xs, 256, 136)

#define PQ_CUDA_DEQUANT_TYPES(X) PQ_CUDA_LEGACY_TYPES(X) PQ_CUDA_KQUANT_TYPES(X) PQ_CUDA_MISC_TYPES(X) PQ_CUDA_IQUANT_TYPES(X)

namespace pq {
namespace cuda {

// One functor per type: geometry as compile-time constants + the shared block dequantizer.
#define PQ_CUDA_DEFINE_DEQUANTIZER(T, fn, QK, TS)                                                     \
  struct Dequant_##T {                                                                     \
    static constexpr int kQType = (int)QType::T;                                          \
    static constexpr int kBlock = QK;               \
    static constexpr int kBytes = TS;               \
    static __device__ __forceinline__ void run(const uint8_t* blk, float* y) {            \
      dequant_block_##fn(blk, y);                                                          \
    }                                                                                     \
  };
PQ_CUDA_DEQUANT_TYPES(PQ_CUDA_DEFINE_DEQUANTIZER)
#undef PQ_CUDA_DEFINE_DEQUANTIZER

}  // namespace cuda
}  // namespace pq
