"""pyquant.dequantize: packed ggml bytes -> float tensor, on the fastest path available.

Backends: "cpu" (pyquant._C, threaded C++ with AVX2) for data in CPU memory, "reference" (plain torch,
pyquant/kernels/reference/dequant.py) anywhere. Both are bit-exact with gguf-py. "auto" picks cpu for
CPU data whose type has a C++ dequantizer, and for other devices asks pyquant.dispatch (where the CUDA
and Triton backends register), falling back to the reference.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .errors import KernelError, UnsupportedQTypeError
from .qtypes import QType, info, qtype as as_qtype

_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_BACKENDS = ("auto", "cpu", "reference")


def dequantize(data, qtype=None, shape=None, dtype: torch.dtype = torch.float32, *, backend: str = "auto",
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Dequantize packed ggml data to a `dtype` tensor of `shape` (torch order, last dim contiguous).

    data: torch uint8 tensor (any device; other dtypes are read as their bytes), numpy uint8 array or
      bytes-like; or a GGUF tensor object with .data/.qtype/.shape when qtype and shape are omitted.
    qtype: pyquant.QType, ggml type id or name ("Q4_K").
    dtype: torch.float32, float16 or bfloat16 (the float16/bfloat16 results equal the float32 result
      rounded to nearest even, like torch's .to()).
    out: optional preallocated contiguous output (CPU backend) of `shape` elements and `dtype`.

    A pyquant.QTensor of any format (GGUF types, AWQ's int4, int8, EXL2) may be given alone:
    its dense weight in its original input order (`QTensor.dequantize`).
    """
    from .qtensor import QTensor

    if isinstance(data, QTensor):
        if qtype is not None or shape is not None or out is not None:
            raise TypeError("dequantize: a QTensor carries its own format and shape (no qtype, shape or out)")
        if dtype not in _OUT_DTYPES:
            raise UnsupportedQTypeError(f"dequantize: output dtype {dtype} is not float32, float16 or bfloat16")
        return data.dequantize(dtype)
    if qtype is None and shape is None and hasattr(data, "data"):
        data, qtype, shape = _unpack_tensor_object(data)
    if qtype is None or shape is None:
        raise TypeError("dequantize: qtype and shape are required unless data is a GGUF tensor")
    qt = as_qtype(qtype)
    if qt not in _decodable():
        raise UnsupportedQTypeError(f"dequantize: {qt.name} is not a ggml block type pyquant can dequantize")
    if dtype not in _OUT_DTYPES:
        raise UnsupportedQTypeError(f"dequantize: output dtype {dtype} is not float32, float16 or bfloat16")
    if backend not in _BACKENDS:
        raise ValueError(f"dequantize: backend {backend!r} is not one of {_BACKENDS}")
    shape = _check_shape(shape)
    rows, cols, need = _geometry(qt, shape)

    if isinstance(data, torch.Tensor):
        raw = data.detach()
        if raw.dtype != torch.uint8:
            raw = raw.contiguous().view(torch.uint8)
        raw = raw.reshape(-1)
        nbytes = raw.numel()
    else:
        raw = _as_numpy_bytes(data)
        nbytes = raw.nbytes
    if nbytes != need:
        raise KernelError(f"dequantize: {qt.name} tensor of shape {tuple(shape)} needs {need} bytes, data has {nbytes}")

    device = raw.device if isinstance(raw, torch.Tensor) else torch.device("cpu")
    if backend == "auto":
        backend = "cpu" if device.type == "cpu" and _cpu_has(qt) else "reference"
        if device.type != "cpu":
            routed = _device_route(raw, qt, rows, cols, dtype)
            if routed is not None:
                return _finish(routed.reshape(shape), out)
    if backend == "cpu":
        return _dequant_cpu(raw, qt, rows, cols, shape, dtype, out)
    tensor = raw if isinstance(raw, torch.Tensor) else _numpy_to_torch(raw)
    from .kernels.reference.dequant import dequantize_reference

    return _finish(dequantize_reference(tensor, qt, shape).to(dtype), out)


# ----------------------------------------------------------------------------- helpers


def _decodable():
    from .kernels.reference.dequant import DEQUANTIZERS

    return DEQUANTIZERS


def _cpu_has(qt: QType) -> bool:
    from .kernels.cpu.dequant import has_dequantizer

    return has_dequantizer(int(qt))


