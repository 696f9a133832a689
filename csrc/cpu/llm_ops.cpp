// The runner's token step in C++: one call per token runs every layer (RMSNorm, QKV GEMV, RoPE,
// KV-cache write, grouped-query attention, output projection + residual, RMSNorm, gate/up GEMV,
// SiLU*up, down projection + residual) and the output head, with no Python or torch op between
// them. The Python step it replaced (since removed: its fallback is now the model forward) spent ~1 ms per SmolLM2 token on
// ~11 torch ops per layer at ~3 us each, plus per-call argument parsing and allocations in the
// matmul entry points (std::vector activation buffers per call).
//
// The GEMVs use the matmul engine's internal interface (matmul_internal.h: type_info, the fused
// AVX2 row kernels, the unpack + dot kernels and the activation quantizers), the same int8
// activation path `_C.linear` takes at m = 1, so results match the Python step's to float
// rounding (the output-row split between threads changes nothing: each row is one thread's dot).
//
// Measured (SmolLM2-135M Q4_1, 2 threads, shared 2-core Zen 3 box at load ~1.5, `pyquant bench
// smollm2 -p 0 -n 32 -t 2 -r 5`, two alternating runs each): tg32 113-119 tok/s with the Python
// step on file-mapped weights -> 173-182 tok/s with this step on packed weights (kernels/cpu/packing.py);
// llama.cpp's anchor is 106. Per token (bench --overhead profile): the five GEMV phases ~6.0 ms
// of ~6.3, everything else (norms, activation quantization, RoPE/KV, attention, SiLU, the Python
// call) ~0.3 ms; the GEMVs stream 96 MB at ~15 GB/s of the 23 GB/s probe measured alongside.
// After merging main (02:48 UTC, load ~1.3): tg32 178-193 tok/s (5.2-5.6 ms/token, 80% of the
// 23.3 GB/s probe), Python step on file-mapped weights 111.5; 1 thread 83.9 (llama.cpp 71).
// Tried and not kept: prefetching a thread's next GEMV rows while it spins at the barrier
// (16 / 64 KiB: 5.14-5.44 vs 5.24-5.29 ms p10 per step, inside the noise).
//
// Safety: Python hands buffers once (`LlmStep.add_linear` takes _C.Weight objects, `set_*`
// buffers); every size is checked against what step() will touch, and step() checks the position.
// The step holds a reference to every object it points into (cpu/buffer.h), so nothing it reads
// can be freed while it lives.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/fp16.h"
#include "common/qtypes.h"
#include "cpu/act_quant.h"
#include "cpu/buffer.h"
#include "cpu/cpu_features.h"
#include "cpu/error.h"
#include "cpu/llm_kernels.h"
#include "cpu/llm_vec.h"
#include "cpu/matmul_internal.h"
#include "cpu/threadpool.h"
#include "cpu/weight.h"

namespace py = pybind11;

namespace pq {
namespace llm {
namespace {

using mm::Kind;
using mm::kChunk;
using mm::TypeInfo;
using mm::UChunk;
using mm::WeightRef;
using mm::XQRow;

int64_t checked_mul(int64_t a, int64_t b, const char* what) { return pq::checked_mul("LlmStep", a, b, what); }

// ---------------------------------------------------------------- GEMV
// One weight feeding rows [off, off + n) of a slot's output.
struct Part {
  WeightRef w;
  const TypeInfo* ti;
  int64_t off, n;
  const float* bias;  // float32 [n] or null
};

// A linear (possibly several weights concatenated along the outputs): y = x @ W.T + b (+ res).
struct Slot {
  std::vector<Part> parts;
  int64_t n = 0, k = 0;
  const int64_t* perm = nullptr;  // act-order weights (EXL2): the slot reads x[perm[j]] as its input j
};

// Activation x quantized once per step and kind (X32 / X256), reused by every part; in int8x2
// mode row[1] is the int8 quantization of what row[0] dropped (act_quant.h: quant_residual).
struct ActQ {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int16_t> bs;
  XQRow row[2]{};
};

// Per-phase wall time of step() (set_profile(true)): where a token's time goes, for bench/.
enum Phase { kNorm, kActQuant, kQKV, kRopeKV, kAttn, kWo, kGateUp, kSilu, kDown, kHead, kReduce, kNumPhases };
const char* const kPhaseNames[kNumPhases] = {"norm", "act_quant", "qkv", "rope_kv", "attention", "wo",
                                             "gate_up", "silu_mul", "down", "output_head", "all_reduce"};

// Every buffer the step reads (norms, RoPE, permutations) or writes (KV cache, x, logits) is held
// by it (cpu/buffer.h): the memory cannot go away under it. Weights come as _C.Weight objects,
// which hold their own buffers.
static HeldBuffer hold(std::vector<py::object>& owners, const py::object& obj, const std::string& what, bool writable) {
  return pq::hold(owners, obj, "LlmStep: " + what, writable);
}

class Step {
 public:
  Step(int64_t n_layers, int64_t d, int64_t n_heads, int64_t n_kv, int64_t head_dim, int64_t rope_dim,
          int64_t ffn, int64_t vocab, int64_t max_seq, double eps, double attn_scale)
      : L_(n_layers), d_(d), H_(n_heads), Hkv_(n_kv), hd_(head_dim), rd_(rope_dim), ff_(ffn), V_(vocab),
        T_(max_seq), eps_(eps), scale_((float)attn_scale) {
    PQ_CHECK(L_ >= 1 && L_ <= 4096 && d_ >= 1 && d_ <= (1 << 20) && H_ >= 1 && H_ <= 4096 && Hkv_ >= 1 &&
                 H_ % Hkv_ == 0 && hd_ >= 1 && hd_ <= 4096 && rd_ >= 0 && rd_ <= hd_ && rd_ % 2 == 0 &&
                 ff_ >= 1 && ff_ <= (1 << 24) && V_ >= 1 && V_ <= (1 << 24) && T_ >= 1 && T_ <= (1 << 24),
             "LlmStep: bad model dimensions");
    PQ_CHECK(eps_ >= 0 && std::isfinite(eps_), "LlmStep: bad norm eps");
    qd_ = H_ * hd_;
    kvd_ = Hkv_ * hd_;
    slots_.resize((size_t)(4 * L_ + 1));
    norms_.assign((size_t)(2 * L_ + 1), nullptr);
    qk_norms_.assign((size_t)(2 * L_), nullptr);
    post_norms_.assign((size_t)(2 * L_), nullptr);
    layer_window_.assign((size_t)L_, -1);
    layer_local_.assign((size_t)L_, 0);
    wo_full_.assign((size_t)L_, 0);
    tmp_.resize((size_t)d_);
    h_.resize((size_t)std::max(d_, qd_));
    x2_.resize((size_t)d_);
    qkv_.resize((size_t)(qd_ + 2 * kvd_));
    attn_.resize((size_t)qd_);
    gu_.resize((size_t)(2 * ff_));
    act_.resize((size_t)ff_);
  }

