// Block decode (dequantization) on the CPU: one function per (ggml type, ISA), registered in a
// table by the decode_*.cpp files. The per-block arithmetic itself lives in csrc/common/decode_*.h
// so the CUDA kernels run exactly the same code.
#pragma once
#include <cstdint>

namespace pq {

// Decodes `nblocks` consecutive blocks from src into nblocks * block_size floats at dst.
using DecodeBlocksFn = void (*)(const uint8_t* src, float* dst, int64_t nblocks);

// Called from static initialisers in the decode_*.cpp files. avx2 may be nullptr.
bool register_decode_kernel(int qtype, DecodeBlocksFn scalar, DecodeBlocksFn avx2);

// The kernel for the active ISA (falls back to scalar), or nullptr if the type has no decoder.
DecodeBlocksFn decode_kernel(int qtype);
bool has_decoder(int qtype);

// Single-threaded: decode nrows rows of ncols elements (ncols a multiple of the block size,
// already validated) into dst, row-major. For use inside other kernels (e.g. GEMM panels).
void decode_rows(int qtype, const uint8_t* src, float* dst, int64_t nrows, int64_t ncols);

}  // namespace pq
