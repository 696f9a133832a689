// The fused dequant-matmul entry point (_C.linear over a _C.Weight, weight.cpp), the activation
// side's validation, and the per-(type, M) choice of kernel path:
//
//   m <= gemm_min_m(type)  GEMV (16..512 by type, measured: see gemm_min_m); threads split N in
//     contiguous ranges (multiples of 16 rows), the packed weight is streamed once per call
//     whatever m is. m >= 6: groups of 8 activation rows interleaved (XQ8), one vpmaddubsw per
//     32 weights and 8 rows, lanes = activation rows (16-row weight tiles x all groups); the < 6 left-over rows take the
//     1..4-row kernels.
//     quantized types, int8 activations (default; act_quant.h: per 32 or per 256):
//       AVX2: fused dequantize-in-registers + maddubs dot, 1..4 activation rows per pass
//             (avx2/gemv_fused_avx2.cpp; every listed type has one);
//       scalar: unpack to UChunks + portable dot (matmul_scalar.cpp).
//     quantized types, float activations (set_matmul_act("float") / PYQUANT_MATMUL_ACT=float):
//       8 chunks at a time decoded to float in L1, FMA dot.
//     F32 / F16 / BF16 weights: float dot, halves converted in registers.
//   m >  gemm_min_m        GEMM: 64x256 weight tiles decoded to float, 6x16 FMA microkernel
//     (avx2/gemm_avx2.cpp); scalar: row-by-row reference.
//   AVX2, int8 activations, weights with unsigned unpacked q (Q4_0 Q4_1 Q5_0 Q5_1 int4, Q2_K..Q6_K):
//     from 12 activation rows on (2m for int8x2) the int8 GEMM instead (avx2/gemm_int8_avx2.cpp;
//     int8x2 up to 1024 rows (the K-quants without VNNI: 128), then the float GEMM):
//     see choose_path for the measurements. Signed 8-bit q (Q8_0, EXL2's 6 / 8-bit variant): with
//     one int8 pass on AVX2, int8x2 only in the VNNI build (gemm_int8_bits).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "common/qtypes.h"
#include "cpu/act_quant.h"
#include "cpu/cpu_features.h"
#include "cpu/error.h"
#include "cpu/matmul_internal.h"
#include "cpu/threadpool.h"
#include "cpu/weight.h"

namespace py = pybind11;

