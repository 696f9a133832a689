"""Plain torch reference for every pyquant op: readable as the spec, runs on any device, and is the
fallback the dispatcher uses when no faster backend fits. Always dequantize to float32, then one
float32 matmul (fp32 accumulation), then cast to x's dtype.

Argument conventions (the same for every backend's impl functions, see pyquant.dispatch):
    x      float32 / float16 / bfloat16 [M, K], contiguous
    bias   any float dtype [N] or None
    result x.dtype [M, N]
"""
from __future__ import annotations

import torch

from ... import qtypes
from ...errors import UnsupportedQTypeError
from ...formats.generic import unpack_int4_codes
from ...qtypes import Kind, QType

_FLOAT_VIEWS = {QType.F32: torch.float32, QType.F16: torch.float16, QType.BF16: torch.bfloat16}


def _reference_dequantizers() -> dict:
    """QType -> dequantizer from pyquant.kernels.reference.dequant , or {}."""
    try:
        from . import dequant
    except ImportError:
        return {}
    return getattr(dequant, "DEQUANTIZERS", {})


def gguf_supported(qt, matmul: bool = True) -> tuple[bool, str]:
    """Can the reference dequantize ggml type `qt`? (True/False, why)."""
    then = ", then torch matmul in float32" if matmul else ""
    qt = qtypes.qtype(qt)
    info = qtypes.info(qt)
    if qt in _FLOAT_VIEWS:
        return True, f"{qt.name}: reinterpret the bytes in torch{then}"
    if info.kind is Kind.GENERIC or info.activation_only:
        return False, f"{qt.name} is not a weight type of the GGUF op"
    if qt in _reference_dequantizers():
        return True, f"{qt.name}: torch block dequantizer to float32{then}"
    return False, f"no torch reference dequantizer for {qt.name} (pyquant.kernels.reference.dequant lacks it)"


def dequantize_gguf(data: torch.Tensor, qt, rows: int, cols: int, dtype=torch.float32) -> torch.Tensor:
    """ggml blocks -> dense weight.

    data: uint8, rows * row_bytes(qt, cols) bytes (any shape, contiguous), any device.
    Returns `dtype` [rows, cols] on data's device.
    """
    qt = qtypes.qtype(qt)
    nbytes = rows * qtypes.row_bytes(qt, cols)
    flat = data.reshape(-1)
    if flat.dtype != torch.uint8 or flat.numel() != nbytes:
        raise UnsupportedQTypeError(
            f"dequantize {qt.name}: expected {nbytes} uint8 bytes for ({rows}, {cols}), "
            f"got {flat.numel()} {flat.dtype}")
    if qt in _FLOAT_VIEWS:
        return flat.view(_FLOAT_VIEWS[qt]).reshape(rows, cols).to(dtype, copy=True)
    dequantizer = _reference_dequantizers().get(qt)
    if dequantizer is None:
        raise UnsupportedQTypeError(gguf_supported(qt)[1])
    info = qtypes.info(qt)
    blocks = flat.reshape(-1, info.type_size)
    return dequantizer(blocks).reshape(rows, cols).to(dtype)


def dequantize_int4(qweight: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor, group_size: int,
                    dtype=torch.float32) -> torch.Tensor:
    """int4 kernel layout (qweight uint8 [N, K/2], scales/mins float32 [N, K/g]) -> dtype [N, K]."""
    n = qweight.shape[0]
    q = unpack_int4_codes(qweight).to(torch.float32).reshape(n, -1, group_size)
    w = q * scales.to(torch.float32)[..., None] + mins.to(torch.float32)[..., None]
    return w.reshape(n, -1).to(dtype)


def dequantize_int8(qweight: torch.Tensor, scales: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """int8 kernel layout (qweight int8 [N, K], scales float32 [N]) -> dtype [N, K]."""
    return (qweight.to(torch.float32) * scales.to(torch.float32)[:, None]).to(dtype)


def _linear_f32(x: torch.Tensor, w: torch.Tensor, bias) -> torch.Tensor:
    y = x.to(torch.float32) @ w.t()
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(x.dtype)


def gguf_matmul(x, w, qtype, n, k, bias=None):
    """x [M, K] @ dequant(w uint8 [N, row_bytes(K)]).T (+ bias) -> x.dtype [M, N]."""
    return _linear_f32(x, dequantize_gguf(w, qtype, n, k), bias)


def int4_matmul(x, qweight, scales, mins, group_size, bias=None):
    """x [M, K] @ dequant_int4(...).T (+ bias) -> x.dtype [M, N]."""
    return _linear_f32(x, dequantize_int4(qweight, scales, mins, group_size), bias)


def int8_matmul(x, qweight, scales, bias=None):
    """x [M, K] @ dequant_int8(...).T (+ bias) -> x.dtype [M, N]."""
    return _linear_f32(x, dequantize_int8(qweight, scales), bias)


def exl2_matmul(x, qweight, block_bits, bias=None, interleave=0):
    """x [M, K] @ the EXL2 blocks' values.T (+ bias) -> x.dtype [M, N] (pyquant/formats/exl2/native.py)."""
    from ...formats.exl2.native import dequantize as dequantize_exl2, interleave as exl2_interleave

    if interleave:
        qweight = exl2_interleave(qweight, block_bits, inverse=True)
    return _linear_f32(x, dequantize_exl2(qweight, block_bits), bias)


def dequantize(data, qtype, rows, cols, dtype):
    """The dequantize op: ggml bytes -> dtype [rows, cols]."""
    return dequantize_gguf(data, qtype, rows, cols, dtype)
