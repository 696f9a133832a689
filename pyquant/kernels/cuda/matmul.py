"""Python wrappers of pyquant._C_cuda: torch CUDA tensors in, raw pointers + byte sizes + the current
stream out. The C++ side validates everything again; these wrappers make tensors contiguous and
aligned and allocate the outputs.

Kernel choice per M (`matmul_path`): the fused GEMV streams the quantized weights once and is
memory-bound at M=1; its fp32 FMA work grows with M, so past a crossover it loses to "dequantize
the weights to x's dtype, then torch matmul (cuBLAS, tensor cores)". Estimate for an H200 and a
4096 x 14336 Q4_K weight (33 MB; 132 SMs x 128 fp32 lanes x 1.98 GHz ~ 33 T ops/s; ~4.3 TB/s):
  M=1:  GEMV ~8 us (weight stream; ~4.5 ALU ops per weight ~ 8 us too: the two are balanced),
        dense bf16 cuBLAS reads 117 MB ~ 27 us: the GEMV should be ~3x faster than dense bf16;
  M=16: GEMV ~16 FMAs + ~3 decode ops per weight ~ 34 us; dequant+cuBLAS ~ 35 us (read 33 MB,
        write + re-read 117 MB of bf16) + ~27 us ~ 62 us: the GEMV still wins;
  M=32: GEMV runs two 16-row slices ~ 68 us, dequant+cuBLAS ~ 65 us: about the crossover.
The default crossover M <= 16 (PYQUANT_CUDA_GEMV_MAX_M) stays on the safe side of that estimate;
bench/gpu_check.py scans M = 1..64 on the device and prints where the two paths cross.
"""
from __future__ import annotations

import os

import torch

from ... import qtypes
from ..._ext import _C_cuda
from ...errors import KernelError

if _C_cuda is None:  # pragma: no cover - importers check this
    raise ImportError("pyquant._C_cuda is not built (no nvcc when pyquant was installed)")

_DT = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def gemv_max_m() -> int:
    return int(os.environ.get("PYQUANT_CUDA_GEMV_MAX_M", "16"))


def _on_device(fn):
    """Run fn with the tensors' device current (the C++ side launches on the current device)."""
    import functools

    @functools.wraps(fn)
    def wrapper(t, *args, **kwargs):
        idx = t.device.index
        if idx is None or idx == torch.cuda.current_device():
            return fn(t, *args, **kwargs)
        with torch.cuda.device(idx):
            return fn(t, *args, **kwargs)

    return wrapper


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _dtype_name(dtype: torch.dtype, who: str) -> str:
    try:
        return _DT[dtype]
    except KeyError:
        raise KernelError(f"{who}: dtype {dtype} not supported (float32, float16, bfloat16)") from None


def _aligned16(t: torch.Tensor) -> torch.Tensor:
    """Contiguous and 16-byte aligned (the kernels load activations 16 bytes at a time)."""
    t = t.contiguous()
    if t.data_ptr() % 16:
        t = t.clone()
    return t


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _bias_args(bias, n, device):
    if bias is None:
        return 0, 0, None
    b = bias.to(device=device, dtype=torch.float32).contiguous()
    if b.numel() != n:
        raise KernelError(f"bias has {b.numel()} elements, expected {n}")
    return b.data_ptr(), _nbytes(b), b


# ---------------------------------------------------------------------------------------- dequantize
def has_dequantizer(qt) -> bool:
    qt = qtypes.qtype(qt)
    return qt in (qtypes.QType.F32, qtypes.QType.F16, qtypes.QType.BF16) or (
        int(qt) < 1000 and _C_cuda.has_dequantizer(int(qt)))


@_on_device
def dequantize(data: torch.Tensor, qtype, rows: int, cols: int, dtype=torch.float32) -> torch.Tensor:
    """Dequantize `rows` x `cols` elements of a ggml type held in CUDA uint8 `data` -> [rows, cols]."""
    qt = qtypes.qtype(qtype)
    if not data.is_cuda:
        raise KernelError("cuda dequantize: data is not a CUDA tensor")
    data = data.contiguous()
    if data.dtype != torch.uint8:
        data = data.view(torch.uint8) if data.dim() else data.reshape(1).view(torch.uint8)
    if qt in (qtypes.QType.F32, qtypes.QType.F16, qtypes.QType.BF16):  # plain floats: a view + exact cast
        src = {qtypes.QType.F32: torch.float32, qtypes.QType.F16: torch.float16,
               qtypes.QType.BF16: torch.bfloat16}[qt]
        need = rows * cols * torch.finfo(src).bits // 8
        if data.numel() < need:
            raise KernelError(f"cuda dequantize: {qt.name} data has {data.numel()} bytes, needs {need}")
        return data.reshape(-1)[:need].view(src).reshape(rows, cols).to(dtype)
    out = torch.empty((rows, cols), dtype=dtype, device=data.device)
    _C_cuda.dequantize(int(qt), data.data_ptr(), _nbytes(data), out.data_ptr(), _nbytes(out),
                   _dtype_name(dtype, "cuda dequantize"), rows, cols, _stream(data))
    return out


