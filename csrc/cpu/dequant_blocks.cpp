// Scalar (portable) dequantizers for the legacy, k-quant, ternary and fp4 types: each one loops the
// shared per-block function of csrc/common over n blocks. The AVX2 versions, where they exist,
// are registered beside them (csrc/cpu/avx2/dequant_avx2.cpp) and must give the same bits.
#include "common/dequant_kquants.h"
#include "common/dequant_legacy.h"
#include "common/dequant_misc.h"
#include "common/qtypes.h"
#include "cpu/dequant.h"
#include "cpu/dequant_kernels.h"

namespace pq {
namespace {

template <void (*Block)(const uint8_t*, float*), int BlockSize, int TypeSize>
void dequant_blocks(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) Block(src + i * TypeSize, dst + i * BlockSize);
}

// Registers the scalar loop (geometry checked against the registry at load time) and the AVX2 kernel.
template <void (*Block)(const uint8_t*, float*), int BlockSize, int TypeSize>
bool add(QType t) {
  const QTypeGeometry g = qtype_geometry((int)t);
  if (g.block_size != BlockSize || g.type_size != TypeSize) return false;
  return register_dequant_kernel((int)t, dequant_blocks<Block, BlockSize, TypeSize>, avx2_dequantizer(t));
}

#define PQ_REGISTER(T, fn, QK, TS) add<fn, QK, TS>(QType::T)

// Each entry independent: one failed registration (a geometry mismatch) must not skip the rest;
// tests/test_dequantize.py then reports the type as undecodable.
const bool registered[] = {
    PQ_REGISTER(Q4_0, dequant_block_q4_0, 32, 18),
    PQ_REGISTER(Q4_1, dequant_block_q4_1, 32, 20),
    PQ_REGISTER(Q5_0, dequant_block_q5_0, 32, 22),
    PQ_REGISTER(Q5_1, dequant_block_q5_1, 32, 24),
    PQ_REGISTER(Q8_0, dequant_block_q8_0, 32, 34),
    PQ_REGISTER(Q8_1, dequant_block_q8_1, 32, 40),
    PQ_REGISTER(Q2_K, dequant_block_q2_k, 256, 84),
    PQ_REGISTER(Q3_K, dequant_block_q3_k, 256, 110),
    PQ_REGISTER(Q4_K, dequant_block_q4_k, 256, 144),
    PQ_REGISTER(Q5_K, dequant_block_q5_k, 256, 176),
    PQ_REGISTER(Q6_K, dequant_block_q6_k, 256, 210),
    PQ_REGISTER(Q8_K, dequant_block_q8_k, 256, 292),
    PQ_REGISTER(TQ1_0, dequant_block_tq1_0, 256, 54),
    PQ_REGISTER(TQ2_0, dequant_block_tq2_0, 256, 66),
    PQ_REGISTER(MXFP4, dequant_block_mxfp4, 32, 17),
    PQ_REGISTER(NVFP4, dequant_block_nvfp4, 64, 36),
};

}  // namespace
}  // namespace pq