  // slot: "qkv" | "wo" | "gate_up" | "down" (layer 0..L-1) or "output" (layer -1); weight: a
  // _C.Weight (any format the matmul engine has a kernel for, validated when it was made); bias:
  // float32 [n] or None. The step holds the weight object, and with it the weight's buffers.
  void add_linear(const std::string& slot, int64_t layer, const py::object& weight, const py::object& bias) {
    const mm::Weight* w = nullptr;
    try {
      w = &weight.cast<const mm::Weight&>();
    } catch (const py::cast_error&) {
      fail("LlmStep: ", slot, ": weight must be a _C.Weight, got ", std::string(py::str(py::type::of(weight))));
    }
    owners_.push_back(weight);
    Slot& s = slot_ref(slot, layer);
    const int64_t n = w->n(), k = w->k();
    PQ_CHECK(s.parts.empty() || s.k == k, "LlmStep: ", slot, ": parts disagree on k");
    const float* bias_ptr = nullptr;
    if (!bias.is_none()) {
      const HeldBuffer bb = hold(owners_, bias, slot + " bias", false);
      PQ_CHECK(bb.nbytes >= checked_mul(n, 4, "bias"), "LlmStep: ", slot, ": bias too small");
      bias_ptr = reinterpret_cast<const float*>(bb.ptr);
    }
    s.parts.push_back(Part{w->ref(), &w->info(), s.n, n, bias_ptr});
    s.n += n;
    s.k = k;
    kmax_ = std::max(kmax_, k);
  }

  // Weights stored with their input channels permuted (EXL2's act-order): the slot's parts read
  // x[perm[j]] as input j. perm: int64 [k], a permutation of 0..k-1 (checked).
  void set_input_perm(const std::string& slot, int64_t layer, const py::object& perm) {
    Slot& s = slot_ref(slot, layer);
    PQ_CHECK(!s.parts.empty(), "LlmStep: ", slot, ": set_input_perm before add_linear");
    const HeldBuffer pb = hold(owners_, perm, slot + " input permutation", false);
    PQ_CHECK(pb.nbytes == checked_mul(s.k, 8, "perm"), "LlmStep: ", slot, ": permutation needs ", s.k,
             " int64 values, got ", pb.nbytes, " bytes");
    const int64_t* p = reinterpret_cast<const int64_t*>(pb.ptr);
    std::vector<char> seen((size_t)s.k, 0);
    for (int64_t j = 0; j < s.k; ++j) {
      PQ_CHECK(p[j] >= 0 && p[j] < s.k && !seen[(size_t)p[j]], "LlmStep: ", slot, ": not a permutation of 0..",
               s.k - 1, " (entry ", j, ")");
      seen[(size_t)p[j]] = 1;
    }
    s.perm = p;
    if ((int64_t)xgather_.size() < s.k) xgather_.resize((size_t)s.k);
  }

  // which: "attn" | "ffn" (layer 0..L-1) or "output" (layer -1): float32 [d]; "q" | "k": float32
  // [head_dim], an RMSNorm of every Q / K head before RoPE (qwen3's QK-norm; absent: none).
  void set_norm(const std::string& which, int64_t layer, const py::object& weight) {
    const HeldBuffer wb = hold(owners_, weight, which + " norm", false);
    const uintptr_t ptr = reinterpret_cast<uintptr_t>(wb.ptr);
    const int64_t nbytes = wb.nbytes;
    // the optional per-layer norms, each a pair per layer: QK-norm [head_dim], post-norms [d]
    const bool qk = which == "q" || which == "k", post = which == "attn_post" || which == "ffn_post";
    if (qk || post) {
      PQ_CHECK(layer >= 0 && layer < L_, "LlmStep: bad layer ", layer, " for the ", which, " norm");
      PQ_CHECK(ptr != 0 && nbytes >= 4 * (qk ? hd_ : d_), "LlmStep: ", which, " norm weight too small");
      std::vector<const float*>& table = qk ? qk_norms_ : post_norms_;
      table[(size_t)(2 * layer + (which == "k" || which == "ffn_post"))] = reinterpret_cast<const float*>(ptr);
      return;
    }
    int64_t i;
    if (which == "output") i = 2 * L_;
    else {
      PQ_CHECK(layer >= 0 && layer < L_ && (which == "attn" || which == "ffn"), "LlmStep: bad norm ", which);
      i = 2 * layer + (which == "ffn");
    }
    PQ_CHECK(ptr != 0 && nbytes >= 4 * d_, "LlmStep: norm weight too small");
    norms_[(size_t)i] = reinterpret_cast<const float*>(ptr);
  }