@_on_device
def dequantize_int4(qweight, scales, mins, group_size, dtype=torch.float32) -> torch.Tensor:
    n, k = qweight.shape[0], qweight.shape[1] * 2
    qw, sc, mn = qweight.contiguous(), scales.to(torch.float32).contiguous(), mins.to(torch.float32).contiguous()
    if sc.shape != mn.shape:
        raise KernelError(f"int4: scales {tuple(sc.shape)} and mins {tuple(mn.shape)} differ")
    out = torch.empty((n, k), dtype=dtype, device=qweight.device)
    _C_cuda.int4_dequant(qw.data_ptr(), _nbytes(qw), sc.data_ptr(), mn.data_ptr(), _nbytes(sc), group_size, n, k,
                         out.data_ptr(), _nbytes(out), _dtype_name(dtype, "int4 dequantize"), _stream(qw))
    return out


@_on_device
def dequantize_int8(qweight, scales, dtype=torch.float32) -> torch.Tensor:
    n, k = qweight.shape
    qw, sc = qweight.contiguous(), scales.to(torch.float32).contiguous()
    out = torch.empty((n, k), dtype=dtype, device=qweight.device)
    _C_cuda.int8_dequant(qw.data_ptr(), _nbytes(qw), sc.data_ptr(), _nbytes(sc), n, k, out.data_ptr(),
                         _nbytes(out), _dtype_name(dtype, "int8 dequantize"), _stream(qw))
    return out


# ---------------------------------------------------------------------------------------- matmul
def matmul_path(op: str, qtype, m: int) -> tuple[str, str]:
    """("gemv" | "dequant", why) for this op / type / M."""
    qt = qtypes.qtype(qtype)
    if op == "gguf_matmul" and not _C_cuda.gemv_supports(int(qt)):
        return "dequant", f"no fused GEMV for {qt.name}: dequantize to x's dtype + cuBLAS"
    if m <= gemv_max_m():
        return "gemv", f"M={m} <= {gemv_max_m()}: fused dequant GEMV (weights streamed once)"
    return "dequant", f"M={m} > {gemv_max_m()}: dequantize to x's dtype + cuBLAS tensor cores"


def _linear(x, w_dense, bias):
    y = x @ w_dense.t()
    if bias is not None:
        y = y + bias.to(y.dtype)
    return y


@_on_device
def gguf_matmul(x, w, qtype, n, k, bias=None, path=None):
    m = x.shape[0]
    path = path or matmul_path("gguf_matmul", qtype, m)[0]
    if path == "dequant":
        wd = dequantize(w, qtype, n, k, x.dtype)
        return _linear(x, wd, bias)
    x = _aligned16(x)
    w = w.contiguous()
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    bp, bn, _keep = _bias_args(bias, n, x.device)
    _C_cuda.gguf_gemv(int(qtypes.qtype(qtype)), w.data_ptr(), _nbytes(w), n, k, x.data_ptr(), _nbytes(x),
                      _dtype_name(x.dtype, "gguf_matmul"), m, y.data_ptr(), _nbytes(y), bp, bn, _stream(x))
    return y


@_on_device
def int4_matmul(x, qweight, scales, mins, group_size, bias=None, path=None):
    m, n, k = x.shape[0], qweight.shape[0], qweight.shape[1] * 2
    path = path or matmul_path("int4_matmul", qtypes.QType.INT4, m)[0]
    if path == "dequant":
        return _linear(x, dequantize_int4(qweight, scales, mins, group_size, x.dtype), bias)
    x, qw = _aligned16(x), qweight.contiguous()
    sc, mn = scales.to(torch.float32).contiguous(), mins.to(torch.float32).contiguous()
    if sc.shape != mn.shape:
        raise KernelError(f"int4_matmul: scales {tuple(sc.shape)} and mins {tuple(mn.shape)} differ")
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    bp, bn, _keep = _bias_args(bias, n, x.device)
    _C_cuda.int4_gemv(qw.data_ptr(), _nbytes(qw), sc.data_ptr(), mn.data_ptr(), _nbytes(sc), group_size, n, k,
                      x.data_ptr(), _nbytes(x), _dtype_name(x.dtype, "int4_matmul"), m, y.data_ptr(), _nbytes(y),
                      bp, bn, _stream(x))
    return y


