"""CPU backend: thin wrappers around pyquant._C's matmul kernels.

Two entry styles:
- the dispatch impl functions (IMPL, used by the torch.library ops): allocate the output;
- `linear_into(x, qt, out, bias)`: the runner's hot-loop path. No torch.library, no dispatch, no
  allocation when a fused kernel exists: the QTensor's `_C.Weight` (built once, QTensor.cpu_call)
  and the activation/output pointers straight into `_C.linear`.

The C++ boundary is `_C.Weight` (the weight's format, shape and buffers, validated once; it holds
the buffers alive) plus `_C.linear(weight, x, y, bias)`. Types without a fused kernel run
"dequantize-then-matmul" (_C.dequantize to float32, one torch matmul in float32); the dispatcher
says so in its reason.
"""
from __future__ import annotations

import torch

from ... import qtypes
from ..._ext import _C
from ...errors import KernelError
from ...qtypes import QType

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_KIND = {"gguf_matmul": "gguf", "int4_matmul": "int4", "int8_matmul": "int8", "exl2_matmul": "exl2"}


def _fused_path(op: str, qt: QType, m: int) -> str | None:
    """The fused kernel path _C would take (its own words), or None when it has none."""
    if getattr(_C, "linear", None) is None:
        return None
    probe = getattr(_C, "matmul_path", None)
    if probe is None:
        return "_C.linear"
    try:
        path = probe(_KIND[op], int(qt), int(m))
    except (KernelError, ValueError, RuntimeError):
        return None
    # _C answers "unsupported: ..." for types without a fused kernel
    return None if not path or path.startswith("unsupported") else path


_fused_cache: dict = {}


def _has_fused(op: str, qt: QType) -> bool:
    """Per-call check (cached: _C's kernel set is fixed once loaded; the path may vary with M and
    ISA, whether a fused kernel exists does not)."""
    hit = _fused_cache.get((op, qt))
    if hit is None:
        hit = _fused_cache[(op, qt)] = _fused_path(op, qt, 1) is not None
    return hit


def _has_dequantizer(qt: QType) -> bool:
    return qt < 1000 and bool(_C.has_dequantizer(int(qt)))


def supports(op: str, qt: QType, m: int) -> tuple[bool, str]:
    """Dispatch probe for the "cpu" backend: (can run, why)."""
    if op == "dequantize":
        if _has_dequantizer(qt):
            return True, f"_C.dequantize ({_C.active_isa()}, threaded)"
        return False, f"_C has no dequantizer for {qt.name}"
    if op in ("int4_matmul", "int8_matmul", "exl2_matmul"):
        path = _fused_path(op, qt, m)
        if path:
            return True, path
        return True, f"no fused {op} in _C yet: dequantize in torch, then torch matmul (fp32)"
    if qtypes.info(qt).kind is qtypes.Kind.GENERIC or qtypes.info(qt).activation_only:
        return False, f"{qt.name} is not a GGUF weight type"
    path = _fused_path(op, qt, m)
    if path:
        return True, path
    if _has_dequantizer(qt):
        return True, f"no fused kernel for {qt.name}: _C.dequantize to float32, then torch matmul (fp32)"
    return False, f"no fused kernel and no dequantizer for {qt.name} in _C"


def _ptr_bias(bias):
    if bias is None:
        return None, 0, 0
    b = bias.to(torch.float32).contiguous()  # the kernels add a float32 bias
    return b, b.data_ptr(), b.nbytes


def _decoded(w: torch.Tensor, qt: QType, n: int, k: int) -> torch.Tensor:
    out = torch.empty((n, k), dtype=torch.float32)
    w = w.contiguous()
    _C.dequantize(int(qt), w.data_ptr(), w.nbytes, out.data_ptr(), out.nbytes, "float32", n, k)
    return out


def _torch_linear(x, w32, bias):
    y = x.to(torch.float32) @ w32.t()
    if bias is not None:
        y += bias.to(torch.float32)
    return y.to(x.dtype)


def dequantize(data, qtype, rows, cols, dtype):
    """ggml bytes (uint8, rows * row_bytes) -> dtype [rows, cols] via _C.dequantize (threaded)."""
    out = torch.empty((rows, cols), dtype=dtype)
    name = _DTYPE_NAMES.get(dtype)
    if name is None:  # e.g. float64: decode to float32 (exact for every ggml type), then widen
        return dequantize(data, qtype, rows, cols, torch.float32).to(dtype)
    data = data.contiguous()
    _C.dequantize(int(qtype), data.data_ptr(), data.nbytes, out.data_ptr(), out.nbytes, name, rows, cols)
    return out