  // kv: float32 [L, 2, Hkv, T, hd]; rope: complex64 [T, rope_dim/2]; x: float32 [d] (the embedding
  // goes in, the residual stream lives there); logits: float32 [vocab].
  void set_buffers(const py::object& kv_buf, const py::object& rope_buf, const py::object& x_buf,
                   const py::object& logits_buf) {
    const HeldBuffer kvb = hold(owners_, kv_buf, "kv", true), rb = hold(owners_, rope_buf, "rope", false);
    const HeldBuffer xb = hold(owners_, x_buf, "x", true), lb = hold(owners_, logits_buf, "logits", true);
    const uintptr_t kv = reinterpret_cast<uintptr_t>(kvb.ptr), rope = reinterpret_cast<uintptr_t>(rb.ptr);
    const uintptr_t x = reinterpret_cast<uintptr_t>(xb.ptr), logits = reinterpret_cast<uintptr_t>(lb.ptr);
    const int64_t kv_nbytes = kvb.nbytes, rope_nbytes = rb.nbytes, x_nbytes = xb.nbytes, logits_nbytes = lb.nbytes;
    const int64_t kv_need = checked_mul(checked_mul(checked_mul(L_, 2 * Hkv_, "kv"), T_, "kv"), hd_ * 4, "kv");
    PQ_CHECK(kv && kv_nbytes >= kv_need, "LlmStep: KV cache has ", kv_nbytes, " bytes, needs ", kv_need);
    PQ_CHECK(rope && rope_nbytes >= checked_mul(T_, rd_ / 2 * 8, "rope"), "LlmStep: rope table too small");
    PQ_CHECK(x && x_nbytes >= 4 * d_, "LlmStep: x too small");
    PQ_CHECK(logits && logits_nbytes >= 4 * V_, "LlmStep: logits too small");
    kv_ = reinterpret_cast<float*>(kv);
    rope_ = reinterpret_cast<const float*>(rope);
    x_ = reinterpret_cast<float*>(x);
    logits_ = reinterpret_cast<float*>(logits);
  }

  // Checks that every piece is in place with consistent shapes (once, before the first step).
  void finalize(int nthreads) {
    PQ_CHECK(nthreads >= 0, "LlmStep: nthreads must be >= 0");
    nthreads_ = nthreads;
    for (int64_t l = 0; l < L_; ++l) {
      expect(slots_[(size_t)(4 * l)], qd_ + 2 * kvd_, d_, "qkv");
      expect(slots_[(size_t)(4 * l + 1)], d_, qd_, "wo");
      expect(slots_[(size_t)(4 * l + 2)], 2 * ff_, d_, "gate_up");
      expect(slots_[(size_t)(4 * l + 3)], d_, ff_, "down");
    }
    if (last_) expect(slots_[(size_t)(4 * L_)], V_, d_, "output");
    for (int64_t i = 0; i < 2 * L_ + (last_ ? 1 : 0); ++i)
      PQ_CHECK(norms_[(size_t)i] != nullptr, "LlmStep: a norm weight is missing");
    PQ_CHECK(kv_ && rope_ && x_ && logits_, "LlmStep: buffers not set");
    const int64_t kp = mm::n_chunks(kmax_) * kChunk;
    for (ActQ& a : actq_) {
      a.q.resize((size_t)(2 * kp));
      a.d.resize((size_t)(2 * kp / 32));
      a.s.resize((size_t)(2 * kp / 32));
      a.bs.resize((size_t)(2 * kp / 16));
    }
    ready_ = true;
  }

  // Logits of the token whose embedding is in x, at position pos (the cache holds 0..pos-1).
  // Activations as the matmul engine's mode says (set_matmul_act / PYQUANT_MATMUL_ACT): int8,
  // int8x2 (int8 + its int8 residual, two rows per dot) or float (weights decoded to float and
  // dotted in float32, exact up to summation order), so the step computes what _C.linear does.
  //
  // One parallel region for the whole token: the threads meet at a spin barrier between phases
  // instead of one pool dispatch per GEMV (121 per SmolLM2 token, ~1.5 us each measured as the
  // 2-thread minus 1-thread time of a 576x576 GEMV). Small serial pieces (norm + activation
  // quantization, RoPE + KV write, SiLU*up) run on thread 0 while the others wait at the barrier;
  // each thread takes a contiguous share of every GEMV's rows, attention is split by query heads.
  void step(int64_t pos) {
    PQ_CHECK(ready_, "LlmStep: finalize() not called");
    PQ_CHECK(pos >= 0 && pos < T_, "LlmStep: position ", pos, " outside the KV cache (", T_, ")");
    int nth = nthreads_ > 0 ? nthreads_ : get_num_threads();
    nth = std::max(1, std::min(nth, 256));
    // per-thread scratch, sized before the region (nothing allocates inside it)
    const int64_t nch = mm::n_chunks(kmax_);
    if ((int)scratch_.size() < nth) {
      scratch_.resize((size_t)nth);
      for (Scratch& sc : scratch_) {
        sc.chunks.resize((size_t)nch);
        sc.rowf.resize((size_t)(nch * kChunk));
        sc.scores.resize((size_t)T_);
      }
    }
    py::gil_scoped_release nogil;
    avx2_ = active_isa() == Isa::Avx2;
    float_act_ = mm::act_float();
    comp_ = !float_act_ && mm::act_compensated();
    if (profile_) ++prof_steps_;
    tick();
    const bool multi = governor_pick(nth);
    nth = multi ? nth : 1;
    nth_ = nth;
    const Clock::time_point t_start = Clock::now();
    hook_failed_ = false;
    if (nth == 1 || !one_region_) {
      body(pos, 0, 1);
    } else {
      barrier_count_.store(0);
      parallel_run(nth, [&](int tid, int nt) { body(pos, tid, nt); });
    }
    governor_record(multi, std::chrono::duration<double>(Clock::now() - t_start).count());
    if (hook_failed_) throw std::runtime_error("LlmStep: a tensor-parallel hook raised");
  }