@_on_device
def int8_matmul(x, qweight, scales, bias=None, path=None):
    m, (n, k) = x.shape[0], qweight.shape
    path = path or matmul_path("int8_matmul", qtypes.QType.INT8, m)[0]
    if k % 32:  # the kernels work in 32-weight chunks; odd K (rare) goes through torch
        w = qweight.to(torch.float32) * scales.to(torch.float32)[:, None]
        return _linear(x, w.to(x.dtype), bias)
    if path == "dequant":
        return _linear(x, dequantize_int8(qweight, scales, x.dtype), bias)
    x, qw, sc = _aligned16(x), qweight.contiguous(), scales.to(torch.float32).contiguous()
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    bp, bn, _keep = _bias_args(bias, n, x.device)
    _C_cuda.int8_gemv(qw.data_ptr(), _nbytes(qw), sc.data_ptr(), _nbytes(sc), n, k, x.data_ptr(), _nbytes(x),
                      _dtype_name(x.dtype, "int8_matmul"), m, y.data_ptr(), _nbytes(y), bp, bn, _stream(x))
    return y


def _exl2_args(qweight, block_bits, who, interleave=0):
    """(qweight as plain rows, contiguous and 4-byte aligned, block_bits and its int32 offsets
    [K/32 + 1] there, checked: native.device_args)."""
    from ...formats.exl2.native import device_args

    qw, bits, off = device_args(qweight, block_bits, interleave, who)
    if qw.data_ptr() % 4:   # the GEMV stages a row's blocks 32 bits at a time
        qw = qw.clone()
    return qw, bits, off


@_on_device
def dequantize_exl2(qweight, block_bits, dtype=torch.float32) -> torch.Tensor:
    """EXL2 in its own widths (uint8 [N, row_bytes], block_bits [K/32]) -> [N, K] in dtype, act-order columns."""
    qw, bits, off = _exl2_args(qweight, block_bits, "exl2 dequantize")
    n, k = qw.shape[0], 32 * bits.numel()
    out = torch.empty((n, k), dtype=dtype, device=qw.device)
    _C_cuda.exl2_dequant(qw.data_ptr(), _nbytes(qw), qw.shape[1], bits.data_ptr(), _nbytes(bits), off.data_ptr(),
                         _nbytes(off), n, k, out.data_ptr(), _nbytes(out), _dtype_name(dtype, "exl2 dequantize"),
                         _stream(qw))
    return out


@_on_device
def exl2_matmul(x, qweight, block_bits, bias=None, interleave=0, path=None):
    """x [M, K] @ W.T, W in EXL2's own widths (K in act-order: x's columns already gathered)."""
    qw, bits, off = _exl2_args(qweight, block_bits, "exl2_matmul", interleave)
    m = x.shape[0]
    path = path or matmul_path("exl2_matmul", qtypes.QType.EXL2, m)[0]
    if path == "dequant":
        return _linear(x, dequantize_exl2(qw, block_bits, x.dtype), bias)
    n, k = qw.shape[0], 32 * bits.numel()
    x = _aligned16(x)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    bp, bn, _keep = _bias_args(bias, n, x.device)
    _C_cuda.exl2_gemv(qw.data_ptr(), _nbytes(qw), qw.shape[1], bits.data_ptr(), _nbytes(bits), off.data_ptr(),
                      _nbytes(off), n, k, x.data_ptr(), _nbytes(x), _dtype_name(x.dtype, "exl2_matmul"), m,
                      y.data_ptr(), _nbytes(y), bp, bn, _stream(x))
    return y


def supports(op: str, qt, m: int) -> tuple[bool, str]:
    """dispatch probe of the "cuda" backend."""
    qt = qtypes.qtype(qt)
    if op == "dequantize":
        return (True, "CUDA dequantize kernel") if has_dequantizer(qt) else (False, f"no CUDA dequantizer for {qt.name}")
    if op == "gguf_matmul":
        if int(qt) >= 1000 or not has_dequantizer(qt):
            return False, f"no CUDA dequantizer for {qt.name}"
        return True, matmul_path(op, qt, m)[1]
    return True, matmul_path(op, qt, m)[1]


IMPL = {"dequantize": dequantize, "gguf_matmul": gguf_matmul, "int4_matmul": int4_matmul,
        "int8_matmul": int8_matmul, "exl2_matmul": exl2_matmul}