namespace pq {

int64_t read_sweep_avx2(const uint8_t* buf, int64_t nlines128);  // avx2/bandwidth_probe.cpp

namespace mm {
namespace {

enum class DType { F32, F16, BF16 };
enum class ActMode { Auto, Int8, Float, Int8x2 };

// Initial mode from PYQUANT_MATMUL_ACT (auto | int8 | float); auto = int8 for quantized weights:
// 4-5x faster than the float path at M = 1 (1 thread, 1024x14336: Q4_K 0.56 vs 2.9 ms, Q8_0 0.82
// vs 2.2 ms) for a ~0.5-1% relative error in y, below the weights' own quantization error for
// <= 6-bit types (llama.cpp makes the same choice).
std::atomic<int> g_act_mode{[] {
  const char* e = std::getenv("PYQUANT_MATMUL_ACT");
  if (e && std::strcmp(e, "float") == 0) return (int)ActMode::Float;
  if (e && std::strcmp(e, "int8") == 0) return (int)ActMode::Int8;
  if (e && std::strcmp(e, "int8x2") == 0) return (int)ActMode::Int8x2;
  return (int)ActMode::Auto;
}()};

// What "auto" means: int8x2 (see act_quant.h: activations to ~15 bits in two int8 passes).
// A single int8 pass, as llama.cpp does, moved SmolLM2 Q4_1's logits a mean KL of ~0.009 nats from
// the float forward over the Apache text and flipped a near-tie in the README's chat answer;
// int8x2 is 1.1e-7 (docs/fidelity.md has the figures) for ~1.2x the GEMV time at m = 1 (pair kernels).
}  // namespace
bool act_compensated() {
  const ActMode a = (ActMode)g_act_mode.load();
  return a == ActMode::Int8x2 || a == ActMode::Auto;
}
bool act_float() { return (ActMode)g_act_mode.load() == ActMode::Float; }
namespace {

// Measurement knobs (bench/bench_prefill_paths.py): a forced GEMV / GEMM switch in activation rows
// (0: the per-type defaults below; PYQUANT_GEMM_MIN_M or _C.set_gemm_min_m) and the int8 GEMM on
// or off (PYQUANT_INT8_GEMM=0 or _C.set_int8_gemm(False): the float GEMM past the switch).
std::atomic<int64_t> g_gemm_min_m{[] {
  const char* e = std::getenv("PYQUANT_GEMM_MIN_M");
  return e && std::atoi(e) > 0 ? (int64_t)std::atoi(e) : (int64_t)0;
}()};
std::atomic<bool> g_int8_gemm{[] {
  const char* e = std::getenv("PYQUANT_INT8_GEMM");
  return !(e && std::strcmp(e, "0") == 0);
}()};

// Largest m that takes the GEMV path (the knob above overrides, for measurements).
// Measured, 1 thread, 1024x4096, thread CPU time (GFLOP/s GEMV int8 vs GEMM float):
//   Q4_K m=32: 95 vs 63, m=64: 97 vs 85, m=128: 92 vs 85, m=256: 83 vs 98  -> 96 for the fused
//   K-quant kernels (their int8 dot runs at ~1 cycle per 32 MACs and row);
//   Q4_0 m=17: 65 vs 47, m=32: 68 vs 63, m=48: 69 vs 79  -> 32 for the other quantized types;
//   float weights: the float GEMV re-reads each weight row once per 4 activation rows -> 16.
int64_t gemm_min_m(const TypeInfo& ti, int qtype) {
  if (const int64_t forced = g_gemm_min_m.load()) return forced;
  if (ti.kind == Kind::Float) return 16;
  // XQ8 kernels (8 activation rows per lane, 16-row weight tiles), measured 1 thread, N=1024,
  // K=14336 (thread CPU ms, XQ8 GEMV vs float GEMM): Q4_0 m=64 16.5 vs 23.1, m=128 39.9 vs 39.2,
  // m=256 75 vs 71, m=512 164 vs 148; Q8_0 m=96 33.4 vs 34.2, m=512 182 vs 143;
  // Q4_K m=128 31.2 vs 42.4, m=256 66.5 vs 73.2, m=512 137 vs 148; Q6_K m=512 139 vs 164.
  // -> 512 for the K-quants (beyond, all groups' activations, m * k bytes, outgrow the L3),
  // 96 for the 32-block types. Float activation mode keeps the float-GEMV limits below.
  // Since the float GEMM's panels are transposed in registers, bench/bench_prefill_paths.py
  // (4096x4096, 1 thread, ms; XQ8 GEMV vs float GEMM, two runs) has Q8_0 int8x2 m=4 (8 rows)
  // 3.9-4.0 vs 5.4-6.0, m=8 8.0-8.2 vs 7.2-8.0, m=16 15.3-16.5 vs 9.2-9.9; int8 m=16 7.7-8.4 vs
  // 8.9-9.8, m=64 29.9-30.3 vs 23.4-24.4 -> 16 rows for the 32-block types that have no int8
  // GEMM (Q8_0, IQ4_NL, int8). The ones that have it take it on AVX2 (choose_path); their 96 / 512
  // here is the scalar ISA's switch, which keeps it on the same activations as AVX2 up to there.
  const bool int8_act = (ActMode)g_act_mode.load() != ActMode::Float;
  if (int8_act && ti.fused8_avx2) return ti.kind == Kind::X256 ? 512 : gemm_int8_bits(qtype) ? 96 : 16;
  if (ti.kind == Kind::X256 && ti.fused_avx2) return 96;  // same switch on both ISAs: comparable results
  return 32;
}

// Smallest m (per group of 8 rows) for the XQ8 kernels; PYQUANT_GEMV8_MIN_M overrides (e.g. 99 to
// measure the 4-row kernels at m = 8).
int64_t min_m8() {
  static const int64_t v = [] {
    const char* e = std::getenv("PYQUANT_GEMV8_MIN_M");
    return e && std::atoi(e) > 0 ? (int64_t)std::atoi(e) : (int64_t)kMinM8;
  }();
  return v;
}

DType parse_dtype(const char* fn, const std::string& s) {
  if (s == "float32") return DType::F32;
  if (s == "float16") return DType::F16;
  if (s == "bfloat16") return DType::BF16;
  fail(fn, ": x_dtype must be float32, float16 or bfloat16, got '", s, "'");
}
int64_t esize(DType d) { return d == DType::F32 ? 4 : 2; }

// The activation/output side shared by the three entry points.
struct Call {
  const char* fn;
  int64_t m, n, k;
  DType dt;
  const void* x;
  void* y;
  const float* bias;
  int nthreads;
};

Call check_common(const char* fn, int64_t n, int64_t k, uintptr_t x_ptr, int64_t x_nbytes,
                  const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr,
                  int64_t bias_nbytes, int nthreads) {
  PQ_CHECK(n >= 1 && n <= INT32_MAX, fn, ": n (output features) must be in [1, 2^31), got ", n);
  PQ_CHECK(k >= 1 && k <= INT32_MAX, fn, ": k (input features) must be in [1, 2^31), got ", k);
  PQ_CHECK(m >= 0 && m <= INT32_MAX, fn, ": m (rows of x) must be in [0, 2^31), got ", m);
  PQ_CHECK(nthreads >= 0, fn, ": nthreads must be >= 0 (0 = default), got ", nthreads);
  const DType dt = parse_dtype(fn, x_dtype);
  const int64_t need_x = checked_mul(fn, checked_mul(fn, m, k, "m*k"), esize(dt), "x size");
  const int64_t need_y = checked_mul(fn, checked_mul(fn, m, n, "m*n"), esize(dt), "y size");
  PQ_CHECK(x_nbytes >= need_x, fn, ": x has ", x_nbytes, " bytes, [", m, ", ", k, "] ", x_dtype, " needs ", need_x);
  PQ_CHECK(y_nbytes >= need_y, fn, ": y has ", y_nbytes, " bytes, [", m, ", ", n, "] ", x_dtype, " needs ", need_y);
  if (bias_ptr) PQ_CHECK(bias_nbytes >= 4 * n, fn, ": bias has ", bias_nbytes, " bytes, ", n, " float32 need ", 4 * n);
  PQ_CHECK(m == 0 || (x_ptr && y_ptr), fn, ": null x or y pointer");
  return {fn, m, n, k, dt, reinterpret_cast<const void*>(x_ptr), reinterpret_cast<void*>(y_ptr),
          reinterpret_cast<const float*>(bias_ptr), nthreads};
}

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// y[i, r] = v (+ bias[r]) in x's dtype.
inline void put(const Call& c, int64_t i, int64_t r, float v) {
  if (c.bias) v += c.bias[r];
  const int64_t at = i * c.n + r;
  if (c.dt == DType::F32) static_cast<float*>(c.y)[at] = v;
  else if (c.dt == DType::F16) static_cast<uint16_t*>(c.y)[at] = fp32_to_fp16(v);
  else static_cast<uint16_t*>(c.y)[at] = fp32_to_bf16(v);
}

// x as float32 [m, k]: the caller's buffer when it already is, else a converted copy (F16C /
// a 16-bit shift under AVX2: exact, and ~10x faster than the portable bit-by-bit conversion,
// which cost ~4% of an M = 1 call at k = 14336).
const float* x_as_float(const Call& c, std::vector<float>& buf) {
  if (c.dt == DType::F32) return static_cast<const float*>(c.x);
  float* out = grow(buf, (size_t)(c.m * c.k));
  const uint16_t* h = static_cast<const uint16_t*>(c.x);
  const bool avx2 = active_isa() == Isa::Avx2;
  parallel_for(c.m * c.k, 1 << 16, c.nthreads, [&](int64_t b, int64_t e) {
    if (avx2 && c.dt == DType::F16) f16_row_to_float_avx2(h + b, e - b, out + b);
    else if (avx2) bf16_row_to_float_avx2(h + b, e - b, out + b);
    else if (c.dt == DType::F16) for (int64_t t = b; t < e; ++t) out[t] = fp16_to_fp32(h[t]);
    else for (int64_t t = b; t < e; ++t) out[t] = bf16_to_fp32(h[t]);
  });
  return out;
}

// Weight-stream prefetch distance (matmul_internal.h). 2048: measured on a 2-vCPU AMD EPYC (Zen 4),
// Q4_0 / int4-g128 4096x14336 m=1, 2 threads, cold weights, 3 alternating rounds (ms):
//   off 2.9-3.0 / 2.4-2.6, 512 B 2.3 / 2.0, 1 KiB 2.1 / 1.6-1.8, 2 KiB 1.9 / 1.6-1.9, 4 KiB 1.7-2.0 / 1.5-1.7.
std::atomic<int> g_prefetch{[] {
  const char* e = std::getenv("PYQUANT_PREFETCH");
  return e ? std::max(0, std::min(1 << 16, std::atoi(e))) : 2048;
}()};
}  // namespace
int prefetch_bytes() { return g_prefetch.load(std::memory_order_relaxed); }
void set_prefetch_bytes(int bytes) { g_prefetch.store(bytes, std::memory_order_relaxed); }
namespace {

// Off: the AVX2 int8 GEMV uses the generic unpack + dot kernels instead of the fused ones (for
// tests that keep the generic path honest, and for measuring what fusion buys).
std::atomic<bool> g_fused{true};

enum class Path { GemvQ8, GemvFloat, Gemm, GemmInt8 };

}  // namespace
int gemm_int8_bits(int qtype) {
  switch (qtype) {
    case (int)QType::Q4_0: case (int)QType::Q4_1: case kInt4: return 4;
    case (int)QType::Q5_0: case (int)QType::Q5_1: case kExl2: return 5;   // kExl2: every block <= 5 bits
    case (int)QType::Q2_K: return 2;
    case (int)QType::Q3_K: return 3;
    case (int)QType::Q4_K: return 4;
    case (int)QType::Q5_K: return 5;
    case (int)QType::Q6_K: return 6;
    default: return 0;
  }
}
namespace {

// int8x2 doubles the activation rows the GEMV streams past each weight row, so it hands over to
// the GEMM at half the m: the crossover is a property of the rows the kernel sees.
//
// The types of gemm_int8_bits (the 32-block types of <= 5 bits, Q2_K..Q6_K) have the int8 GEMM
// (same activations as the GEMV: results stay within float rounding as m crosses over). Measured on a 2-vCPU AMD EPYC
// (Zen 4, AVX2 kernels), 4096x4096, 1 thread, ms, (int8 | int8x2):
//   Q4_0 m=4: XQ8 GEMV 1.66 | 2.84, int8 GEMM 2.46 | 3.07; m=8: 2.84 | 5.70 vs 3.37 | 4.65;
//        m=16: 5.77 | 11.4 vs 4.91 | 7.66; m=64: 22.4 | 49.9 vs 13.7 | 24.8 (float GEMM 24.6 | 24.8);
//        m=128: int8x2 GEMM 48.2, float GEMM 44.9; m=512: int8 GEMM 97.6, float GEMM 170-174
//   Q4_K m=8: 2.41 | 4.95 vs 3.02 | 4.41; m=16: 4.89 | 9.92 vs 4.41 | 6.94; m=64 int8x2: 22.6,
//        float GEMM 23.9; m=128: 45.1 vs 43.8   (Q4_1 and int4-g128 within 10% of Q4_0)
// -> the int8 GEMM from 12 activation rows on; int8x2 hands over to the float GEMM past
// int8x2_gemm_max_rows (128 rows in these measurements; the GEMM's later shared panel loads moved
// it to 1024 for most types: see there). A forced switch (g_gemm_min_m) still moves the GEMV / GEMM
// boundary.
// Reproduce: `pytest bench/bench_prefill_paths.py --benchmark-only -s` (every path side by side).
constexpr int64_t kInt8GemmMinRows = 12, kInt8x2GemmMaxRows = 128, kInt8x2WideGemmMaxRows = 1024;
// Row-interleaved weights take the 8-row GEMV (4 rows of x per pass over a group) up to this m, the
// int8 GEMM past it. Measured side by side (4096x14336, int8x2, 2 threads, ms, GEMV / GEMM):
// Q4_0 m=12 8.7 / 10.4, m=16 11.1 / 12.3, m=24 16.9 / 17.2, m=32 22.6 / 21.5; Q4_K 10.0 / 10.4,
// 12.4 / 13.1, 19.5 / 17.0, 26.3 / 21.3; Q8_0 14.1 / 14.5, 14.4 / 18.1, 22.2 / 21.0, 29.5 / 28.0.
constexpr int64_t kGroup8MaxM = 16;

// The int8 GEMM's weight bits for qtype with (vnni) or without the VNNI build, for int8x2 (comp)
// or one int8 pass; 0: none. Q8_0 and EXL2's 6 / 8-bit variant (signed q, like Q8_0's): the VNNI
// build makes them unsigned as q + 128 (vpdpbusd sums in int32); AVX2 takes |q| against sign(x, q)
// (one vpmaddubsw, then vpmaddwd: two products of <= 128 * 127 fit int16, no more), 2 multiplies
// per 32 MACs against the float GEMM's 4 FMAs for one int8 pass, but 4 for an int8x2 pair: a tie
// with the float GEMM, whose activations are exact, which int8x2 therefore keeps.
int gemm_int8_bits(int qtype, bool vnni, bool comp) {
  const bool signed8 = qtype == (int)QType::Q8_0 || qtype == kExl2Wide;
  return signed8 ? (vnni || !comp ? 8 : 0) : mm::gemm_int8_bits(qtype);
}

bool int8_gemm_for(int qtype) {
  return gemm_int8_bits(qtype, vnni_enabled(), act_compensated()) && active_isa() == Isa::Avx2 && g_fused.load() &&
         g_int8_gemm.load();
}

// Activation rows (2m) up to which int8x2 stays on the int8 GEMM. The 32-block types: the VNNI
// build's one vpdpbusd per 4 weights x 8 rows keeps it ahead of the float GEMM (bench_prefill_paths,
// 4096x4096 Zen 4, 2 threads, int8x2 GEMM / float GEMM ms: Q4_0 m=128 18.5 / 23.4, m=256 37.2 / 42.8,
// m=512 72.9 / 81.7; Q8_0 17.5 / 21.8, 34.8 / 40.7, 69.0 / 80.4; 1 thread alike), and so does the
// AVX2 build since its passes share each panel load among their rows (1 thread: Q4_0 m=128 40.4 /
// 43.6, m=512 174 / 210; int4-g128 38.2 / 47.6, 150 / 183), up to 2m = 1024, the range measured
// (past it the int8 GEMM's x, 2m * k bytes streamed once per set of panels, outgrows the L3).
// The K-quants: likewise in the VNNI build (1 thread 4096x4096, int8x2 GEMM / float GEMM ms: Q4_K
// m=128 39.4 / 44.6, m=256 79.7 / 82.6, m=512 161 / 175; Q6_K 40.6 / 50.0, 78.7 / 90.3, 160 / 170);
// with AVX2 their int16 scale step keeps them even with the float GEMM past 128 rows (Q4_K m=512
// 180 / 176), where its exact activations win.
int64_t int8x2_gemm_max_rows(const TypeInfo& ti) {
  return ti.kind == Kind::X32 || vnni_enabled() ? kInt8x2WideGemmMaxRows : kInt8x2GemmMaxRows;
}

Path choose_path(const TypeInfo& ti, int qtype, int64_t m) {
  const bool q8 = ti.kind != Kind::Float && !act_float();
  const bool comp = q8 && act_compensated();
  const int64_t rows = comp ? 2 * m : m;
  // row-interleaved weights: the 8-row GEMV (run_gemv) up to kGroup8MaxM rows of x
  if (q8 && ti.group8_avx2 && m <= kGroup8MaxM && active_isa() == Isa::Avx2 && g_fused.load() &&
      !g_gemm_min_m.load())
    return Path::GemvQ8;
  if (q8 && int8_gemm_for(qtype)) {
    const int64_t forced = g_gemm_min_m.load();
    if (rows <= (forced ? forced : kInt8GemmMinRows)) return Path::GemvQ8;
    return comp && rows > int8x2_gemm_max_rows(ti) && !forced ? Path::Gemm : Path::GemmInt8;
  }
  if (rows > gemm_min_m(ti, qtype)) return Path::Gemm;
  return q8 ? Path::GemvQ8 : Path::GemvFloat;
}

// The rows of x quantized for the int8 kernels, one XQRow each (comp: 2 per row of x, the row then
// its residual; act_quant.h).
struct ActRows {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int16_t> bs;
  std::vector<XQRow> rows;
  void quantize(const Call& c, bool x256, const float* xf, bool comp, const Kernels& kern) {
    const int64_t kp = n_chunks(c.k) * kChunk, mq = comp ? 2 * c.m : c.m;
    rows.resize((size_t)mq);
    q.resize((size_t)(mq * kp));
    d.resize((size_t)(mq * kp / 32));
    s.resize((size_t)(mq * kp / 32));
    bs.resize((size_t)(mq * kp / 16));
    parallel_for(c.m, 1, c.nthreads, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t j = comp ? 2 * i : i;   // first of the row's 1 or 2 activation rows
        quant_activation(kern, xf + i * c.k, c.k, kp, x256, comp, q.data() + j * kp, d.data() + j * kp / 32,
                         s.data() + j * kp / 32, bs.data() + j * kp / 16, rows.data() + j);
      }
    });
  }
};

// comp ("int8x2" mode): every activation row becomes two int8 rows, its quantization and the
// quantization of what that dropped (quant_residual); the kernels see 2m rows and y sums each pair,
// except at m = 1 where a pair kernel takes both rows in one pass (TypeInfo::fused_pair_avx2).
void run_gemv(const Call& c, const WeightRef& w, const TypeInfo& ti, const float* xf, bool q8, bool comp) {
  const bool avx2 = active_isa() == Isa::Avx2;
  const Kernels& kern = avx2 ? avx2_kernels() : scalar_kernels();
  const int64_t nch = n_chunks(c.k), kp = nch * kChunk;
  comp = comp && q8;
  const int64_t mq = comp ? 2 * c.m : c.m;  // activation rows the kernels see
  ActRows act;
  if (q8) act.quantize(c, ti.kind == Kind::X256, xf, comp, kern);
  const std::vector<XQRow>& rows = act.rows;   // empty without q8: only the int8 kernels read it
  // m <= kGroup8MaxM on a row-interleaved weight (cpu/interleave.h): 8 weight rows per pass, up to
  // 4 rows of x (int8x2 pairs) sharing the weight decode; past 4, more passes over the group (in L2
  // by then).
  const GemvGroup8Fn group8 = q8 && c.m <= kGroup8MaxM && avx2 && g_fused.load() ? ti.group8_avx2 : nullptr;
  if (group8) {
    const int xs = comp ? 2 : 1;
    parallel_for(c.n, 16, c.nthreads, [&](int64_t r0, int64_t r1) {
      float v[32];   // 4 rows of x x 8 weight rows
      for (int64_t r = r0; r < r1; r += 8)   // r0 and r1 are multiples of 8: so is n (Weight)
        for (int64_t i0 = 0; i0 < c.m; i0 += 4) {
          const int mr = (int)std::min<int64_t>(4, c.m - i0);
          group8(w, r, rows.data() + xs * i0, mr, comp, v);
          for (int i = 0; i < mr; ++i)
            for (int l = 0; l < 8; ++l) put(c, i0 + i, r + l, v[8 * i + l]);
        }
    });
    return;
  }
  // m = 1 with a pair kernel: row and residual in one pass, straight into y.
  const GemvPairFn pair = comp && c.m == 1 && avx2 && g_fused.load() ? ti.fused_pair_avx2 : nullptr;
  if (pair) {
    parallel_for(c.n, 16, c.nthreads, [&](int64_t r0, int64_t r1) {
      float v;
      for (int64_t r = r0; r < r1; ++r) {
        pair(w, r, rows.data(), &v);
        put(c, 0, r, v);
      }
    });
    return;
  }
  // Where kernel results go: y directly, or (comp) a float [2m, n] buffer summed pairwise below.
  std::vector<float> pair_out;
  if (comp) pair_out.resize((size_t)(mq * c.n));
  auto emit = [&](int64_t i, int64_t r, float v) {
    if (comp) pair_out[(size_t)(i * c.n + r)] = v;
    else put(c, i, r, v);
  };
  // Groups of 8 activation rows interleaved for the XQ8 kernels (while >= kMinM8 rows remain);
  // the rest (< kMinM8 rows) goes through the 1..4-row kernels.
  const GemvFused8Fn fused8 = q8 && avx2 && g_fused.load() ? ti.fused8_avx2 : nullptr;
  int64_t m8 = 0;  // rows [0, m8) go through fused8
  std::vector<int8_t> q8v;
  std::vector<float> d8v, s8v;
  std::vector<int16_t> bs8v;
  std::vector<XQ8> groups;
  if (fused8) {
    while (mq - m8 >= min_m8()) m8 = std::min(mq, m8 + 8);
    const int64_t ng = (m8 + 7) / 8, nb32 = kp / 32, nsb = kp / 256;
    const bool x256 = ti.kind == Kind::X256;
    q8v.assign((size_t)(ng * kp * 8), 0);
    d8v.assign((size_t)(ng * nb32 * 8), 0.f);
    s8v.assign((size_t)(ng * nb32 * 8), 0.f);
    bs8v.assign((size_t)(ng * nsb * 128), 0);
    for (int64_t g = 0; g < ng; ++g)
      groups.push_back({q8v.data() + g * kp * 8, d8v.data() + g * nb32 * 8, s8v.data() + g * nb32 * 8,
                        bs8v.data() + g * nsb * 128});
    parallel_for(ng * nb32, 64, c.nthreads, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g = t / nb32, b = t % nb32;
        const int64_t rows_in = std::min<int64_t>(8, m8 - 8 * g);
        int8_t* dst = q8v.data() + g * kp * 8 + 256 * b;
        for (int64_t i = 0; i < rows_in; ++i) {
          const XQRow& xr = rows[(size_t)(8 * g + i)];
          for (int dw = 0; dw < 8; ++dw) std::memcpy(dst + 32 * dw + 4 * i, xr.q + 32 * b + 4 * dw, 4);
          if (!x256) {
            d8v[(size_t)((g * nb32 + b) * 8 + i)] = xr.d[b];
            s8v[(size_t)((g * nb32 + b) * 8 + i)] = xr.s[b];
          } else if (b % 8 == 0) {
            const int64_t sb = b / 8;
            d8v[(size_t)((g * nb32 + sb) * 8 + i)] = xr.d[sb];
            int16_t* bp = bs8v.data() + g * nsb * 128 + sb * 128;
            for (int p = 0; p < 8; ++p) {
              bp[16 * p + 2 * i] = xr.bsum[16 * sb + 2 * p];
              bp[16 * p + 2 * i + 1] = xr.bsum[16 * sb + 2 * p + 1];
            }
          }
        }
      }
    });
  }

  const DotQFn dot = ti.kind == Kind::X256 ? (ti.signed_q ? kern.dot_x256_s : kern.dot_x256_u)
                                           : (ti.signed_q ? kern.dot_x32_s : kern.dot_x32_u);
  const UnpackRowFn unpack = avx2 && ti.unpack_avx2 ? ti.unpack_avx2 : ti.unpack_scalar;
  const GemvFusedFn fused = q8 && avx2 && g_fused.load() ? ti.fused_avx2 : nullptr;
  const bool direct_f32 = w.qtype == (int)QType::F32;
  const bool half_direct = avx2 && (w.qtype == (int)QType::F16 || w.qtype == (int)QType::BF16);

  // Chunks of 16 rows: contiguous per thread, so each streams its own slice of W once.
  parallel_for(c.n, 16, c.nthreads, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<UChunk> scratch_v;
    thread_local std::vector<float> rowf_v;
    UChunk* scratch = grow(scratch_v, (size_t)(q8 ? nch : 8));
    float* rowf = q8 ? nullptr : grow(rowf_v, (size_t)(8 * kChunk));
    const float* xs[4];
    float out[4];
    for (int64_t r = r0; r < r1; ++r) {
      if (half_direct) {
        const uint16_t* wh = reinterpret_cast<const uint16_t*>(w.data + r * w.row_bytes);
        for (int64_t i0 = 0; i0 < c.m; i0 += 4) {
          const int mr = (int)std::min<int64_t>(4, c.m - i0);
          for (int t = 0; t < mr; ++t) xs[t] = xf + (i0 + t) * c.k;
          dot_half_avx2(wh, w.qtype == (int)QType::BF16, xs, mr, c.k, out);
          for (int t = 0; t < mr; ++t) put(c, i0 + t, r, out[t]);
        }
        continue;
      }
      if (fused8) {
        // Tiles of 16 weight rows x every group: the 16 rows (<= 16 x 14 KB for Q8_0 at k = 14336)
        // and one group's XQ8 (8 * kp bytes) stay in L2 while the other groups pass, instead of every
        // weight row re-streaming all groups from L3 (which made m = 128 cost 2.7x m = 64).
        if (r % 16 == 0 || r == r0) {
          const int64_t re = std::min(r1, (r / 16 + 1) * 16);
          float out8[8];
          for (int64_t g = 0; g < (int64_t)groups.size(); ++g)
            for (int64_t rr = r; rr < re; ++rr) {
              fused8(w, rr, groups[(size_t)g], out8);
              for (int64_t i = 8 * g; i < std::min(m8, 8 * g + 8); ++i) emit(i, rr, out8[i - 8 * g]);
            }
        }
      }
      if (fused) {
        for (int64_t i0 = m8; i0 < mq; i0 += 4) {
          const int mr = (int)std::min<int64_t>(4, mq - i0);
          fused(w, r, rows.data() + i0, mr, out);
          for (int t = 0; t < mr; ++t) emit(i0 + t, r, out[t]);
        }
        continue;
      }
      if (q8) {
        unpack(w, r, 0, nch, scratch);
        for (int64_t i0 = 0; i0 < mq; i0 += 4) {
          const int mr = (int)std::min<int64_t>(4, mq - i0);
          dot(scratch, nch, rows.data() + i0, mr, out);
          for (int t = 0; t < mr; ++t) emit(i0 + t, r, out[t]);
        }
        continue;
      }
      // Float activations: decode kSeg chunks (8 KB of floats, L1-resident) at a time and dot
      // them with every row before decoding the next (measured: decoding the whole row first
      // spilled to L2 and ran ~2x slower at k = 14336).
      constexpr int64_t kSeg = 8;
      float acc[4 * 64];
      const int64_t ngroups = (c.m + 3) / 4;
      for (int64_t g0 = 0; g0 < ngroups; g0 += 64) {  // at most 64 groups (256 rows) per pass
        const int64_t g1 = std::min(ngroups, g0 + 64);
        for (int64_t i = 4 * g0; i < std::min(c.m, 4 * g1); ++i) acc[i - 4 * g0] = 0.f;
        for (int64_t c0 = 0; c0 < nch; c0 += kSeg) {
          const int64_t c1 = std::min(nch, c0 + kSeg);
          const int64_t e0 = c0 * kChunk, len = std::min(c.k, c1 * kChunk) - e0;
          const float* wf;
          if (direct_f32) wf = reinterpret_cast<const float*>(w.data + r * w.row_bytes) + e0;
          else { row_to_float(w, r, c0, c1, rowf, scratch, avx2); wf = rowf; }
          for (int64_t g = g0; g < g1; ++g) {
            const int64_t i0 = 4 * g;
            const int mr = (int)std::min<int64_t>(4, c.m - i0);
            for (int t = 0; t < mr; ++t) xs[t] = xf + (i0 + t) * c.k + e0;
            kern.dot_f(wf, xs, mr, len, out);
            for (int t = 0; t < mr; ++t) acc[i0 + t - 4 * g0] += out[t];
          }
        }
        for (int64_t i = 4 * g0; i < std::min(c.m, 4 * g1); ++i) put(c, i, r, acc[i - 4 * g0]);
      }
    }
  });
  if (comp)
    parallel_for(c.n, 64, c.nthreads, [&](int64_t r0, int64_t r1) {
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t r = r0; r < r1; ++r)
          put(c, i, r, pair_out[(size_t)(2 * i * c.n + r)] + pair_out[(size_t)((2 * i + 1) * c.n + r)]);
    });
}

