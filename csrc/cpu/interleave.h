// Row-interleaved weight layout ("x8"): what the small-M kernels read fastest.
//
// A row-by-row GGUF weight makes an M = 1 kernel pay, per row and block, for the block's scale
// (8 scalar fp16 loads + inserts per 8 blocks), a 16-byte broadcast + shift to split nibbles, one
// cvt + FMA, and a horizontal sum at the row's end. Stored in groups of 8 rows, block by block,
// one 32-byte load holds 8 bytes of 4 rows, the 8 rows' scales are one 16-byte vcvtph2ps, and
// one cvt + FMA serves 8 rows (llama.cpp's q4_0 8x8 repack does the same; bytes are not XORed).
//
// Layout: rows [8g, 8g+8) of a weight with row_bytes = nb * ts (ts = header + quants bytes of
// one block) occupy the same 8 * row_bytes bytes as before, as nb group-blocks of 8 * ts bytes:
//   [header of row 0 .. header of row 7][quants chunk 0 of rows 0..7][chunk 1 of rows 0..7]...
// where a chunk is 8 consecutive bytes of the block's quants (block bytes header + 8c ..
// header + 8c + 7; Q6_K, whose scales and d follow its quants: bytes 8c .. 8c + 7). A weight is
// interleaved only when n % 8 == 0, so every row has a group.
// pyquant/kernels/cpu/interleave.py makes and undoes the same permutation with torch.
#pragma once
#include <cstdint>

#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

struct InterleaveSpec {
  int header = 0;   // bytes per block of scales (and mins): before its quants, or after them (last)
  int quants = 0;   // quant bytes per block (a multiple of 8); 0: no interleaved layout
  int block = 0;    // weights per block
  bool last = false;   // the header follows the quants in the plain block (Q6_K: ql, qh, scales, d);
                       // interleaved, the 8 rows' headers still come first
};
// Whether qtype has a row-interleaved layout (with_x8_type's list: the kSpec types and EXL2).
bool has_x8_layout(int qtype);

// Blocks [b0, b1) of row r of an interleaved weight, in the plain block layout, into dst.
void gather_blocks(const WeightRef& w, int64_t r, int64_t b0, int64_t b1, uint8_t* dst);

// The AVX2 kernels that read the layout in place (nullptr where a type has none):
UnpackRowFn avx2_unpacker_x8(int qtype);   // avx2/gemv_unpack_avx2.cpp
GemvGroup8Fn avx2_group8(int qtype);       // avx2/gemv_rows8_avx2.cpp: the 8-row kernels, M <= 16
GemvGroup8Fn vnni_group8(int qtype);       // the same built for AVX-512 VNNI (vnni/; PYQUANT_HAVE_VNNI_BUILD)
struct X8Kernels {
  GemvFusedFn fused = nullptr;
  GemvFused8Fn fused8 = nullptr;
  GemvPairFn pair = nullptr;
};
X8Kernels avx2_fused_x8(int qtype);        // avx2/gemv_fused_avx2.cpp: the small-m kernels

}  // namespace mm
}  // namespace pq
