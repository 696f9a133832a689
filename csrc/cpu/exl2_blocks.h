// EXL2's mixed-width weights as the CPU kernels store them: every output row is a run of 32-blocks
// along (act-order) k, block j holding 32 values of block_bits[j] bits, with the widths shared by
// all rows (they come from the Linear's groups). What an EXL2 file holds maps onto it exactly:
// a value is (q - 2^(b-1)) * s with one fp16 scale s per (group, output row) and groups of whole
// 32-blocks, so each block is   w[i] = d * (q[i] - 2^(b-1)),  d = the group's fp16 scale.
//
// Block of b bits: fp16 d, then 4 b bytes of q in up to three parts, each laid out so that one
// AVX2 shift-and-mask spreads it over 32 byte lanes (avx2/exl2_decode.h):
//   nibbles (b >= 4; 16 bytes): byte i holds bits 0-3 of q[i] (low nibble) and of q[i + 16] (high),
//            ggml's Q4 order; b = 8 has a second such part for bits 4-7
//   crumbs  (b = 2, 3, 6; 8 bytes): byte i holds 2 bits of q[i], q[i + 8], q[i + 16], q[i + 24] at bits
//            0-1, 2-3, 4-5, 6-7: bits 0-1 of q for b = 2, 3; bits 4-5 for b = 6
//   bits    (b = 3, 5; 4 bytes): byte m holds bit 2 (b = 3) or 4 (b = 5) of q[m], q[m + 4], .. q[m + 28]
//            at bits 0..7 (q[i]'s at byte i % 4, bit i / 4: a per-dword variable shift spreads them)
// Every part is whole 8-byte (nibbles, crumbs) or 4-byte (bits) units of one row, which the
// row-interleaved layout (8 rows per group, cpu/interleave.h) stores unit by unit, rows 0..7
// side by side, so the 8-row kernel splits each part for 4 rows with one load.
// So a block reads b + 0.5 bits a weight (EXL2's own scales cost it ~0.03-0.13: the price of a
// per-block scale the 32-block kernels take as they take Q4_0's). pyquant/formats/exl2/native.py
// packs it; kernels/reference/matmul.py decodes it in torch.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

static inline bool exl2_bits_ok(int b) { return b == 2 || b == 3 || b == 4 || b == 5 || b == 6 || b == 8; }

// f(std::integral_constant<int, b>()) for a block width b checked by exl2_bits_ok (8 for any other):
// the one switch from a width to the kernels' per-width templates.
template <typename F>
static inline void with_exl2_width(int b, F&& f) {
  switch (b) {
    case 2: f(std::integral_constant<int, 2>()); return;
    case 3: f(std::integral_constant<int, 3>()); return;
    case 4: f(std::integral_constant<int, 4>()); return;
    case 5: f(std::integral_constant<int, 5>()); return;
    case 6: f(std::integral_constant<int, 6>()); return;
    default: f(std::integral_constant<int, 8>()); return;
  }
}
static inline int exl2_block_bytes(int b) { return 2 + 4 * b; }

// The 32 unsigned values q of a block of b bits whose payload (past d) starts at p.
static inline void exl2_block_values(const uint8_t* p, int b, uint8_t* q) {
  if (b >= 4) {
    for (int i = 0; i < 16; ++i) { q[i] = p[i] & 15; q[i + 16] = p[i] >> 4; }
    p += 16;
    if (b == 8) {
      for (int i = 0; i < 16; ++i) { q[i] = (uint8_t)(q[i] | (p[i] & 15) << 4); q[i + 16] = (uint8_t)(q[i + 16] | (p[i] >> 4) << 4); }
      return;
    }
  } else {
    for (int i = 0; i < 32; ++i) q[i] = 0;
  }
  if (b == 2 || b == 3 || b == 6) {
    const int sh = b == 6 ? 4 : 0;
    for (int i = 0; i < 32; ++i) q[i] = (uint8_t)(q[i] | (((p[i & 7] >> (2 * (i >> 3))) & 3) << sh));
    p += 8;
  }
  if (b == 3 || b == 5) {
    const int sh = b == 3 ? 2 : 4;
    for (int i = 0; i < 32; ++i) q[i] = (uint8_t)(q[i] | (((p[i % 4] >> (i / 4)) & 1) << sh));
  }
}

// The blocks of chunks [c0, c1) of row r into UChunks (the scalar and AVX2 unpackers share this
// walk and differ in `block`): block(b, blk, l, q) writes the 32 q of the block at blk (kSigned:
// q - 2^(b-1)) and returns its d; a = d, b = -2^(b-1) d for unsigned q. kX8: rows interleaved by
// 8 (cpu/interleave.h), blk is the block's group-block and l the row's place in the group (row l's
// d at blk + 2 l, its payload units as exl2_gather reads them); plain rows: l = 0.
template <bool kSigned, bool kX8 = false, typename Block>
static inline void exl2_unpack_row(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out, Block block) {
  const int l = kX8 ? (int)(r % 8) : 0;
  const uint8_t* base = w.data + (r - l) * w.row_bytes;   // the row, or its group of 8
  const int64_t b1 = std::min<int64_t>(w.k / 32, 8 * c1);
  for (int64_t bi = 8 * c0; bi < b1; ++bi) {
    UChunk& u = out[bi / 8 - c0];
    const int j = (int)(bi % 8), bits = w.block_bits[bi];
    const float d = block(bits, base + (kX8 ? 8 : 1) * w.block_off[bi], l, u.q + 32 * j);
    u.a[j] = d;
    u.b[j] = kSigned ? 0.f : -(float)(1 << (bits - 1)) * d;
  }
  if (c1 == n_chunks(w.k)) clear_tail(out[c1 - 1 - c0], w.k, Kind::X32);
}

}  // namespace mm
}  // namespace pq
