// Weight formats seen by the fused matmul kernels: how a 64-chunk segment of one weight row is
// laid out and how one 32-weight chunk of it dequantizes (see chunk_dequant.cuh for the (q, scale,
// min) split). GGUF types: a segment is whole blocks; pyquant int4 / int8: a segment is 1024 /
// 2048 bytes of the packed row, with scales (and mins) in separate float32 arrays; EXL2: 64 blocks
// of their own widths, so a segment's bytes come from the Linear's block offset table (WExl2).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/chunk_dequant.cuh"

// The GGUF types with a GEMV (a chunk dequantizer in chunk_dequant.cuh).
#define PQ_GEMV_GGUF_TYPES(X) \
  X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(Q8_0) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K) X(IQ4_NL) X(IQ4_XS)

namespace pq {
namespace cuda {

enum class WeightKind : int { Gguf = 0, Int4 = 1, Int8 = 2, Exl2 = 3 };

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
  const uint8_t* block_bits;  // EXL2: [k / 32] widths
  const int32_t* block_off;   // EXL2: [k / 32 + 1] byte offset of each block in a row, then row_bytes
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

// EXL2: a segment is 64 blocks of mixed widths at the offsets of a.block_off. The warp stages it
// with 32-bit loads from its first byte rounded down to 4 (the weight buffer is 4-byte aligned:
// matmul.cpp), and each chunk finds its block at its offset from there. The tables are device
// memory the host cannot read without a sync, so every offset and width is checked here: a forged
// table gives NaN outputs, never a read outside the row.
struct WExl2 {
  static constexpr int kMaxSegBytes = 64 * 34;           // 64 8-bit blocks
  static constexpr int kSegBytes = kMaxSegBytes + 16;    // + the alignment slack at both ends
  static constexpr int kHasMin = 0;
  // [first, end) byte of segment s in a row, clamped into the row and to kMaxSegBytes
  __device__ __forceinline__ static void seg_range(const GemvArgs& a, int64_t s, int64_t& b0, int64_t& b1) {
    const int64_t nb = a.k / 32, c0 = s * 64, c1 = c0 + 64 < nb ? c0 + 64 : nb;
    b0 = __ldg(a.block_off + c0);
    b1 = __ldg(a.block_off + c1);
    b0 = b0 < 0 ? 0 : b0 > a.row_bytes ? a.row_bytes : b0;
    b1 = b1 < b0 ? b0 : b1 > a.row_bytes ? a.row_bytes : b1;
    if (b1 - b0 > kMaxSegBytes) b1 = b0 + kMaxSegBytes;
  }
  __device__ __forceinline__ static const uint8_t* aligned_down(const uint8_t* p) {
    return reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(p) & ~(uintptr_t)3);
  }
  __device__ static void stage(uint8_t* seg, const uint8_t* wrow, int64_t s, const GemvArgs& a, int lane) {
    int64_t b0, b1;
    seg_range(a, s, b0, b1);
    const uint8_t* first = aligned_down(wrow + b0);
    const uint8_t* end = wrow + b1;                       // the words up to it; past the buffer's
    const uint8_t* buf_end = a.w + a.n * a.row_bytes;     // end, bytes one by one
    const int nw = (int)((end - first + 3) / 4);
    for (int i = lane; i < nw; i += 32) {
      const uint8_t* p = first + 4 * i;
      if (p + 4 <= buf_end) {
        reinterpret_cast<uint32_t*>(seg)[i] = __ldg(reinterpret_cast<const uint32_t*>(p));
      } else {
        for (int j = 0; j < 4; ++j) seg[4 * i + j] = p + j < buf_end ? __ldg(p + j) : 0;
      }
    }
  }
  __device__ __forceinline__ static void dequant(const uint8_t* seg, int, int64_t k0, int64_t row, const GemvArgs& a,
                                                float* q, chunk::ScaleMin* sm) {
    const int64_t c = k0 / 32;
    int64_t b0, b1;
    seg_range(a, c / 64, b0, b1);
    const uint8_t* wrow = a.w + row * a.row_bytes;
    const int64_t lead = (wrow + b0) - aligned_down(wrow + b0);   // staged bytes before the first block
    const int bits = __ldg(a.block_bits + c);
    const int64_t at = __ldg(a.block_off + c) - b0 + lead;       // the block inside the staged bytes
    if (!chunk::Exl2::valid(bits) || at < lead || at + chunk::Exl2::block_bytes(bits) > lead + (b1 - b0)) {
      for (int j = 0; j < 32; ++j) q[j] = __int_as_float(0x7fc00000);   // a forged table: NaN
      sm[0] = sm[1] = {1.0f, 0.0f};
      return;
    }
    chunk::Exl2::run(seg + at, bits, q, sm);
  }
};

// Whether a weight policy stages its segments itself (W::stage) instead of the fixed-size copy.
template <class W, class = void>
struct OwnStaging : std::false_type {};
template <class W>
struct OwnStaging<W, std::void_t<decltype(&W::stage)>> : std::true_type {};
static_assert(OwnStaging<WExl2>::value && !OwnStaging<WInt4>::value, "staging detection");

#endif  // __CUDACC__

}  // namespace cuda
}  // namespace pq