  // Thread-count governor. A step meets at ~150 barriers, so when another process holds the cores
  // every barrier waits for a descheduled partner: measured with one busy process per core, 2
  // threads ran SmolLM2 at 33-38 tok/s against 45-49 for 1 thread (llama.cpp: 37 vs 61). So the
  // step keeps a running mean of its time at nth threads and at 1, runs the faster, and re-times
  // the other every 128th step (~1 s at 100 tok/s; the slower mode's 1/128 of a step costs the
  // faster under 1%, where every 64th cost ~1.5% beside a busy process).
  // set_adaptive(false) / PYQUANT_ADAPTIVE_THREADS=0 pins nth.
  bool governor_pick(int nth) {
    if (nth == 1 || !adaptive_) return true;
    ++gov_steps_;
    if (gov_ema_[1] == 0) return true;           // first: time the multi-threaded step
    if (gov_ema_[0] == 0) return false;          // then the 1-thread one
    // No margin for the multi-threaded step: with a 5% one, 2 threads beside one busy process kept
    // running 4% slower than 1 thread would (101.5 vs 105.7 tok/s, bench/contention.py).
    const bool multi_faster = gov_ema_[1] <= gov_ema_[0];
    return gov_steps_ % 128 == 0 ? !multi_faster : multi_faster;
  }
  void governor_record(bool multi, double seconds) {
    double& e = gov_ema_[multi ? 1 : 0];
    e = e == 0 ? seconds : 0.75 * e + 0.25 * seconds;
    ++gov_count_[multi ? 1 : 0];
  }

  // false: the previous structure (one thread-pool dispatch per GEMV, everything else on the
  // calling thread), kept for side-by-side measurements.
  void set_one_region(bool on) { one_region_ = on; }

  // Tensor parallel with an act-order attn_output whose stored columns read other ranks' heads
  // (EXL2): after attention, thread 0 copies this rank's heads into buf[offset, offset + q_dim)
  // and calls hook(), which fills the rest of buf (float32 [q_full]) from the other ranks; a layer
  // marked by set_attn_input(layer, index) then reads its wo input j as buf[index[j]].
  void set_attn_gather(const py::object& hook, const py::object& buf, int64_t offset, int64_t q_full) {
    PQ_CHECK(PyCallable_Check(hook.ptr()), "LlmStep: the gather hook must be callable");
    PQ_CHECK(q_full >= qd_ && offset >= 0 && offset + qd_ <= q_full, "LlmStep: bad attention gather layout");
    const HeldBuffer b = hold(owners_, buf, "attention gather buffer", true);
    PQ_CHECK(b.ptr && b.nbytes >= 4 * q_full, "LlmStep: attention gather buffer too small");
    gather_hook_ = hook;
    attn_full_ = reinterpret_cast<float*>(const_cast<uint8_t*>(b.ptr));
    attn_off_ = offset;
    q_full_ = q_full;
  }

  void set_attn_input(int64_t layer, const py::object& index) {
    Slot& s = slot_ref("wo", layer);
    PQ_CHECK(!s.parts.empty() && attn_full_, "LlmStep: set_attn_input needs add_linear and set_attn_gather first");
    const HeldBuffer ib = hold(owners_, index, "wo input index", false);
    PQ_CHECK(ib.nbytes == checked_mul(s.k, 8, "index"), "LlmStep: wo input index needs ", s.k, " int64 values");
    const int64_t* p = reinterpret_cast<const int64_t*>(ib.ptr);
    for (int64_t j = 0; j < s.k; ++j)
      PQ_CHECK(p[j] >= 0 && p[j] < q_full_, "LlmStep: wo input index entry ", j, " outside [0, ", q_full_, ")");
    s.perm = p;
    wo_full_[(size_t)layer] = 1;
    if ((int64_t)xgather_.size() < s.k) xgather_.resize((size_t)s.k);
  }

  // Layer split (pyquant/parallel/pipeline.py): this step holds a run of the model's layers.
  // Only the first run scales the embedding; a run that is not the last stops at its residual
  // (x holds it after step()) and has no output norm or head.
  void set_stage(bool first, bool last) {
    first_ = first;
    last_ = last;
  }

  // Tensor parallelism (pyquant/parallel/): this step holds a rank's slice of every layer, and
  // wo / down produce partial sums. They go to `buf` (float32 [d]); thread 0 then calls `hook()`
  // (with the GIL), which sums `buf` in place over the ranks (torch.distributed.all_reduce), and
  // adds the result to the residual. A hook that raises is not called again this step; the step
  // finishes on the partial sums and step() raises afterwards (the Python side keeps the error).
  void set_reduce(const py::object& hook, const py::object& buf) {
    PQ_CHECK(PyCallable_Check(hook.ptr()), "LlmStep: the reduce hook must be callable");
    const HeldBuffer b = hold(owners_, buf, "reduce buffer", true);
    PQ_CHECK(b.ptr && b.nbytes >= 4 * d_, "LlmStep: reduce buffer too small");
    reduce_hook_ = hook;
    red_ = reinterpret_cast<float*>(const_cast<uint8_t*>(b.ptr));
  }

  void set_sliding_window(int64_t w) {
    PQ_CHECK(w >= 0, "LlmStep: sliding window must be >= 0, got ", w);
    window_ = w;
  }

  // Per-layer attention (interleaved local/global families): window (0: all positions) and whether
  // the layer rotates with the local RoPE table (set_local_rope).
  void set_layer(int64_t layer, int64_t window, bool local) {
    PQ_CHECK(layer >= 0 && layer < L_, "LlmStep: layer ", layer, " outside [0, ", L_, ")");
    PQ_CHECK(window >= 0, "LlmStep: window must be >= 0, got ", window);
    layer_window_[(size_t)layer] = window;
    layer_local_[(size_t)layer] = local;
  }
  void set_local_rope(const py::object& table) {
    const HeldBuffer b = hold(owners_, table, "local rope table", false);
    PQ_CHECK(b.nbytes >= checked_mul(T_, rd_ / 2 * 8, "rope"), "LlmStep: local rope table too small");
    rope_local_ = reinterpret_cast<const float*>(b.ptr);
  }
  void set_embed_scale(double s) {
    PQ_CHECK(std::isfinite(s) && s > 0, "LlmStep: embedding scale must be finite and > 0");
    embed_scale_ = (float)s;
  }
  void set_logit_softcap(double c) {
    PQ_CHECK(std::isfinite(c) && c >= 0, "LlmStep: logit soft-cap must be finite and >= 0");
    softcap_ = (float)c;
  }
  void set_activation(const std::string& a) {
    PQ_CHECK(a == "silu" || a == "gelu_tanh", "LlmStep: activation must be 'silu' or 'gelu_tanh', got '", a, "'");
    gelu_ = a == "gelu_tanh";
  }