def _unpack_tensor_object(t):
    """(data, qtype, shape) of a GGUF tensor: pyquant's GGUFTensor (.data, .qtype, .shape torch order)
    or gguf-py's ReaderTensor (.data, .tensor_type, .shape as stored, ne0 first)."""
    if hasattr(t, "qtype"):
        return (t.bytes() if hasattr(t, "bytes") else t.data), t.qtype, tuple(int(s) for s in t.shape)
    if hasattr(t, "tensor_type"):
        return t.data, int(t.tensor_type), tuple(int(s) for s in reversed(list(t.shape)))
    raise TypeError(f"dequantize: {type(t).__name__} is not a GGUF tensor (no .qtype)")


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 0 for s in shape):
        raise KernelError(f"dequantize: invalid shape {shape}")
    return shape


def _geometry(qt: QType, shape: tuple[int, ...]) -> tuple[int, int, int]:
    i = info(qt)
    cols = shape[-1]
    rows = 1
    for s in shape[:-1]:
        rows *= s
    if cols % i.block_size:
        raise KernelError(f"dequantize: {qt.name} row length {cols} is not a multiple of its block size {i.block_size}")
    return rows, cols, rows * (cols // i.block_size) * i.type_size


def _as_numpy_bytes(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        raise TypeError(f"dequantize: data of type {type(data).__name__} is not a tensor, array or buffer") from None


def _numpy_to_torch(arr: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only mmap views: decoding never writes to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def _dequant_cpu(raw, qt, rows, cols, shape, dtype, out):
    from .kernels.cpu.dequant import dequantize_into

    if isinstance(raw, torch.Tensor):
        if raw.device.type != "cpu":
            raise KernelError(f"dequantize: backend 'cpu' needs CPU data, got {raw.device}")
        raw = raw.contiguous()
        ptr = raw.data_ptr()
    else:
        ptr = raw.ctypes.data
    if out is None:
        out = _empty_output(shape, dtype)
    else:
        _check_out(out, shape, dtype)
    dequantize_into(ptr, rows * (cols // info(qt).block_size) * info(qt).type_size, int(qt), rows, cols, out)
    return out


_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14


def _empty_output(shape, dtype) -> torch.Tensor:
    """torch.empty, asking Linux for transparent huge pages on big outputs: a fresh 235 MB tensor
    otherwise takes ~57k page faults on first touch, which measured 2x slower than the dequantization itself
    (torch.empty + fill_ of 4096x14336 float32: 300 ms with 4 KiB pages, 145 ms with madvise)."""
    out = torch.empty(shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    if nbytes >= 8 * _HUGE_PAGE and _madvise is not None:
        start = (out.data_ptr() + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)  # whole huge pages inside the tensor
        end = (out.data_ptr() + nbytes) & ~(_HUGE_PAGE - 1)
        _madvise(start, end - start, _MADV_HUGEPAGE)  # advice only: failure changes nothing
    return out


def _load_madvise():
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise()


def _check_out(out: torch.Tensor, shape, dtype):
    if out.dtype != dtype or tuple(out.shape) != tuple(shape) or not out.is_contiguous() or out.device.type != "cpu":
        raise KernelError(f"dequantize: out must be a contiguous CPU {dtype} tensor of shape {tuple(shape)}, "
                          f"got {out.dtype} {tuple(out.shape)} on {out.device}")


def _finish(result: torch.Tensor, out):
    if out is None:
        return result
    if out.dtype != result.dtype or out.shape != result.shape:
        raise KernelError(f"dequantize: out is {out.dtype} {tuple(out.shape)}, result is "
                          f"{result.dtype} {tuple(result.shape)}")
    return out.copy_(result)


def _device_route(raw: torch.Tensor, qt: QType, rows: int, cols: int, dtype):
    """Non-CPU data: the dequantize kernel pyquant.dispatch picks for that device (CUDA/Triton when
    registered), or None to use the torch reference there."""
    try:
        from . import dispatch
    except ImportError:
        return None
    try:
        backend = dispatch.choose("dequantize", qt, raw.device.type, rows)
    except UnsupportedQTypeError:  # e.g. the plain integer types: only our reference dequantizes them
        return None
    if backend.name in ("reference", "cpu"):
        return None
    return backend.impl["dequantize"](raw, int(qt), rows, cols, dtype)
