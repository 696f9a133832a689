"""Host wrappers of the Triton kernels (torch tensors in, fresh tensors out) and the dispatch probe.

Runs on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1 (tests; tiny shapes only).
"""
from __future__ import annotations

import torch
import triton

from ... import qtypes
from ...errors import KernelError
from ...formats.exl2.native import device_args
from . import dequant, kernels

QT = qtypes.QType
SUPPORTED = {QT(t) for t in dequant.GEOMETRY}
_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_kv_cache: dict = {}


def _kvalues(device) -> torch.Tensor:
    t = _kv_cache.get(device)
    if t is None:
        t = torch.tensor(dequant.KVALUES_IQ4NL, dtype=torch.float32, device=device)
        _kv_cache[device] = t
    return t


def _check_dtype(dtype, who):
    if dtype not in _OUT_DTYPES:
        raise KernelError(f"{who}: dtype {dtype} not supported (float32, float16, bfloat16)")


def _geometry(qtype, who):
    qt = qtypes.qtype(qtype)
    if qt not in SUPPORTED:
        raise KernelError(f"{who}: no Triton kernel for {qt.name}")
    return (int(qt), *dequant.GEOMETRY[int(qt)])


def dequantize(data: torch.Tensor, qtype, rows: int, cols: int, dtype=torch.float32) -> torch.Tensor:
    """Dequantize rows x cols elements of a GGUF type (uint8 data) -> [rows, cols] in `dtype`."""
    qt, qk, ts = _geometry(qtype, "triton dequantize")
    _check_dtype(dtype, "triton dequantize")
    if cols % qk:
        raise KernelError(f"triton dequantize: row length {cols} is not a multiple of the block size {qk}")
    row_bytes = cols // qk * ts
    data = data.contiguous().reshape(-1)
    if data.dtype != torch.uint8:
        raise KernelError(f"triton dequantize: data must be uint8, got {data.dtype}")
    if data.numel() < rows * row_bytes:
        raise KernelError(f"triton dequantize: data has {data.numel()} bytes, ({rows}, {cols}) needs {rows * row_bytes}")
    out = torch.empty((rows, cols), dtype=dtype, device=data.device)
    total = rows * cols
    if total == 0:
        return out
    block = 1024
    bf16 = dtype == torch.bfloat16
    kernels.dequant_kernel[(triton.cdiv(total, block),)](
        data, out.view(torch.int16) if bf16 else out, _kvalues(data.device), total, cols, row_bytes,
        QT=qt, QK=qk, TS=ts, BLOCK=block, OUT_BF16=bf16,
        enable_fp_fusion=False)  # bit-exact with gguf-py: no a*b+c fusion
    return out


def _prep(x, n, k, bias, who):
    if x.dim() != 2 or x.shape[1] != k:
        raise KernelError(f"{who}: x must be [M, {k}], got {tuple(x.shape)}")
    _check_dtype(x.dtype, who)
    x = x.contiguous()
    y = torch.empty((x.shape[0], n), dtype=x.dtype, device=x.device)
    if bias is not None:
        bias = bias.to(device=x.device, dtype=torch.float32).contiguous()
        if bias.numel() != n:
            raise KernelError(f"{who}: bias has {bias.numel()} elements, expected {n}")
    return x, y, bias


def _grid(m, n):
    return lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, meta["BLOCK_M"]))


def gguf_matmul(x, w, qtype, n, k, bias=None):
    qt, qk, ts = _geometry(qtype, "triton gguf_matmul")
    if k % qk:
        raise KernelError(f"triton gguf_matmul: K={k} is not a multiple of the block size {qk}")
    x, y, bias = _prep(x, n, k, bias, "triton gguf_matmul")
    w = w.contiguous()
    if w.numel() < n * (k // qk * ts):
        raise KernelError(f"triton gguf_matmul: weight has {w.numel()} bytes, needs {n * (k // qk * ts)}")
    m = x.shape[0]
    if m == 0 or n == 0:
        return y
    kernels.gguf_matmul_kernel[_grid(m, n)](
        x, w, _kvalues(x.device), bias if bias is not None else y, y, m, n, k, k // qk * ts,
        kernels._m_bucket(m), QT=qt, QK=qk, TS=ts, HAS_BIAS=bias is not None)
    return y


def int4_matmul(x, qweight, scales, mins, group_size, bias=None):
    n, k = qweight.shape[0], qweight.shape[1] * 2
    if group_size not in (32, 64, 128) or k % group_size:
        raise KernelError(f"triton int4_matmul: group_size {group_size} (32, 64, 128) must divide K={k}")
    x, y, bias = _prep(x, n, k, bias, "triton int4_matmul")
    sc = scales.to(torch.float32).contiguous()
    mn = mins.to(torch.float32).contiguous()
    if sc.numel() != n * (k // group_size) or mn.numel() != sc.numel():
        raise KernelError(f"triton int4_matmul: scales/mins must be [{n}, {k // group_size}]")
    m = x.shape[0]
    if m == 0 or n == 0:
        return y
    kernels.int4_matmul_kernel[_grid(m, n)](
        x, qweight.contiguous(), sc, mn, bias if bias is not None else y, y, m, n, k, kernels._m_bucket(m),
        GROUP=group_size, HAS_BIAS=bias is not None)
    return y


def int8_matmul(x, qweight, scales, bias=None):
    n, k = qweight.shape
    x, y, bias = _prep(x, n, k, bias, "triton int8_matmul")
    sc = scales.to(torch.float32).contiguous()
    if sc.numel() != n:
        raise KernelError(f"triton int8_matmul: scales must have {n} elements")
    m = x.shape[0]
    if m == 0 or n == 0:
        return y
    kernels.int8_matmul_kernel[_grid(m, n)](
        x, qweight.contiguous(), sc, bias if bias is not None else y, y, m, n, k, kernels._m_bucket(m),
        HAS_BIAS=bias is not None)
    return y


def exl2_matmul(x, qweight, block_bits, bias=None, interleave=0):
    """x [M, K] @ W.T for W in EXL2's own widths (uint8 [N, row_bytes], block_bits uint8 [K/32];
    pyquant/formats/exl2/native.py), K in the stored act-order: x's columns already gathered."""
    who = "triton exl2_matmul"
    qweight, bits, off = device_args(qweight, block_bits, interleave, who)
    n, k = qweight.shape[0], 32 * bits.numel()
    x, y, bias = _prep(x, n, k, bias, who)
    m = x.shape[0]
    if m == 0 or n == 0:
        return y
    kernels.exl2_matmul_kernel[_grid(m, n)](
        x, qweight, bits, off, bias if bias is not None else y, y, m, n, k,
        qweight.shape[1], kernels._m_bucket(m), HAS_BIAS=bias is not None)
    return y


def supports(op: str, qt, m: int) -> tuple[bool, str]:
    qt = qtypes.qtype(qt)
    if op in ("dequantize", "gguf_matmul") and qt not in SUPPORTED:
        return False, f"no Triton kernel for {qt.name}"
    if op == "dequantize":
        return True, "Triton element-wise dequantize"
    return True, "Triton fused dequant-matmul (tl.dot, autotuned tiles)"


IMPL = {"dequantize": dequantize, "gguf_matmul": gguf_matmul, "int4_matmul": int4_matmul,
        "int8_matmul": int8_matmul, "exl2_matmul": exl2_matmul}