// The GEMMs' results into y: c[i * ldc + j] = y[i, nb + j] (GemmStore).
// float32 y (the runner's case) row by row in loops the compiler vectorizes: the same sums as put,
// which took 5% of a SmolLM2 prompt element by element (perf: a bias test and a dtype switch each).
GemmStore store_into(const Call& c) {
  return [&c](int64_t nb, int64_t nn, const float* cb, int64_t ldc) {
    if (c.dt == DType::F32) {
      for (int64_t i = 0; i < c.m; ++i) {
        float* y = static_cast<float*>(c.y) + i * c.n + nb;
        const float* src = cb + i * ldc;
        if (c.bias) {
          const float* b = c.bias + nb;
          for (int64_t j = 0; j < nn; ++j) y[j] = src[j] + b[j];
        } else {
          std::memcpy(y, src, sizeof(float) * (size_t)nn);
        }
      }
      return;
    }
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < nn; ++j) put(c, i, nb + j, cb[i * ldc + j]);
  };
}

void run_gemm(const Call& c, const WeightRef& w, const float* xf) {
  const bool avx2 = active_isa() == Isa::Avx2;
  std::vector<float> apack;
  if (avx2) {
    apack.resize((size_t)gemm_apack_floats(c.m, c.k));
    const int64_t strips = (c.m + kGemmMR - 1) / kGemmMR;
    parallel_for(strips, 1, c.nthreads, [&](int64_t s0, int64_t s1) {
      gemm_pack_a_avx2(xf, c.m, c.k, s0, s1, apack.data());
    });
  }
  parallel_for(c.n, kGemmNR, c.nthreads, [&](int64_t n0, int64_t n1) {
    GemmArgs a{&w, xf, apack.data(), c.m, c.k, n0, n1, store_into(c)};
    if (avx2) gemm_avx2(a);
    else gemm_scalar(a);
  });
}

