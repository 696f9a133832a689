// 32-element "chunk" dequantizers for the fused matmul kernels (GEMV), host + device.
//
// The matmul does not need whole blocks (256 floats of a K-quant super-block would not fit in
// registers): it dequantizes 32 consecutive weights at a time, split as
//     w[j] = q[j] * sm[j / 16].x + sm[j / 16].y        (j = 0..31)
// with q[j] a small integer held exactly in a float (the quant minus its offset, or a codebook
// value) and one (scale, min) pair per 16 weights. The GEMV then multiplies x by the integers and
// applies the scale once per 16 (and the min through the sum of x), instead of once per weight.
//
// For every type, q[j] * scale + min rounds exactly like the shared block dequantizer's formula
// (d*q, (d*sc)*q, d1*q - m1, ...), so tests/test_cuda_build.py compiles this header on the host
// and checks it bit for bit against pq::dequant_block_* on random blocks.
//
// Integers become floats through the 2^23 "magic number" (exact for 0..2^23): on the GPU this is
// one LOP3 + one FADD instead of an I2F, which runs at a quarter of the FP32 rate on sm_80..sm_90.
#pragma once
#include <cstdint>

#include "common/fp16.h"
#include "common/iq4nl_values.h"
#include "common/kquant_scales.h"
#include "common/macros.h"

#if defined(__CUDACC__)
#define PQ_UNROLL _Pragma("unroll")
#else
#define PQ_UNROLL
#endif

