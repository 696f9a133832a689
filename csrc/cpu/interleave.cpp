// Kernels for row-interleaved weights (cpu/interleave.h): the 8-row kernels (M <= 16) and most
// small-m and GEMM-panel kernels read the layout in place (avx2/gemv_rows8_avx2.cpp, the X8 loaders
// of avx2/gemv_fused_avx2.cpp, avx2_unpacker_x8); what has no in-place reader (the scalar ISA's
// unpackers, Q4_K's m > 1 kernels) runs the plain type's kernel on the row gathered back into
// plain blocks in a thread-local buffer, the next group's slice prefetched meanwhile.
#include "cpu/interleave.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/qtypes.h"
#include "cpu/cpu_features.h"

namespace pq {
namespace mm {

namespace {

// Compile-time sizes: the copies become a few moves (a call to memcpy per 2 or 8 bytes made the
// gathered prefill GEMM ~7% slower than on plain rows).
template <int kH, int kQ, bool kLast>
void gather(const WeightRef& w, int64_t r, int64_t b0, int64_t b1, uint8_t* dst) {
  constexpr int64_t kTs = kH + kQ, kHdr = kLast ? kQ : 0, kQs = kLast ? 0 : kH;   // offsets in a plain block
  const int64_t l = r % 8;
  const uint8_t* grp = w.data + (r - l) * w.row_bytes;
  for (int64_t b = b0; b < b1; ++b, dst += kTs) {
    const uint8_t* src = grp + 8 * kTs * b;
    std::memcpy(dst + kHdr, src + kH * l, kH);
    const uint8_t* qs = src + 8 * kH + 8 * l;
    for (int c = 0; c < kQ / 8; ++c) std::memcpy(dst + kQs + 8 * c, qs + 64 * c, 8);
  }
}

template <int Q>
constexpr InterleaveSpec kSpec = {};
template <>
constexpr InterleaveSpec kSpec<(int)QType::Q4_0> = {2, 16, 32};   // d, qs[16]
template <>
constexpr InterleaveSpec kSpec<(int)QType::Q4_1> = {4, 16, 32};   // d, m, qs[16]
template <>
constexpr InterleaveSpec kSpec<(int)QType::Q4_K> = {16, 128, 256};   // d, dmin, scales[12], qs[128]
template <>
constexpr InterleaveSpec kSpec<(int)QType::Q6_K> = {18, 192, 256, true};   // ql[128], qh[64], then scales[16], d
template <>
constexpr InterleaveSpec kSpec<(int)QType::Q5_0> = {6, 16, 32};   // d, qh[4], qs[16]
template <>
constexpr InterleaveSpec kSpec<(int)QType::Q5_1> = {8, 16, 32};   // d, m, qh[4], qs[16]
template <>
constexpr InterleaveSpec kSpec<(int)QType::Q8_0> = {2, 32, 32};   // d, qs[32]
template <>
constexpr InterleaveSpec kSpec<kInt4> = {0, 16, 32};   // nibbles only: scales and mins are side arrays

// ---------------------------------------------------------------- EXL2 (cpu/exl2_blocks.h)
// A group-block is the 8 rows' d, then each payload unit (8-byte nibble / crumb units, 4-byte bit
// units) for rows 0..7 (pyquant/formats/exl2/native.py makes it). Blocks [b0, b1) of row r go
// back to plain blocks from dst on (block b at dst + its row offset - block b0's).
void exl2_gather(const WeightRef& w, int64_t r, int64_t b0, int64_t b1, uint8_t* dst) {
  const int64_t l = r % 8;
  const uint8_t* grp = w.data + (r - l) * w.row_bytes;
  for (int64_t b = b0; b < b1; ++b) {
    const int bits = w.block_bits[b];
    const uint8_t* u = grp + 8 * w.block_off[b];
    uint8_t* out = dst + (w.block_off[b] - w.block_off[b0]);
    std::memcpy(out, u + 2 * l, 2);
    u += 16;
    int o = 2;   // the payload's units in order: nibble units, a crumb unit, a bit unit
    const int nib = bits == 8 ? 32 : bits >= 4 ? 16 : 0;
    for (; o - 2 < nib; o += 8, u += 64) std::memcpy(out + o, u + 8 * l, 8);
    if (bits == 2 || bits == 3 || bits == 6) {
      std::memcpy(out + o, u + 8 * l, 8);
      o += 8;
      u += 64;
    }
    if (bits == 3 || bits == 5) std::memcpy(out + o, u + 4 * l, 4);
  }
}

template <int Q>
void gather_q(const WeightRef& w, int64_t r, int64_t b0, int64_t b1, uint8_t* dst) {
  if constexpr (Q == kExl2 || Q == kExl2Wide) exl2_gather(w, r, b0, b1, dst);
  else gather<kSpec<Q>.header, kSpec<Q>.quants, kSpec<Q>.last>(w, r, b0, b1, dst);
}

// The one list of types with a row-interleaved layout: f(std::integral_constant<int, Q>()) for
// Q == qtype; false when qtype has none.
template <typename F>
bool with_x8_type(int qtype, F f) {
  switch (qtype) {
    case (int)QType::Q4_0: f(std::integral_constant<int, (int)QType::Q4_0>()); return true;
    case (int)QType::Q4_1: f(std::integral_constant<int, (int)QType::Q4_1>()); return true;
    case (int)QType::Q4_K: f(std::integral_constant<int, (int)QType::Q4_K>()); return true;
    case (int)QType::Q6_K: f(std::integral_constant<int, (int)QType::Q6_K>()); return true;
    case (int)QType::Q5_0: f(std::integral_constant<int, (int)QType::Q5_0>()); return true;
    case (int)QType::Q5_1: f(std::integral_constant<int, (int)QType::Q5_1>()); return true;
    case (int)QType::Q8_0: f(std::integral_constant<int, (int)QType::Q8_0>()); return true;
    case kInt4: f(std::integral_constant<int, kInt4>()); return true;
    case kExl2: f(std::integral_constant<int, kExl2>()); return true;       // widths per block (no kSpec):
    case kExl2Wide: f(std::integral_constant<int, kExl2Wide>()); return true;   // gather_q -> exl2_gather
    default: return false;
  }
}

}  // namespace

bool has_x8_layout(int qtype) { return with_x8_type(qtype, [](auto) {}); }

void gather_blocks(const WeightRef& w, int64_t r, int64_t b0, int64_t b1, uint8_t* dst) {
  with_x8_type(w.qtype, [&](auto q) { gather_q<decltype(q)::value>(w, r, b0, b1, dst); });
}

namespace {

// int4's scales and mins of row r, groups [g0, g1), as plain arrays in v (stored [n/8][ng][8]).
void side_arrays(const WeightRef& w, int64_t r, int64_t g0, int64_t g1, WeightRef& v) {
  thread_local std::vector<float> sc, mn;
  if (sc.size() < (size_t)(g1 - g0)) sc.resize((size_t)(g1 - g0)), mn.resize((size_t)(g1 - g0));
  const int64_t ng = w.k / w.group_size, l = r % 8;
  const float* s = w.scales + (r - l) * ng + l;
  const float* m = w.mins + (r - l) * ng + l;
  for (int64_t g = g0; g < g1; ++g) sc[(size_t)(g - g0)] = s[8 * g], mn[(size_t)(g - g0)] = m[8 * g];
  v.scales = sc.data();
  v.mins = mn.data();
}

// Row r of w as a plain one-row WeightRef over this thread's buffer.
template <int Q>
WeightRef plain_row(const WeightRef& w, int64_t r) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < (size_t)w.row_bytes) buf.resize((size_t)w.row_bytes);
  gather_q<Q>(w, r, 0, w.k / kSpec<Q>.block, buf.data());
  // slice r % 8 of the next group: it arrives while this group's 8 rows run (see LLegacyX8)
  const uint8_t* next = w.data + (r - r % 8 + 8) * w.row_bytes + (r % 8) * w.row_bytes;
  for (int64_t o = 0; o < w.row_bytes; o += 64) __builtin_prefetch(next + o);
  WeightRef v = w;
  v.data = buf.data();
  v.interleave = 0;
  if (Q == kInt4) side_arrays(w, r, 0, w.k / w.group_size, v);
  return v;
}

// Type Q's 8-row kernel on this CPU: the VNNI build where present and enabled (bit-identical y),
// chosen per call so set_vnni switches it at once (one branch per 8 rows x K).
template <int Q>
void group8_of_cpu(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out) {
#ifdef PYQUANT_HAVE_VNNI_BUILD
  static const GemvGroup8Fn vnni = vnni_group8(Q);
  if (vnni_enabled()) return vnni(w, r0, x, mr, pair, out);
#endif
  static const GemvGroup8Fn avx2 = avx2_group8(Q);
  avx2(w, r0, x, mr, pair, out);
}

// Row r's blocks [b0, b1) gathered into this thread's row buffer, as a one-row plain weight.
WeightRef exl2_plain(const WeightRef& w, int64_t r, int64_t b0, int64_t b1) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < (size_t)w.row_bytes) buf.resize((size_t)w.row_bytes);
  exl2_gather(w, r, b0, b1, buf.data() + w.block_off[b0]);   // the blocks at their row offsets
  WeightRef v = w;
  v.data = buf.data();
  v.interleave = 0;
  return v;
}