  void set_adaptive(bool on) {
    adaptive_ = on;
    gov_ema_[0] = gov_ema_[1] = 0;
  }
  // {"single": steps run on 1 thread, "multi": on nth, "single_ms"/"multi_ms": running means}
  py::dict governor() const {
    py::dict d;
    d["single"] = gov_count_[0];
    d["multi"] = gov_count_[1];
    d["single_ms"] = 1e3 * gov_ema_[0];
    d["multi_ms"] = 1e3 * gov_ema_[1];
    return d;
  }

  void set_profile(bool on) {
    profile_ = on;
    prof_steps_ = 0;
    for (double& t : prof_) t = 0;
  }
  // {phase: microseconds per step} since set_profile(true).
  py::dict profile() const {
    py::dict d;
    for (int i = 0; i < kNumPhases; ++i) d[kPhaseNames[i]] = prof_steps_ ? 1e6 * prof_[i] / (double)prof_steps_ : 0.0;
    return d;
  }

 private:
  using Clock = std::chrono::steady_clock;
  void tick() {
    if (profile_) t0_ = Clock::now();
  }
  void tock(Phase p) {  // charges the time since the last tick/tock to p
    if (!profile_) return;
    const Clock::time_point t = Clock::now();
    prof_[p] += std::chrono::duration<double>(t - t0_).count();
    t0_ = t;
  }

  Slot& slot_ref(const std::string& name, int64_t layer) {
    if (name == "output") return slots_[(size_t)(4 * L_)];
    PQ_CHECK(layer >= 0 && layer < L_, "LlmStep: layer ", layer, " outside [0, ", L_, ")");
    int i;
    if (name == "qkv") i = 0;
    else if (name == "wo") i = 1;
    else if (name == "gate_up") i = 2;
    else if (name == "down") i = 3;
    else fail("LlmStep: unknown slot '", name, "'");
    return slots_[(size_t)(4 * layer + i)];
  }

  void expect(const Slot& s, int64_t n, int64_t k, const char* what) {
    PQ_CHECK(!s.parts.empty() && s.n == n && s.k == k, "LlmStep: ", what, " weights are [", s.n, ", ", s.k,
             "], the model needs [", n, ", ", k, "]");
  }

  // out = x * w / sqrt(mean(x^2) + eps) over n values (d_model: the block's norms; head_dim: QK-norm,
  // in place); out may be x.
  void rms_norm(const Vec& v, const float* x, const float* w, float* out, int64_t n) const { v.rms_norm(x, w, out, n, eps_); }

  // Adjacent pairs (x[2i], x[2i+1]) of the first rope_dim values of each head rotate by the
  // table's e^(i pos theta_i) (the Python step's complex multiply).
  void rope(float* x, int64_t heads, int64_t pos, const float* table) const {
    const float* f = table + pos * rd_;  // [rd/2] complex = rd floats
    for (int64_t h = 0; h < heads; ++h) {
      float* p = x + h * hd_;
      for (int64_t i = 0; i < rd_ / 2; ++i) {
        const float a = p[2 * i], b = p[2 * i + 1], c = f[2 * i], s = f[2 * i + 1];
        p[2 * i] = a * c - b * s;
        p[2 * i + 1] = a * s + b * c;
      }
    }
  }

  struct Scratch {
    std::vector<UChunk> chunks;
    std::vector<float> rowf, scores;
  };

  // All threads of the region call it with the same nt; the last one to arrive releases the rest.
  // Spins with pause, yielding the core now and then: on an oversubscribed machine the thread we
  // wait for may need it.
  // All nt threads meet: spin briefly, then sleep on the generation word (threadpool.h), so a
  // thread waiting for a descheduled partner frees its core.
  void barrier(int nt) {
    if (nt <= 1) return;
    const uint32_t gen = barrier_.word.load(std::memory_order_acquire);
    if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) == nt - 1) {
      barrier_count_.store(0, std::memory_order_relaxed);
      barrier_.word.fetch_add(1, std::memory_order_seq_cst);
      wake_all(barrier_);
      return;
    }
    wait_while_equal(barrier_, gen);
  }

  // Thread 0 quantizes x for the slot's GEMV; then everyone meets, computes its rows, meets again.
  void gemv(const Slot& s, const float* x, float* y, const float* res, int tid, int nt) {
    if (s.perm != nullptr) {   // act-order weights: thread 0 gathers x before anyone reads it
      if (tid == 0)
        for (int64_t j = 0; j < s.k; ++j) xgather_[(size_t)j] = x[s.perm[j]];
      x = xgather_.data();
    }
    if (tid == 0) {
      quant_act(s, x);
      tock(kActQuant);
    }
    barrier(nt);
    if (nt == 1 && nth_ > 1) {  // set_one_region(false): one pool dispatch per GEMV
      parallel_run(nth_, [&](int t, int n) { gemv_share(s, x, y, res, t, n); });
      return;
    }
    gemv_share(s, x, y, res, tid, nt);
    barrier(nt);
  }

