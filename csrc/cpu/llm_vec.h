// The runner's vector math, one definition for the C++ token step (llm_ops.cpp) and the prompt's
// row ops (prefill_ops.cpp): each picks the AVX2 body (llm_kernels.h) when the ISA is active, the
// portable one here otherwise. Included by baseline-ISA files only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/llm_kernels.h"

namespace pq {
namespace llm {

inline double sumsq_scalar(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += (double)x[i] * (double)x[i];
  return s;
}
inline float dot_scalar(const float* a, const float* b, int64_t n) {
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int t = 0; t < 4; ++t) s[t] += a[i + t] * b[i + t];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}
inline void softmax_scalar(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

struct Vec {
  bool avx2;
  double sumsq(const float* x, int64_t n) const { return avx2 ? sumsq_avx2(x, n) : sumsq_scalar(x, n); }
  void scale_mul(const float* x, float s, const float* w, float* out, int64_t n) const {
    if (avx2) return scale_mul_avx2(x, s, w, out, n);
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * s) * w[i];
  }
  float dot(const float* a, const float* b, int64_t n) const { return avx2 ? dot_avx2(a, b, n) : dot_scalar(a, b, n); }
  void axpy(float* y, float a, const float* x, int64_t n) const {
    if (avx2) return axpy_avx2(y, a, x, n);
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
  void softmax(float* x, int64_t n) const { avx2 ? softmax_avx2(x, n) : softmax_scalar(x, n); }
  void silu_mul(const float* g, const float* u, float* out, int64_t n) const {
    if (avx2) return silu_mul_avx2(g, u, out, n);
    for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
  // GELU, tanh approximation (gemma3), times up: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) u.
  void gelu_tanh_mul(const float* g, const float* u, float* out, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      const float x = g[i];
      out[i] = 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x))) * u[i];
    }
  }

  // out = x * w / sqrt(mean(x^2) + eps) over n values (ggml: the mean in double); out may be x.
  void rms_norm(const float* x, const float* w, float* out, int64_t n, double eps) const {
    const double ms = sumsq(x, n) / (double)n;
    scale_mul(x, (float)(1.0 / std::sqrt(ms + eps)), w, out, n);
  }

  // One query head over T positions: sc = scale * q.K[t], softmax, o = sum_t sc[t] V[t].
  // K, V: [T, hd] rows; sc: T floats of scratch.
  void attend_head(const float* q, const float* K, const float* V, int64_t T, int64_t hd, float scale, float* sc,
                   float* o) const {
    if (avx2 && hd % 8 == 0) return attend_head_avx2(q, K, V, T, hd, scale, sc, o);   // ~5x the per-dot calls
    for (int64_t t = 0; t < T; ++t) sc[t] = dot(q, K + t * hd, hd) * scale;
    softmax(sc, T);
    std::fill(o, o + hd, 0.f);
    for (int64_t t = 0; t < T; ++t) axpy(o, sc[t], V + t * hd, hd);
  }
};

}  // namespace llm
}  // namespace pq