namespace pq {
namespace chunk {

struct ScaleMin {
  float s, m;
};

PQ_HD uint32_t u16le(const uint8_t* p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
PQ_HD uint32_t u32le(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
PQ_HD float f16at(const uint8_t* p) { return fp16_to_fp32((uint16_t)u16le(p)); }

// Unsigned integer v (< 2^23) to float, exactly.
PQ_HD float u2f(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(0x4B000000u | v) - 8388608.0f;
#else
  return (float)v;
#endif
}
// v - off, exactly (v, off < 2^23): one FADD on the GPU.
PQ_HD float u2f_minus(uint32_t v, float off) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(0x4B000000u | v) - (8388608.0f + off);
#else
  return (float)v - off;
#endif
}

// The IQ4_NL codebook (PQ_IQ4NL_VALUES, from the generated common/iq4nl_values.h): a device copy for
// device code and a host copy for host code (a CUDA translation unit compiles PQ_HD functions for
// both sides).
#if defined(__CUDACC__)
static __device__ const int8_t kIQ4NL_dev[16] = PQ_IQ4NL_VALUES;
#endif
static const int8_t kIQ4NL_host[16] = PQ_IQ4NL_VALUES;
PQ_HD float iq4nl(uint32_t i) {
#if defined(__CUDA_ARCH__)
  return (float)kIQ4NL_dev[i];
#else
  return (float)kIQ4NL_host[i];
#endif
}

// ---- legacy 32-element blocks: one chunk per block (c is always 0)
struct Q4_0 {
  static constexpr int kBlock = 32, kBytes = 18, kHasMin = 0;
  PQ_HD static void run(const uint8_t* b, int, float* q, ScaleMin* sm) {
    const float d = f16at(b);
PQ_UNROLL
    for (int j = 0; j < 16; ++j) {
      q[j] = u2f_minus(b[2 + j] & 15u, 8.0f);
      q[j + 16] = u2f_minus(b[2 + j] >> 4, 8.0f);
    }
    sm[0] = sm[1] = {d, 0.0f};
  }
};

struct Q4_1 {
  static constexpr int kBlock = 32, kBytes = 20, kHasMin = 1;
  PQ_HD static void run(const uint8_t* b, int, float* q, ScaleMin* sm) {
    const float d = f16at(b), m = f16at(b + 2);
PQ_UNROLL
    for (int j = 0; j < 16; ++j) {
      q[j] = u2f(b[4 + j] & 15u);
      q[j + 16] = u2f(b[4 + j] >> 4);
    }
    sm[0] = sm[1] = {d, m};
  }
};

struct Q5_0 {
  static constexpr int kBlock = 32, kBytes = 22, kHasMin = 0;
  PQ_HD static void run(const uint8_t* b, int, float* q, ScaleMin* sm) {
    const float d = f16at(b);
    const uint32_t qh = u32le(b + 2);
PQ_UNROLL
    for (int j = 0; j < 16; ++j) {
      q[j] = u2f_minus((b[6 + j] & 15u) | (((qh >> j) & 1u) << 4), 16.0f);
      q[j + 16] = u2f_minus((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1u) << 4), 16.0f);
    }
    sm[0] = sm[1] = {d, 0.0f};
  }
};

struct Q5_1 {
  static constexpr int kBlock = 32, kBytes = 24, kHasMin = 1;
  PQ_HD static void run(const uint8_t* b, int, float* q, ScaleMin* sm) {
    const float d = f16at(b), m = f16at(b + 2);
    const uint32_t qh = u32le(b + 4);
PQ_UNROLL
    for (int j = 0; j < 16; ++j) {
      q[j] = u2f((b[8 + j] & 15u) | (((qh >> j) & 1u) << 4));
      q[j + 16] = u2f((b[8 + j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
    }
    sm[0] = sm[1] = {d, m};
  }
};

struct Q8_0 {
  static constexpr int kBlock = 32, kBytes = 34, kHasMin = 0;
  PQ_HD static void run(const uint8_t* b, int, float* q, ScaleMin* sm) {
    const float d = f16at(b);
PQ_UNROLL
    for (int j = 0; j < 32; ++j) q[j] = u2f_minus((uint32_t)(b[2 + j] ^ 0x80u), 128.0f);  // int8 via offset binary
    sm[0] = sm[1] = {d, 0.0f};
  }
};

struct IQ4_NL {
  static constexpr int kBlock = 32, kBytes = 18, kHasMin = 0;
  PQ_HD static void run(const uint8_t* b, int, float* q, ScaleMin* sm) {
    const float d = f16at(b);
PQ_UNROLL
    for (int j = 0; j < 16; ++j) {
      q[j] = iq4nl(b[2 + j] & 15u);
      q[j + 16] = iq4nl(b[2 + j] >> 4);
    }
    sm[0] = sm[1] = {d, 0.0f};
  }
};

// ---- K-quants: 256-element super-blocks, chunk c = elements 32c .. 32c+31
// Q2_K (84 B): scales[16] (lo4 scale, hi4 min), qs[64], d, dmin.
struct Q2_K {
  static constexpr int kBlock = 256, kBytes = 84, kHasMin = 1;
  PQ_HD static void run(const uint8_t* b, int c, float* q, ScaleMin* sm) {
    const float d = f16at(b + 80), dmin = f16at(b + 82);
    const int h = c >> 2, shift = 2 * (c & 3);
    const uint8_t* qs = b + 16 + 32 * h;
PQ_UNROLL
    for (int l = 0; l < 32; ++l) q[l] = u2f((qs[l] >> shift) & 3u);
PQ_UNROLL
    for (int i = 0; i < 2; ++i) {
      const uint32_t sc = b[8 * h + 2 * (c & 3) + i];
      sm[i] = {d * u2f(sc & 15u), -(dmin * u2f(sc >> 4))};
    }
  }
};

// 6-bit scale k of Q3_K's 12 packed bytes, as ggml unpacks them.
PQ_HD int q3k_scale(const uint8_t* sc, int k) {
  const uint32_t lo = k < 8 ? (sc[k] & 15u) : (sc[k - 8] >> 4);
  const uint32_t hi = (sc[8 + (k & 3)] >> (2 * (k >> 2))) & 3u;
  return (int)(lo | (hi << 4)) - 32;
}

// Q3_K (110 B): hmask[32], qs[64], scales[12], d.
struct Q3_K {
  static constexpr int kBlock = 256, kBytes = 110, kHasMin = 0;
  PQ_HD static void run(const uint8_t* b, int c, float* q, ScaleMin* sm) {
    const float d = f16at(b + 108);
    const int h = c >> 2, jj = c & 3, shift = 2 * jj;
    const uint8_t* qs = b + 32 + 32 * h;
    const uint32_t mask = 1u << (4 * h + jj);
PQ_UNROLL
    for (int l = 0; l < 32; ++l) {
      // ((q >> shift) & 3) - (hbit ? 0 : 4), built non-negative first: + 4*hbit, minus 4.
      const uint32_t v = ((qs[l] >> shift) & 3u) | ((b[l] & mask) ? 4u : 0u);
      q[l] = u2f_minus(v, 4.0f);
    }
PQ_UNROLL
    for (int i = 0; i < 2; ++i) sm[i] = {d * (float)q3k_scale(b + 96, 8 * h + 2 * jj + i), 0.0f};
  }
};


// Q4_K (144 B): d, dmin, scales[12], qs[128].
struct Q4_K {
  static constexpr int kBlock = 256, kBytes = 144, kHasMin = 1;
  PQ_HD static void run(const uint8_t* b, int c, float* q, ScaleMin* sm) {
    const float d = f16at(b), dmin = f16at(b + 2);
    int sc, mn;
    k4_scale_min(b + 4, c, &sc, &mn);
    const uint8_t* qs = b + 16 + 32 * (c >> 1);
    const int shift = 4 * (c & 1);
PQ_UNROLL
    for (int l = 0; l < 32; ++l) q[l] = u2f((qs[l] >> shift) & 15u);
    sm[0] = sm[1] = {d * u2f(sc), -(dmin * u2f(mn))};
  }
};

// Q5_K (176 B): d, dmin, scales[12], qh[32], qs[128].
struct Q5_K {
  static constexpr int kBlock = 256, kBytes = 176, kHasMin = 1;
  PQ_HD static void run(const uint8_t* b, int c, float* q, ScaleMin* sm) {
    const float d = f16at(b), dmin = f16at(b + 2);
    int sc, mn;
    k4_scale_min(b + 4, c, &sc, &mn);
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + 48 + 32 * (c >> 1);
    const int shift = 4 * (c & 1);
PQ_UNROLL
    for (int l = 0; l < 32; ++l) q[l] = u2f(((qs[l] >> shift) & 15u) | (((uint32_t)(qh[l] >> c) & 1u) << 4));
    sm[0] = sm[1] = {d * u2f(sc), -(dmin * u2f(mn))};
  }
};

// Q6_K (210 B): ql[128], qh[64], scales[16]:i8, d.
struct Q6_K {
  static constexpr int kBlock = 256, kBytes = 210, kHasMin = 0;
  PQ_HD static void run(const uint8_t* b, int c, float* q, ScaleMin* sm) {
    const float d = f16at(b + 208);
    const int h = c >> 2, p = c & 3;
    const uint8_t* ql = b + 64 * h + 32 * (p & 1);
    const uint8_t* qh = b + 128 + 32 * h;
    const int lshift = 4 * (p >> 1), hshift = 2 * p;
PQ_UNROLL
    for (int l = 0; l < 32; ++l)
      q[l] = u2f_minus(((ql[l] >> lshift) & 15u) | (((uint32_t)(qh[l] >> hshift) & 3u) << 4), 32.0f);
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + 8 * h + 2 * p);
PQ_UNROLL
    for (int i = 0; i < 2; ++i) sm[i] = {d * (float)sc[i], 0.0f};
  }
};

// IQ4_XS (136 B): d, scales_h:u16, scales_l[4], qs[128].
struct IQ4_XS {
  static constexpr int kBlock = 256, kBytes = 136, kHasMin = 0;
  PQ_HD static void run(const uint8_t* b, int c, float* q, ScaleMin* sm) {
    const float d = f16at(b);
    const uint32_t sh = u16le(b + 2);
    const int ls = (int)(((b[4 + c / 2] >> (4 * (c & 1))) & 15u) | (((sh >> (2 * c)) & 3u) << 4));
    const uint8_t* qs = b + 8 + 16 * c;
PQ_UNROLL
    for (int j = 0; j < 16; ++j) {
      q[j] = iq4nl(qs[j] & 15u);
      q[j + 16] = iq4nl(qs[j] >> 4);
    }
    sm[0] = sm[1] = {d * (float)(ls - 32), 0.0f};
  }
};

// EXL2's mixed-width 32-blocks (pyquant/formats/exl2/native.py, csrc/cpu/exl2_blocks.h): each block
// its own width (2, 3, 4, 5, 6 or 8 bits, from the Linear's per-block table), 2 + 4 * bits bytes:
// fp16 d, then nibble plane(s) (byte i: value i | value i + 16 << 4; a second plane holds bits 4-7
// at 8 bits), a crumb part at 2, 3 (bits 0-1) and 6 bits (bits 4-5; byte m: values m, m + 8,
// m + 16, m + 24 at bits 0-1 .. 6-7), a bit part at 3 (bit 2) and 5 bits (bit 4; byte m bit t:
// value 4 t + m). q = u - 2^(bits-1), w = q * d: the CPU's one exact product.
struct Exl2 {
  PQ_HD static bool valid(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8; }
  PQ_HD static int block_bytes(int bits) { return 2 + 4 * bits; }
  // bits must be valid (the callers check: a forged width is theirs to refuse).
  PQ_HD static void run(const uint8_t* b, int bits, float* q, ScaleMin* sm) {
    const float d = f16at(b);
    const uint8_t* p = b + 2;
    uint32_t u[32];
PQ_UNROLL
    for (int j = 0; j < 32; ++j) u[j] = 0;
    if (bits >= 4) {
PQ_UNROLL
      for (int i = 0; i < 16; ++i) {
        u[i] = p[i] & 15u;
        u[i + 16] = p[i] >> 4;
      }
      p += 16;
      if (bits == 8) {
PQ_UNROLL
        for (int i = 0; i < 16; ++i) {
          u[i] |= (p[i] & 15u) << 4;
          u[i + 16] |= (uint32_t)(p[i] >> 4) << 4;
        }
        p += 16;
      }
    }
    if (bits == 2 || bits == 3 || bits == 6) {
      const int sh = bits == 6 ? 4 : 0;
PQ_UNROLL
      for (int m = 0; m < 8; ++m)
PQ_UNROLL
        for (int g = 0; g < 4; ++g) u[m + 8 * g] |= ((p[m] >> (2 * g)) & 3u) << sh;
      p += 8;
    }
    if (bits == 3 || bits == 5) {
      const int sh = bits == 3 ? 2 : 4;
PQ_UNROLL
      for (int m = 0; m < 4; ++m)
PQ_UNROLL
        for (int t = 0; t < 8; ++t) u[4 * t + m] |= ((p[m] >> t) & 1u) << sh;
    }
    const float off = (float)(1 << (bits - 1));
PQ_UNROLL
    for (int j = 0; j < 32; ++j) q[j] = u2f_minus(u[j], off);
    sm[0] = sm[1] = {d, 0.0f};
  }
};

}  // namespace chunk
}  // namespace pq
