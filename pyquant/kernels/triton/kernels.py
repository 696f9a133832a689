"""Triton kernels: GGUF dequantize and fused dequant-matmul (GGUF types, int4, int8, EXL2).

matmul: one program computes a [BLOCK_M, BLOCK_N] tile of y = x @ W.T; per K step it dequantizes
a [BLOCK_N, BLOCK_K] weight tile in registers (dequant.py), casts it to x's dtype (fp16 / bf16 ->
tensor cores; fp32 -> exact-fp32 dot) and accumulates in fp32. Small M uses BLOCK_M = 16 (the
smallest tl.dot tile) and wide N tiles; autotune picks among a few shapes per (M, N, K) bucket.
Under TRITON_INTERPRET=1 (or PYQUANT_TRITON_AUTOTUNE=0) the autotuner gets a single config
(benchmarking every config on the interpreter would take minutes).
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

from .dequant import dequant_exl2, dequant_gguf, dequant_int4, dequant_int8

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# triton 3.9's interpreter computes tl.dot on bfloat16 operands wrongly (garbage ~1e10 on a 16x16
# test): under the interpreter the rounded operands are widened to fp32 first, which is what the
# tensor cores compute anyway (exact products of the rounded inputs, fp32 accumulation).
_DOT_UPCAST = tl.constexpr(INTERPRET)


def _configs():
    # PYQUANT_TRITON_AUTOTUNE=0: one config (tests on a GPU: compile once per shape, not nine times)
    if INTERPRET or os.environ.get("PYQUANT_TRITON_AUTOTUNE") == "0":
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=4, num_stages=1)]
    out = []
    for bm, bn, bk, w, s in [(16, 64, 64, 4, 3), (16, 128, 64, 4, 3), (16, 64, 128, 4, 2), (32, 64, 64, 4, 3),
                             (64, 64, 64, 4, 3), (64, 128, 32, 4, 4), (128, 128, 32, 8, 3), (128, 64, 64, 4, 3),
                             (128, 256, 32, 8, 3)]:
        out.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s))
    return out


def _m_bucket(m):  # autotune key: re-tune per power-of-two M bucket, not per M
    return 1 << max(0, (int(m) - 1).bit_length())


def _prune(configs, named_args, **kwargs):
    m = named_args["M"]
    keep = [c for c in configs if c.kwargs["BLOCK_M"] <= max(16, _m_bucket(m))]
    return keep or configs[:1]


@triton.jit
def dequant_kernel(w_ptr, out_ptr, kv_ptr, total, cols, row_bytes, QT: tl.constexpr, QK: tl.constexpr,
                  TS: tl.constexpr, BLOCK: tl.constexpr, OUT_BF16: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    e = pid * BLOCK + tl.arange(0, BLOCK)
    mask = e < total
    e = tl.where(mask, e, 0)  # masked lanes decode element 0: every address stays in bounds
    row = e // cols
    k = e % cols
    y = dequant_gguf(w_ptr, row * row_bytes, k, kv_ptr, QT, QK, TS)
    if OUT_BF16:
        # out_ptr is the bf16 output viewed as int16. Round to nearest even on the integer bits (NaN
        # stays NaN), as torch and pyquant's CPU path do: Triton's interpreter truncates in .to(bf16).
        bits = y.to(tl.uint32, bitcast=True)
        nan = (bits & 0x7FFFFFFF) > 0x7F800000
        r = tl.where(nan, (bits >> 16) | 0x40, (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)
        tl.store(out_ptr + e, r.to(tl.uint16).to(tl.int16, bitcast=True), mask=mask)
    else:
        tl.store(out_ptr + e, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _finish(acc, bias_ptr, y_ptr, rm, rn, M, N, HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0)[None, :]
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(y_ptr + rm[:, None] * N + rn[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tile_dot(x_ptr, w, acc, rm, rk, M, K):
    xm = (rm[:, None] < M) & (rk[None, :] < K)
    xt = tl.load(x_ptr + rm[:, None] * K + rk[None, :], mask=xm, other=0.0)
    w = w.to(xt.dtype)
    if _DOT_UPCAST:
        return tl.dot(xt.to(tl.float32), tl.trans(w.to(tl.float32)), acc, input_precision="ieee")
    if xt.dtype == tl.float32:
        return tl.dot(xt, tl.trans(w), acc, input_precision="ieee")
    return tl.dot(xt, tl.trans(w), acc)


@triton.autotune(configs=_configs(), key=["M_BUCKET", "N", "K", "QT"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def gguf_matmul_kernel(x_ptr, w_ptr, kv_ptr, bias_ptr, y_ptr, M, N, K, row_bytes, M_BUCKET,
                       QT: tl.constexpr, QK: tl.constexpr, TS: tl.constexpr, HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(0)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_off = tl.minimum(rn, N - 1).to(tl.int64) * row_bytes  # clamped rows: loads stay in bounds
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        kc = tl.minimum(rk, K - 1)
        w = dequant_gguf(w_ptr, row_off[:, None], kc[None, :], kv_ptr, QT, QK, TS)
        w = tl.where(rk[None, :] < K, w, 0.0)
        acc = _tile_dot(x_ptr, w, acc, rm, rk, M, K)
    _finish(acc, bias_ptr, y_ptr, rm, rn, M, N, HAS_BIAS)


@triton.autotune(configs=_configs(), key=["M_BUCKET", "N", "K", "GROUP"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def int4_matmul_kernel(x_ptr, qw_ptr, scales_ptr, mins_ptr, bias_ptr, y_ptr, M, N, K, M_BUCKET,
                       GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(0)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nc = tl.minimum(rn, N - 1).to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        kc = tl.minimum(rk, K - 1)
        w = dequant_int4(qw_ptr, scales_ptr, mins_ptr, nc[:, None], kc[None, :], K, GROUP)
        w = tl.where(rk[None, :] < K, w, 0.0)
        acc = _tile_dot(x_ptr, w, acc, rm, rk, M, K)
    _finish(acc, bias_ptr, y_ptr, rm, rn, M, N, HAS_BIAS)


@triton.autotune(configs=_configs(), key=["M_BUCKET", "N", "K"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def int8_matmul_kernel(x_ptr, qw_ptr, scales_ptr, bias_ptr, y_ptr, M, N, K, M_BUCKET, HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(0)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nc = tl.minimum(rn, N - 1).to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        kc = tl.minimum(rk, K - 1)
        w = dequant_int8(qw_ptr, scales_ptr, nc[:, None], kc[None, :], K)
        w = tl.where(rk[None, :] < K, w, 0.0)
        acc = _tile_dot(x_ptr, w, acc, rm, rk, M, K)
    _finish(acc, bias_ptr, y_ptr, rm, rn, M, N, HAS_BIAS)


@triton.autotune(configs=_configs(), key=["M_BUCKET", "N", "K"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def exl2_matmul_kernel(x_ptr, w_ptr, bits_ptr, off_ptr, bias_ptr, y_ptr, M, N, K, row_bytes, M_BUCKET,
                       HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """EXL2 in its own widths: each element finds its 32-block's width and offset in two small
    per-K tables (cached with the tile's x), so one launch takes every run of widths."""
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(0)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_off = tl.minimum(rn, N - 1).to(tl.int64) * row_bytes
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        kc = tl.minimum(rk, K - 1)
        w = dequant_exl2(w_ptr, row_off[:, None], kc[None, :], bits_ptr, off_ptr)
        w = tl.where(rk[None, :] < K, w, 0.0)
        acc = _tile_dot(x_ptr, w, acc, rm, rk, M, K)
    _finish(acc, bias_ptr, y_ptr, rm, rn, M, N, HAS_BIAS)
