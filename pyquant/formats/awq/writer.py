"""Writes AutoAWQ-compatible checkpoints: the gemm layout (what transformers, AutoAWQ and vLLM load
as their own) or gemv_fast, from integer codes, zeros and fp16 scales. The inverse of layouts.py;
tests check unpack(pack(x)) == x and, against AutoAWQ's own packers, byte equality."""
from __future__ import annotations

import torch

from ..generic import nibble_words
from .layouts import ORDER, zeros_width


def pack_gemm(codes: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor):
    """codes uint8 [N, K], zeros uint8 [N, K/G], scales [N, K/G] -> (qweight int32 [K, N/8],
    qzeros int32 [K/G, N/8], scales fp16 [K/G, N])."""
    n, k = codes.shape
    order = list(ORDER)
    qweight = nibble_words(codes.t().reshape(k, n // 8, 8)[..., order])
    qzeros = nibble_words(zeros.t().reshape(-1, n // 8, 8)[..., order])
    return qweight.contiguous(), qzeros.contiguous(), scales.t().to(torch.float16).contiguous()


def pack_gemv_fast(codes: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, group_size: int):
    """codes uint8 [N, K], zeros [N, K/G], scales [N, K/G] -> (qweight int16 [N/4, K], scales fp16
    [8 ZW, N], qzeros fp16 [8 ZW, N] holding -scale * zero)."""
    n, k = codes.shape
    q = codes.to(torch.int32).reshape(n // 4, 4, k // 64, 2, 4, 8)          # i a j b r c
    q = q.permute(0, 2, 1, 3, 5, 4)                                          # i j a b c r
    word = (q << torch.arange(0, 16, 4, dtype=torch.int32)).sum(-1)          # 4 nibbles
    word = torch.where(word >= 2**15, word - 2**16, word).to(torch.int16).reshape(n // 4, k)
    rows = zeros_width(k, group_size) * 8
    s16 = scales.to(torch.float16)
    sc = torch.zeros(rows, n, dtype=torch.float16)
    zs = torch.zeros(rows, n, dtype=torch.float16)
    sc[:k // group_size] = s16.t()
    zs[:k // group_size] = (-(s16.to(torch.float32) * zeros.to(torch.float32))).to(torch.float16).t()
    return word.contiguous(), sc, zs


def write_checkpoint(out_dir, config: dict, tensors: dict, *, version: str, group_size: int,
                     source_dir=None) -> None:
    """config.json (with AutoAWQ's quantization_config), model.safetensors, and the tokenizer /
    generation files copied from source_dir."""
    from ..hf.checkpoint import write_directory

    q = {"bits": 4, "group_size": group_size, "modules_to_not_convert": None, "quant_method": "awq",
         "version": version, "zero_point": True}
    write_directory(out_dir, {**config, "torch_dtype": "float16"}, q, tensors, "model.safetensors", source_dir)
