"""Float weights -> ggml block bytes, identical to llama.cpp's quantizer.

`quantize(w, qtype)` returns exactly the bytes `ggml_quantize_chunk(type, w, ..., imatrix=NULL)` of
llama.cpp writes (what `llama-quantize` without `--imatrix` stores in a GGUF), computed by the
threaded C++ kernels in csrc/cpu/quantize_*.cpp (AVX2 versions in csrc/cpu/avx2/, same bytes).
The k-quants and i-quants run llama.cpp's scale searches (make_qkx2_quants, make_qx_quants, ...)
with the same float operation order; the AVX2 path runs 8 independent sub-blocks in 8 lanes.
Measured on one Zen 3 core (shared machine, bench/bench_quantize.py, 4096x4096): Q8_0 ~2.4 GB/s,
Q4_0 ~3.1 GB/s, Q4_K ~0.29 GB/s, Q6_K ~0.45 GB/s, IQ4_XS ~0.22 GB/s of float32 input -- 3.5-12x
llama.cpp's own single-threaded C (0.67, 1.09, 0.063, 0.10, 0.018 GB/s in the same run).

Non-finite inputs are not rejected (llama.cpp does not reject them either); they produce the same
bytes llama.cpp would. Use `torch.isfinite(w).all()` first if you want to be strict.
"""
from __future__ import annotations


import torch

from .errors import UnsupportedQTypeError
from .qtypes import QType, info, qtype as _qtype

QUANTIZABLE = (
    QType.Q4_0, QType.Q4_1, QType.Q5_0, QType.Q5_1, QType.Q8_0,
    QType.Q2_K, QType.Q3_K, QType.Q4_K, QType.Q5_K, QType.Q6_K,
    QType.IQ4_NL, QType.IQ4_XS,
)


def quantize(w: torch.Tensor, qtype, *, nthreads: int = 0) -> torch.Tensor:
    """Quantize float weights to ggml blocks.

    w: float32/float16/bfloat16 tensor [rows, cols] (torch layout: a Linear weight [out, in]) or
       1-D [cols]; the last dim must be a multiple of the type's block size (32 or 256).
    qtype: a QType, ggml id or name ("Q4_K").  nthreads: 0 = pyquant.get_num_threads().
    Returns torch.uint8 [rows, row_bytes] (1-D input -> rows = 1), the row-major GGUF payload.
    """
    qt = _qtype(qtype)
    if qt not in QUANTIZABLE:
        raise UnsupportedQTypeError(
            f"quantize: no quantizer for {qt.name}; supported: {', '.join(t.name for t in QUANTIZABLE)}"
        )
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"quantize: expected a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise UnsupportedQTypeError(f"quantize: weights must be float32, float16 or bfloat16, not {w.dtype}")
    if w.dim() not in (1, 2):
        raise ValueError(f"quantize: expected a 1-D or 2-D tensor, got shape {tuple(w.shape)}")
    x = w.detach().to(device="cpu", dtype=torch.float32).contiguous()
    if x.dim() == 1:
        x = x.unsqueeze(0)
    rows, cols = x.shape
    ti = info(qt)
    if cols % ti.block_size:
        raise UnsupportedQTypeError(
            f"quantize: {qt.name} needs a row length that is a multiple of {ti.block_size}, got {cols}"
        )
    out = torch.empty((rows, cols // ti.block_size * ti.type_size), dtype=torch.uint8)
    from ._ext import _C

    _C.quantize(int(qt), x.data_ptr(), x.numel() * 4, rows, cols, out.data_ptr(), out.numel(), int(nthreads))
    return out

