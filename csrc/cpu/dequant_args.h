// The size checks of one dequantize call (rows x cols elements of a ggml type, from src_nbytes of
// blocks into dst_nbytes of esize-byte elements), shared by the CPU driver (cpu/dequant.cpp) and
// the CUDA launcher (cuda/dequant.cu): overflow-safe, so a forged shape cannot wrap around.
#pragma once

#include <cstdint>

#include "common/qtypes.h"
#include "cpu/error.h"

namespace pq {

struct DequantArgs {
  int64_t blocks_per_row, src_bytes, dst_bytes;
};

inline DequantArgs check_dequant_args(const QTypeGeometry& g, int64_t rows, int64_t cols, int64_t src_nbytes,
                                      int64_t dst_nbytes, int64_t esize) {
  PQ_CHECK(rows >= 0 && cols >= 0, "dequantize: negative shape (", rows, ", ", cols, ")");
  PQ_CHECK(cols % g.block_size == 0, "dequantize: row length ", cols, " is not a multiple of the block size ",
           g.block_size);
  const int64_t nb = cols / g.block_size;
  PQ_CHECK(nb == 0 || rows <= INT64_MAX / nb / g.type_size, "dequantize: shape (", rows, ", ", cols, ") overflows");
  const int64_t need_src = rows * nb * g.type_size;
  PQ_CHECK(src_nbytes >= need_src, "dequantize: source has ", src_nbytes, " bytes, shape (", rows, ", ", cols,
           ") needs ", need_src);
  PQ_CHECK(cols == 0 || rows <= INT64_MAX / cols / esize, "dequantize: output shape overflows");
  PQ_CHECK(dst_nbytes >= rows * cols * esize, "dequantize: destination has ", dst_nbytes, " bytes, needs ",
           rows * cols * esize);
  return {nb, need_src, rows * cols * esize};
}

}  // namespace pq
