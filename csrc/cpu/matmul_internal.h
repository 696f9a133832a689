// Internal interface of the CPU mat-mul (y[m, n] = x[m, k] @ W[n, k].T).
//
// Every quantized weight row is first "unpacked" 256 elements at a time into a UChunk: small
// integers q plus the scales that turn them back into floats. The per-type work is only the
// unpacking (matmul_unpack_scalar.cpp, avx2/gemv_unpack_avx2.cpp); the dot products, the
// activation-quantized (int8) path, the float path and the GEMM panel decode are generic over it.
//
// Two unpacked kinds, matching the two activation formats (act_quant.h):
//  * X32  (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL int4 int8): per 32 elements  w = a[j] * q + b[j];
//         dotted with activations quantized per 32 (scale d, and s = d * sum(q) for the b term).
//  * X256 (Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS): per 16 elements  w = d * sc[g] * q - dmin * mn[g]
//         with integer sc/mn, dotted with activations quantized per 256 (one scale, int16 sums
//         per 16 "bsums"): the whole super-block accumulates in int32 and costs one float FMA.
// q is unsigned (0..63) for most types so that `vpmaddubsw(q, x)` applies directly, with the
// offset moved into b / mn; types whose q is signed (Q8_0, IQ4_NL, IQ4_XS, int8) set `signed_q`
// and the AVX2 dot uses the sign trick (|q| as u8, x * sign(q) as s8).
#pragma once
#include <cstdint>
#include <functional>