// 8-row panels the int8 GEMM of the 32-block types unpacks side by side: as many as fit half the L2
// (a panel is 8 rows x k bytes of q plus 2 floats per 8 x 32 weights), at most 8 (and at least 1).
// Every group of x's rows passes all of them, so x is streamed from L3 / DRAM once per set of panels
// rather than once per 8 weight rows: a 512-token int8x2 prompt is 2 x 512 x 14336 bytes of x at
// K = 14336, past a shared L3 (4096x14336 Q4_0 m=512 on Zen 4, AVX2, 2 threads: 149 GFLOP/s with one
// panel against 225 at 14336x4096, whose x is a third of that; 215 with the sets). The K-quants' GEMM
// keeps one panel: sets of them measured no faster (4096x14336 Q4_K int8x2 m=64 38.2 vs 38.8 ms,
// int8 m=512 150 vs 149).
int gemm_int8_panels(int64_t k) {
  const int64_t panel = n_chunks(k) * (2048 + 2 * 64 * 4);
  return (int)std::clamp<int64_t>(l2_cache_bytes() / 2 / panel, 1, 8);
}

void run_gemm_int8(const Call& c, const WeightRef& w, const TypeInfo& ti, const float* xf, bool comp) {
  // read once: a set_vnni from another thread cannot hand Q8_0's 8-bit panels to the AVX2 build
  const bool vnni = vnni_enabled();
  const int bits = gemm_int8_bits(w.qtype, vnni, comp);
  if (!bits) return run_gemm(c, w, xf);
  ActRows act;
  act.quantize(c, ti.kind == Kind::X256, xf, comp, avx2_kernels());
  const int panels = gemm_int8_panels(c.k);
  parallel_for(c.n, 8, c.nthreads, [&](int64_t n0, int64_t n1) {
    const GemmI8Args args{&w, bits, act.rows.data(), c.m, comp, c.k, n0, n1, store_into(c), panels};
#ifdef PYQUANT_HAVE_VNNI_BUILD
    if (vnni) return gemm_int8_vnni(args);   // bit-identical, vpdpbusd
#endif
    gemm_int8_avx2(args);
  });
}