  // Thread t's contiguous share of the rows (multiples of 16). Measured: handing out 16-row chunks
  // from a shared counter instead made the 2-thread step ~1 ms slower (5.98 -> 7.11 ms p10 per
  // step): interleaved chunks break each thread's sequential stream through the weights.
  void gemv_share(const Slot& s, const float* x, float* y, const float* res, int t, int n) {
    const int64_t units = (s.n + 15) / 16;
    const int64_t r0 = std::min(s.n, units * t / n * 16), r1 = std::min(s.n, units * (t + 1) / n * 16);
    if (r0 < r1) gemv_rows(s, x, y, res, r0, r1, scratch_[(size_t)t]);
  }

  void quant_act(const Slot& s, const float* x) {
    const mm::Kernels& kern = avx2_ ? mm::avx2_kernels() : mm::scalar_kernels();
    const int64_t kp = mm::n_chunks(s.k) * kChunk;
    bool have[2] = {false, false};
    for (const Part& p : s.parts) {
      if (p.ti->kind == Kind::Float || float_act_) continue;
      const int kind = p.ti->kind == Kind::X256;
      if (have[kind]) continue;
      have[kind] = true;
      ActQ& a = actq_[kind];
      mm::quant_activation(kern, x, s.k, kp, kind, comp_, a.q.data(),
                           a.d.data(), a.s.data(), a.bs.data(), a.row);
    }
  }

  // y[r] = W[r] . x (+ bias) (+ res[r]) for r in [r0, r1): the int8 activation path of
  // _C.linear at m = 1 (float weights, or float_act: a float dot).
  void gemv_rows(const Slot& s, const float* x, float* y, const float* res, int64_t r0, int64_t r1,
                 Scratch& scr) const {
    const mm::Kernels& kern = avx2_ ? mm::avx2_kernels() : mm::scalar_kernels();
    const int64_t nch = mm::n_chunks(s.k);
    const float* xs[1] = {x};
    size_t pi = 0;
    for (int64_t r = r0; r < r1; ++r) {
      while (r >= s.parts[pi].off + s.parts[pi].n) ++pi;
      const Part& p = s.parts[pi];
      const int64_t rl = r - p.off;
      float out, o2[2];
      // row-interleaved weight: 8 rows at once where a whole group lies in [r, r1)
      if (avx2_ && !float_act_ && p.ti->group8_avx2 && rl % 8 == 0 && r + 8 <= r1) {
        float o8[8];
        p.ti->group8_avx2(p.w, rl, actq_[p.ti->kind == Kind::X256].row, 1, comp_, o8);
        for (int i = 0; i < 8; ++i)
          y[r + i] = o8[i] + (p.bias ? p.bias[rl + i] : 0.f) + (res ? res[r + i] : 0.f);
        r += 7;
        continue;
      }
      if (p.ti->kind == Kind::Float && p.w.qtype == (int)QType::F32) {
        kern.dot_f(reinterpret_cast<const float*>(p.w.data + rl * p.w.row_bytes), xs, 1, s.k, &out);
      } else if (p.ti->kind == Kind::Float) {   // F16 / BF16 rows (an AWQ model's lm_head), read as stored
        const uint16_t* wh = reinterpret_cast<const uint16_t*>(p.w.data + rl * p.w.row_bytes);
        const bool bf16 = p.w.qtype == (int)QType::BF16;
        if (avx2_) {
          mm::dot_half_avx2(wh, bf16, xs, 1, s.k, &out);
        } else {
          float* rf = scr.rowf.data();
          for (int64_t t = 0; t < s.k; ++t) rf[t] = bf16 ? bf16_to_fp32(wh[t]) : fp16_to_fp32(wh[t]);
          kern.dot_f(rf, xs, 1, s.k, &out);
        }
      } else if (float_act_) {
        mm::row_to_float(p.w, rl, 0, nch, scr.rowf.data(), scr.chunks.data(), avx2_);
        kern.dot_f(scr.rowf.data(), xs, 1, s.k, &out);
      } else {
        const XQRow* row = actq_[p.ti->kind == Kind::X256].row;
        const int mr = comp_ ? 2 : 1;
        if (comp_ && avx2_ && p.ti->fused_pair_avx2) {
          p.ti->fused_pair_avx2(p.w, rl, row, &out);
        } else if (avx2_ && p.ti->fused_avx2) {
          p.ti->fused_avx2(p.w, rl, row, mr, o2);
          out = comp_ ? o2[0] + o2[1] : o2[0];
        } else {
          const mm::UnpackRowFn unpack = avx2_ && p.ti->unpack_avx2 ? p.ti->unpack_avx2 : p.ti->unpack_scalar;
          unpack(p.w, rl, 0, nch, scr.chunks.data());
          const mm::DotQFn dot = p.ti->kind == Kind::X256 ? (p.ti->signed_q ? kern.dot_x256_s : kern.dot_x256_u)
                                                          : (p.ti->signed_q ? kern.dot_x32_s : kern.dot_x32_u);
          dot(scr.chunks.data(), nch, row, mr, o2);
          out = comp_ ? o2[0] + o2[1] : o2[0];
        }
      }
      if (p.bias) out += p.bias[rl];
      if (res) out += res[r];
      y[r] = out;
    }
  }

  // Query heads [hq0, hq1) of layer l over positions 0..pos (head hq reads KV head hq / g).
  // With a sliding window W only positions pos-W+1 .. pos are attended (llama.cpp's standard SWA).
  void attend(int64_t l, int64_t pos, int64_t hq0, int64_t hq1, float* sc) {
    const Vec v{avx2_};
    const int64_t W = layer_window_[(size_t)l] >= 0 ? layer_window_[(size_t)l] : window_;
    const int64_t t0 = W > 0 ? std::max<int64_t>(0, pos - W + 1) : 0;
    const int64_t T = pos + 1 - t0, g = H_ / Hkv_;
    const float* K = kv_ + l * 2 * Hkv_ * T_ * hd_;
    const float* Vc = K + Hkv_ * T_ * hd_;
    for (int64_t hq = hq0; hq < hq1; ++hq) {
      const float* q = qkv_.data() + hq * hd_;
      const float* Kh = K + ((hq / g) * T_ + t0) * hd_;
      const float* Vh = Vc + ((hq / g) * T_ + t0) * hd_;
      float* o = attn_.data() + hq * hd_;
      v.attend_head(q, Kh, Vh, T, hd_, scale_, sc, o);
    }
  }