def _weight(qtype, data, n, k, scales=None, mins=None, group_size=0, interleave=0, block_bits=None):
    """A _C.Weight over these tensors (CPU, made contiguous; scales / mins as float32)."""
    def buf(t, dtype=None):
        if t is None:
            return None
        if dtype is None:   # the packed bytes, whatever dtype holds them (int8 rows included)
            return t.contiguous().view(torch.uint8).numpy()
        return t.to(dtype).contiguous().numpy()

    return _C.Weight(int(qtype), buf(data), n, k, buf(scales, torch.float32), buf(mins, torch.float32),
                     group_size, interleave, buf(block_bits))


def _run(weight, x, bias):
    """y [M, N] in x's dtype = x @ W.T (+ bias) through _C.linear."""
    m = x.shape[0]
    y = torch.empty((m, weight.n), dtype=x.dtype)
    keep, bp, bn = _ptr_bias(bias)   # keep: the float32 bias the pointer reads, alive for the call
    _C.linear(weight, x.data_ptr(), x.nbytes, _DTYPE_NAMES[x.dtype], m, y.data_ptr(), y.nbytes, bp, bn)
    return y


def gguf_matmul(x, w, qtype, n, k, bias=None):
    """x [M, K] contiguous float32/f16/bf16 @ W.T, W = w uint8 [N, row_bytes(K)] -> x.dtype [M, N]."""
    qt = QType(qtype)
    if not _has_fused("gguf_matmul", qt):
        return _torch_linear(x, _decoded(w, qt, n, k), bias)
    return _run(_weight(qt, w, n, k), x, bias)


def int4_matmul(x, qweight, scales, mins, group_size, bias=None):
    """x [M, K] @ W.T, W from int4 kernel layout (pyquant.formats.generic) -> x.dtype [M, N]."""
    if not _has_fused("int4_matmul", QType.INT4):
        from ..reference.matmul import dequantize_int4

        return _torch_linear(x, dequantize_int4(qweight, scales, mins, group_size), bias)
    if scales.numel() != mins.numel():
        raise KernelError(f"int4_matmul: scales {tuple(scales.shape)} and mins {tuple(mins.shape)} differ")
    return _run(_weight(QType.INT4, qweight, qweight.shape[0], x.shape[1], scales, mins, group_size), x, bias)


def int8_matmul(x, qweight, scales, bias=None):
    """x [M, K] @ W.T, W = qweight int8 [N, K] * scales float32 [N] -> x.dtype [M, N]."""
    if not _has_fused("int8_matmul", QType.INT8):
        from ..reference.matmul import dequantize_int8

        return _torch_linear(x, dequantize_int8(qweight, scales), bias)
    return _run(_weight(QType.INT8, qweight, qweight.shape[0], x.shape[1], scales), x, bias)


def exl2_matmul(x, qweight, block_bits, bias=None, interleave=0):
    """x [M, K] @ W.T, W in EXL2's mixed-width blocks (pyquant/formats/exl2/native.py; interleave 8:
    rows interleaved by 8) -> x.dtype [M, N]."""
    if not _has_fused("exl2_matmul", QType.EXL2):
        from ..reference.matmul import exl2_matmul as reference

        return reference(x, qweight, block_bits, bias, interleave)
    return _run(_weight(QType.EXL2, qweight, qweight.shape[0], x.shape[1], interleave=interleave,
                        block_bits=block_bits), x, bias)


def interleaved_matmul(x, qtype, w, n, k, scales=None, mins=None, group_size=0, bias=None):
    """x [M, K] @ W.T for W stored row-interleaved (gguf_matmul / int4_matmul with interleave=8:
    pyquant/ops.py routes them here when this backend wins) -> x.dtype [M, N]."""
    return _run(_weight(QType(qtype), w, n, k, scales, mins, group_size, interleave=8), x, bias)


IMPL = {"dequantize": dequantize, "gguf_matmul": gguf_matmul, "int4_matmul": int4_matmul,
        "int8_matmul": int8_matmul, "exl2_matmul": exl2_matmul}