void run(const Call& c, const WeightRef& w) {
  if (c.m == 0) return;
  const TypeInfo& ti = *type_info(w);
  py::gil_scoped_release nogil;
  std::vector<float> xbuf;
  const float* xf = x_as_float(c, xbuf);
  const Path p = choose_path(ti, w.qtype, c.m);
  if (p == Path::GemmInt8) run_gemm_int8(c, w, ti, xf, act_compensated());
  else if (p == Path::Gemm) run_gemm(c, w, xf);
  else run_gemv(c, w, ti, xf, p == Path::GemvQ8, act_compensated());
}

// y[m, n] = x[m, k] @ W.T (+ bias): the weight validated when it was made (weight.cpp), the
// activation side here. x and y stay pointer + byte size: bf16 tensors have no buffer protocol.
void linear_py(const Weight& w, uintptr_t x_ptr, int64_t x_nbytes, const std::string& x_dtype, int64_t m,
               uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr, int64_t bias_nbytes, int nthreads) {
  const Call c = check_common("linear", w.n(), w.k(), x_ptr, x_nbytes, x_dtype, m, y_ptr, y_nbytes, bias_ptr,
                              bias_nbytes, nthreads);
  run(c, w.ref());
}

// GB/s of the AVX2 read sweep over nbytes (split in contiguous halves per thread), best of repeats.
double bandwidth_probe(int64_t nbytes, int nthreads, int repeats) {
  nbytes &= ~int64_t(4095);
  void* raw = std::aligned_alloc(4096, (size_t)nbytes);
  PQ_CHECK(raw != nullptr, "bandwidth_probe: cannot allocate ", nbytes, " bytes");
  std::unique_ptr<void, void (*)(void*)> hold(raw, std::free);
  uint8_t* buf = static_cast<uint8_t*>(raw);
  // Touch every page (non-zero data) before timing.
  parallel_for(nbytes, 1 << 20, nthreads, [&](int64_t b, int64_t e) { std::memset(buf + b, 1, (size_t)(e - b)); });
  double best = 0;
  std::atomic<int64_t> sink{0};  // keeps the sums alive
  for (int rep = 0; rep < repeats; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(nbytes / 128, 1024, nthreads, [&](int64_t b, int64_t e) {
      sink.fetch_add(read_sweep_avx2(buf + b * 128, e - b), std::memory_order_relaxed);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0 && nbytes / dt / 1e9 > best) best = nbytes / dt / 1e9;
  }
  return best;
}

// The kernel table id of a weight kind as the Python side names it (matmul_path, gemm_min_m): gguf
// (qtype: the ggml id), int4, int8, exl2 (qtype kExl2Wide asks for the 6 / 8-bit variant, which
// _C.Weight picks from the widths).
int kind_id(const char* who, const std::string& kind, int qtype) {
  if (kind == "int4") return kInt4;
  if (kind == "int8") return kInt8;
  if (kind == "exl2") return qtype == kExl2Wide ? kExl2Wide : kExl2;
  PQ_CHECK(kind == "gguf", who, ": kind must be 'gguf', 'int4', 'int8' or 'exl2', got '", kind, "'");
  return qtype;
}

std::string matmul_path_py(const std::string& kind, int qtype, int64_t m) {
  const int id = kind_id("matmul_path", kind, qtype);
  PQ_CHECK(m >= 0, "matmul_path: m must be >= 0, got ", m);
  const TypeInfo* ti = type_info(id);
  if (!ti || (kind == "gguf" && id >= kMaxQType))
    return std::string("unsupported: no fused CPU kernel for ") + qtype_name(qtype) + " (dequantize, then float matmul)";
  const std::string isa = isa_name(active_isa());
  const std::string who = std::string(ti->name) + " m=" + std::to_string(m) + ": ";
  switch (choose_path(*ti, id, m)) {
    case Path::GemmInt8:
      return isa + (act_compensated() ? "/gemm-int8x2: " : "/gemm-int8: ") + who +
             (act_compensated() ? "12 < 2m <= " + std::to_string(int8x2_gemm_max_rows(*ti)) : "m > 12") +
             ", 8 weight rows unpacked once into an L2 panel, "
             "int8 dot (" + (vnni_enabled() ? "AVX-512 VNNI vpdpbusd" : "vpmaddubsw") +
             ", lanes = weight rows) with activations quantized per " +
             (ti->kind == Kind::X256 ? "256" : "32") +
             (act_compensated() ? " plus their int8-quantized residual (~15-bit activations)" : "");
    case Path::Gemm: {
      const bool q8 = ti->kind != Kind::Float && !act_float();
      // past the int8x2 GEMM's range (choose_path), or the type / ISA has no int8 GEMM
      const bool past_i8 = q8 && int8_gemm_for(id) && !g_gemm_min_m.load();
      return isa + "/gemm: " + who + (q8 && act_compensated() ? "2m > " : "m > ") +
             std::to_string(past_i8 ? int8x2_gemm_max_rows(*ti) : gemm_min_m(*ti, id)) +
             (!past_i8 ? ""
              : int8x2_gemm_max_rows(*ti) > kInt8x2GemmMaxRows ? " (past the int8x2 GEMM's measured range)"
                                                               : " (where the float GEMM outruns the int8x2 one)") +
             ", weight tiles dequantized to float (64x256), " +
             (isa == "avx2" ? "6x16 FMA microkernel" : "scalar row-by-row reference");
    }
    case Path::GemvFloat:
      return isa + "/gemv-float: " + who + "packed rows decoded to float in L1, dotted with float activations (" +
             (ti->kind == Kind::Float ? "float weights" : "float mode: set_matmul_act / PYQUANT_MATMUL_ACT") + ")";
    case Path::GemvQ8:
      return isa + (act_compensated() ? "/gemv-int8x2: " : "/gemv-int8: ") + who +
             "packed rows unpacked once, int8 dot with activations quantized per " +
             (ti->kind == Kind::X256 ? "256 (Q8_K-like, bsums for mins)" : "32 (Q8_0/Q8_1-like)") +
             (isa == "scalar" ? "" : ti->fused8_avx2 && m >= min_m8() ? "; fused dequantize+dot, 8 rows per lane (XQ8)" :
              ti->fused_avx2 ? "; fused dequantize+dot, 4 rows per pass" :
              ti->unpack_avx2 ? "; AVX2 unpack + dot" : "; scalar unpack + AVX2 dot") +
             (act_compensated() ? "; plus their int8-quantized residual as a second row (~15-bit activations)" : "");
  }
  return "";
}

}  // namespace

