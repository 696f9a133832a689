"""Element-wise dequantization of GGUF blocks, pyquant int4 / int8 and EXL2 weights in Triton.

`dequant_gguf(w_ptr, row_off, k, QT)` returns the float32 weight at element k of the row starting
at byte `row_off`, for any broadcastable tensors row_off / k: a [BN, 1] x [1, BK] pair gives a
weight tile for tl.dot, a flat pair gives a decode run. Each element gathers the few bytes it
needs (its quant byte(s), its scale byte(s), the f16 super-scales); neighbours share them through
L1, so the tile costs about one pass over its bytes.

Rounding follows gguf-py / ggml exactly (same operations in the same order: d * q, (d*sc) * q,
d1*q - m1 ...): the dequantize kernel launches with enable_fp_fusion=False so that no a*b+c is fused,
and is bit-exact with gguf.quants.dequantize (tests/test_triton_kernels.py).
"""
from __future__ import annotations

import triton
import triton.language as tl

# ggml type ids (pyquant.qtypes.QType) as kernel constexprs
F32, F16, BF16 = 0, 1, 30
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = 10, 11, 12, 13, 14
IQ4_NL, IQ4_XS = 20, 23

# (block size, bytes per block)
GEOMETRY = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q4_1: (32, 20), Q5_0: (32, 22), Q5_1: (32, 24), Q8_0: (32, 34),
            Q2_K: (256, 84), Q3_K: (256, 110), Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210),
            IQ4_NL: (32, 18), IQ4_XS: (256, 136)}

KVALUES_IQ4NL = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


@triton.jit
def _u8(p):
    return tl.load(p).to(tl.int32)


@triton.jit
def _f16(p):
    """Little-endian f16 at byte pointer p, widened exactly to f32."""
    bits = (tl.load(p).to(tl.uint16) | (tl.load(p + 1).to(tl.uint16) << 8))
    return bits.to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _k4_scale_min(s, j):
    """get_scale_min_k4 of Q4_K / Q5_K: s = pointer to the 12 scale bytes (per element), j = sub-block."""
    lo = j < 4
    jj = tl.where(lo, j, j - 4)  # keeps every address inside the 12 bytes
    a = _u8(s + jj)            # scales[j] (j<4) / scales[j-4]
    b = _u8(s + jj + 4)        # scales[j+4] / scales[j]
    c = _u8(s + tl.where(lo, jj, j + 4))  # scales[j] / scales[j+4]
    sc = tl.where(lo, a & 63, (c & 15) | ((a >> 6) << 4))
    mn = tl.where(lo, b & 63, (c >> 4) | ((b >> 6) << 4))
    return sc, mn


