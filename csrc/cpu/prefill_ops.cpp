// The prompt's row ops for the model forward on the CPU (pyquant/kernels/cpu/rowops.py): RMSNorm,
// the gated MLP's activation and causal grouped-query attention over S rows, threaded on pyquant's
// pool with the token step's vector math (llm_vec.h: the same sums, the same softmax).
//
// Why: the forward ran them as ~25 torch ops per layer on one thread (torch's own pool is kept off
// inside a forward, decoder.py: torch_single_thread). SmolLM2 pp64 spent ~21 ms of ~110 there
// (bmm 4.1, rms_norm 3.9, silu 2.7, mul 2.7, the causal mask and softmax ~3.4 ms per forward).
//
// Callers pass raw pointers with the byte size of each buffer (like _C.linear); every extent the
// kernel touches is checked against those sizes first.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/error.h"
#include "cpu/llm_vec.h"
#include "cpu/threadpool.h"

namespace py = pybind11;

namespace pq {
namespace llm {
namespace {

constexpr const char* kWho = "prefill_ops";

struct Buf {
  uintptr_t ptr;
  int64_t nbytes;
};

// Floats [0, n_floats) of b exist.
float* floats(const Buf& b, int64_t n_floats, const char* what) {
  PQ_CHECK(b.ptr != 0 && b.ptr % alignof(float) == 0, kWho, ": ", what, " must be a non-null float32 buffer");
  PQ_CHECK(b.nbytes >= 0 && n_floats >= 0 && n_floats <= b.nbytes / (int64_t)sizeof(float), kWho, ": ", what,
           " holds ", b.nbytes, " bytes, the call reads ", n_floats, " floats");
  return reinterpret_cast<float*>(b.ptr);
}

Vec vec() { return Vec{active_isa() == Isa::Avx2}; }

// Rows [S * tid / nt, S * (tid + 1) / nt) of thread tid.
template <typename F>
void rows_parallel(int64_t S, int64_t work_per_row, F f) {
  const int nth = S * work_per_row < 16384 ? 1 : 0;   // a few thousand floats: one thread is quicker
  parallel_run(nth, [&](int tid, int nt) {
    for (int64_t r = S * tid / nt; r < S * (tid + 1) / nt; ++r) f(r);
  });
}

// out[r] = rms_norm(x[r]) * w over n values, S rows (row strides in floats); out may be x.
void rms_norm_rows(Buf x, int64_t x_stride, Buf w, Buf out, int64_t out_stride, int64_t S, int64_t n, double eps) {
  PQ_CHECK(S >= 0 && n > 0 && x_stride >= n && out_stride >= n && eps >= 0, kWho, ": rms_norm_rows: bad sizes");
  const float* xp = floats(x, S ? checked_mul(kWho, S - 1, x_stride, "rows") + n : 0, "x");
  const float* wp = floats(w, n, "weight");
  float* op = floats(out, S ? checked_mul(kWho, S - 1, out_stride, "rows") + n : 0, "out");
  const Vec v = vec();
  rows_parallel(S, n, [&](int64_t r) { v.rms_norm(xp + r * x_stride, wp, op + r * out_stride, n, eps); });
}

// out[r] = act(gate[r]) * up[r], gu[r] = [gate | up] (2 * ff floats), out [S, ff].
void act_mul_rows(Buf gu, Buf out, int64_t S, int64_t ff, const std::string& act) {
  PQ_CHECK(S >= 0 && ff > 0, kWho, ": act_mul_rows: bad sizes");
  PQ_CHECK(act == "silu" || act == "gelu_tanh", kWho, ": activation must be 'silu' or 'gelu_tanh', got '", act, "'");
  const float* g = floats(gu, checked_mul(kWho, checked_mul(kWho, S, 2, "rows"), ff, "gate_up"), "gate_up");
  float* o = floats(out, checked_mul(kWho, S, ff, "out"), "out");
  const Vec v = vec();
  const bool gelu = act == "gelu_tanh";
  rows_parallel(S, ff, [&](int64_t r) {
    const float* gr = g + 2 * ff * r;
    if (gelu) v.gelu_tanh_mul(gr, gr + ff, o + ff * r, ff);
    else v.silu_mul(gr, gr + ff, o + ff * r, ff);
  });
}

// Causal grouped-query attention of S queries at positions start .. start+S-1 over the cache's
// positions 0 .. start+S-1 (a sliding window W > 0: query p reads p-W+1 .. p only).
//   q:    [S rows of q_stride floats], head h at h*hd          (a view into the fused QKV output)
//   K, V: [Hkv heads of kv_stride floats][positions][hd]        (the KV cache, filled up to start+S)
//   out:  [S, H*hd]
// Query head h reads KV head h / (H / Hkv). Work items (query, head) are dealt round-robin so the
// causal triangle splits evenly between threads.
void attention_rows(Buf q, int64_t q_stride, Buf K, Buf V, int64_t kv_stride, Buf out, int64_t S, int64_t H,
                    int64_t Hkv, int64_t hd, int64_t start, int64_t window, double scale) {
  PQ_CHECK(S >= 0 && H > 0 && Hkv > 0 && H % Hkv == 0 && hd > 0 && start >= 0 && window >= 0 &&
               q_stride >= checked_mul(kWho, H, hd, "q"),
           kWho, ": attention_rows: bad sizes");
  const int64_t T = start + S;
  PQ_CHECK(kv_stride >= checked_mul(kWho, T, hd, "kv"), kWho, ": attention_rows: the cache holds ",
           kv_stride / hd, " positions per head, the call reads ", T);
  const float* qp = floats(q, S ? checked_mul(kWho, S - 1, q_stride, "q") + H * hd : 0, "q");
  const int64_t kv_n = checked_mul(kWho, Hkv - 1, kv_stride, "kv") + T * hd;
  const float* kp = floats(K, kv_n, "K");
  const float* vp = floats(V, kv_n, "V");
  float* op = floats(out, checked_mul(kWho, S, H * hd, "out"), "out");
  const Vec v = vec();
  const int64_t g = H / Hkv, items = S * H;
  const float sc = (float)scale;
  const int nth = checked_mul(kWho, checked_mul(kWho, S, T, "work"), H * hd, "work") < 65536 ? 1 : 0;
  parallel_run(nth, [&](int tid, int nt) {
    std::vector<float> scores((size_t)T);
    for (int64_t i = tid; i < items; i += nt) {
      const int64_t s = i / H, h = i % H, pos = start + s;
      const int64_t t0 = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      const float* Kh = kp + (h / g) * kv_stride + t0 * hd;
      const float* Vh = vp + (h / g) * kv_stride + t0 * hd;
      v.attend_head(qp + s * q_stride + h * hd, Kh, Vh, pos + 1 - t0, hd, sc, scores.data(), op + s * H * hd + h * hd);
    }
  });
}

Buf buf(uintptr_t p, int64_t n) { return Buf{p, n}; }

}  // namespace
}  // namespace llm

void register_prefill_bindings(py::module_& m) {
  using namespace llm;
  m.def("rms_norm_rows",
        [](uintptr_t x, int64_t xn, int64_t xs, uintptr_t w, int64_t wn, uintptr_t o, int64_t on, int64_t os, int64_t S,
           int64_t n, double eps) {
          py::gil_scoped_release nogil;
          rms_norm_rows(buf(x, xn), xs, buf(w, wn), buf(o, on), os, S, n, eps);
        },
        "out[r] = x[r] * w / sqrt(mean(x[r]^2) + eps): (x, x_nbytes, x_row_stride, w, w_nbytes, out, out_nbytes, "
        "out_row_stride, rows, n, eps); strides in floats");
  m.def("act_mul_rows",
        [](uintptr_t gu, int64_t gn, uintptr_t o, int64_t on, int64_t S, int64_t ff, const std::string& act) {
          py::gil_scoped_release nogil;
          act_mul_rows(buf(gu, gn), buf(o, on), S, ff, act);
        },
        "out[r] = act(gate[r]) * up[r] over rows of [gate | up]: (gate_up, nbytes, out, nbytes, rows, ffn, act)");
  m.def("attention_rows",
        [](uintptr_t q, int64_t qn, int64_t qs, uintptr_t k, int64_t kn, uintptr_t v, int64_t vn, int64_t kvs, uintptr_t o,
           int64_t on, int64_t S, int64_t H, int64_t Hkv, int64_t hd, int64_t start, int64_t window, double scale) {
          py::gil_scoped_release nogil;
          attention_rows(buf(q, qn), qs, buf(k, kn), buf(v, vn), kvs, buf(o, on), S, H, Hkv, hd, start, window, scale);
        },
        "causal grouped-query attention of rows start..start+S-1 over the KV cache (see prefill_ops.cpp)");
}

}  // namespace pq