namespace pq {
namespace mm {

constexpr int kChunk = 256;  // elements per UChunk; activation rows are zero-padded to a multiple

enum class Kind { X32, X256, Float };

struct alignas(32) UChunk {
  int8_t q[kChunk];
  int16_t scx[8][16];  // X256, AVX2: per 32-chunk j: 8 x sc[2j] then 8 x sc[2j+1] (vpmaddwd operand)
  int16_t sc[16];      // X256: per-16 integer scale
  int16_t mn[16];      // X256: per-16 integer offset multiplier (w -= dmin * mn)
  float a[8], b[8];    // X32: per-32 float scale and offset
  float d, dmin;       // X256
};

// A run of EXL2 blocks of one width along k (cpu/exl2_blocks.h): the fused kernels take a row run
// by run, each a fixed-stride row of blocks.
struct Exl2Run {
  int64_t block0, nblocks, byte0;   // first block, blocks, byte offset inside a row
  int bits;
};

// Where the weight lives. For GGUF types only `data`/`row_bytes`; int4 adds scales/mins per
// group, int8 a per-row scale.
struct WeightRef {
  int qtype;  // ggml id, or kInt4 / kInt8 below
  const uint8_t* data;
  int64_t row_bytes;
  int64_t k;
  const float* scales = nullptr;  // int4: [n, k/gs]; int8: [n]
  const float* mins = nullptr;    // int4: [n, k/gs]
  int group_size = 0;             // int4
  int interleave = 0;             // 8: rows stored in groups of 8 (cpu/interleave.h); 0: row by row
  const uint8_t* block_bits = nullptr;  // EXL2: bit width of each 32-block along k ([k/32], cpu/exl2_blocks.h)
  const int64_t* block_off = nullptr;   // EXL2: byte offset of each 32-block inside a row ([k/32 + 1])
  const Exl2Run* runs = nullptr;        // EXL2: the runs of equal widths, in k order
  int n_runs = 0;
};
constexpr int kInt4 = 1000;
constexpr int kInt8 = 1001;
// EXL2's mixed-width 32-blocks (cpu/exl2_blocks.h). Two kernel variants of one stored format, which
// _C.Weight picks from the widths present: kExl2 when every block has <= 5 bits (q unsigned, so the
// maddubs dot and the int8 GEMM take it as they take Q5_0), kExl2Wide when a 6- or 8-bit block is
// present (q - 2^(b-1) signed, the sign-trick dot; the int8 GEMM takes it as it takes Q8_0: the VNNI
// build always, AVX2 with one int8 pass, |q| against sign(x, q), each vpmaddubsw to int32 at once).
constexpr int kExl2 = 1002;
constexpr int kExl2Wide = 1003;

// Unpacks chunks [c0, c1) of row `r` into out[0 .. c1-c0); past k the last chunk is zero
// (q = a = b = 0; K-quant rows always end on a chunk).
using UnpackRowFn = void (*)(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, UChunk* out);

struct XQRow;
struct XQ8;
// Fused AVX2 GEMV of row r with mr (1..4) quantized activation rows (no UChunk round trip).
using GemvFusedFn = void (*)(const WeightRef& w, int64_t r, const XQRow* x, int mr, float* out);
// Fused AVX2 GEMV of row r with 8 interleaved activation rows (XQ8): out[0..8).
using GemvFused8Fn = void (*)(const WeightRef& w, int64_t r, const XQ8& x, float* out);
// Fused AVX2 GEMV of row r with one int8x2 activation pair (x[0] the row, x[1] its residual on the
// grid d1/256, act_quant.h): *out = the dot with their sum, 256*S1 + S2 formed in int32 per block.
using GemvPairFn = void (*)(const WeightRef& w, int64_t r, const XQRow* x, float* out);
// Fused AVX2 GEMV of the 8 rows r0..r0+7 of a row-interleaved weight (cpu/interleave.h, r0 % 8 == 0)
// with mr (1..4) activation rows x[i] (pair: mr int8x2 pairs x[2i], x[2i+1]): out[8i + row].
using GemvGroup8Fn = void (*)(const WeightRef& w, int64_t r0, const XQRow* x, int mr, bool pair, float* out);

struct TypeInfo {
  Kind kind;
  bool signed_q;
  UnpackRowFn unpack_scalar;
  UnpackRowFn unpack_avx2;  // nullptr: the scalar unpacker feeds the AVX2 dot
  const char* name;
  GemvFusedFn fused_avx2;   // nullptr: unpack + generic dot
  GemvFused8Fn fused8_avx2 = nullptr;  // 8 activation rows per lane (m >= kMinM8); nullptr: none
  GemvPairFn fused_pair_avx2 = nullptr;  // int8x2 at m = 1 in one pass (X32 types); nullptr: 2 rows
  GemvGroup8Fn group8_avx2 = nullptr;    // row-interleaved weights: 8 weight rows x 1..4 rows of x per call
};
// nullptr when the type has no fused kernel.
const TypeInfo* type_info(int qtype);
// The kernels of w as stored: type_info(w.qtype), or for a row-interleaved weight the same
// kernels reading through the interleave (cpu/interleave.cpp) plus its 8-row kernel.
const TypeInfo* type_info(const WeightRef& w);
// The ggml name of a type id ("Q4_K"), "unknown" outside the registry (for error messages).
const char* qtype_name(int qtype);
void fill_scx(UChunk& u);  // scx from sc (shared by unpackers that only compute sc)

// static: these helpers are compiled into baseline and -mavx2 files; internal linkage keeps the
// linker from sharing one (possibly AVX2-encoded) COMDAT copy between them.
static inline int64_t n_chunks(int64_t k) { return (k + kChunk - 1) / kChunk; }
// int4: log2 of the 32-blocks per scale group (group_size 32 / 64 / 128 -> 0 / 1 / 2).
static inline int int4_group_shift(const WeightRef& w) { return w.group_size == 32 ? 0 : w.group_size == 64 ? 1 : 2; }

// Zeroes the part of the row's last chunk past k so padded activations meet zero weights.
static inline void clear_tail(UChunk& u, int64_t k, Kind kind) {
  const int rem = (int)(k - (n_chunks(k) - 1) * kChunk);
  if (rem == kChunk) return;
  for (int e = rem; e < kChunk; ++e) u.q[e] = 0;
  if (kind == Kind::X32)
    for (int j = (rem + 31) / 32; j < 8; ++j) u.a[j] = u.b[j] = 0.f;
}

// ---------------------------------------------------------------- weight-stream prefetch
// Bytes ahead of the current block at which the small-m fused kernels issue software prefetches
// of their weight row (0: none). Why: at m = 1 a core alternates ~5 cycles of decode + dot per
// 32 weights with loads the hardware prefetcher does not run far enough ahead of, so DRAM time
// and compute time added up instead of overlapping (Q4_0 4096x14336, 2 threads, cold weights:
// 2.9-3.0 ms, 41% of the read probe). PYQUANT_PREFETCH=<bytes> overrides; _C.set_prefetch too.
int prefetch_bytes();
void set_prefetch_bytes(int bytes);

// ---------------------------------------------------------------- activations
// The engine's activation mode (set_matmul_act / PYQUANT_MATMUL_ACT), shared with the C++ step:
// act_float(): weights decoded to float; else int8, plus the int8 residual row when act_compensated().
bool act_compensated();
bool act_float();

// One quantized activation row (K padded to kp, a multiple of 256, zeros beyond k).
struct XQRow {
  const int8_t* q;
  const float* d;       // X32: per 32; X256: per 256
  const float* s;       // X32: d * sum(q) per 32
  const int16_t* bsum;  // X256: sum(q) per 16
};

// Up to 8 activation rows interleaved so that one vpmaddubsw serves all of them: the weight
// bytes are broadcast (4 at a time) and the lanes are activation rows, so no horizontal fold is
// needed (see gemv_x32_t8 in avx2/gemv_fused_avx2.cpp). Rows past m are zero.
//   q:  [kp/32 blocks][8 dwords t][8 rows][4 bytes]  (dword t = elements 4t..4t+3 of the block)
//   X32:  d, s: [kp/32][8 rows]           (d and d * sum(q) per 32)
//   X256: d: [kp/256][8 rows]; bsum: [kp/256][8 pairs p][8 rows][2] = the sums of q over
//         the 16-element groups 2p and 2p+1 (one vpmaddwd applies two per-16 offsets)
struct XQ8 {
  const int8_t* q;
  const float* d;
  const float* s;
  const int16_t* bsum;
};
// Smallest m (per group of 8 rows) that takes the XQ8 kernels. Measured (1 thread, 2048x14336,
// thread CPU ms, XQ8 vs 1..4-row kernels): Q4_0 m=5 4.49 vs 3.41, m=6 4.39 vs 4.51; Q4_K m=5 3.67
// vs 3.05, m=6 3.55 vs 3.65 (XQ8 costs the same for 5..8 rows).
constexpr int kMinM8 = 6;

// ---------------------------------------------------------------- kernels (per ISA)
// out[i] = dot(weight row, activation row i), i < mr (1..4), over nch chunks.
using DotQFn = void (*)(const UChunk* u, int64_t nch, const XQRow* x, int mr, float* out);
using DotFFn = void (*)(const float* w, const float* const* x, int mr, int64_t k, float* out);
// Float decode of unpacked chunks into nch * 256 floats.
using ChunksToFloatFn = void (*)(Kind kind, const UChunk* u, int64_t nch, float* out);
using QuantRowFn = void (*)(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t* bsum);

// act_quant.h's quant_residual (the int8x2 mode's second row).
using QuantResidualFn = void (*)(const float* x, int64_t k, int64_t kp, bool x256, const int8_t* q1, const float* d1,
                                 int8_t* q2, float* d2, float* s2, int16_t* bsum2);

struct Kernels {
  DotQFn dot_x32_u, dot_x32_s, dot_x256_u, dot_x256_s;
  DotFFn dot_f;
  ChunksToFloatFn chunks_to_float;
  QuantRowFn quant_x32, quant_x256;
  QuantResidualFn quant_residual;
};

// One activation row into rows[0] (and, comp = int8x2, the quantization of its residual into
// rows[1]) with kern's quantizers: row j's storage at q + j*kp, d and s + j*kp/32, bsum + j*kp/16
// (act_quant.h).
void quant_activation(const Kernels& kern, const float* x, int64_t k, int64_t kp, bool x256, bool comp,
                      int8_t* q, float* d, float* s, int16_t* bsum, XQRow* rows);
const Kernels& scalar_kernels();
const Kernels& avx2_kernels();  // only when active_isa() == Avx2

// Chunks [c0, c1) of row r -> (c1-c0)*256 floats (zero past k), for any supported type (float
// weights converted, quantized ones unpacked then decoded); `scratch` holds c1-c0 UChunks.
// Used by the float-activation path and the GEMM panels.
void row_to_float(const WeightRef& w, int64_t r, int64_t c0, int64_t c1, float* out, UChunk* scratch, bool avx2);

// Float weights: F32 / F16 / BF16 row -> float (ISA-specific).
void f16_row_to_float_avx2(const uint16_t* src, int64_t k, float* out);
void bf16_row_to_float_avx2(const uint16_t* src, int64_t k, float* out);
// F16 / BF16 weight row dotted with mr (1..4) float rows, converting in registers.
void dot_half_avx2(const uint16_t* w, bool bf16, const float* const* x, int mr, int64_t k, float* out);

// GEMM over output rows [n0, n1): C = x @ W[n0:n1].T in float, handed to `store` in column
// blocks: store(nb, nn, c, ldc) receives c[i * ldc + j] = y[i, nb + j] for i < m, j < nn.
using GemmStore = std::function<void(int64_t nb, int64_t nn, const float* c, int64_t ldc)>;
struct GemmArgs {
  const WeightRef* w;
  const float* x;      // [m, k] float (scalar path)
  const float* apack;  // AVX2 path: x packed by gemm_pack_a_avx2
  int64_t m, k;
  int64_t n0, n1;
  GemmStore store;
};
// int8 GEMM (avx2/gemm_int8_avx2.cpp) over output rows [n0, n1) of a type whose unpacked q is
// unsigned (gemm_int8_bits: the 32-block types of <= 5 bits and Q2_K..Q6_K), or signed 8-bit (bits
// 8: Q8_0, EXL2's wide variant; matmul.cpp's gemm_int8_bits says when): x holds m activation
// rows quantized per 32, or per 256 for the K-quants (pair: 2m rows, each followed by its residual).
// Results go out as the float GEMM's do (GemmStore), 8 output rows at a time with ldc = 8.
struct GemmI8Args {
  const WeightRef* w;
  int bits;   // matmul.cpp's gemm_int8_bits(qtype, vnni, pair)
  const XQRow* x;
  int64_t m;
  bool pair;
  int64_t k, n0, n1;
  GemmStore store;
  int panels;   // 8-row panels unpacked side by side, each group of activation rows passing all of
                // them before the next group (gemm_int8_panels: as many as fit half the L2); the
                // 32-block types' path only, the K-quants' keeps one
};
void gemm_int8_avx2(const GemmI8Args& a);
void gemm_int8_vnni(const GemmI8Args& a);   // the same built for AVX-512 VNNI (vnni/; PYQUANT_HAVE_VNNI_BUILD)
// 2..6: the weight type's unpacked q bits when the int8 GEMM takes it; 0: it does not.
int gemm_int8_bits(int qtype);

// AVX2 GEMM geometry: 6 x 16 register tile, K blocked by one 256-chunk.
constexpr int kGemmMR = 6, kGemmNR = 16;
int64_t gemm_apack_floats(int64_t m, int64_t k);
void gemm_pack_a_avx2(const float* x, int64_t m, int64_t k, int64_t strip0, int64_t strip1, float* apack);
void gemm_avx2(const GemmArgs& a);
void gemm_scalar(const GemmArgs& a);

}  // namespace mm
}  // namespace pq
