// Portable activation quantizer (see act_quant.h for the format and its error).
#include "cpu/act_quant.h"
#include "cpu/matmul_internal.h"

#include <cmath>

namespace pq {
namespace mm {

namespace {
// Quantizes x[0..n) (values past `valid` are zero) into q; returns d. Tiny blocks (127/amax
// not finite) quantize to zero; a NaN or Inf makes d NaN/Inf so it still reaches y.
float quant_block(const float* x, int64_t valid, int n, int8_t* q) {
  float amax = 0.f;
  bool nan = false;
  for (int i = 0; i < n && i < valid; ++i) {
    amax = std::fmax(amax, std::fabs(x[i]));
    nan |= std::isnan(x[i]);
  }
  const float id = 127.f / amax;
  if (nan || !std::isfinite(amax) || !std::isfinite(id)) {
    for (int i = 0; i < n; ++i) q[i] = 0;
    return nan ? NAN : std::isfinite(amax) ? 0.f : amax;
  }
  for (int i = 0; i < n; ++i) q[i] = i < valid ? (int8_t)std::nearbyint(x[i] * id) : 0;
  return amax / 127.f;
}
}  // namespace

void quant_residual(const float* x, int64_t k, int64_t kp, bool x256, const int8_t* q1, const float* d1,
                    int8_t* q2, float* d2, float* s2, int16_t* bsum2) {
  const int64_t B = x256 ? 256 : 32;
  for (int64_t b = 0; b < kp / B; ++b) {
    const float db = d1[b];
    const bool finite = std::isfinite(db) && db != 0.f;
    const float id = finite ? 256.0f / db : 0.f;
    int sum = 0;
    for (int64_t i = 0; i < B; ++i) {
      const int64_t e = b * B + i;
      int v = 0;
      if (finite && e < k) {
        const float r = x[e] - db * (float)q1[e];
        const float t = std::nearbyint(r * id);
        v = t > 127.f ? 127 : t < -127.f ? -127 : (int)t;
      }
      q2[e] = (int8_t)v;
      sum += v;
      if (x256 && i % 16 == 15) {
        bsum2[e / 16] = (int16_t)sum;
        sum = 0;
      }
    }
    d2[b] = db * (1.0f / 256.0f);   // exact (a power of two), NaN / inf carried along
    if (!x256) s2[b] = d2[b] * (float)sum;
  }
}

void quant_activation(const Kernels& kern, const float* x, int64_t k, int64_t kp, bool x256, bool comp,
                      int8_t* q, float* d, float* s, int16_t* bsum, XQRow* rows) {
  (x256 ? kern.quant_x256 : kern.quant_x32)(x, k, kp, q, d, s, bsum);
  rows[0] = {q, d, s, bsum};
  if (!comp) return;
  int8_t* q2 = q + kp;
  float *d2 = d + kp / 32, *s2 = s + kp / 32;
  int16_t* b2 = bsum + kp / 16;
  kern.quant_residual(x, k, kp, x256, q, d, q2, d2, s2, b2);
  rows[1] = {q2, d2, s2, b2};
}

void quant_x32_scalar(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float* s, int16_t*) {
  for (int64_t b = 0; b < kp / 32; ++b) {
    const float db = quant_block(x + 32 * b, k - 32 * b, 32, q + 32 * b);
    int sum = 0;
    for (int i = 0; i < 32; ++i) sum += q[32 * b + i];
    d[b] = db;
    s[b] = db * (float)sum;
  }
}

void quant_x256_scalar(const float* x, int64_t k, int64_t kp, int8_t* q, float* d, float*, int16_t* bsum) {
  for (int64_t b = 0; b < kp / 256; ++b) {
    d[b] = quant_block(x + 256 * b, k - 256 * b, 256, q + 256 * b);
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += q[256 * b + 16 * g + i];
      bsum[16 * b + g] = (int16_t)sum;
    }
  }
}

}  // namespace mm
}  // namespace pq
