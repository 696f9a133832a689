// keep(v): the value, pinned in a register at this point. GCC re-associates integer running sums
// (the int16 vpmaddubsw sums of the int8 GEMM's panel_units and of the 8-row GEMV's int8x2 pairs)
// into trees of stored products, whose partial sums spill to the stack: ~2x slower in the GEMM,
// 52.7 against 31.7 cycles a Q4_K sub-block pair in the GEMV (llvm-mca, znver3). Costs no
// instruction. In an anonymous namespace, like the other AVX2 helpers: internal linkage only.
#pragma once
#include <immintrin.h>

namespace pq {
namespace mm {
namespace {

inline __m256i keep(__m256i v) {
  asm("" : "+x"(v));
  return v;
}

}  // namespace
}  // namespace mm
}  // namespace pq