const char* qtype_name(int qtype) {
  static const char* names[kMaxQType] = {
      "F32", "F16", "Q4_0", "Q4_1", nullptr, nullptr, "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",
      "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", nullptr, nullptr, nullptr, "TQ1_0", "TQ2_0", nullptr,
      nullptr, nullptr, "MXFP4", "NVFP4"};
  return qtype >= 0 && qtype < kMaxQType && names[qtype] ? names[qtype] : "unknown";
}

}  // namespace mm

void register_matmul_bindings(py::module_& m) {
  using namespace pybind11::literals;
  mm::register_weight(m);
  m.def("linear", &mm::linear_py, "weight"_a, "x_ptr"_a, "x_nbytes"_a, "x_dtype"_a, "m"_a, "y_ptr"_a, "y_nbytes"_a,
        "bias_ptr"_a = 0, "bias_nbytes"_a = 0, "nthreads"_a = 0,
        "y[m, n] = x[m, k] @ W.T (+ bias float32 [n]) for a _C.Weight W; x, y: contiguous float32 / float16 / "
        "bfloat16 (x_dtype) memory given as pointer + byte size, checked against m, n, k.");
  m.def("matmul_path", &mm::matmul_path_py, "kind"_a, "qtype"_a, "m"_a,
        "Which CPU kernel path a matmul of this kind ('gguf'|'int4'|'int8'|'exl2'), type and m takes, and why "
        "(exl2: qtype 1003 asks for the variant with 6- or 8-bit blocks).");
  m.def("set_matmul_act", [](const std::string& mode) {
    if (mode == "auto") mm::g_act_mode = (int)mm::ActMode::Auto;
    else if (mode == "int8") mm::g_act_mode = (int)mm::ActMode::Int8;
    else if (mode == "float") mm::g_act_mode = (int)mm::ActMode::Float;
    else if (mode == "int8x2") mm::g_act_mode = (int)mm::ActMode::Int8x2;
    else fail("set_matmul_act: mode must be 'auto', 'int8', 'int8x2' or 'float', got '", mode, "'");
  }, "mode"_a,
     "Activation handling of the small-m path for quantized weights: int8 (one pass, llama.cpp's Q8 "
     "activations), int8x2 (int8 plus its int8-quantized residual: ~15-bit activations), float (weights "
     "decoded to float), auto (= int8x2).");
  m.def("get_matmul_act", [] {
    const int v = mm::g_act_mode.load();
    return std::string(v == (int)mm::ActMode::Float ? "float" : v == (int)mm::ActMode::Int8 ? "int8"
                       : v == (int)mm::ActMode::Int8x2 ? "int8x2" : "auto");
  });
  m.def("matmul_act_compensated", [] { return mm::act_compensated(); },
        "True when the int8 GEMV adds the int8-quantized residual of each activation row (int8x2).");
  m.def("set_prefetch", [](int bytes) {
    PQ_CHECK(bytes >= 0 && bytes <= (1 << 16), "set_prefetch: bytes must be in [0, 65536], got ", bytes);
    mm::set_prefetch_bytes(bytes);
  }, "bytes"_a,
     "Distance (bytes ahead) of the small-m kernels' software prefetch of the weight stream; 0 turns it off "
     "(default 2048, or PYQUANT_PREFETCH).");
  m.def("get_prefetch", [] { return mm::prefetch_bytes(); });
  m.def("set_gemm_min_m", [](int64_t rows) {
    PQ_CHECK(rows >= 0, "set_gemm_min_m: rows must be >= 0 (0: the per-type defaults), got ", rows);
    mm::g_gemm_min_m = rows;
  }, "rows"_a,
     "Measurement knob: the largest number of activation rows (2m with int8x2) that takes the GEMV; 0 restores "
     "the measured per-type defaults (also PYQUANT_GEMM_MIN_M).");
  m.def("set_int8_gemm", [](bool on) { mm::g_int8_gemm = on; }, "on"_a,
        "Measurement knob: False sends what the int8 GEMM would take to the float GEMM (also PYQUANT_INT8_GEMM=0).");
  m.def("set_matmul_fused", [](bool on) { mm::g_fused = on; }, "on"_a,
        "Debug/benchmark knob: False makes the AVX2 int8 GEMV use the generic unpack+dot kernels.");
  m.def("gemm_min_m", [](const std::string& kind, int qtype) {
    const int id = mm::kind_id("gemm_min_m", kind, qtype);
    const mm::TypeInfo* ti = mm::type_info(id);
    PQ_CHECK(ti != nullptr, "gemm_min_m: no fused kernel for ", kind, " type ", qtype);
    return mm::gemm_min_m(*ti, id);
  }, "kind"_a, "qtype"_a = 0, "Largest m that takes the GEMV (small-m) path for this weight type.");
  m.def("bandwidth_probe", [](int64_t nbytes, int nthreads, int repeats) {
    PQ_CHECK(nbytes >= (1 << 20) && nbytes <= (int64_t(64) << 30), "bandwidth_probe: nbytes must be in [1 MiB, 64 GiB], got ", nbytes);
    PQ_CHECK(nthreads >= 0 && repeats >= 1 && repeats <= 1000, "bandwidth_probe: bad nthreads ", nthreads, " or repeats ", repeats);
    // Measures the machine, not the active kernel path: only the CPU must have AVX2.
    PQ_CHECK(cpu_has_avx2(), "bandwidth_probe: needs a CPU (and build) with AVX2");
    py::gil_scoped_release nogil;
    return mm::bandwidth_probe(nbytes, nthreads, repeats);
  }, "nbytes"_a, "nthreads"_a, "repeats"_a,
     "GB/s (1e9 B/s) of an AVX2 read-only sweep over nbytes split across nthreads, best of `repeats`.");
}

}  // namespace pq
