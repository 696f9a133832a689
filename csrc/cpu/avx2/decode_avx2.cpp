// AVX2 decoders (placeholder until the vector kernels land).
#include "cpu/decode_kernels.h"

namespace pq {
DecodeBlocksFn avx2_decoder(QType) { return nullptr; }
}  // namespace pq