def linear_into(x: torch.Tensor, qt, out: torch.Tensor, bias: torch.Tensor | None = None,
                nthreads: int = 0) -> torch.Tensor:
    """out[..., N] = x[..., K] @ W.T (+ bias), straight into _C (the runner's hot path).

    x: contiguous CPU float32/float16/bfloat16 [..., K]; qt: a CPU pyquant.QTensor [N, K];
    out: contiguous, x's dtype, [..., N] (same leading dims); bias: contiguous float32 [N] or None
    (other dtypes are converted per call, which allocates). nthreads 0 = pyquant.get_num_threads().
    Sizes are validated again in C++; this function checks what C++ cannot see (dtype, strides,
    device, which dim is K). The weight's half of the argument list is built once per QTensor
    (QTensor.cpu_call), so a call costs ~4 us of Python over the kernel (measured, M=1).
    Returns `out`.
    """
    call = qt.cpu_call
    if qt.in_perm is not None and x.shape[-1] == qt.shape[-1]:   # act-order weight: gather x once
        x = x.index_select(-1, qt.in_perm)
    if (not (x.is_contiguous() and out.is_contiguous()) or x.dtype != out.dtype or not x.is_cpu
            or not out.is_cpu):
        raise KernelError(
            f"linear_into: x ({x.dtype}, contiguous={x.is_contiguous()}, {x.device}) and out ({out.dtype}, "
            f"contiguous={out.is_contiguous()}, {out.device}) must be contiguous CPU tensors of one dtype")
    n, k = qt.shape
    if x.shape[-1] != k or out.shape[-1] != n:
        raise KernelError(f"linear_into: x {tuple(x.shape)} / out {tuple(out.shape)} do not fit weight {qt.shape}")
    dt = _DTYPE_NAMES.get(x.dtype)
    if dt is None:
        raise KernelError(f"linear_into: x dtype {x.dtype} not supported (float32, float16, bfloat16)")
    m = x.numel() // k if k else 0
    if bias is not None and bias.dtype != torch.float32:
        bias = bias.to(torch.float32)
    if call is None or m == 0:
        out.copy_(_fallback(x.reshape(m, k), qt, bias).reshape(out.shape))
        return out
    if bias is None:
        _C.linear(call, x.data_ptr(), x.nbytes, dt, m, out.data_ptr(), out.nbytes, 0, 0, nthreads)
    else:
        _C.linear(call, x.data_ptr(), x.nbytes, dt, m, out.data_ptr(), out.nbytes, bias.data_ptr(), bias.nbytes,
                  nthreads)
    return out


def cpu_call_for(qt):
    """The _C.Weight of a QTensor for linear_into and the token step, or None (fallback path).

    None when the weight is not on the CPU or _C has no fused kernel for its format. The Weight
    holds numpy views of the QTensor's tensors (made contiguous), so it stays valid on its own.
    """
    tensors = [t for t in (qt.data, qt.scales, qt.mins, qt.block_bits) if t is not None]
    if any(t.device.type != "cpu" for t in tensors):
        return None
    from ...dispatch import op_for

    fmt, (n, k) = qt.qtype, qt.shape
    if not _has_fused(op_for(fmt), fmt):
        return None
    return _weight(fmt, qt.data, n, k, qt.scales, qt.mins, qt.group_size or 0, qt.interleave, qt.block_bits)


def _fallback(x2d, qt, bias):
    return _torch_linear(x2d, qt.dequantize(torch.float32), bias)


def linear_path(lin, m: int) -> str:
    """What a model Linear (pyquant.models.weights.Linear) runs for m rows on its weight's device, and why."""
    from ...dispatch import choose, linear_backend, op_for

    if lin.dense is not None:
        return f"torch float32 matmul ({lin.qt.qtype.name} weights kept as float)"
    qt, dev = lin.qt.qtype, lin.qt.data.device.type
    op, who = op_for(qt), linear_backend(qt, dev, m)
    if who != "cpu-direct":
        return f"{who}: {choose(op, qt, dev, m).check(op, qt, m)[1]}"
    path = _fused_path(op, qt, m)
    if path and lin.qt.interleave:   # _C.matmul_path describes plain rows
        path = (path.split(":")[0] + f": {qt.name} m={m}: 8-row kernel, rows interleaved by 8 and decoded once "
                f"for up to 4 rows of x" + (" (AVX-512 VNNI build: vpdpbusd)" if _C.get_vnni() else "")
                if m <= 16 and path.startswith("avx2/gemv-int8") else
                path + (" (rows interleaved by 8, each row gathered back to plain blocks)" if qt is QType.EXL2
                        else " (rows interleaved by 8, read in place)"))
    gather = ", x gathered through the act-order permutation first" if lin.qt.in_perm is not None else ""
    return "cpu-direct " + (path or f"(no fused kernel for {qt.name}: _C.dequantize to float32, then torch matmul)") + gather