  // The token, as thread tid of nt (profile times are thread 0's view: its work plus waits).
  void body(int64_t pos, int tid, int nt) {
    const Vec v{avx2_};
    const bool t0 = tid == 0;
    if (t0 && first_ && embed_scale_ != 1.f)
      for (int64_t i = 0; i < d_; ++i) x_[i] *= embed_scale_;   // seen by the others after the first barrier
    for (int64_t l = 0; l < L_; ++l) {
      if (t0) {
        rms_norm(v, x_, norms_[(size_t)(2 * l)], h_.data(), d_);
        tock(kNorm);
      }
      gemv(slots_[(size_t)(4 * l)], h_.data(), qkv_.data(), nullptr, tid, nt);
      if (t0) {
        tock(kQKV);
        if (const float* qn = qk_norms_[(size_t)(2 * l)])
          for (int64_t h = 0; h < H_; ++h) rms_norm(v, qkv_.data() + h * hd_, qn, qkv_.data() + h * hd_, hd_);
        if (const float* kn = qk_norms_[(size_t)(2 * l + 1)])
          for (int64_t h = 0; h < Hkv_; ++h) rms_norm(v, qkv_.data() + qd_ + h * hd_, kn, qkv_.data() + qd_ + h * hd_, hd_);
        const float* table = layer_local_[(size_t)l] && rope_local_ ? rope_local_ : rope_;
        rope(qkv_.data(), H_ + Hkv_, pos, table);  // Q heads then K heads: adjacent in the QKV output
        float* K = kv_ + l * 2 * Hkv_ * T_ * hd_;
        float* Vc = K + Hkv_ * T_ * hd_;
        for (int64_t h = 0; h < Hkv_; ++h) {
          std::memcpy(K + (h * T_ + pos) * hd_, qkv_.data() + qd_ + h * hd_, (size_t)hd_ * 4);
          std::memcpy(Vc + (h * T_ + pos) * hd_, qkv_.data() + qd_ + kvd_ + h * hd_, (size_t)hd_ * 4);
        }
        tock(kRopeKV);
      }
      barrier(nt);
      attend(l, pos, H_ * tid / nt, H_ * (tid + 1) / nt, scratch_[(size_t)tid].scores.data());
      barrier(nt);
      if (t0) tock(kAttn);
      const float* wo_in = attn_.data();
      if (wo_full_[(size_t)l]) {   // act-order wo over tensor-parallel ranks: every rank's heads
        if (t0) {
          std::memcpy(attn_full_ + attn_off_, attn_.data(), (size_t)qd_ * 4);
          call_hook(gather_hook_);
          tock(kReduce);
        }
        wo_in = attn_full_;   // read by thread 0's gather in gemv, before its barrier
      }
      // x2 = x + [post-norm](Wo attn)
      sublayer(v, slots_[(size_t)(4 * l + 1)], wo_in, x_, post_norms_[(size_t)(2 * l)], x2_.data(), kWo, tid, nt);
      if (t0) {
        tock(kWo);
        rms_norm(v, x2_.data(), norms_[(size_t)(2 * l + 1)], h_.data(), d_);
        tock(kNorm);
      }
      gemv(slots_[(size_t)(4 * l + 2)], h_.data(), gu_.data(), nullptr, tid, nt);
      if (t0) {
        tock(kGateUp);
        if (gelu_) v.gelu_tanh_mul(gu_.data(), gu_.data() + ff_, act_.data(), ff_);
        else v.silu_mul(gu_.data(), gu_.data() + ff_, act_.data(), ff_);
        tock(kSilu);
      }
      // x = x2 + [post-norm](Wd act)
      sublayer(v, slots_[(size_t)(4 * l + 3)], act_.data(), x2_.data(), post_norms_[(size_t)(2 * l + 1)], x_,
               kDown, tid, nt);
      if (t0) tock(kDown);
    }
    if (!last_) return;   // a layer split's earlier run: the residual in x_ goes to the next rank
    if (t0) {
      rms_norm(v, x_, norms_[(size_t)(2 * L_)], h_.data(), d_);
      tock(kNorm);
    }
    gemv(slots_[(size_t)(4 * L_)], h_.data(), logits_, nullptr, tid, nt);
    if (t0) {
      if (softcap_ > 0)
        for (int64_t i = 0; i < V_; ++i) logits_[i] = std::tanh(logits_[i] / softcap_) * softcap_;
      tock(kHead);
    }
  }

  // out = base + [post-norm](W in): a sublayer's output added to the residual. With neither a
  // post-norm nor tensor parallelism the GEMV adds the residual itself; otherwise W in goes to a
  // buffer (tensor parallel: the partial sum, summed over the ranks by thread 0's hook first) and
  // thread 0 adds it, through the post-norm when the family has one.
  void sublayer(const Vec& v, const Slot& s, const float* in, const float* base, const float* post, float* out,
                Phase gemv_phase, int tid, int nt) {
    if (!post && !red_) {
      gemv(s, in, out, base, tid, nt);
      return;
    }
    float* y = red_ ? red_ : tmp_.data();
    gemv(s, in, y, nullptr, tid, nt);
    if (tid != 0) return;
    if (red_) {
      tock(gemv_phase);
      call_hook(reduce_hook_);
      tock(kReduce);
    }
    if (post) add_normed(v, base, y, post, out);
    else for (int64_t i = 0; i < d_; ++i) out[i] = base[i] + y[i];
  }

  // A Python hook (tensor parallel) from thread 0, with the GIL. After a failure no hook runs for
  // the rest of the token, and step() raises once the region is done.
  void call_hook(const py::object& hook) {
    if (hook_failed_) return;
    py::gil_scoped_acquire gil;
    try {
      hook();
    } catch (py::error_already_set&) {
      hook_failed_ = true;   // the hook kept its exception for the Python caller
    }
  }

