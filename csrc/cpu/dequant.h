// Block dequantization on the CPU: one function per (ggml type, ISA), registered in a
// table by the dequant_*.cpp files. The per-block arithmetic itself lives in csrc/common/dequant_*.h
// so the CUDA kernels run exactly the same code.
#pragma once
#include <cstdint>

namespace pq {

// Dequantizes `nblocks` consecutive blocks from src into nblocks * block_size floats at dst.
using DequantBlocksFn = void (*)(const uint8_t* src, float* dst, int64_t nblocks);

// Called from static initialisers in the dequant_*.cpp files. avx2 may be nullptr.
bool register_dequant_kernel(int qtype, DequantBlocksFn scalar, DequantBlocksFn avx2);

// The kernel for the active ISA (falls back to scalar), or nullptr if the type has no dequantizer.
DequantBlocksFn dequant_kernel(int qtype);
bool has_dequantizer(int qtype);

// Single-threaded: dequantize nrows rows of ncols elements (ncols a multiple of the block size,
// already validated) into dst, row-major. For use inside other kernels (e.g. GEMM panels).
void dequant_rows(int qtype, const uint8_t* src, float* dst, int64_t nrows, int64_t ncols);

}  // namespace pq
