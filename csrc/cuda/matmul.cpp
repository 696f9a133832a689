// Host side of the CUDA matmul entries: validates every pointer, size and shape (overflow-safe)
// against what the kernels will touch, then launches (gemv.cu, dequant_int.cu). Mirrors the CPU
// contract's argument order (csrc/cpu/matmul.cpp) with the CUDA stream appended.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common/qtypes.h"
#include "cuda/cuda_common.cuh"
#include "cuda/kernels.h"
#include "cuda/weights.cuh"

namespace pq {
namespace cuda {

void gemv_launch(WeightKind kind, int qtype, const GemvArgs& a, DType dt, cudaStream_t stream);
void int_dequant_launch(WeightKind kind, const GemvArgs& a, void* dst, DType dt, cudaStream_t stream);

namespace {

// Device-pointer checks run after every size / shape check (so a bad shape is reported as such,
// and a driver call is only made for arguments that are otherwise valid).
struct PtrChecks {
  struct Item {
    uintptr_t ptr;
    int64_t nbytes;
    const char* what;
  };
  Item items[8];
  int count = 0;
  void add(uintptr_t p, int64_t n, const char* what) { items[count++] = {p, n, what}; }
  void run() const {
    for (int i = 0; i < count; ++i) check_device_ptr(items[i].ptr, items[i].nbytes, items[i].what);
  }
};

DType parse_x_dtype(const std::string& s, const char* who) {
  if (s == "float32") return DType::F32;
  if (s == "float16") return DType::F16;
  if (s == "bfloat16") return DType::BF16;
  fail(who, ": unsupported activation dtype '", s, "' (float32, float16 or bfloat16)");
}

int64_t esize(DType d) { return d == DType::F32 ? 4 : 2; }

// product a*b*c of non-negative values, or -1 on overflow
int64_t mul3(int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0) return -1;
  if (a && b > INT64_MAX / a) return -1;
  const int64_t ab = a * b;
  if (ab && c > INT64_MAX / ab) return -1;
  return ab * c;
}

// Shared checks of x / y / bias; fills the activation fields of `a`.
void check_activations(const char* who, GemvArgs& a, PtrChecks& pc, uintptr_t x_ptr, int64_t x_nbytes, DType dt,
                       uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr, int64_t bias_nbytes) {
  PQ_CHECK(a.m >= 0 && a.n >= 0 && a.k >= 0, who, ": negative shape m=", a.m, " n=", a.n, " k=", a.k);
  PQ_CHECK(a.k % 32 == 0, who, ": K=", a.k, " must be a multiple of 32 for the CUDA kernels");
  const int64_t need_x = mul3(a.m, a.k, esize(dt)), need_y = mul3(a.m, a.n, esize(dt));
  PQ_CHECK(need_x >= 0 && need_y >= 0, who, ": shape overflows (m=", a.m, " n=", a.n, " k=", a.k, ")");
  PQ_CHECK(x_nbytes >= need_x, who, ": x has ", x_nbytes, " bytes, [", a.m, ", ", a.k, "] needs ", need_x);
  PQ_CHECK(y_nbytes >= need_y, who, ": y has ", y_nbytes, " bytes, [", a.m, ", ", a.n, "] needs ", need_y);
  PQ_CHECK(x_ptr % 16 == 0, who, ": x must be 16-byte aligned (the kernels load 16 bytes at a time)");
  PQ_CHECK(y_ptr % esize(dt) == 0, who, ": y is not aligned to its element size");
  if (a.m == 0 || a.n == 0) return;
  pc.add(x_ptr, need_x, "x");
  pc.add(y_ptr, need_y, "y");
  a.x = reinterpret_cast<const void*>(x_ptr);
  a.y = reinterpret_cast<void*>(y_ptr);
  a.bias = nullptr;
  if (bias_ptr) {
    PQ_CHECK(bias_nbytes >= a.n * 4, who, ": bias has ", bias_nbytes, " bytes, needs ", a.n * 4, " (float32 [n])");
    PQ_CHECK(bias_ptr % 4 == 0, who, ": bias is not 4-byte aligned");
    pc.add(bias_ptr, a.n * 4, "bias");
    a.bias = reinterpret_cast<const float*>(bias_ptr);
  }
  PQ_CHECK(ceil_div(a.n, 4) <= 0x7fffffff && ceil_div(a.m, 1) <= 65535 * 16, who, ": grid too large (n=", a.n,
           ", m=", a.m, ")");
}

void set_weights(const char* who, GemvArgs& a, PtrChecks& pc, uintptr_t w_ptr, int64_t w_nbytes, int64_t row_bytes) {
  const int64_t need = mul3(a.n, row_bytes, 1);
  PQ_CHECK(need >= 0, who, ": weight size overflows");
  PQ_CHECK(w_nbytes >= need, who, ": weights have ", w_nbytes, " bytes, [", a.n, " rows x ", row_bytes,
           " bytes] needs ", need);
  if (need) pc.add(w_ptr, need, "weights");
  a.w = reinterpret_cast<const uint8_t*>(w_ptr);
  a.row_bytes = row_bytes;
  a.aligned16 = (w_ptr % 16 == 0) && (row_bytes % 16 == 0);
}

void set_int4_side(const char* who, GemvArgs& a, PtrChecks& pc, uintptr_t scales_ptr, uintptr_t mins_ptr, int64_t sm_nbytes,
                   int64_t group_size) {
  PQ_CHECK(group_size == 32 || group_size == 64 || group_size == 128, who, ": group_size ", group_size,
           " (32, 64 or 128)");
  PQ_CHECK(a.k % group_size == 0, who, ": K=", a.k, " is not a multiple of group_size ", group_size);
  const int64_t need = mul3(a.n, a.k / group_size, 4);
  PQ_CHECK(need >= 0 && sm_nbytes >= need, who, ": scales/mins have ", sm_nbytes, " bytes each, need ", need);
  PQ_CHECK(scales_ptr % 4 == 0 && mins_ptr % 4 == 0, who, ": scales/mins not 4-byte aligned");
  if (need) {
    pc.add(scales_ptr, need, "scales");
    pc.add(mins_ptr, need, "mins");
  }
  a.scales = reinterpret_cast<const float*>(scales_ptr);
  a.mins = reinterpret_cast<const float*>(mins_ptr);
  a.group_size = (int)group_size;
}

void set_int8_side(const char* who, GemvArgs& a, PtrChecks& pc, uintptr_t scales_ptr, int64_t scales_nbytes) {
  PQ_CHECK(scales_nbytes >= a.n * 4, who, ": scales have ", scales_nbytes, " bytes, need ", a.n * 4);
  PQ_CHECK(scales_ptr % 4 == 0, who, ": scales not 4-byte aligned");
  if (a.n) pc.add(scales_ptr, a.n * 4, "scales");
  a.scales = reinterpret_cast<const float*>(scales_ptr);
}

// EXL2's tables and row size. Their contents live in device memory (reading them here would cost a
// sync per call): the kernels check every width and offset they use (weights.cuh, WExl2).
void set_exl2_side(const char* who, GemvArgs& a, PtrChecks& pc, uintptr_t w_ptr, int64_t row_bytes,
                   uintptr_t bits_ptr, int64_t bits_nbytes, uintptr_t off_ptr, int64_t off_nbytes) {
  const int64_t nb = a.k / 32;
  PQ_CHECK(a.k > 0 && a.k % 32 == 0, who, ": K=", a.k, " must be a positive multiple of 32 (EXL2 blocks)");
  PQ_CHECK(row_bytes >= 10 * nb && row_bytes <= 34 * nb, who, ": row_bytes ", row_bytes, " is not ", nb,
           " blocks of 2..8 bits (", 10 * nb, "..", 34 * nb, " bytes)");
  PQ_CHECK(w_ptr % 4 == 0, who, ": weights must be 4-byte aligned (staged 32 bits at a time)");
  PQ_CHECK(bits_nbytes >= nb, who, ": block_bits has ", bits_nbytes, " bytes, K/32 = ", nb, " needed");
  PQ_CHECK(off_nbytes >= 4 * (nb + 1), who, ": block offsets have ", off_nbytes, " bytes, ", 4 * (nb + 1), " needed");
  PQ_CHECK(off_ptr % 4 == 0, who, ": block offsets not 4-byte aligned");
  pc.add(bits_ptr, nb, "block_bits");
  pc.add(off_ptr, 4 * (nb + 1), "block offsets");
  a.block_bits = reinterpret_cast<const uint8_t*>(bits_ptr);
  a.block_off = reinterpret_cast<const int32_t*>(off_ptr);
}

GemvArgs blank(int64_t n, int64_t k, int64_t m) {
  GemvArgs a{};
  a.n = n;
  a.k = k;
  a.m = m;
  return a;
}

void check_dense_out(const char* who, GemvArgs& a, PtrChecks& pc, uintptr_t dst_ptr, int64_t dst_nbytes, DType dt) {
  PQ_CHECK(a.n >= 0 && a.k >= 0 && a.k % 32 == 0, who, ": bad shape n=", a.n, " k=", a.k,
           " (K must be a multiple of 32)");
  const int64_t need = mul3(a.n, a.k, esize(dt));
  PQ_CHECK(need >= 0 && dst_nbytes >= need, who, ": destination has ", dst_nbytes, " bytes, needs ", need);
  PQ_CHECK(dst_ptr % 16 == 0, who, ": destination must be 16-byte aligned");
  if (need) pc.add(dst_ptr, need, "destination");
}

// The GEMV entries' one frame: the activations checked, then the weights (side(a, pc): set_weights
// and the format's own arrays), the device pointers last, then the launch.
template <typename Side>
void gemv_entry(const char* who, WeightKind kind, int qtype, int64_t n, int64_t k, uintptr_t x_ptr, int64_t x_nbytes,
                const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr,
                int64_t bias_nbytes, uintptr_t stream, Side side) {
  PtrChecks pc;
  GemvArgs a = blank(n, k, m);
  const DType dt = parse_x_dtype(x_dtype, who);
  check_activations(who, a, pc, x_ptr, x_nbytes, dt, y_ptr, y_nbytes, bias_ptr, bias_nbytes);
  side(a, pc);
  if (m == 0 || n == 0) return;
  pc.run();
  gemv_launch(kind, qtype, a, dt, as_stream(stream));
}

// The dense dequantize entries' frame, likewise.
template <typename Side>
void dequant_entry(const char* who, WeightKind kind, int64_t n, int64_t k, uintptr_t dst_ptr, int64_t dst_nbytes,
                   const std::string& dtype, uintptr_t stream, Side side) {
  PtrChecks pc;
  GemvArgs a = blank(n, k, 0);
  const DType dt = parse_x_dtype(dtype, who);
  check_dense_out(who, a, pc, dst_ptr, dst_nbytes, dt);
  side(a, pc);
  if (n == 0 || k == 0) return;
  pc.run();
  int_dequant_launch(kind, a, reinterpret_cast<void*>(dst_ptr), dt, as_stream(stream));
}

}  // namespace

void gguf_gemv(int qtype, uintptr_t w_ptr, int64_t w_nbytes, int64_t n, int64_t k, uintptr_t x_ptr,
               int64_t x_nbytes, const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes,
               uintptr_t bias_ptr, int64_t bias_nbytes, uintptr_t stream) {
  const char* who = "gguf_matmul (cuda)";
  PQ_CHECK(gemv_supports(qtype), who, ": no CUDA GEMV for ggml type id ", qtype);
  const QTypeGeometry g = qtype_geometry(qtype);
  PQ_CHECK(k >= 0 && k % g.block_size == 0, who, ": K=", k, " is not a multiple of the block size ", g.block_size);
  gemv_entry(who, WeightKind::Gguf, qtype, n, k, x_ptr, x_nbytes, x_dtype, m, y_ptr, y_nbytes, bias_ptr, bias_nbytes,
             stream, [&](GemvArgs& a, PtrChecks& pc) {
               set_weights(who, a, pc, w_ptr, w_nbytes, k / g.block_size * g.type_size);
             });
}

void int4_gemv(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, uintptr_t mins_ptr, int64_t sm_nbytes,
               int64_t group_size, int64_t n, int64_t k, uintptr_t x_ptr, int64_t x_nbytes,
               const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr,
               int64_t bias_nbytes, uintptr_t stream) {
  const char* who = "int4_matmul (cuda)";
  gemv_entry(who, WeightKind::Int4, 0, n, k, x_ptr, x_nbytes, x_dtype, m, y_ptr, y_nbytes, bias_ptr, bias_nbytes,
             stream, [&](GemvArgs& a, PtrChecks& pc) {
               set_weights(who, a, pc, qw_ptr, qw_nbytes, k / 2);
               set_int4_side(who, a, pc, scales_ptr, mins_ptr, sm_nbytes, group_size);
             });
}

void int8_gemv(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, int64_t scales_nbytes, int64_t n,
               int64_t k, uintptr_t x_ptr, int64_t x_nbytes, const std::string& x_dtype, int64_t m,
               uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr, int64_t bias_nbytes, uintptr_t stream) {
  const char* who = "int8_matmul (cuda)";
  gemv_entry(who, WeightKind::Int8, 0, n, k, x_ptr, x_nbytes, x_dtype, m, y_ptr, y_nbytes, bias_ptr, bias_nbytes,
             stream, [&](GemvArgs& a, PtrChecks& pc) {
               set_weights(who, a, pc, qw_ptr, qw_nbytes, k);
               set_int8_side(who, a, pc, scales_ptr, scales_nbytes);
             });
}

void exl2_gemv(uintptr_t w_ptr, int64_t w_nbytes, int64_t row_bytes, uintptr_t bits_ptr, int64_t bits_nbytes,
               uintptr_t off_ptr, int64_t off_nbytes, int64_t n, int64_t k, uintptr_t x_ptr, int64_t x_nbytes,
               const std::string& x_dtype, int64_t m, uintptr_t y_ptr, int64_t y_nbytes, uintptr_t bias_ptr,
               int64_t bias_nbytes, uintptr_t stream) {
  const char* who = "exl2_matmul (cuda)";
  gemv_entry(who, WeightKind::Exl2, 0, n, k, x_ptr, x_nbytes, x_dtype, m, y_ptr, y_nbytes, bias_ptr, bias_nbytes,
             stream, [&](GemvArgs& a, PtrChecks& pc) {
               set_exl2_side(who, a, pc, w_ptr, row_bytes, bits_ptr, bits_nbytes, off_ptr, off_nbytes);
               set_weights(who, a, pc, w_ptr, w_nbytes, row_bytes);
               a.aligned16 = false;   // segments of varying bytes: WExl2 stages them
             });
}

void int4_dequant(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, uintptr_t mins_ptr,
                  int64_t sm_nbytes, int64_t group_size, int64_t n, int64_t k, uintptr_t dst_ptr,
                  int64_t dst_nbytes, const std::string& dtype, uintptr_t stream) {
  const char* who = "int4 dequantize (cuda)";
  dequant_entry(who, WeightKind::Int4, n, k, dst_ptr, dst_nbytes, dtype, stream, [&](GemvArgs& a, PtrChecks& pc) {
    set_weights(who, a, pc, qw_ptr, qw_nbytes, k / 2);
    set_int4_side(who, a, pc, scales_ptr, mins_ptr, sm_nbytes, group_size);
  });
}

void int8_dequant(uintptr_t qw_ptr, int64_t qw_nbytes, uintptr_t scales_ptr, int64_t scales_nbytes, int64_t n,
                  int64_t k, uintptr_t dst_ptr, int64_t dst_nbytes, const std::string& dtype, uintptr_t stream) {
  const char* who = "int8 dequantize (cuda)";
  dequant_entry(who, WeightKind::Int8, n, k, dst_ptr, dst_nbytes, dtype, stream, [&](GemvArgs& a, PtrChecks& pc) {
    set_weights(who, a, pc, qw_ptr, qw_nbytes, k);
    set_int8_side(who, a, pc, scales_ptr, scales_nbytes);
  });
}

void exl2_dequant(uintptr_t w_ptr, int64_t w_nbytes, int64_t row_bytes, uintptr_t bits_ptr, int64_t bits_nbytes,
                  uintptr_t off_ptr, int64_t off_nbytes, int64_t n, int64_t k, uintptr_t dst_ptr, int64_t dst_nbytes,
                  const std::string& dtype, uintptr_t stream) {
  const char* who = "exl2 dequantize (cuda)";
  dequant_entry(who, WeightKind::Exl2, n, k, dst_ptr, dst_nbytes, dtype, stream, [&](GemvArgs& a, PtrChecks& pc) {
    set_exl2_side(who, a, pc, w_ptr, row_bytes, bits_ptr, bits_nbytes, off_ptr, off_nbytes);
    set_weights(who, a, pc, w_ptr, w_nbytes, row_bytes);
  });
}

}  // namespace cuda
}  // namespace pq