  // out = base + rms_norm(y) * w (y normed in place): a post-normed sublayer's residual add.
  void add_normed(const Vec& v, const float* base, float* y, const float* w, float* out) const {
    rms_norm(v, y, w, y, d_);
    for (int64_t i = 0; i < d_; ++i) out[i] = base[i] + y[i];
  }

  int64_t L_, d_, H_, Hkv_, hd_, rd_, ff_, V_, T_, qd_ = 0, kvd_ = 0, kmax_ = 0, window_ = 0;
  double eps_;
  float scale_;
  int nthreads_ = 0;
  bool adaptive_ = [] {
    const char* e = std::getenv("PYQUANT_ADAPTIVE_THREADS");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  int64_t gov_steps_ = 0, gov_count_[2] = {0, 0};
  double gov_ema_[2] = {0, 0};  // seconds per step: [1 thread, nth threads]
  bool ready_ = false, float_act_ = false, comp_ = false, profile_ = false, avx2_ = false, one_region_ = true;
  int nth_ = 1;
  std::vector<Scratch> scratch_;
  std::vector<float> xgather_;   // a slot's input in its weights' permuted order
  std::atomic<int> barrier_count_{0};
  WakeWord barrier_;
  int64_t prof_steps_ = 0;
  double prof_[kNumPhases] = {};
  Clock::time_point t0_;
  std::vector<Slot> slots_;
  std::vector<const float*> norms_;
  std::vector<py::object> owners_;   // every buffer the step points into, alive as long as it is
  std::vector<const float*> qk_norms_;
  std::vector<const float*> post_norms_;   // [2L]: attn_post, ffn_post per layer (null: none)
  std::vector<int64_t> layer_window_;      // [L]: -1 = the model's window_
  std::vector<char> layer_local_;          // [L]: rotate with rope_local_
  std::vector<float> tmp_;                 // [d]: a post-normed sublayer's output
  const float* rope_local_ = nullptr;
  float embed_scale_ = 1.f, softcap_ = 0.f;
  bool gelu_ = false;  // [2L]: per layer q, k head norms (null: the family has none)
  float *kv_ = nullptr, *x_ = nullptr, *logits_ = nullptr;
  py::object reduce_hook_;       // tensor-parallel: sums red_ over the ranks (null: one process)
  float* red_ = nullptr;         // [d]: a row-parallel linear's partial sum
  bool hook_failed_ = false;
  bool first_ = true, last_ = true;   // layer split: this run embeds / ends in the head
  py::object gather_hook_;           // tensor parallel, act-order wo: fills attn_full_ from all ranks
  float* attn_full_ = nullptr;       // [q_full_]: every rank's attention output
  int64_t attn_off_ = 0, q_full_ = 0;
  std::vector<char> wo_full_;        // [L]: wo reads attn_full_ through its input index
  const float* rope_ = nullptr;
  std::vector<float> h_, x2_, qkv_, attn_, gu_, act_;
  ActQ actq_[2];
};

}  // namespace
}  // namespace llm

void register_llm_bindings(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<llm::Step>(m, "LlmStep",
                           "C++ token step of a Llama-family model (pyquant/runtime/step.py builds it)")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double>(),
           "n_layers"_a, "d_model"_a, "n_heads"_a, "n_kv_heads"_a, "head_dim"_a, "rope_dim"_a, "ffn_dim"_a,
           "vocab"_a, "max_seq_len"_a, "eps"_a, "attn_scale"_a)
      .def("set_input_perm", &llm::Step::set_input_perm, "slot"_a, "layer"_a, "perm"_a)
      .def("add_linear", &llm::Step::add_linear, "slot"_a, "layer"_a, "weight"_a, "bias"_a = py::none())
      .def("set_norm", &llm::Step::set_norm, "which"_a, "layer"_a, "weight"_a)
      .def("set_buffers", &llm::Step::set_buffers, "kv"_a, "rope"_a, "x"_a, "logits"_a)
      .def("finalize", &llm::Step::finalize, "nthreads"_a = 0)
      .def("step", &llm::Step::step, "pos"_a)
      .def("set_one_region", &llm::Step::set_one_region, "on"_a)
      .def("set_attn_gather", &llm::Step::set_attn_gather, "hook"_a, "buf"_a, "offset"_a, "q_full"_a)
      .def("set_attn_input", &llm::Step::set_attn_input, "layer"_a, "index"_a)
      .def("set_stage", &llm::Step::set_stage, "first"_a, "last"_a,
           "Layer split: whether this run of layers is the model's first (embedding scale) / last (head)")
      .def("set_reduce", &llm::Step::set_reduce, "hook"_a, "buf"_a,
           "Tensor parallel: wo / down write partial sums to buf; hook() sums buf over the ranks in place")
      .def("set_sliding_window", &llm::Step::set_sliding_window, "window"_a,
           "Attend to the last `window` positions only (0: all)")
      .def("set_layer", &llm::Step::set_layer, "layer"_a, "window"_a, "local"_a)
      .def("set_local_rope", &llm::Step::set_local_rope, "table"_a)
      .def("set_embed_scale", &llm::Step::set_embed_scale, "scale"_a)
      .def("set_logit_softcap", &llm::Step::set_logit_softcap, "cap"_a)
      .def("set_activation", &llm::Step::set_activation, "name"_a)
      .def("set_adaptive", &llm::Step::set_adaptive, "on"_a,
           "True (default): each step runs on 1 thread or all, whichever has been faster lately")
      .def("governor", &llm::Step::governor, "Steps run on 1 thread / on all, and their mean times")
      .def("set_profile", &llm::Step::set_profile, "on"_a)
      .def("profile", &llm::Step::profile, "{phase: microseconds per step} since set_profile(True)");
}

}  // namespace pq
