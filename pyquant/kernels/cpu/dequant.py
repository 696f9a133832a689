"""CPU dequantization through the C++ extension (pyquant._C.dequantize): threaded, AVX2 where available."""
from __future__ import annotations

import torch

from ..._ext import _C

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def dequantize_into(src_ptr: int, src_nbytes: int, qtype: int, rows: int, cols: int, out: torch.Tensor,
                nthreads: int = 0) -> torch.Tensor:
    """Dequantize rows x cols elements of ggml type `qtype` from raw bytes at src_ptr into `out`
    (a contiguous CPU float32/float16/bfloat16 tensor of rows*cols elements). The C++ side checks
    every size against what it touches; nthreads 0 = pyquant.get_num_threads()."""
    if out.device.type != "cpu" or not out.is_contiguous() or out.dtype not in _DTYPE_NAMES:
        raise ValueError("dequantize_into: out must be a contiguous CPU float32/float16/bfloat16 tensor")
    _C.dequantize(int(qtype), src_ptr, src_nbytes, out.data_ptr(), out.numel() * out.element_size(),
              _DTYPE_NAMES[out.dtype], rows, cols, nthreads)
    return out


def has_dequantizer(qtype: int) -> bool:
    return bool(_C.has_dequantizer(int(qtype)))
