"""The op table: every pyquant op's schema and fake (meta) implementation, in one place.

Device implementations register against these names: the CPU kernels (pyquant._C) here, CUDA
(pyquant.kernels.cuda) and Triton (pyquant.kernels.triton) from their own modules. Layouts:

- ``dequantize(data uint8 [rows, row_bytes] (or flat), qtype, rows, cols, dtype) -> [rows, cols]``
- ``gguf_matmul(x [M, K], w uint8 [N, row_bytes(K)], qtype, N, K, bias [N]?) -> [M, N]`` (x's dtype)
- ``int4_matmul(x [M, K], qweight uint8 [N, K/2], scales f32 [N, K/g], mins f32 [N, K/g], g, bias?)``
  with w[n, k] = q * scale + min; inside each run of 32 consecutive k, byte j holds element j in its
  low nibble and element j+16 in its high nibble (ggml's Q4 order).
- ``int8_matmul(x [M, K], qweight int8 [N, K], scales f32 [N], bias?)`` with w = q * scale.
"""
from __future__ import annotations

import torch

# Placeholder bodies; the API work (issue #3) fills in CPU implementations and dispatch.


@torch.library.custom_op("pyquant::dequantize", mutates_args=())
def dequantize_op(data: torch.Tensor, qtype: int, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    raise NotImplementedError


@dequantize_op.register_fake
def _(data, qtype, rows, cols, dtype):
    return data.new_empty((rows, cols), dtype=dtype)


@torch.library.custom_op("pyquant::gguf_matmul", mutates_args=())
def gguf_matmul(x: torch.Tensor, w: torch.Tensor, qtype: int, n: int, k: int,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    raise NotImplementedError


@gguf_matmul.register_fake
def _(x, w, qtype, n, k, bias=None):
    return x.new_empty((*x.shape[:-1], n))


@torch.library.custom_op("pyquant::int4_matmul", mutates_args=())
def int4_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor,
                group_size: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    raise NotImplementedError


@int4_matmul.register_fake
def _(x, qweight, scales, mins, group_size, bias=None):
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))


@torch.library.custom_op("pyquant::int8_matmul", mutates_args=())
def int8_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    raise NotImplementedError


@int8_matmul.register_fake
def _(x, qweight, scales, bias=None):
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))