template <int Q>
struct Through {
  // EXL2's mixed widths (both kernel variants) gather a row's blocks back to their own offsets
  // (exl2_plain); the fixed-geometry types to a row or a chunk range of plain blocks (kSpec).
  static constexpr bool kMixed = Q == kExl2 || Q == kExl2Wide;
  static const TypeInfo& plain() { return *type_info(Q); }
  static WeightRef row(const WeightRef& w, int64_t r) {
    if constexpr (kMixed) return exl2_plain(w, r, 0, w.k / 32);
    else return plain_row<Q>(w, r);
  }
  static void unpack(UnpackRowFn f, const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
    if constexpr (kMixed) f(exl2_plain(w, r, 8 * c0, std::min(w.k / 32, 8 * c1)), 0, c0, c1, out);
    else f(chunks(w, r, c0, c1), 0, 0, c1 - c0, out);
  }
  // Chunks [c0, c1) only: the GEMM panels ask for one chunk of a row at a time.
  static WeightRef chunks(const WeightRef& w, int64_t r, int64_t c0, int64_t c1) {
    thread_local std::vector<uint8_t> buf;
    constexpr InterleaveSpec sp = kSpec<Q>;
    const int64_t per = kChunk / sp.block, nb = w.k / sp.block;
    const int64_t b0 = std::min(nb, c0 * per), b1 = std::min(nb, c1 * per);
    const size_t need = (size_t)((b1 - b0) * (sp.header + sp.quants));
    if (buf.size() < need + 1) buf.resize(need + 1);
    gather_q<Q>(w, r, b0, b1, buf.data());
    WeightRef v = w;
    v.data = buf.data();
    v.interleave = 0;
    v.k = std::min(w.k, c1 * kChunk) - c0 * kChunk;
    v.row_bytes = (int64_t)need;
    if (Q == kInt4) side_arrays(w, r, c0 * kChunk / w.group_size, (c0 * kChunk + v.k) / w.group_size, v);
    return v;
  }
  static void unpack_scalar(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
    unpack(plain().unpack_scalar, w, r, c0, c1, out);
  }
  static void unpack_avx2(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out) {
    unpack(plain().unpack_avx2, w, r, c0, c1, out);
  }
  static void fused(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out) {
    plain().fused_avx2(row(w, r), 0, x, mr, out);
  }
  static void fused8(const WeightRef& w, int64_t r, const XQ8& x, float* out) {
    plain().fused8_avx2(row(w, r), 0, x, out);
  }
  static void pair(const WeightRef& w, int64_t r, const XQRow* x, float* out) {
    plain().fused_pair_avx2(row(w, r), 0, x, out);
  }
  static TypeInfo make() {
    TypeInfo t = plain();
    t.unpack_scalar = unpack_scalar;
    if (t.unpack_avx2) t.unpack_avx2 = avx2_unpacker_x8(Q) ? avx2_unpacker_x8(Q) : unpack_avx2;
    const X8Kernels in_place = avx2_fused_x8(Q);   // else through a gathered copy of the row
    if (t.fused_avx2) t.fused_avx2 = in_place.fused ? in_place.fused : fused;
    if (t.fused8_avx2) t.fused8_avx2 = in_place.fused8 ? in_place.fused8 : fused8;
    if (t.fused_pair_avx2) t.fused_pair_avx2 = in_place.pair ? in_place.pair : pair;
    t.group8_avx2 = avx2_group8(Q) ? group8_of_cpu<Q> : nullptr;
    return t;
  }
};

}  // namespace

const TypeInfo* type_info(const WeightRef& w) {
  if (!w.interleave) return type_info(w.qtype);
  const TypeInfo* ti = nullptr;
  with_x8_type(w.qtype, [&](auto q) {
    static const TypeInfo x8 = Through<decltype(q)::value>::make();   // one per type, made once
    ti = &x8;
  });
  return ti;
}

}  // namespace mm
}  // namespace pq