@triton.jit
def dequant_gguf(w_ptr, row_off, k, kv_ptr, QT: tl.constexpr, QK: tl.constexpr, TS: tl.constexpr):
    """float32 weight at element k of the row at byte offset row_off (ggml type QT, block QK / TS bytes;
    kv_ptr: the 16 IQ4_NL code values as float32, used by IQ4_NL / IQ4_XS only)."""
    b = w_ptr + row_off + (k // QK) * TS  # block start, per element
    j = k % QK
    if QT == F16:          # float weights (an AWQ model's lm_head / embeddings): one element per "block"
        y = _f16(b)
    elif QT == BF16:
        y = ((_u8(b) | (_u8(b + 1) << 8)) << 16).to(tl.float32, bitcast=True)
    elif QT == F32:
        y = (_u8(b) | (_u8(b + 1) << 8) | (_u8(b + 2) << 16) | (_u8(b + 3) << 24)).to(tl.float32, bitcast=True)
    elif QT == Q4_0:
        q = (_u8(b + 2 + j % 16) >> (4 * (j // 16))) & 15
        y = _f16(b) * (q - 8).to(tl.float32)
    elif QT == Q4_1:
        q = (_u8(b + 4 + j % 16) >> (4 * (j // 16))) & 15
        y = _f16(b) * q.to(tl.float32) + _f16(b + 2)
    elif QT == Q5_0:
        q = ((_u8(b + 6 + j % 16) >> (4 * (j // 16))) & 15) | (((_u8(b + 2 + j // 8) >> (j % 8)) & 1) << 4)
        y = _f16(b) * (q - 16).to(tl.float32)
    elif QT == Q5_1:
        q = ((_u8(b + 8 + j % 16) >> (4 * (j // 16))) & 15) | (((_u8(b + 4 + j // 8) >> (j % 8)) & 1) << 4)
        y = _f16(b) * q.to(tl.float32) + _f16(b + 2)
    elif QT == Q8_0:
        q = tl.load(b + 2 + j).to(tl.int8, bitcast=True).to(tl.float32)
        y = _f16(b) * q
    elif QT == IQ4_NL:
        q = (_u8(b + 2 + j % 16) >> (4 * (j // 16))) & 15
        y = _f16(b) * tl.load(kv_ptr + q)
    elif QT == Q2_K or QT == Q3_K:
        h = j // 128           # half of the super-block
        s = (j % 128) // 32    # 2-bit plane (shift 2*s)
        r = (j % 32) // 16     # which run of 16 (own scale)
        l = j % 16
        si = 8 * h + 2 * s + r  # scale index 0..15
        if QT == Q2_K:
            q = (_u8(b + 16 + 32 * h + 16 * r + l) >> (2 * s)) & 3
            sc = _u8(b + si)
            y = (_f16(b + 80) * (sc & 15).to(tl.float32)) * q.to(tl.float32) \
                - _f16(b + 82) * (sc >> 4).to(tl.float32)
        else:
            q = (_u8(b + 32 + 32 * h + 16 * r + l) >> (2 * s)) & 3
            hbit = (_u8(b + 16 * r + l) >> (4 * h + s)) & 1
            lo = tl.where(si < 8, _u8(b + 96 + si % 8) & 15, _u8(b + 96 + si % 8) >> 4)
            hi = (_u8(b + 104 + si % 4) >> (2 * (si // 4))) & 3
            scale = (lo | (hi << 4)) - 32
            y = (_f16(b + 108) * scale.to(tl.float32)) * (q - 4 * (1 - hbit)).to(tl.float32)
    elif QT == Q4_K or QT == Q5_K:
        sub = j // 32
        l = j % 32
        sc, mn = _k4_scale_min(b + 4, sub)
        if QT == Q4_K:
            q = (_u8(b + 16 + 32 * (sub // 2) + l) >> (4 * (sub % 2))) & 15
        else:
            q = ((_u8(b + 48 + 32 * (sub // 2) + l) >> (4 * (sub % 2))) & 15) | (((_u8(b + 16 + l) >> sub) & 1) << 4)
        y = (_f16(b) * sc.to(tl.float32)) * q.to(tl.float32) - _f16(b + 2) * mn.to(tl.float32)
    elif QT == Q6_K:
        h = j // 128
        p = (j % 128) // 32
        l = j % 32
        ql = (_u8(b + 64 * h + 32 * (p % 2) + l) >> (4 * (p // 2))) & 15
        qh = (_u8(b + 128 + 32 * h + l) >> (2 * p)) & 3
        sc = tl.load(b + 192 + 8 * h + 2 * p + l // 16).to(tl.int8, bitcast=True).to(tl.float32)
        y = (_f16(b + 208) * sc) * ((ql | (qh << 4)) - 32).to(tl.float32)
    else:  # IQ4_XS
        ib = j // 32
        l = j % 32
        sh = _u8(b + 2) | (_u8(b + 3) << 8)
        ls = ((_u8(b + 4 + ib // 2) >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4)
        q = (_u8(b + 8 + 16 * ib + l % 16) >> (4 * (l // 16))) & 15
        y = (_f16(b) * (ls - 32).to(tl.float32)) * tl.load(kv_ptr + q)
    return y


@triton.jit
def dequant_int4(qw_ptr, scales_ptr, mins_ptr, n, k, K, GROUP: tl.constexpr):
    """int4 weight [n, k] (broadcastable index tensors); qweight [N, K/2], scales / mins [N, K/GROUP]."""
    j = k % 32
    byte = tl.load(qw_ptr + n * (K // 2) + (k // 32) * 16 + j % 16).to(tl.int32)
    q = (byte >> (4 * (j // 16))) & 15
    g = n * (K // GROUP) + k // GROUP
    return q.to(tl.float32) * tl.load(scales_ptr + g) + tl.load(mins_ptr + g)


@triton.jit
def dequant_int8(qw_ptr, scales_ptr, n, k, K):
    q = tl.load(qw_ptr + n * K + k).to(tl.float32)  # qweight is int8 already
    return q * tl.load(scales_ptr + n)


@triton.jit
def dequant_exl2(w_ptr, row_off, k, bits_ptr, off_ptr):
    """float32 weight at element k (stored, act-order column) of the EXL2 row at byte offset row_off:
    its 32-block's width from bits_ptr (uint8 [K/32]) and byte offset in the row from off_ptr (int32
    [K/32 + 1], native.device_tables). Block = fp16 d, then the payload (formats/exl2/native.py):
    nibble plane(s) of bits 0-3 (and 4-7 at 8 bits; byte i = value i | value i+16 << 4), a crumb
    part at 2, 3 (bits 0-1) and 6 bits (bits 4-5; byte m = values m, m+8, m+16, m+24), a bit part at
    3 (bit 2) and 5 bits (bit 4; byte m bit t = value 4t + m). w = d * (u - 2^(b-1)): one exact
    product, as the CPU's."""
    blk = k // 32
    j = k % 32
    bits = tl.load(bits_ptr + blk).to(tl.int32)
    base = w_ptr + row_off + tl.load(off_ptr + blk)
    d = _f16(base)
    p = base + 2
    planes = tl.where(bits == 8, 2, tl.where(bits >= 4, 1, 0))   # nibble planes before the crumbs
    nib = 4 * (j // 16)
    n0 = (tl.load(p + j % 16, mask=planes >= 1, other=0).to(tl.int32) >> nib) & 15
    n1 = (tl.load(p + 16 + j % 16, mask=planes == 2, other=0).to(tl.int32) >> nib) & 15
    has_crumb = (bits == 2) | (bits == 3) | (bits == 6)
    cp = p + 16 * planes
    c = (tl.load(cp + j % 8, mask=has_crumb, other=0).to(tl.int32) >> (2 * (j // 8))) & 3
    has_bit = (bits == 3) | (bits == 5)
    h = (tl.load(cp + tl.where(has_crumb, 8, 0) + j % 4, mask=has_bit, other=0).to(tl.int32) >> (j // 4)) & 1
    u = n0 | (n1 << 4) | (c << tl.where(bits == 6, 4, 0)) | (h << tl.where(bits == 3, 2, 4))
    zero = tl.where(bits == 8, 128, tl.where(bits == 6, 32, tl.where(bits == 5, 16, tl.where(
        bits == 4, 8, tl.where(bits == 3, 4, 2)))))
    return d * (u - zero).to(tl.float32)
