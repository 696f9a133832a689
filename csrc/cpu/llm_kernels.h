// Small vector kernels of the runner's C++ token step (llm_ops.cpp): RMSNorm, softmax, SiLU*mul,
// attention dots. Declarations only: the AVX2 bodies live in avx2/llm_avx2.cpp (built with
// -mavx2 -mfma, called only when active_isa() == Isa::Avx2); llm_ops.cpp has the portable ones.
#pragma once
#include <cstdint>

namespace pq {
namespace llm {

// sum(x[i]^2) accumulated in double (ggml's rms_norm sums in ggml_float = double).
double sumsq_avx2(const float* x, int64_t n);
// out[i] = (x[i] * s) * w[i]  (ggml: scale, then the weight multiply)
void scale_mul_avx2(const float* x, float s, const float* w, float* out, int64_t n);
float dot_avx2(const float* a, const float* b, int64_t n);
// y[i] += a * x[i]
void axpy_avx2(float* y, float a, const float* x, int64_t n);
// In place: x = exp(x - max) / sum; exp by a Cephes-style polynomial (rel. error ~2e-7).
void softmax_avx2(float* x, int64_t n);
// out[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u
void silu_mul_avx2(const float* g, const float* u, float* out, int64_t n);

// One query head over T cached positions: sc[t] = scale * q.K[t], softmax, out = sum_t sc[t] V[t].
// K, V: [T, hd] rows; hd must be a multiple of 8; sc: T floats of scratch.
void attend_head_avx2(const float* q, const float* K, const float* V, int64_t T, int64_t hd, float scale, float* sc,
                      float* out);

}  // namespace llm
}  // namespace pq
